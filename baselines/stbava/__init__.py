"""ST-BAVA (spatio-temporal bidirectional audio-visual attention) on SAM ViT or SAM2 Hiera."""
