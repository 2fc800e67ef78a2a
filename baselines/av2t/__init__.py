"""AV2T-SAM (Audio Visual Segmentation Through Text Embeddings) and its CLIP-only probe."""
