"""The feature reader: the batch contract, joins by clip and by sample key checked against
direct encoding, evaluation order, seeded shuffles, and the refusals (missing cache with the exact
extract command, another manifest, another encoder version)."""

from __future__ import annotations

import copy
import json
import shlex

import numpy as np
import pytest
import torch

from avsbench_kit.cli.main import main
from avsbench_kit.data.loaders import AVSDataset
from avsbench_kit.errors import DataError, NotPreparedError
from avsbench_kit.features import FeatureRequest, build_encoder
from avsbench_kit.features.reader import ensure_caches, feature_batches
from test_features_plan import make_refavs_dataset, make_s4_dataset

VGG = FeatureRequest("vggish", ("shard_size=2",))
TEXT = FeatureRequest("distilroberta", ("shard_size=3",))


@pytest.fixture(scope="module")
def s4(tmp_path_factory):
    manifest, home = make_s4_dataset(tmp_path_factory.mktemp("s4r"))
    ensure_caches(manifest, [VGG, TEXT], home, progress=False)
    return manifest, home


@pytest.fixture(scope="module")
def refavs(tmp_path_factory):
    manifest, home = make_refavs_dataset(tmp_path_factory.mktemp("refavs"))
    ensure_caches(manifest, [VGG, TEXT], home, progress=False)
    return manifest, home


def test_eval_batches_follow_the_contract_and_match_direct_encoding(s4):
    manifest, home = s4
    batches = list(feature_batches(manifest, "test", [VGG, TEXT], batch_size=2, shuffle=False, seed=0, home=home))
    rows = manifest.rows("test")
    assert [k for b in batches for k in b["key"]] == [r["sample_key"] for r in rows]
    b = batches[0]
    assert b["masks"].dtype == torch.float32 and b["masks"].shape == (2, 5, 224, 224)
    assert b["annotated"].dtype == torch.bool and b["annotated"].all()  # S4 test: all 5 frames
    feats = b["features"]
    assert feats["vggish"].shape == (2, 5, 128) and feats["vggish"].dtype == torch.float32
    assert feats["distilroberta"].shape == (2, 25, 64) and feats["distilroberta_mask"].dtype == torch.bool
    # independent computation: the loader's audio through the encoder, sample by sample
    ds = AVSDataset(manifest, "test", load_frames=False, load_masks=False, audio="wav")
    enc = build_encoder("vggish", VGG.overrides)
    for i in range(2):
        item = ds[i]
        (direct,) = enc.encode([{"audio": item["audio"], "sample_rate": item["sample_rate"], "num_frames": 5}])
        np.testing.assert_allclose(feats["vggish"][i].numpy(), direct["emb"], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(feats["vggish"][0], feats["vggish"][1])
    # S4 has no expressions: text_field=auto encodes the category ("dog barking")
    (text,) = build_encoder("distilroberta").encode([{"text": rows[0]["category"].replace("_", " ")}])
    np.testing.assert_allclose(feats["distilroberta"][0].numpy(), text["tokens"], rtol=1e-5, atol=1e-6)


def test_train_shuffle_is_a_seeded_permutation(s4):
    manifest, home = s4
    keys = [r["sample_key"] for r in manifest.rows("train")]

    def epoch(seed, e=0):
        return [k for b in feature_batches(manifest, "train", [VGG], batch_size=2, shuffle=True, seed=seed,
                                           epoch=e, home=home, with_masks=False) for k in b["key"]]

    a = epoch(0)
    assert sorted(a) == sorted(keys) and a == epoch(0)
    assert len({tuple(epoch(s)) for s in range(6)}) > 1
    stream = feature_batches(manifest, "train", [VGG], batch_size=2, shuffle=True, seed=0, resampled=True,
                             home=home, with_masks=False)
    seen = [k for _, b in zip(range(6), stream) for k in b["key"]]
    assert len(seen) > len(keys)  # resampled: more than one epoch


def test_refavs_joins_clip_and_sample_caches(refavs):
    manifest, home = refavs
    rows = manifest.rows("test_s")
    (batch,) = feature_batches(manifest, "test_s", [VGG, TEXT], batch_size=8, shuffle=False, seed=0, home=home,
                               with_frames=True)
    assert batch["frames"].shape[:3] == (len(rows), 10, 3) and batch["masks"].shape[:2] == (len(rows), 10)
    clips = [r["clip"] for r in rows]
    assert len(set(clips)) < len(clips)  # two expressions share a clip
    i, j = [n for n, c in enumerate(clips) if clips.count(c) > 1][:2]
    f = batch["features"]
    assert torch.equal(f["vggish"][i], f["vggish"][j])
    assert not torch.equal(f["distilroberta"][i], f["distilroberta"][j])
    enc = build_encoder("distilroberta")
    (direct,) = enc.encode([{"text": rows[j]["text"]}])
    np.testing.assert_allclose(f["distilroberta"][j].numpy(), direct["tokens"], rtol=1e-5, atol=1e-6)


def test_missing_cache_hint_is_the_exact_command(s4, capsys):
    manifest, home = s4
    request = FeatureRequest("vggish", ("shard_size=2", "channels=stereo"))
    with pytest.raises(NotPreparedError) as err:
        feature_batches(manifest, "val", [request], batch_size=2, shuffle=False, seed=0, home=home).__next__()
    assert "not used" in err.value.message and "another encoder version" in err.value.message
    argv = shlex.split(err.value.hint)  # the hint is exactly the command
    assert argv[:3] == ["avskit", "features", "extract"]
    assert main(argv[1:] + ["--no-progress"]) == 0
    (batch,) = feature_batches(manifest, "val", [request], batch_size=2, shuffle=False, seed=0, home=home)
    assert batch["features"]["vggish"].shape == (2, 5, 2, 128)


def test_refuses_other_manifest_and_other_encoder_version(s4):
    manifest, home = s4
    other = copy.copy(manifest)
    other.meta = {**manifest.meta, "fingerprint": "0" * 64}
    with pytest.raises(NotPreparedError, match="another manifest"):
        next(feature_batches(other, "val", [VGG], batch_size=2, shuffle=False, seed=0, home=home))
    from avsbench_kit.features.extract import open_cache
    from avsbench_kit.features.cache import cache_root

    fc = open_cache(manifest, build_encoder("vggish", VGG.overrides), cache_root(home))
    index = json.loads(fc.index_path.read_text())
    index["encoder_fingerprint"] = "f" * 64
    fc.index_path.write_text(json.dumps(index))
    try:
        with pytest.raises(DataError, match="refusing to mix"):
            next(feature_batches(manifest, "val", [VGG], batch_size=2, shuffle=False, seed=0, home=home))
    finally:
        fc.refresh_index()


def test_duplicate_requests_rejected(s4):
    from avsbench_kit.errors import ConfigError

    manifest, home = s4
    with pytest.raises(ConfigError):
        next(feature_batches(manifest, "val", [VGG, FeatureRequest("vggish")], batch_size=2, shuffle=False,
                             seed=0, home=home))


@pytest.fixture(scope="module")
def avss(tmp_path_factory):
    """A prepared synth-avss (5-frame v1s/v1m and 10-frame v2 clips in every split) with caches."""
    from test_synth_avss import only_avss

    from avsbench_kit.data.prepare import prepare
    from avsbench_kit.data.synth import generate

    tmp = tmp_path_factory.mktemp("avss")
    generate(tmp / "synth", overrides=only_avss({"v1s": (1, 1, 2), "v1m": (0, 0, 1), "v2": (1, 1, 1)}), progress=False)
    manifest = prepare("synth-avss", tmp / "synth", home=tmp / "home")
    ensure_caches(manifest, [VGG, TEXT], tmp / "home", progress=False)
    return manifest, tmp / "home"


def test_clips_of_different_length_are_padded_in_time(avss):
    manifest, home = avss
    rows = manifest.rows("test")
    assert sorted(r["num_frames"] for r in rows) == [5, 5, 5, 10]
    (batch,) = feature_batches(manifest, "test", [VGG, TEXT], batch_size=4, shuffle=False, seed=0, home=home,
                               with_frames=True)
    single = next(feature_batches(manifest, "test", [TEXT], batch_size=1, shuffle=False, seed=0, home=home))
    assert batch["masks"].shape == (4, 10, 224, 224) and batch["frames"].shape == (4, 10, 3, 224, 224)
    assert batch["annotated"].shape == (4, 10) and batch["features"]["vggish"].shape == (4, 10, 128)
    assert batch["is_null"].dtype == torch.bool and not batch["is_null"].any()
    assert batch["num_frames"].tolist() == [r["num_frames"] for r in rows]
    ds = AVSDataset(manifest, "test", audio=None)
    enc = build_encoder("vggish", VGG.overrides)
    wav = AVSDataset(manifest, "test", load_frames=False, load_masks=False, audio="wav")
    for i, row in enumerate(rows):
        n = row["num_frames"]
        item = ds[i]
        assert torch.equal(batch["masks"][i, :n], item["masks"].float())
        assert torch.equal(batch["frames"][i, :n], item["frames"])
        assert batch["annotated"][i, :n].all() and not batch["annotated"][i, n:].any()
        assert not batch["masks"][i, n:].any() and not batch["frames"][i, n:].any()
        a = wav[i]
        (direct,) = enc.encode([{"audio": a["audio"], "sample_rate": a["sample_rate"], "num_frames": n}])
        np.testing.assert_allclose(batch["features"]["vggish"][i, :n].numpy(), direct["emb"], rtol=1e-5, atol=1e-6)
        assert not batch["features"]["vggish"][i, n:].any()
    assert batch["masks"][:, :5].amax() > 1  # class ids, not a binary mask
    # per-sample text tokens are stacked as they are, never padded to the clip length
    text = batch["features"]["distilroberta"]
    assert text.shape == (4, 25, 64) and batch["features"]["distilroberta_mask"].shape == (4, 25)
    assert torch.equal(text[0], single["features"]["distilroberta"][0])
    # v1s train: one annotated frame, padded with the v2 clip next to it
    (train,) = feature_batches(manifest, "train", [VGG], batch_size=2, shuffle=False, seed=0, home=home)
    assert train["annotated"].tolist() == [[True] + [False] * 9, [True] * 10]


def test_per_frame_feature_longer_than_the_clip_sets_the_length(avss):
    """VGGish padded to 10 examples (official AVSS audio): the 5-frame clips' masks follow it."""
    manifest, home = avss
    ten = FeatureRequest("vggish", ("shard_size=2", "num_examples=10"))
    ensure_caches(manifest, [ten], home, progress=False)
    rows = manifest.rows("test")
    first = next(feature_batches(manifest, "test", [ten], batch_size=2, shuffle=False, seed=0, home=home))
    assert [rows[i]["num_frames"] for i in range(2)] == [5, 5]  # a batch of 5-frame clips only
    assert first["features"]["vggish"].shape == (2, 10, 128) and first["masks"].shape == (2, 10, 224, 224)
    assert first["annotated"][:, 5:].sum() == 0 and first["annotated"][:, :5].all()
    assert first["num_frames"].tolist() == [5, 5]  # the clips' real length, not the batch's


def test_is_null_and_category_come_from_the_manifest(refavs):
    manifest, home = refavs
    for split in ("train", "test_n", "test_s"):
        rows = manifest.rows(split)
        batches = list(feature_batches(manifest, split, [TEXT], batch_size=3, shuffle=False, seed=0, home=home,
                                       with_masks=False))
        assert [v for b in batches for v in b["is_null"].tolist()] == [bool(r["is_null"]) for r in rows]
        assert [c for b in batches for c in b["category"]] == [r["category"] for r in rows]
    assert any(r["is_null"] for r in manifest.rows("test_n"))
