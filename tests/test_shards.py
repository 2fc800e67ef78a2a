"""Raw-sample shards (determinism, round trip, corruption detection) and the Hugging Face export."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_loaders import make_avss, make_refavs, make_s4  # noqa: E402  (tiny official-layout trees)

from avsbench_kit.data.loaders import AVSDataset  # noqa: E402
from avsbench_kit.data.shards import (  # noqa: E402
    export_shards,
    iter_decoded,
    read_shards,
    sample_files,
    sample_row,
    verify_shards,
)
from avsbench_kit.errors import ConfigError, DataError  # noqa: E402


def _export(manifest, home: Path, n: int = 2) -> Path:
    return export_shards(manifest, home=home, samples_per_shard=n, progress=False)


def test_export_is_byte_deterministic(tmp_path):
    manifest = make_refavs(tmp_path / "tree")
    a = _export(manifest, tmp_path / "home_a")
    b = _export(manifest, tmp_path / "home_b")
    tars_a = sorted(p.name for p in a.parent.glob("*.tar"))
    assert tars_a == ["test_s-000000.tar", "train-000000.tar"]
    assert tars_a == sorted(p.name for p in b.parent.glob("*.tar"))
    for name in tars_a:
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes()
    assert a.read_bytes() == b.read_bytes()
    assert a.parent == tmp_path / "home_a" / "shards" / "synth-refavs" / manifest.meta["fingerprint_short"]
    # the headers really are normalised, and a sample's members are contiguous and sorted
    with tarfile.open(a.parent / "test_s-000000.tar") as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
    names = [m.name for m in members]
    keys = [n.split(".", 1)[0] for n in names]
    assert keys == sorted(keys, key=keys.index)  # contiguous samples, in manifest order
    assert list(dict.fromkeys(keys)) == [r["sample_key"] for r in manifest.rows("test_s")]
    for key in set(keys):
        group = [n for n in names if n.startswith(key + ".")]
        assert group == sorted(group) and len(group) == 10 + 10 + 2
    # a changed file gives a different shard hash
    row = manifest.rows("train")[0]
    (tmp_path / "tree" / row["frames"][0]).write_bytes((tmp_path / "tree" / row["frames"][1]).read_bytes())
    c = _export(manifest, tmp_path / "home_c")
    index_a, index_c = json.loads(a.read_text()), json.loads(c.read_text())
    assert index_a["splits"]["test_s"] == index_c["splits"]["test_s"]
    assert index_a["splits"]["train"]["shards"][0]["sha256"] != index_c["splits"]["train"]["shards"][0]["sha256"]


def test_index_records_counts_hashes_and_provenance(tmp_path):
    from avsbench_kit import __version__
    from avsbench_kit.hashing import sha256_file

    manifest = make_s4(tmp_path / "tree", clips=6)
    index_path = _export(manifest, tmp_path / "home")
    index = json.loads(index_path.read_text())
    assert index["fingerprint"] == manifest.fingerprint and index["toolkit_version"] == __version__
    assert index["task"] == "s4" and index["num_samples"] == 6
    test = index["splits"]["test"]
    assert [s["num_samples"] for s in test["shards"]] == [2, 2, 1] and test["num_samples"] == 5
    for s in test["shards"]:
        assert sha256_file(index_path.parent / s["file"]) == s["sha256"]


def test_round_trip_equals_the_folder_tree(tmp_path):
    tree = tmp_path / "tree"
    manifest = make_s4(tree, clips=4)
    index_path = _export(manifest, tmp_path / "home")
    for split in ("train", "test"):
        rows = manifest.rows(split)
        samples = list(read_shards(index_path, split, verify=True))
        assert [s["__key__"] for s in samples] == [r["sample_key"] for r in rows]
        for sample, row in zip(samples, rows):
            assert sample_row(sample) == row
            files = sample_files(sample)
            expected = [*row["frames"], *[m for m in row["masks"] if m], row["audio"], row["log_mel"]]
            assert sorted(files) == sorted(expected)
            for rel, data in files.items():
                assert data == (tree / rel).read_bytes(), rel
    # decoded the same way, shards give exactly the Dataset's items
    ds = AVSDataset(manifest, "test", audio="log_mel", image_size=24)
    decoded = list(iter_decoded(index_path, "test", audio="log_mel", image_size=24))
    assert len(decoded) == len(ds)
    for got, want in zip(decoded, (ds[i] for i in range(len(ds)))):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert torch.equal(got[key], value) if isinstance(value, torch.Tensor) else got[key] == value


def test_webdataset_reads_the_shards(tmp_path):
    import webdataset as wds

    manifest = make_avss(tmp_path / "tree")
    index_path = _export(manifest, tmp_path / "home")
    url = str(index_path.parent / "test-000000.tar")
    samples = list(wds.WebDataset(url, shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in samples] == ["uid0", "uid1"]
    assert "frame_9.jpg" in samples[1] and "mask_4.png" in samples[0] and "audio.wav" in samples[0]
    row = manifest.rows("test")[1]
    assert samples[1]["frame_9.jpg"] == (tmp_path / "tree" / row["frames"][9]).read_bytes()
    assert json.loads(samples[1]["meta.json"]) == row


def test_truncated_and_corrupt_shards_are_named(tmp_path):
    manifest = make_s4(tmp_path / "tree", clips=6)
    index_path = _export(manifest, tmp_path / "home")
    assert verify_shards(index_path) == []
    cut = index_path.parent / "test-000001.tar"
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    flipped = index_path.parent / "test-000002.tar"
    raw = bytearray(flipped.read_bytes())
    raw[700] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    (index_path.parent / "train-000000.tar").unlink()
    problems = {Path(p.shard).name: p.reason for p in verify_shards(index_path)}
    assert set(problems) == {"test-000001.tar", "test-000002.tar", "train-000000.tar"}
    assert "truncated" in problems["test-000001.tar"]
    assert "sha256" in problems["test-000002.tar"] and problems["train-000000.tar"] == "missing"
    # plain reading (no hash check) still stops at the truncated shard, naming it
    with pytest.raises(DataError) as err:
        list(read_shards(index_path, "test"))
    assert "test-000001.tar" in err.value.message
    with pytest.raises(DataError) as err:
        list(read_shards(index_path, "test", verify=True))
    assert "test-000001.tar" in err.value.message
    # re-export repairs, and leaves the source tree alone
    _export(manifest, tmp_path / "home")
    assert verify_shards(index_path) == []


def test_long_keys_and_cuts_at_member_boundaries(tmp_path):
    from avsbench_kit.data.manifest import ManifestBuild, build_manifest

    tree = tmp_path / "tree"
    base = make_refavs(tree, n=2)
    rows = base.rows()
    rows[0]["sample_key"] = "k" * 150  # > 100 chars: needs a pax header in the tar
    manifest = build_manifest("synth-refavs", tree, ManifestBuild(rows=rows, media_dirs=["media", "gt_mask"]))
    index_path = _export(manifest, tmp_path / "home", n=8)
    shard = index_path.parent / "test_s-000000.tar"
    with tarfile.open(shard) as tar:  # the stdlib agrees on names and bytes
        ref = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    samples = list(read_shards(index_path, "test_s"))
    ours = {f"{s['__key__']}.{k}": v for s in samples for k, v in s.items() if not k.startswith("__")}
    assert ours == ref and samples[0]["__key__"] == "k" * 150
    # cut right after a complete member (no end-of-archive marker): still reported, with the name
    with tarfile.open(shard) as tar:
        members = tar.getmembers()
    cut_at = members[5].offset_data + ((members[5].size + 511) // 512) * 512
    shard.write_bytes(shard.read_bytes()[:cut_at])
    with pytest.raises(DataError, match="test_s-000000.tar"):
        list(read_shards(index_path, "test_s"))


def test_missing_source_file_stops_export_without_an_index(tmp_path):
    manifest = make_s4(tmp_path / "tree", clips=2)
    (tmp_path / "tree" / manifest.rows("test")[0]["masks"][2]).unlink()
    with pytest.raises(DataError) as err:
        _export(manifest, tmp_path / "home")
    assert "clip1_3.png" in err.value.message
    out = tmp_path / "home" / "shards" / "synth-s4" / manifest.meta["fingerprint_short"]
    assert not (out / "index.json").exists() and not list(out.glob(".*tmp"))


# ---- Hugging Face export ------------------------------------------------------------------------
def test_hf_export_round_trip(tmp_path):
    datasets = pytest.importorskip("datasets")
    from avsbench_kit.data.hf_export import export_hf, read_description

    manifest = make_refavs(tmp_path / "tree")
    out = export_hf(manifest, tmp_path / "hf" / "synth-refavs")
    loaded = datasets.load_from_disk(str(out))
    assert sorted(loaded.keys()) == ["test_s", "train"]
    for split in loaded:
        assert [dict(r) for r in loaded[split]] == manifest.rows(split)
        info = read_description(loaded[split].info.description)
        assert info["root"] == str(manifest.root) and info["fingerprint"] == manifest.fingerprint
    blob = json.dumps([dict(r) for s in loaded for r in loaded[s]])
    assert str(tmp_path) not in blob  # rows hold relative paths only
    # re-export over an existing directory replaces it atomically (no temp dirs left behind)
    export_hf(manifest, out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["synth-refavs"]


def test_hf_export_without_datasets_gives_install_hint(tmp_path, monkeypatch):
    from avsbench_kit.data.hf_export import export_hf

    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ConfigError) as err:
        export_hf(make_avss(tmp_path / "tree"), tmp_path / "hf")
    assert "avsbench-kit[hf]" in err.value.hint
    assert not (tmp_path / "hf").exists()


def test_decoded_masks_survive_the_round_trip_for_every_task(tmp_path):
    for make, split in ((make_refavs, "train"), (make_avss, "test")):
        manifest = make(tmp_path / make.__name__)
        index_path = _export(manifest, tmp_path / "home")
        shard = next(iter_decoded(index_path, split, audio=None, load_frames=False))
        want = AVSDataset(manifest, split, audio=None, load_frames=False)[0]
        np.testing.assert_array_equal(shard["masks"].numpy(), want["masks"].numpy())


# ---- with the official-layout builders ------------------------------------------------------------
@pytest.mark.parametrize("name", ["avsbench-s4", "avsbench-ms3", "refavs", "avss"])
def test_builder_manifests_load_and_round_trip_through_shards(tmp_path, name):
    import fake_trees
    from avsbench_kit.data.prepare import prepare

    make = {"avsbench-s4": fake_trees.make_s4_tree, "avsbench-ms3": fake_trees.make_ms3_tree,
            "refavs": fake_trees.make_refavs_tree, "avss": fake_trees.make_avss_tree}[name]
    manifest = prepare(name, make(tmp_path / "tree"), home=tmp_path / "home")
    index_path = _export(manifest, tmp_path / "home", n=3)
    assert verify_shards(index_path) == []
    expected_mask = {"avsbench-s4": torch.float32, "avsbench-ms3": torch.float32,
                     "refavs": torch.float32, "avss": torch.int64}[name]
    for split in manifest.split_counts():
        ds = AVSDataset(manifest, split)
        shard_items = list(iter_decoded(index_path, split))
        assert [s["key"] for s in shard_items] == [r["sample_key"] for r in manifest.rows(split)]
        for i, got in enumerate(shard_items):
            want = ds[i]
            assert want["masks"].dtype == expected_mask
            assert want["masks"].shape[0] == want["frames"].shape[0] == len(want["annotated"])
            for key in ("frames", "masks", "annotated", "audio"):
                assert torch.equal(got[key], want[key]), (split, i, key)


# ---- on a (tiny) SynthAVS tree ------------------------------------------------------------------
_TINY_SYNTH = [f"{t}.clips.{s}=4" for t in ("s4", "ms3") for s in ("train", "val", "test")] + [
    f"refavs.clips.{s}=4" for s in ("train", "val", "test_s", "test_u")
] + ["refavs.nulls.train=1", "refavs.nulls.val=1", "refavs.nulls.test_n=4"] + [
    f"avss.clips.{sub}.{s}={n}" for sub, n in (("v1s", 2), ("v1m", 1), ("v2", 1)) for s in ("train", "val", "test")
]


@pytest.fixture(scope="module")
def synth_tree(tmp_path_factory):
    from avsbench_kit.data.synth import generate
    out = tmp_path_factory.mktemp("synth") / "tree"
    generate(out, seed=0, size="small", overrides=_TINY_SYNTH, progress=False)
    return out


@pytest.mark.parametrize("name,sub,split", [("synth-s4", "Single-source", "test"),
                                            ("synth-ms3", "Multi-sources", "val"),
                                            ("synth-refavs", "REFAVS", "test_n"),
                                            ("synth-avss", "avs_released", "train")])
def test_synthavs_loads_and_round_trips(synth_tree, tmp_path, name, sub, split):
    from avsbench_kit.data.prepare import prepare

    manifest = prepare(name, synth_tree / sub, home=tmp_path / "home")
    index_path = _export(manifest, tmp_path / "home", n=4)
    assert verify_shards(index_path) == []
    ds = AVSDataset(manifest, split, image_size=64)
    shard_items = list(iter_decoded(index_path, split, image_size=64))
    assert len(shard_items) == len(ds) > 0
    for got, want in zip(shard_items, (ds[i] for i in range(len(ds)))):
        assert got["key"] == want["key"]
        for key in ("frames", "masks", "annotated", "audio"):
            assert torch.equal(got[key], want[key]), key
        assert set(torch.unique(want["masks"]).tolist()) <= ({0.0, 1.0} if name != "synth-avss" else set(range(11)))
        # null expressions have empty GT; every other sample shows its object somewhere
        assert bool(want["masks"].any()) != want["is_null"]
        assert want["frames"].shape[-2:] == (64, 64) and want["audio"].shape[0] in (1, 2)
