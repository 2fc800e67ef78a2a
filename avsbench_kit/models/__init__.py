"""Foundation-model wrappers shared by the feature encoders and the baselines (SAM1, SAM2)."""
