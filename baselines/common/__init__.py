"""Pieces shared by the SAM2-based baselines (losses). The SAM2 layer itself is
``avsbench_kit.models.sam2``. Import the submodules directly; this package imports nothing heavy."""
