"""Shared plumbing for the transformers-based encoders: loading real weights (local dir or hub
id), building seeded random models from small config dicts, and token-level text features."""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

from avsbench_kit.errors import DataError
from avsbench_kit.features.base import Encoder, FieldSpec, choice, positive, resolve_weights_path


def local_config(weights: str) -> dict[str, Any]:
    """``config.json`` of a local model dir (no transformers import); {} for hub ids."""
    if not weights:
        return {}
    path = resolve_weights_path(weights)
    if path is None or not (path / "config.json").is_file():
        return {}
    return json.loads((path / "config.json").read_text("utf-8"))


def from_pretrained(loader: Callable[..., Any], weights: str, revision: str = "", what: str = "model") -> Any:
    """``loader(weights)`` with a local path or hub id; failures become a DataError with a hint."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bar reports progress; theirs garbles it
    path = resolve_weights_path(weights)
    target = str(path) if path is not None else weights
    kwargs: dict[str, Any] = {}
    if path is None and revision:
        kwargs["revision"] = revision
    try:
        return loader(target, **kwargs)
    except Exception as exc:
        hint = ("a hub id needs network access or a copy in the local HF cache; offline, pass a local "
                "directory (weights=/path/to/model)") if path is None else "check that the directory holds a transformers model"
        raise DataError(f"cannot load {what} from {target}: {str(exc).splitlines()[0]}", hint=hint) from None


def seeded(seed: int, build: Callable[[], Any]) -> Any:
    """Build a model with a fixed seed without disturbing the global RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def pooled_output(out: Any) -> Any:
    """transformers 5.x ``get_*_features`` return output objects (projection in pooler_output)."""
    if hasattr(out, "pooler_output") and out.pooler_output is not None:
        return out.pooler_output
    if hasattr(out, "text_embeds"):
        return out.text_embeds
    return out


class TextEncoder(Encoder):
    """Token-level features ``[L, D]`` + attention mask ``[L]`` (+ a pooled ``[D]`` when the model
    has one), padded/truncated to ``max_length`` tokens. Keyed by sample (expression)."""

    modality = "text"
    key_by = "sample"
    needs = ("text",)
    tokenizer_style = "roberta"
    has_pooled = False

    def validate(self) -> None:
        choice(self.cfg, "config", ("small", "full"))
        choice(self.cfg, "text_field", ("auto", "text", "category"))
        choice(self.cfg, "dtype", ("float32", "float16"))
        positive(self.cfg, "max_length")
        positive(self.cfg, "batch_size")
        positive(self.cfg, "shard_size")

    def hidden_size(self) -> int | str:
        if self.weights:
            cfg = local_config(self.weights)
            return cfg.get("hidden_size", cfg.get("text_config", {}).get("hidden_size", "D"))
        return self.random_config()["hidden_size"]

    def pooled_size(self) -> int | str:
        return self.hidden_size()

    def output_spec(self) -> dict[str, FieldSpec]:
        length = int(self.cfg["max_length"])
        spec = {
            "tokens": FieldSpec((length, self.hidden_size()), self.cfg["dtype"]),
            "mask": FieldSpec((length,), "bool", role="mask"),
        }
        if self.has_pooled:
            spec["pooled"] = FieldSpec((self.pooled_size(),), self.cfg["dtype"], role="pooled")
        return spec

    def tokenize(self, tokenizer: Any, texts: list[str]) -> dict[str, Any]:
        return tokenizer(texts, max_length=int(self.cfg["max_length"]), padding="max_length",
                         truncation=True, return_tensors="pt")

    def run(self, model: Any, enc: dict[str, Any]) -> tuple[Any, Any]:
        """(last_hidden_state [B, L, D], pooled [B, D] or None)."""
        raise NotImplementedError

    def _encode(self, model: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        net, tokenizer = model
        texts = [str(u.get("text") or "") for u in batch]
        enc = self.tokenize(tokenizer, texts)
        hidden, pooled = self.run(net, self.on_device(dict(enc)))
        hidden = hidden.float().cpu()  # one copy back per batch
        pooled = None if pooled is None else pooled.float().cpu()
        mask = enc["attention_mask"].numpy().astype(bool)
        dtype = np.dtype(self.cfg["dtype"])
        out = []
        for i in range(len(batch)):
            item = {"tokens": np.ascontiguousarray(hidden[i].float().numpy().astype(dtype)), "mask": mask[i].copy()}
            if self.has_pooled:
                item["pooled"] = np.ascontiguousarray(pooled[i].float().numpy().astype(dtype))
            out.append(item)
        return out


class DualEncoderText(TextEncoder):
    """Text tower of a CLIP-style dual encoder (CLIP, CLAP): token features, mask and the projected
    sentence embedding. Subclasses give their random ``small`` config and implement ``_load``."""

    has_pooled = True

    def small_config(self, max_length: int) -> dict[str, Any]:
        raise NotImplementedError

    def validate(self) -> None:
        super().validate()
        choice(self.cfg, "config", ("small",))

    def random_config(self) -> dict[str, Any]:
        small = self.small_config(int(self.cfg["max_length"]))
        return {k: small[k] for k in ("text", "projection_dim", "tokenizer")}

    def hidden_size(self) -> int | str:
        if self.weights:
            return local_config(self.weights).get("text_config", {}).get("hidden_size", "D")
        return self.random_config()["text"]["hidden_size"]

    def pooled_size(self) -> int | str:
        return local_config(self.weights).get("projection_dim", "D") if self.weights \
            else self.random_config()["projection_dim"]

    def run(self, model: Any, enc: dict[str, Any]) -> tuple[Any, Any]:
        out = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return out.last_hidden_state, out.pooler_output
