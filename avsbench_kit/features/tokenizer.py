"""A small offline tokenizer for random-weight text encoders.

Real tokenizers (RoBERTa, CLIP, CLAP) cannot be downloaded here. For the random "small" configs
we train a byte-level BPE with ``tokenizers`` on a fixed word list; the result is deterministic
and its serialised form is hashed into the encoder's fingerprint (:func:`tokenizer_digest`).
Byte-level BPE never produces unknown tokens, so any expression can be encoded.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from avsbench_kit.hashing import sha256_text

#: words the BPE merges are learnt from (sounds, objects, positions: what AVS expressions say)
WORDS = """
a an the of and or in on at to from with without by for is are was be being this that it its
left right middle center centre top bottom front back behind near far next beside above below
first second third last one two three four five many some all no not only other another same
who which what where when while during whole video clip frame time loud quiet louder quieter
sound sounding sounds making makes playing plays singing sings speaking speaks talking barking
meowing roaring howling laughing crying ringing honking revving chirping buzzing humming
man woman boy girl baby child person people crowd singer player speaker dog cat lion horse
cow sheep bird mynah coyote duck chicken goose pig elephant monkey frog insect bee
car bus truck train ambulance siren helicopter airplane plane motorcycle bicycle boat engine
guitar violin piano ukulele tabla drum drums flute trumpet saxophone cello harp glockenspiel
keyboard computer phone clock bell gun chainsaw lawn mower tree trees water wind rain fire
red green blue yellow black white brown orange purple gray grey big small large little tall short
instrument instruments object objects animal animals vehicle vehicles machine tool toy
visible appears appear hidden hold holds holding sitting standing walking running moving
emergency police fire-truck race racing typing mowing shooting driving clip-clop hands
""".split()

SPECIAL = {
    # style: (special tokens in id order, bos, eos, pad, unk)
    "roberta": (["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<s>", "</s>", "<pad>", "<unk>"),
    "clip": (["<|startoftext|>", "<|endoftext|>"], "<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"),
}


@lru_cache(maxsize=8)
def _trained(style: str, vocab_size: int) -> str:
    """Serialised trained tokenizer (JSON) for a style and vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials, bos, eos, _pad, _unk = SPECIAL[style]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [" ".join(WORDS[i:i + 12]) for i in range(0, len(WORDS), 12)] * 3
    tok.train_from_iterator(corpus, trainer=trainer)
    if style == "roberta":
        tok.post_processor = processors.RobertaProcessing((eos, tok.token_to_id(eos)), (bos, tok.token_to_id(bos)))
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))]
        )
    return tok.to_str()


def offline_tokenizer(style: str = "roberta", vocab_size: int = 600) -> Any:
    """A ``PreTrainedTokenizerFast`` with RoBERTa-like or CLIP-like special tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    specials, bos, eos, pad, unk = SPECIAL[style]
    tok = Tokenizer.from_str(_trained(style, vocab_size))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk)


def tokenizer_digest(style: str = "roberta", vocab_size: int = 600) -> str:
    return sha256_text(_trained(style, vocab_size))


def special_ids(style: str, vocab_size: int = 600) -> dict[str, int]:
    """bos/eos/pad ids of the offline tokenizer, for the model configs."""
    specials, bos, eos, pad, _unk = SPECIAL[style]
    return {"bos_token_id": specials.index(bos), "eos_token_id": specials.index(eos), "pad_token_id": specials.index(pad)}
