"""Model layers shared by the feature encoders and the baselines (``sam2``: the one SAM2 layer).
Import the submodules directly; this package imports nothing heavy on its own."""
