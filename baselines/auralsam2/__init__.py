"""AuralSAM2 baseline (frozen SAM2 + AuralFuser prompts + AudioCon)."""
