"""Pieces shared by the SAM2-based baselines (the SAM2 wrapper, losses). Import the submodules
directly; this package imports nothing heavy on its own."""
