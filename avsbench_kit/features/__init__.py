"""Frozen-encoder feature caches: encoders behind one protocol, deterministic resumable shards,
and a reader that joins them with a manifest. Importing this package stays light (no torch)."""

from avsbench_kit.features.base import ENCODERS, Encoder, FeatureRequest, build_encoder

__all__ = ["ENCODERS", "Encoder", "FeatureRequest", "build_encoder"]
