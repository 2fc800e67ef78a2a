"""RoBERTa / DistilRoBERTa token features, as Ref-AVS, AuralSAM2 and SAM2-LOVE use them:
``last_hidden_state`` ``[max_length=25, 768]`` with padding to max length, plus the attention mask.

Real weights: ``FacebookAI/roberta-base`` / ``distilbert/distilroberta-base`` (hub id or a local
copy); the tokenizer comes from the same place. Random ``small`` config: a 2-layer, 64-wide RoBERTa
with the offline byte-level BPE tokenizer (:mod:`avsbench_kit.features.tokenizer`).
"""

from __future__ import annotations

from typing import Any

from avsbench_kit.features.encoders.hf import TextEncoder, from_pretrained, seeded
from avsbench_kit.features.tokenizer import offline_tokenizer, special_ids, tokenizer_digest

VOCAB = 600
SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
#: random "full" configs mirror the real architectures (for cost studies), with the offline vocab
FULL = {
    "roberta": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "distilroberta": {"hidden_size": 768, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 3072},
}


class RobertaEncoder(TextEncoder):
    name = "roberta"
    code_version = "1"

    def random_config(self) -> dict[str, Any]:
        arch = SMALL if self.cfg["config"] == "small" else FULL.get(self.registry_name, FULL["roberta"])
        return {
            **arch,
            "vocab_size": VOCAB,
            "max_position_embeddings": int(self.cfg["max_length"]) + 4,
            "type_vocab_size": 1,
            **special_ids("roberta"),
            "tokenizer": tokenizer_digest("roberta", VOCAB),
        }

    def _load(self) -> Any:
        from transformers import AutoTokenizer, RobertaConfig, RobertaModel

        if self.weights:
            rev = str(self.cfg.get("revision") or "")
            model = from_pretrained(RobertaModel.from_pretrained, self.weights, rev)
            tokenizer = from_pretrained(AutoTokenizer.from_pretrained, self.weights, rev, what="tokenizer")
        else:
            params = {k: v for k, v in self.random_config().items() if k != "tokenizer"}
            model = seeded(int(self.cfg["seed"]), lambda: RobertaModel(RobertaConfig(**params), add_pooling_layer=False))
            tokenizer = offline_tokenizer("roberta", VOCAB)
        return model.eval(), tokenizer

    def run(self, model: Any, enc: dict[str, Any]) -> tuple[Any, Any]:
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return out.last_hidden_state, None
