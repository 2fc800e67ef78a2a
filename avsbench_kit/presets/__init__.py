"""Packaged YAML presets (one folder per group)."""
