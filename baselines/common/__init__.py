"""Pieces shared by the SAM-based baselines (losses, SAMA-style adapters, the SAM2 cache request). The SAM2 layer itself is
``avsbench_kit.models.sam2``. Import the submodules directly; this package imports nothing heavy."""
