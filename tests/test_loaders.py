"""Audio I/O, log-mel pickles and the torch Dataset over tiny hand-built official layouts."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from avsbench_kit.data.audio import load_log_mel_pickle, read_wav, resample, to_mono
from avsbench_kit.data.loaders import AVSDataset, collate
from avsbench_kit.data.manifest import ManifestBuild, build_manifest
from avsbench_kit.data.masks import avss_palette, decode_gt
from avsbench_kit.errors import ConfigError, DataError


# ---- tiny trees ---------------------------------------------------------------------------------
def _img(path: Path, arr: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(arr).save(path)
    return path


def _wav(path: Path, seconds: float, sr: int, channels: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, (rng.random((int(seconds * sr), channels)) - 0.5).astype(np.float32), sr, subtype="PCM_16")


def make_s4(root: Path, clips: int = 3, size: tuple[int, int] = (48, 64)):
    """An S4-like tree: test clips with 5 masks, one train clip with only mask 1; log-mel pickles."""
    rng = np.random.default_rng(0)
    rows = []
    for c in range(clips):
        split = "train" if c == 0 else "test"
        name = f"clip{c}"
        base = f"s4_data/%s/{split}/cat/{name}"
        frames, masks, annotated = [], [], []
        for k in range(1, 6):
            rel = f"{base % 'visual_frames'}/{name}_{k}.png"
            _img(root / rel, rng.integers(0, 256, size=(*size, 3), dtype=np.uint8))
            frames.append(rel)
            has = split == "test" or k == 1
            mrel = f"{base % 'gt_masks'}/{name}_{k}.png"
            if has:
                _img(root / mrel, (rng.random(size) > 0.6).astype(np.uint8) * 255)
            masks.append(mrel if has else "")
            annotated.append(has)
        audio = f"s4_data/audio_wav/{split}/cat/{name}.wav"
        _wav(root / audio, 1.0, 16000, 2, c)
        log_mel = f"s4_data/audio_log_mel/{split}/cat/{name}.pkl"
        (root / log_mel).parent.mkdir(parents=True, exist_ok=True)
        with open(root / log_mel, "wb") as fh:
            pickle.dump(torch.randn(5, 1, 96, 64, generator=torch.Generator().manual_seed(c), requires_grad=True), fh)
        rows.append(dict(sample_key=f"{split}-cat-{name}", split=split, clip=name, category="cat", row=c,
                         num_frames=5, frames=frames, masks=masks, annotated=annotated,
                         audio=audio, log_mel=log_mel))
    return build_manifest("synth-s4", root, ManifestBuild(rows=rows, media_dirs=["s4_data"]))


def make_refavs(root: Path, n: int = 3):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        folder = f"vid{i}" if i else "null_c-vid9"
        frames = []
        masks = []
        for k in range(10):
            rel = f"media/{folder}/frames/{k}.jpg"
            _img(root / rel, rng.integers(0, 256, size=(36, 60, 3), dtype=np.uint8))
            frames.append(rel)
            mrel = f"gt_mask/{folder}/fid_{i}/0000{k}.png"
            mask = np.zeros((36, 60), np.uint8) if i == 0 else (rng.random((36, 60)) > 0.7).astype(np.uint8) * 255
            _img(root / mrel, mask)
            masks.append(mrel)
        _wav(root / f"media/{folder}/audio.wav", 0.5, 22050, 1, i)
        rows.append(dict(sample_key=f"r{i:05d}", split="test_s" if i < 2 else "train", clip=folder,
                         category="null" if i == 0 else "dog", text=f"the dog number {i}", is_null=i == 0,
                         fid=i, row=i, num_frames=10, frames=frames, masks=masks, annotated=[True] * 10,
                         audio=f"media/{folder}/audio.wav"))
    return build_manifest("synth-refavs", root, ManifestBuild(rows=rows, media_dirs=["media", "gt_mask"]))


def make_avss(root: Path):
    rng = np.random.default_rng(2)
    rows = []
    for i, (subset, t) in enumerate((("v1s", 5), ("v2", 10))):
        uid = f"uid{i}"
        frames, masks = [], []
        for k in range(t):
            frames.append(f"{subset}/{uid}/frames/{k}.jpg")
            _img(root / frames[-1], rng.integers(0, 256, size=(240, 360, 3), dtype=np.uint8))
            masks.append(f"{subset}/{uid}/labels_rgb/{k}.png")
            _img(root / masks[-1], avss_palette()[rng.integers(0, 71, size=(240, 360))])
        rows.append(dict(sample_key=uid, split="test", clip=uid, subset=subset, category="piano", row=i,
                         num_frames=t, frames=frames, masks=masks, annotated=[True] * t,
                         audio=f"{subset}/{uid}/audio.wav"))
        _wav(root / rows[-1]["audio"], 0.25, 16000, 1, i)
    return build_manifest("avss", root, ManifestBuild(rows=rows, media_dirs=["v1s", "v2"]))


def _listing(root: Path) -> list[tuple[str, int, int]]:
    out = []
    for dirpath, _d, files in os.walk(root):
        for f in files:
            st = (Path(dirpath) / f).stat()
            out.append((str(Path(dirpath, f).relative_to(root)), st.st_size, st.st_mtime_ns))
    return sorted(out)


# ---- audio ------------------------------------------------------------------------------------
def test_read_wav_channels_first_and_exact_pcm_scale(tmp_path):
    pcm = np.array([[0, 16384], [-32768, 32767], [1, -1]], dtype=np.int16)
    sf.write(tmp_path / "a.wav", pcm, 8000, subtype="PCM_16")
    x, sr = read_wav(tmp_path / "a.wav")
    assert sr == 8000 and x.dtype == np.float32 and x.shape == (2, 3)
    np.testing.assert_array_equal(x, pcm.T.astype(np.float32) / 32768)


def test_truncated_and_garbage_wav_raise_dataerror_naming_file(tmp_path):
    _wav(tmp_path / "ok.wav", 0.5, 16000, 2, 0)
    data = (tmp_path / "ok.wav").read_bytes()
    (tmp_path / "cut_audio.wav").write_bytes(data[: len(data) // 2])  # libsndfile alone reads this silently
    (tmp_path / "junk_audio.wav").write_bytes(b"RIFF\x00\x00junk" * 20)
    for name in ("cut_audio.wav", "junk_audio.wav", "absent.wav"):
        with pytest.raises(DataError) as err:
            read_wav(tmp_path / name)
        assert name in err.value.message and err.value.hint


def test_to_mono_and_resample():
    x = np.stack([np.ones(10, np.float32), np.zeros(10, np.float32)])
    np.testing.assert_array_equal(to_mono(x), np.full(10, 0.5, np.float32))
    sr_from, sr_to, freq = 16000, 11025, 440.0
    t = np.arange(sr_from) / sr_from
    tone = np.sin(2 * np.pi * freq * t).astype(np.float32)
    y = resample(np.stack([tone, tone]), sr_from, sr_to)
    assert y.shape == (2, sr_to) and y.dtype == np.float32
    peak_hz = np.argmax(np.abs(np.fft.rfft(y[0]))) * sr_to / y.shape[1]
    assert abs(peak_hz - freq) <= 1.0
    np.testing.assert_allclose(y[0], y[1])
    assert resample(tone, sr_from, sr_from) is not tone


def test_log_mel_pickle_round_trip_and_refuses_code(tmp_path):
    t = torch.randn(5, 1, 96, 64, requires_grad=True)
    with open(tmp_path / "a.pkl", "wb") as fh:
        pickle.dump(t, fh)
    got = load_log_mel_pickle(tmp_path / "a.pkl")
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_array_equal(got, t.detach().numpy())

    sentinel = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataError) as err:
        load_log_mel_pickle(tmp_path / "evil.pkl")
    assert "evil.pkl" in err.value.message and not sentinel.exists()

    with open(tmp_path / "shape.pkl", "wb") as fh:
        pickle.dump(torch.zeros(5, 128), fh)
    with pytest.raises(DataError, match="shape.pkl"):
        load_log_mel_pickle(tmp_path / "shape.pkl")


# ---- dataset ----------------------------------------------------------------------------------
def test_s4_dataset_items_match_independent_reads(tmp_path):
    manifest = make_s4(tmp_path)
    before = _listing(tmp_path)
    ds = AVSDataset(manifest, "test", audio="wav")
    rows = manifest.rows("test")
    assert len(ds) == 2 and [ds[i]["key"] for i in range(2)] == [r["sample_key"] for r in rows]
    item = ds[1]
    row = rows[1]
    assert item["frames"].shape == (5, 3, 48, 64) and item["frames"].dtype == torch.float32
    ref = np.asarray(Image.open(tmp_path / row["frames"][2]).convert("RGB"), np.float32) / 255
    np.testing.assert_array_equal(item["frames"][2].permute(1, 2, 0).numpy(), ref)
    assert item["masks"].shape == (5, 48, 64) and item["masks"].dtype == torch.float32
    np.testing.assert_array_equal(item["masks"][4].numpy(), decode_gt(tmp_path / row["masks"][4], "s4"))
    assert item["annotated"].tolist() == [True] * 5
    wav, sr = sf.read(tmp_path / row["audio"], dtype="float32", always_2d=True)
    assert item["sample_rate"] == sr == 16000
    np.testing.assert_array_equal(item["audio"].numpy(), wav.T)
    assert item["clip"] == "clip2" and item["text"] == "" and item["is_null"] is False and item["fid"] == -1
    assert _listing(tmp_path) == before  # reading never writes


def test_s4_train_clip_has_one_annotated_frame_and_log_mel(tmp_path):
    manifest = make_s4(tmp_path)
    item = AVSDataset(manifest, "train", audio="log_mel", load_frames=False)[0]
    assert "frames" not in item and "audio" not in item
    assert item["annotated"].tolist() == [True, False, False, False, False]
    assert item["masks"][0].sum() > 0 and not item["masks"][1:].any()
    expected = torch.randn(5, 1, 96, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(item["log_mel"], expected, rtol=0, atol=0)


def test_image_size_resizes_frames_only(tmp_path):
    manifest = make_s4(tmp_path)
    item = AVSDataset(manifest, "test", audio=None, image_size=32)[0]
    assert item["frames"].shape == (5, 3, 32, 32)
    assert item["masks"].shape == (5, 48, 64)  # GT stays at the protocol's resolution
    row = manifest.rows("test")[0]
    ref = Image.open(tmp_path / row["frames"][0]).convert("RGB").resize((32, 32), Image.BILINEAR)
    np.testing.assert_array_equal(item["frames"][0].permute(1, 2, 0).numpy(), np.asarray(ref, np.float32) / 255)


def test_refavs_and_avss_items(tmp_path):
    ref = make_refavs(tmp_path / "ref")
    items = [AVSDataset(ref, "test_s")[i] for i in range(2)]
    assert items[0]["is_null"] is True and items[0]["masks"].shape == (10, 256, 256)
    assert not items[0]["masks"].any() and items[1]["masks"].any()
    assert items[1]["text"] == "the dog number 1" and items[1]["fid"] == 1
    assert items[1]["audio"].shape == (1, 11025) and items[1]["sample_rate"] == 22050
    avss = make_avss(tmp_path / "avss")
    ds = AVSDataset(avss, "test", audio=None, image_size=224)
    a, b = ds[0], ds[1]
    assert a["masks"].dtype == torch.int64 and a["masks"].shape == (5, 224, 224)
    assert b["masks"].shape == (10, 224, 224) and b["subset"] == "v2"
    batch = collate([a, b])  # ragged T: lists, the rest stacked
    assert isinstance(batch["frames"], list) and batch["key"] == ["uid0", "uid1"]
    assert batch["fid"].tolist() == [-1, -1] and batch["is_null"].dtype == torch.bool


def test_collate_and_two_workers_match_direct_reads(tmp_path):
    manifest = make_refavs(tmp_path)
    ds = AVSDataset(manifest, "test_s", image_size=16)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    (batch,) = list(loader)
    direct = collate([ds[0], ds[1]])
    assert batch["frames"].shape == (2, 10, 3, 16, 16) and batch["masks"].shape == (2, 10, 256, 256)
    for key in ("frames", "masks", "annotated", "audio", "sample_rate", "fid", "is_null"):
        assert torch.equal(batch[key], direct[key]), key
    assert batch["text"] == direct["text"] and batch["key"] == ["r00000", "r00001"]


def test_missing_or_corrupt_files_name_the_file(tmp_path):
    manifest = make_s4(tmp_path)
    row = manifest.rows("test")[0]
    (tmp_path / row["frames"][3]).write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError) as err:
        AVSDataset(manifest, "test")[0]
    assert row["frames"][3] in err.value.message
    os.remove(tmp_path / manifest.rows("test")[1]["audio"])
    with pytest.raises(DataError) as err:
        AVSDataset(manifest, "test", load_frames=False)[1]
    assert manifest.rows("test")[1]["audio"] in err.value.message
    with pytest.raises(DataError):
        AVSDataset(make_refavs(tmp_path / "r"), "test_s", audio="log_mel", load_frames=False)[0]
    with pytest.raises(ConfigError):
        AVSDataset(manifest, "test", audio="mp3")
    with pytest.raises(DataError):
        AVSDataset(manifest, "nosuchsplit")


def test_frames_of_different_sizes_need_image_size(tmp_path):
    manifest = make_s4(tmp_path, clips=2)
    row = manifest.rows("test")[0]
    _img(tmp_path / row["frames"][2], np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(DataError) as err:
        AVSDataset(manifest, "test", audio=None, load_masks=False)[0]
    assert row["sample_key"] in err.value.message and "image_size" in err.value.hint
    item = AVSDataset(manifest, "test", audio=None, load_masks=False, image_size=20)[0]
    assert item["frames"].shape == (5, 3, 20, 20)
