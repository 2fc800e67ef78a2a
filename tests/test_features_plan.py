"""Feature-cache plan and shard bytes (pure functions), plus the tiny datasets the other
feature tests build (distinct media per clip, so a wrong key join shows up as wrong numbers)."""

from __future__ import annotations

import io
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest

from avsbench_kit.features.cache import npy_bytes, parse_shard, plan_units, tar_bytes, unit_key


# ---- datasets for the feature tests ---------------------------------------------------------------
def frame_png(seed: int, size: tuple[int, int] = (224, 224)) -> bytes:
    from PIL import Image

    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    arr = np.stack([(xx * (seed % 7 + 1)) % 256, (yy * (seed % 5 + 1)) % 256,
                    np.full_like(xx, (37 * seed) % 256)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def tone_wav(seed: int, seconds: float = 2.0, rate: int = 22050, channels: int = 2) -> bytes:
    """A different tone per clip; stereo channels differ in phase (and amplitude)."""
    t = np.arange(int(seconds * rate)) / rate
    freq = 200.0 + 150.0 * seed
    data = np.stack([(0.3 - 0.1 * c) * np.sin(2 * np.pi * freq * t + c) for c in range(channels)], 1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((data * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def make_s4_dataset(tmp: Path, per_split: dict[str, int] | None = None):
    """A prepared avsbench-s4 manifest over a tiny tree (7 clips, one name with a dot); returns
    (manifest, home)."""
    from fake_trees import default_s4_clips, make_s4_tree, replace_file

    from avsbench_kit.data.prepare import prepare

    clips = default_s4_clips(per_split)
    root = make_s4_tree(Path(tmp) / "Single-source", clips)
    d = root / "s4_data"
    for i, (name, cat, split) in enumerate(clips):
        for k in range(1, 6):
            replace_file(d / "visual_frames" / split / cat / name / f"{name}_{k}.png", frame_png(100 * i + k))
        replace_file(d / "audio_wav" / split / cat / f"{name}.wav", tone_wav(i))
    home = Path(tmp) / "home"
    return prepare("avsbench-s4", root, home=home), home


def make_refavs_dataset(tmp: Path):
    """A prepared refavs manifest (several expressions per clip, a null folder); (manifest, home)."""
    from fake_trees import make_refavs_tree, small_refavs_rows

    from avsbench_kit.data.prepare import prepare

    rows = [r for r in small_refavs_rows() if r["split"] != "TODO"]
    root = make_refavs_tree(Path(tmp) / "REFAVS", rows)
    home = Path(tmp) / "home"
    return prepare("refavs", root, home=home), home


# ---- tests ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("ident", ["abc_1-x", "clip.v2", "a/b c", "~odd~", "ünï"])
def test_unit_key_is_webdataset_safe_and_injective(ident):
    key = unit_key(ident)
    assert "." not in key and "/" not in key and " " not in key
    others = ["abc_1-x", "clip.v2", "clip~2ev2", "a/b c", "a_b_c", "~odd~", "ünï"]
    keys = {unit_key(o) for o in others}
    assert len(keys) == len(others)


def _row(key, clip, frames=("f.png",), audio="a.wav"):
    return {"sample_key": key, "clip": clip, "frames": list(frames), "audio": audio, "log_mel": ""}


def test_plan_units_dedups_clips_in_first_use_order():
    rows = [_row("s0", "B"), _row("s1", "A"), _row("s2", "B"), _row("s3", "C")]
    units = plan_units(rows, "clip")
    assert [(u.ident, u.row) for u in units] == [("B", 0), ("A", 1), ("C", 3)]
    assert [u.ident for u in plan_units(rows, "sample")] == ["s0", "s1", "s2", "s3"]


def test_plan_units_refuses_one_clip_name_for_two_media():
    from avsbench_kit.errors import DataError

    rows = [_row("s0", "A", frames=("x/1.png",)), _row("s1", "A", frames=("y/1.png",))]
    with pytest.raises(DataError, match="different media"):
        plan_units(rows, "clip")


def test_tar_bytes_deterministic_sorted_and_readable():
    rng = np.random.default_rng(0)
    samples = [(f"k{i}", {"b": rng.standard_normal((2, 3)).astype(np.float32), "a": np.arange(4) > 1},
                {"id": f"k.{i}"}) for i in range(3)]
    data = tar_bytes(samples)
    assert data == tar_bytes(samples)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members][:3] == ["k0.a.npy", "k0.b.npy", "k0.json"]
    assert {m.mtime for m in members} == {0} and {m.uid for m in members} == {0}
    parsed = parse_shard(data, "mem")
    for key, arrays, meta in samples:
        assert parsed[key]["__meta__"] == meta
        for name, arr in arrays.items():
            np.testing.assert_array_equal(parsed[key][name], arr)
            assert parsed[key][name].dtype == arr.dtype


def test_npy_bytes_roundtrip_float16():
    arr = np.linspace(-3, 3, 12, dtype=np.float16).reshape(3, 4)
    back = np.load(io.BytesIO(npy_bytes(arr)))
    assert back.dtype == np.float16 and np.array_equal(back, arr)
