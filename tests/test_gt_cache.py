"""The decoded-GT cache: exact round trip, same metrics as the PNG path, corrupt/stale caches rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avsbench_kit.data import gt_cache as GC
from avsbench_kit.data.manifest import ManifestBuild, build_manifest
from avsbench_kit.data.prepare import load_manifest
from avsbench_kit.home import prepared_dir
from test_metrics_cli import gt_of, make_dataset, run, write_preds

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_codec_round_trip_keeps_values_and_dtypes() -> None:
    rng = np.random.default_rng(0)
    binary = rng.random((37, 53)) < 0.3
    cases = [
        (binary, "refavs", bool),
        (binary.astype(np.float32), "s4", bool),
        (rng.integers(0, 256, (24, 24)).astype(np.float32) / np.float32(255), "ms3", np.float32),
        (rng.integers(0, 71, (224, 224)), "avss", np.int64),
    ]
    for mask, task, dtype in cases:
        kind, payload = GC.encode_frame(mask, task)
        back = GC.decode_frame(kind, payload, mask.shape)
        assert back.dtype == dtype and np.array_equal(back, mask)
    with pytest.raises(ValueError, match="round-trip"):
        GC.encode_frame(np.full((4, 4), 0.3, np.float32), "ms3")  # not a grey index / 255


def _eval(capsys, tmp_path: Path, home: Path, name: str, split: str, pred: str, *extra: str) -> dict:
    out = tmp_path / "r.json"
    code, _, err = run(capsys, "--dataset", name, "--split", split, "--pred", pred, "--home", str(home),
                       "--json", str(out), "--samples", str(tmp_path / "s.csv"), *extra)
    assert code == 0, err
    report = json.loads(out.read_text())
    report["samples"] = (tmp_path / "s.csv").read_text()
    return report


def _grey_ms3(home: Path, rows: list[dict]) -> None:
    """Turn some MS3 masks into grey levels (soft GT) and re-prepare."""
    root = home / "raw" / "synth-ms3"
    for row in rows[:2]:
        path = root / row["masks"][1]
        grey = (np.asarray(Image.open(path)) > 0) * np.uint8(170)
        grey[:4] = 85
        Image.fromarray(grey.astype(np.uint8)).save(path)
    build_manifest("synth-ms3", root, ManifestBuild(rows=rows, media_dirs=["gt"])).save(prepared_dir("synth-ms3", home))


CASES = {
    "s4": ("synth-s4", "s4", "test", dict(n=6, t=5, size=32)),
    "ms3-soft": ("synth-ms3", "ms3", "test", dict(n=5, t=5, size=32)),
    "refavs": ("synth-refavs", "refavs", "test_s", dict(n=5, t=10, size=64)),
    "refavs-null": ("synth-refavs", "refavs", "test_n", dict(n=4, t=10, size=32, null=True)),
    "avss": ("avss", "avss", "test", dict(n=5, t=5, size=224)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cache_path_scores_exactly_like_the_png_path(case: str, tmp_path: Path, capsys) -> None:
    name, task, split, kw = CASES[case]
    home = tmp_path / "home"
    rows = make_dataset(home, name, task, split, seed=7, **kw)
    if case == "ms3-soft":
        _grey_ms3(home, rows)
    gts = [gt_of(home, name, r, task) for r in rows]
    rng = np.random.default_rng(1)
    if task == "avss":
        preds = [np.where(rng.random(g.shape) < 0.2, 44, g).astype(np.uint8) for g in gts]
        write_preds(tmp_path / "pred", rows, preds, ".png")
    else:
        preds = [((g > 0) * 2.0 - 1 + rng.normal(0, 1.5, g.shape)).astype(np.float16) for g in gts]
        write_preds(tmp_path / "pred", rows, preds)
    pred = str(tmp_path / "pred")
    cache = GC.GtCache(load_manifest(name, home), task, home)

    png = _eval(capsys, tmp_path, home, name, split, pred, "--gt-cache", "off")
    assert png["gt_source"] == "png" and not cache.path.exists()
    first = _eval(capsys, tmp_path, home, name, split, pred)  # decodes the PNGs, writes the cache
    assert first["gt_source"] == "png" and any("written" in n for n in first["notes"])
    assert cache.status(split) == ("ok", "")
    cached = _eval(capsys, tmp_path, home, name, split, pred)
    assert cached["gt_source"] == "cache"
    for report in (first, cached):
        assert report["protocols"] == png["protocols"]
        assert report["samples"] == png["samples"]
    if case == "ms3-soft":  # the soft frames really went through the grey-level codec
        kinds = np.load(cache.file(split, "index"))[:, 2]
        assert (kinds == GC.GREY).sum() == 2 and (kinds == GC.BITS).sum() == 23


def _byte_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing file", "other fingerprint", "bad header"])
def test_corrupt_or_stale_cache_is_rebuilt_not_used(damage: str, tmp_path: Path, capsys) -> None:
    home = tmp_path / "home"
    rows = make_dataset(home, "synth-refavs", "refavs", "test_s", n=4, t=10, size=32, seed=2)
    gts = [gt_of(home, "synth-refavs", r, "refavs") for r in rows]
    write_preds(tmp_path / "pred", rows, [(g * 4.0 - 2).astype(np.float16) for g in gts])
    pred = str(tmp_path / "pred")
    truth = _eval(capsys, tmp_path, home, "synth-refavs", "test_s", pred)
    cache = GC.GtCache(load_manifest("synth-refavs", home), "refavs", home)
    data = cache.file("test_s", "data")
    if damage == "flipped byte":
        _byte_flip(data)
    elif damage == "truncated":
        data.write_bytes(data.read_bytes()[:-10])
    elif damage == "missing file":
        cache.file("test_s", "index").unlink()
    elif damage == "other fingerprint":
        header = json.loads(cache.header_path.read_text())
        header["manifest_fingerprint"] = "0" * 64
        cache.header_path.write_text(json.dumps(header))
    else:
        cache.header_path.write_text("{not json")
    state, why = cache.status("test_s")
    assert state == "invalid" and why
    again = _eval(capsys, tmp_path, home, "synth-refavs", "test_s", pred)
    assert again["gt_source"] == "png"  # the damaged cache was not read
    assert any("not used" in n for n in again["notes"]) and any("rebuilt" in n for n in again["notes"])
    assert again["protocols"] == truth["protocols"]
    assert cache.status("test_s") == ("ok", "")
    assert _eval(capsys, tmp_path, home, "synth-refavs", "test_s", pred)["gt_source"] == "cache"


def test_reprepared_dataset_gets_a_new_cache(tmp_path: Path, capsys) -> None:
    """A changed manifest has another fingerprint: the old cache is never read, and is removed
    when the new one is written."""
    home = tmp_path / "home"
    rows = make_dataset(home, "synth-s4", "s4", "test", n=4, t=5, size=24)
    old = GC.GtCache(load_manifest("synth-s4", home), "s4", home)
    GC.build(load_manifest("synth-s4", home), "s4", home=home)
    assert old.status("test") == ("ok", "")
    rows = make_dataset(home, "synth-s4", "s4", "test", n=3, t=5, size=24, seed=4)  # re-prepared: new fingerprint
    new = GC.GtCache(load_manifest("synth-s4", home), "s4", home)
    assert new.path != old.path and new.status("test")[0] == "absent"
    report = _eval(capsys, tmp_path, home, "synth-s4", "test", "gt")
    assert report["gt_source"] == "png" and report["protocols"]["avsbench-v1"]["metrics"]["mIoU"] == 1.0
    assert new.status("test") == ("ok", "") and not old.path.exists()
    assert len(rows) == 3


def test_partial_scoring_does_not_write_the_cache(tmp_path: Path, capsys) -> None:
    home = tmp_path / "home"
    rows = make_dataset(home, "synth-s4", "s4", "test", n=5, t=5, size=24)
    gts = [gt_of(home, "synth-s4", r, "s4") for r in rows]
    write_preds(tmp_path / "pred", rows[:3], [g.astype(np.float16) * 4 - 2 for g in gts[:3]])
    report = _eval(capsys, tmp_path, home, "synth-s4", "test", str(tmp_path / "pred"), "--partial")
    assert report["partial"] and any("no GT cache" in n for n in report["notes"])
    assert GC.GtCache(load_manifest("synth-s4", home), "s4", home).status("test")[0] == "absent"


def test_bad_mode_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    home = tmp_path / "home"
    make_dataset(home, "synth-s4", "s4", "test", n=2, t=5, size=24)
    code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", "gt", "--home", str(home),
                       "--gt-cache", "sometimes")
    assert code != 0 and "--gt-cache auto, rebuild or off" in err


def test_group_decode_equals_sample_decode_and_joins_without_a_copy() -> None:
    from avsbench_kit.metrics.evaluator import _joined

    rng = np.random.default_rng(4)
    lengths = [3, 1, 4, 2]
    samples = [rng.random((n, 24, 40)) < 0.4 for n in lengths]
    grey = rng.integers(0, 256, (2, 24, 40)).astype(np.float32) / np.float32(255)

    def split_of(gts, task):
        return GC.SplitData(**GC.pack(GC.encode_sample(g, task) for g in gts), task=task)

    data = split_of(samples, "refavs")
    for positions in ([0, 1, 2, 3], [3, 0], [2]):
        group = data.group(positions)
        for got, i in zip(group, positions):
            want = data.sample(i)
            assert got.dtype == want.dtype == bool and np.array_equal(got, want)
            assert np.array_equal(got, samples[i])
        joined = _joined(group)
        assert np.array_equal(joined, np.concatenate([samples[i] for i in positions]))
        assert np.shares_memory(joined, group[0])  # adjacent views: no copy
    # views of two different groups (or copies) are joined by copying
    a, b = data.group([0])[0].copy(), data.group([1])[0]
    assert np.array_equal(_joined([a, b]), np.concatenate([a, b])) and not np.shares_memory(_joined([a, b]), a)
    # a group with grey-level frames decodes frame by frame, with the PNG path's dtypes
    mixed = split_of([samples[0].astype(np.float32), grey], "ms3")
    group = mixed.group([0, 1])
    assert [g.dtype for g in group] == [bool, np.float32]
    assert np.array_equal(group[1], grey) and np.array_equal(group[0], samples[0])


def test_evaluator_rereads_a_manifest_only_when_its_files_change(tmp_path: Path) -> None:
    from avsbench_kit.metrics.evaluator import _manifest

    home = tmp_path / "home"
    make_dataset(home, "synth-s4", "s4", "test", n=4, t=5, size=24)
    first = _manifest("synth-s4", home)
    assert _manifest("synth-s4", home) is first  # test_s then test_u: one load
    make_dataset(home, "synth-s4", "s4", "test", n=3, t=5, size=24, seed=4)  # re-prepared
    second = _manifest("synth-s4", home)
    assert second is not first and second.fingerprint != first.fingerprint and len(second.rows("test")) == 3
    assert second.fingerprint == load_manifest("synth-s4", home).fingerprint
