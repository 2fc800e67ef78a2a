"""SAM2-LOVE (CVPR 2025) re-implementation: see :mod:`baselines.sam2love.model`."""
