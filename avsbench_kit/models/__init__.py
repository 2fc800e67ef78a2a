"""Model layers shared by the feature encoders and the baselines (``sam2``: the one SAM2 layer,
``sam1``: segment-anything). Import the submodules directly; this package imports nothing heavy."""
