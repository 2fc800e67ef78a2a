"""avsbench-kit: audio-visual segmentation benchmarks, feature caches, official metrics, baselines."""

__version__ = "0.1.0"
