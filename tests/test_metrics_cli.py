"""`avskit eval` end to end through ``avsbench_kit.cli.main.main`` on tiny prepared datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import official_reference as R
from avsbench_kit.cli.main import main
from avsbench_kit.data.manifest import ManifestBuild, build_manifest
from avsbench_kit.data.masks import avss_palette, decode_gt
from avsbench_kit.home import prepared_dir


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    m[y : y + rng.integers(2, h // 2), x : x + rng.integers(2, w // 2)] = True
    return m


def make_dataset(home: Path, name: str, task: str, split: str, n: int, t: int, size: int,
                 annotated: list[bool] | None = None, null: bool = False, seed: int = 0) -> list[dict]:
    """Write GT PNGs and a prepared manifest for ``name``; return the manifest rows."""
    rng = np.random.default_rng(seed)
    root = home / "raw" / name
    rows = []
    for i in range(n):
        key = f"clip{i:02d}"
        masks, flags = [], annotated or [True] * t
        for k in range(t):
            if not flags[k]:
                masks.append("")
                continue
            rel = f"gt/{key}/{k}.png"
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if task == "avss":
                cls = np.zeros((size, size), dtype=np.int64)
                cls[_blob(rng, size, size)] = [3, 17, 70][(i + k) % 3]
                Image.fromarray(avss_palette()[cls]).save(path)
            else:
                m = np.zeros((size, size), bool) if (null or (i == 1 and k == 0)) else _blob(rng, size, size)
                Image.fromarray((m * 255).astype(np.uint8)).save(path)
            masks.append(rel)
        rows.append({
            "sample_key": key, "split": split, "clip": key, "row": i, "num_frames": t,
            "frames": [f"frames/{key}/{k}.png" for k in range(t)], "masks": masks, "annotated": flags,
            "is_null": null, "subset": "v1s" if task == "avss" else "",
        })
    manifest = build_manifest(name, root, ManifestBuild(rows=rows, media_dirs=["gt"]))
    manifest.save(prepared_dir(name, home))
    return rows


def gt_of(home: Path, name: str, row: dict, task: str) -> np.ndarray:
    root = home / "raw" / name
    return np.stack([decode_gt(root / m, task) for m, a in zip(row["masks"], row["annotated"]) if a])


def write_preds(folder: Path, rows: list[dict], arrays: list[np.ndarray], suffix: str = ".npy") -> None:
    for row, arr in zip(rows, arrays):
        frames = [k for k, a in enumerate(row["annotated"]) if a]
        for k, a in zip(frames, arr):
            path = folder / row["sample_key"] / f"{k}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if suffix == ".npy":
                np.save(path, a)
            elif suffix == ".npz":
                np.savez(path, logits=a)
            else:
                Image.fromarray(a).save(path)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["eval", "--no-progress", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def s4(tmp_path: Path):
    home = tmp_path / "home"
    rows = make_dataset(home, "synth-s4", "s4", "test", n=6, t=5, size=32)
    gts = [gt_of(home, "synth-s4", r, "s4") for r in rows]
    return home, rows, gts


def test_reference_predictors_are_anchors(s4, capsys, tmp_path: Path) -> None:
    home, rows, gts = s4
    out_json = tmp_path / "r.json"
    code, out, _ = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", "gt", "--home", str(home), "--json", str(out_json))
    assert code == 0 and "avsbench-v1@1.0" in out and "avsbench-clip-v1@1.0" in out
    report = json.loads(out_json.read_text())
    assert report["protocols"]["avsbench-v1"]["metrics"]["F"] == pytest.approx(1.0, abs=1e-6)
    assert report["protocols"]["avsbench-v1"]["metrics"]["mIoU"] == pytest.approx(1.0, abs=1e-6)
    assert report["protocols"]["avsbench-v1"]["version"] == "1.0"
    assert report["partial"] is False and report["predictions"] == "reference:gt"
    assert len(report["dataset_fingerprint"]) == 64 and report["toolkit_version"] and report["git_sha"]
    for name in ("empty", "full"):
        code, _, _ = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", name, "--home", str(home), "--json", str(out_json))
        assert code == 0
        got = json.loads(out_json.read_text())["protocols"]["avsbench-v1"]["metrics"]
        sign = -1 if name == "empty" else 1
        preds = [torch.full(g.shape, sign * 1e4) for g in gts]
        miou, f = R.avsbench_test(preds, [torch.from_numpy(g) for g in gts])
        assert got == {"mIoU": miou, "F": f}


def test_float16_logit_folder_matches_reference(s4, capsys, tmp_path: Path) -> None:
    home, rows, gts = s4
    rng = np.random.default_rng(1)
    logits = [((g - 0.5) * 3 + rng.normal(0, 2, g.shape)).astype(np.float16) for g in gts]
    write_preds(tmp_path / "pred", rows, logits)
    out_json = tmp_path / "r.json"
    code, out, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", str(tmp_path / "pred"),
                         "--home", str(home), "--json", str(out_json), "--samples", str(tmp_path / "s.csv"))
    assert code == 0, err
    got = json.loads(out_json.read_text())["protocols"]
    miou, f = R.avsbench_test([torch.from_numpy(x.astype(np.float32)) for x in logits], [torch.from_numpy(g) for g in gts])
    assert got["avsbench-v1"]["metrics"] == {"mIoU": miou, "F": f}
    per_clip = [R.mask_iou(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(g)).item() for x, g in zip(logits, gts)]
    assert got["avsbench-clip-v1"]["metrics"]["mIoU"] == pytest.approx(sum(per_clip) / len(per_clip), rel=1e-12)
    table = (tmp_path / "s.csv").read_text().splitlines()
    assert table[0].startswith("sample_key") and len(table) == 7


def test_png_and_npz_predictions(s4, capsys, tmp_path: Path) -> None:
    home, rows, gts = s4
    masks = [((g > 0) ^ (np.arange(g.size).reshape(g.shape) % 7 == 0)) for g in gts]
    write_preds(tmp_path / "png", rows, [(m * 255).astype(np.uint8) for m in masks], ".png")
    write_preds(tmp_path / "npz", rows, [np.where(m, 1e4, -1e4).astype(np.float32) for m in masks], ".npz")
    results = []
    for folder in ("png", "npz"):
        code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", str(tmp_path / folder),
                           "--home", str(home), "--json", str(tmp_path / f"{folder}.json"))
        assert code == 0, err
        results.append(json.loads((tmp_path / f"{folder}.json").read_text())["protocols"])
    assert results[0] == results[1]
    miou, f = R.avsbench_test([torch.from_numpy(np.where(m, 1e4, -1e4).astype(np.float32)) for m in masks],
                              [torch.from_numpy(g) for g in gts])
    assert results[0]["avsbench-v1"]["metrics"] == {"mIoU": miou, "F": f}


def _logit_folder(tmp_path: Path, rows, gts) -> Path:
    folder = tmp_path / "pred"
    write_preds(folder, rows, [np.where(g > 0, 2.0, -2.0).astype(np.float32) for g in gts])
    return folder


def test_missing_files_and_partial(s4, capsys, tmp_path: Path) -> None:
    home, rows, gts = s4
    folder = _logit_folder(tmp_path, rows, gts)
    (folder / "clip03" / "2.npy").unlink()
    args = ["--dataset", "synth-s4", "--split", "test", "--pred", str(folder), "--home", str(home)]
    code, _, err = run(capsys, *args, "--json", str(tmp_path / "no.json"))
    assert code == 3
    assert "clip03 frame 2" in err and "--partial" in err
    assert not (tmp_path / "no.json").exists()
    code, out, err = run(capsys, *args, "--partial", "--json", str(tmp_path / "p.json"))
    assert code == 0 and "PARTIAL" in out + err
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["partial"] is True and report["num_samples_scored"] == 5 and report["missing_samples"] == ["clip03"]


def test_wrong_size_and_resize(s4, capsys, tmp_path: Path) -> None:
    home, rows, gts = s4
    folder = _logit_folder(tmp_path, rows, gts)
    np.save(folder / "clip00" / "1.npy", np.zeros((16, 16), np.float32))
    args = ["--dataset", "synth-s4", "--split", "test", "--pred", str(folder), "--home", str(home)]
    code, _, err = run(capsys, *args)
    assert code == 3 and "clip00/1.npy" in err and "16x16" in err and "--resize" in err
    code, out, err = run(capsys, *args, "--resize", "bilinear")
    assert code == 0 and "resampled" in out
    code, _, err = run(capsys, *args, "--resize", "cubic")
    assert code == 2 and "nearest" in err


@pytest.mark.parametrize("bad,needle", [
    (np.array([[np.nan]]), "NaN"),
    (np.array([[np.inf]]), "inf"),
    (np.zeros((32, 32), np.int64), "dtype int64"),
    (np.zeros((2, 32, 32), np.float32), "shape (2, 32, 32)"),
])
def test_bad_arrays(s4, capsys, tmp_path: Path, bad: np.ndarray, needle: str) -> None:
    home, rows, gts = s4
    folder = _logit_folder(tmp_path, rows, gts)
    arr = bad if bad.size != 1 else np.pad(bad.astype(np.float32), ((0, 31), (0, 31)))
    np.save(folder / "clip02" / "4.npy", arr)
    code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", str(folder), "--home", str(home))
    assert code == 3 and "clip02/4.npy" in err and needle in err


@pytest.mark.parametrize("value,needle", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_non_finite_float16_logits_name_the_file(s4, capsys, tmp_path: Path, value: float, needle: str) -> None:
    """float16 folders are read straight into the sample buffer and checked for NaN/inf inside the
    F kernel's table look-up: the error still names the file; a float32 frame among float16 ones
    (the file-by-file path) scores as before."""
    home, rows, gts = s4
    folder = tmp_path / "pred"
    write_preds(folder, rows, [np.where(g > 0, 2.0, -2.0).astype(np.float16) for g in gts])
    args = ["--dataset", "synth-s4", "--split", "test", "--pred", str(folder), "--home", str(home)]
    np.save(folder / "clip01" / "0.npy", np.where(gts[1][0] > 0, 2.0, -2.0).astype(np.float32))
    assert run(capsys, *args)[0] == 0
    bad = np.where(gts[4][3] > 0, 2.0, -2.0).astype(np.float16)
    bad[5, 7] = value
    np.save(folder / "clip04" / "3.npy", bad)
    code, _, err = run(capsys, *args)
    assert code == 3 and "clip04/3.npy" in err and needle in err


def test_corrupt_file(s4, capsys, tmp_path: Path) -> None:
    home, rows, gts = s4
    folder = _logit_folder(tmp_path, rows, gts)
    (folder / "clip05" / "0.npy").write_bytes(b"not numpy")
    code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", str(folder), "--home", str(home))
    assert code == 3 and "clip05/0.npy" in err and "cannot be read" in err


def test_extra_files(s4, capsys, tmp_path: Path) -> None:
    home, rows, gts = s4
    folder = _logit_folder(tmp_path, rows, gts)
    (folder / "not_a_clip").mkdir()
    np.save(folder / "not_a_clip" / "0.npy", np.zeros((32, 32), np.float32))
    args = ["--dataset", "synth-s4", "--split", "test", "--pred", str(folder), "--home", str(home)]
    code, _, err = run(capsys, *args)
    assert code == 3 and "not_a_clip" in err and "--ignore-extra" in err
    np.save(folder / "clip00" / "7.npy", np.zeros((32, 32), np.float32))
    code, out, _ = run(capsys, *args, "--ignore-extra")
    assert code == 0 and "ignored 2" in out


def test_dataset_split_protocol_errors(s4, capsys, tmp_path: Path) -> None:
    home, _, _ = s4
    code, _, err = run(capsys, "--dataset", "synth-ms3", "--split", "test", "--pred", "gt", "--home", str(home))
    assert code == 4 and "avskit prepare synth-ms3" in err
    code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "tset", "--pred", "gt", "--home", str(home))
    assert code == 3 and "tset" in err
    code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", "gt", "--home", str(home), "--protocol", "refavs-v1")
    assert code == 2 and "avsbench-v1" in err
    code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", str(tmp_path / "nowhere"), "--home", str(home))
    assert code == 3 and "does not exist" in err


def test_unannotated_frames_need_no_file(tmp_path: Path, capsys) -> None:
    home = tmp_path / "home"
    rows = make_dataset(home, "synth-s4", "s4", "train", n=5, t=5, size=24, annotated=[True, False, False, False, False])
    gts = [gt_of(home, "synth-s4", r, "s4") for r in rows]
    folder = _logit_folder(tmp_path, rows, gts)
    assert sorted(p.name for p in (folder / "clip00").iterdir()) == ["0.npy"]
    code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "train", "--pred", str(folder), "--home", str(home),
                       "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["num_frames"] == 5


def test_refavs_splits(tmp_path: Path, capsys) -> None:
    home = tmp_path / "home"
    rows = make_dataset(home, "synth-refavs", "refavs", "test_s", n=5, t=10, size=64, seed=3)
    gts = [gt_of(home, "synth-refavs", r, "refavs") for r in rows]
    assert gts[0].shape == (10, 256, 256)
    rng = np.random.default_rng(4)
    logits = [((g - 0.5) * 2 + rng.normal(0, 1.5, g.shape)).astype(np.float16) for g in gts]
    write_preds(tmp_path / "pred", rows, logits)
    code, _, err = run(capsys, "--dataset", "synth-refavs", "--split", "test_s", "--pred", str(tmp_path / "pred"),
                       "--home", str(home), "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    got = json.loads((tmp_path / "r.json").read_text())["protocols"]["refavs-v1"]["metrics"]
    ref = R.refavs_test([torch.from_numpy(x.astype(np.float32)) for x in logits], [torch.from_numpy(g) for g in gts])
    assert got["J"] == ref["J"] and got["F"] == ref["F"] and got["J&F"] == (ref["J"] + ref["F"]) / 2


def test_refavs_null_split_anchors(tmp_path: Path, capsys) -> None:
    home = tmp_path / "home"
    make_dataset(home, "synth-refavs", "refavs", "test_n", n=3, t=10, size=32, null=True)
    for name, expected in (("empty", 0.0), ("full", 1.0)):
        code, out, _ = run(capsys, "--dataset", "synth-refavs", "--split", "test_n", "--pred", name, "--home", str(home),
                           "--json", str(tmp_path / "r.json"))
        assert code == 0
        report = json.loads((tmp_path / "r.json").read_text())["protocols"]
        assert report["refavs-v1"]["metrics"] == {"S": expected}
        assert report["refavs-clip-v1"]["metrics"] == {"S": expected}


def test_avss_class_png_folder(tmp_path: Path, capsys) -> None:
    home = tmp_path / "home"
    rows = make_dataset(home, "avss", "avss", "test", n=5, t=5, size=224, seed=5)
    gts = [gt_of(home, "avss", r, "avss") for r in rows]
    preds = [g.copy() for g in gts]
    preds[0][:, :10] = 44  # some wrong pixels of a class never in GT
    write_preds(tmp_path / "pred", rows, [p.astype(np.uint8) for p in preds], ".png")
    code, _, err = run(capsys, "--dataset", "avss", "--split", "test", "--pred", str(tmp_path / "pred"),
                       "--home", str(home), "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    got = json.loads((tmp_path / "r.json").read_text())["protocols"]["avss-v1"]["metrics"]
    assert got == R.avss_test([torch.from_numpy(p) for p in preds], [torch.from_numpy(g) for g in gts])
    code, _, err = run(capsys, "--dataset", "avss", "--split", "test", "--pred", "full", "--home", str(home))
    assert code == 3 and "--pred empty" in err
    # a class index outside 0..70
    Image.fromarray(np.full((224, 224), 80, np.uint8)).save(tmp_path / "pred" / "clip01" / "3.png")
    code, _, err = run(capsys, "--dataset", "avss", "--split", "test", "--pred", str(tmp_path / "pred"), "--home", str(home))
    assert code == 3 and "clip01/3.png" in err and "class index 80" in err


def test_avss_logits_palette_png_and_padded_frames(tmp_path: Path, capsys) -> None:
    """AVSS float logits [71,H,W] and palette-colour PNGs; padded-frame files (5..9) are used."""
    home = tmp_path / "home"
    rows = make_dataset(home, "avss", "avss", "test", n=2, t=5, size=224, seed=8)
    gts = [gt_of(home, "avss", r, "avss") for r in rows]
    rng = np.random.default_rng(9)
    folder = tmp_path / "pred"
    logits0 = rng.normal(0, 1, (5, 71, 224, 224)).astype(np.float16)
    for k in range(5):
        (folder / rows[0]["sample_key"]).mkdir(parents=True, exist_ok=True)
        np.save(folder / rows[0]["sample_key"] / f"{k}.npy", logits0[k])
        (folder / rows[1]["sample_key"]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(avss_palette()[gts[1][k]]).save(folder / rows[1]["sample_key"] / f"{k}.png")
    padded = np.full((224, 224), 44, np.uint8)
    for k in range(5, 10):
        Image.fromarray(padded).save(folder / rows[1]["sample_key"] / f"{k}.png")
    code, _, err = run(capsys, "--dataset", "avss", "--split", "test", "--pred", str(folder), "--home", str(home),
                       "--json", str(tmp_path / "r.json"), "--samples", str(tmp_path / "s.parquet"))
    assert code == 0, err
    got = json.loads((tmp_path / "r.json").read_text())["protocols"]["avss-v1"]["metrics"]
    labels0 = torch.argmax(torch.softmax(torch.from_numpy(logits0).float(), 1), 1)
    pred1 = torch.cat([torch.from_numpy(gts[1]), torch.full((5, 224, 224), 44)])
    assert got == R.avss_test([labels0, pred1], [torch.from_numpy(g) for g in gts])
    import pandas as pd

    table = pd.read_parquet(tmp_path / "s.parquet")
    assert table["padded"].tolist() == [5, 5]
    # only some padded frames given: an error naming the sample
    (folder / rows[1]["sample_key"] / "9.png").unlink()
    code, _, err = run(capsys, "--dataset", "avss", "--split", "test", "--pred", str(folder), "--home", str(home))
    assert code == 3 and rows[1]["sample_key"] in err and "padded" in err


def test_png_mask_variants_and_npz_errors(s4, capsys, tmp_path: Path) -> None:
    home, rows, gts = s4
    folder = tmp_path / "pred"
    masks = [(g > 0) for g in gts]
    write_preds(folder, rows, [m.astype(np.uint8) for m in masks], ".png")  # 0/1 PNGs
    rgb = np.repeat((masks[0][0] * 255).astype(np.uint8)[..., None], 3, axis=2)
    Image.fromarray(rgb).save(folder / "clip00" / "0.png")  # grey RGB is fine
    code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", str(folder), "--home", str(home),
                       "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["protocols"]["avsbench-v1"]["metrics"]["mIoU"] == pytest.approx(1.0, abs=1e-6)
    rgb[..., 0] = 7
    Image.fromarray(rgb).save(folder / "clip00" / "0.png")
    code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", str(folder), "--home", str(home))
    assert code == 3 and "clip00" in err and "colour" in err
    (folder / "clip00" / "0.png").unlink()
    np.savez(folder / "clip00" / "0.npz", a=np.zeros((32, 32), np.float32), b=np.zeros((32, 32), np.float32))
    code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", str(folder), "--home", str(home))
    assert code == 3 and "clip00 frame 0" in err and "'logits'" in err


def test_device_option(s4, capsys, tmp_path: Path, monkeypatch) -> None:
    """--device auto on a CPU-only machine is the CPU; the device-generic kernels (forced here on
    CPU tensors, as a GPU would run them) give the same report; a missing GPU is one line, exit 2,
    nothing written."""
    from avsbench_kit.metrics import functional as Fn

    home, rows, gts = s4
    rng = np.random.default_rng(4)
    write_preds(tmp_path / "pred", rows, [((g - 0.5) * 3 + rng.normal(0, 2, g.shape)).astype(np.float32)
                                           for g in gts])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("avsbench_kit.device._mps_available", lambda: False)
    reports = []
    for extra in ((), ("--device", "auto")):
        out_json = tmp_path / f"r{len(reports)}.json"
        code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", str(tmp_path / "pred"),
                           "--home", str(home), "--json", str(out_json), *extra)
        assert code == 0, err
        reports.append(json.loads(out_json.read_text()))
        monkeypatch.setattr(Fn, "FORCE_TORCH_PATH", True)
    assert reports[0]["device"] == reports[1]["device"] == "cpu"
    assert reports[0]["protocols"] == reports[1]["protocols"]
    out_json = tmp_path / "cuda.json"
    code, _, err = run(capsys, "--dataset", "synth-s4", "--split", "test", "--pred", "gt", "--home", str(home),
                       "--json", str(out_json), "--device", "cuda")
    assert code == 2 and "device=cuda but torch sees no CUDA GPU" in err and not out_json.exists()
