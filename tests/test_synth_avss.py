"""SynthAVS in the AVSBench-semantic layout: the official tree and columns, the real AVSS builder and
loader on it, the palette round trip, and class ids that follow the sounding objects."""

from __future__ import annotations

import csv
import json
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avsbench_kit.data.avss import build_avss, check_label2idx
from avsbench_kit.data.datasets import DATASETS
from avsbench_kit.data.loaders import AVSDataset
from avsbench_kit.data.masks import avss_palette, decode_gt, decode_gt_bytes
from avsbench_kit.data.prepare import prepare
from avsbench_kit.data.synth import _png, generate, resolve_config
from avsbench_kit.data.synth_avss import class_ids, to_rgb
from avsbench_kit.errors import ConfigError, DataError
from shared_data import shared_file

OFFICIAL_COLUMNS = ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"]  # the release's header


def only_avss(clips: dict[str, tuple[int, int, int]], *extra: str) -> list[str]:
    """Overrides for a SynthAVS with only AVSS clips: ``{subset: (train, val, test)}``."""
    zero = [f"{s}.clips.{k}=0" for s, ks in (("s4", ("train", "val", "test")), ("ms3", ("train", "val", "test")),
                                             ("refavs", ("train", "val", "test_s", "test_u"))) for k in ks]
    zero += [f"refavs.nulls.{k}=0" for k in ("train", "val", "test_n")]
    return zero + [f"avss.clips.{sub}.{split}={n}" for sub, counts in clips.items()
                   for split, n in zip(("train", "val", "test"), counts)] + list(extra)


#: few clips in every subset x split; a look-alike pair in every multi-object clip
ONLY_AVSS = only_avss({"v1s": (4, 2, 2), "v1m": (3, 2, 2), "v2": (3, 2, 2)}, "avss.twin_prob=1.0")
COUNTS = {("v1s", "train"): 4, ("v1s", "val"): 2, ("v1s", "test"): 2, ("v1m", "train"): 3, ("v1m", "val"): 2,
          ("v1m", "test"): 2, ("v2", "train"): 3, ("v2", "val"): 2, ("v2", "test"): 2}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth-avss") / "bench"
    summary = generate(out, seed=0, size="small", overrides=ONLY_AVSS, progress=False)
    assert "AVSS 22 clips (v1s 8, v1m 7, v2 7)" in summary
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def manifest(bench, home):
    return prepare("synth-avss", bench, home=home)


def meta_rows(bench: Path) -> list[dict[str, str]]:
    with open(bench / "avs_released" / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_official_columns_are_the_releases():
    with open(shared_file("data/avss/metadata.csv"), newline="") as f:
        assert next(csv.reader(f)) == OFFICIAL_COLUMNS


def test_official_layout(bench):
    root = bench / "avs_released"
    with open(root / "metadata.csv", newline="") as f:
        head = next(csv.reader(f))
    assert head == OFFICIAL_COLUMNS
    table = json.loads((root / "label2idx.json").read_text())
    assert len(table) == 11 and table["background"] == 0 and sorted(table.values()) == list(range(11))
    rows = meta_rows(bench)
    assert Counter((r["label"], r["split"]) for r in rows) == COUNTS
    files = 2
    for r in rows:
        n = 10 if r["label"] == "v2" else 5
        clip = root / r["label"] / r["uid"]
        assert r["uid"] == f"{r['vid']}_0_{n * 1000}" and (r["s_min"], r["s_sec"]) == ("0", "0")
        assert sorted(p.name for p in (clip / "frames").iterdir()) == sorted(f"{k}.jpg" for k in range(n))
        assert Image.open(clip / "frames" / "0.jpg").format == "JPEG"
        labels = sorted(p.name for p in (clip / "labels_rgb").iterdir())
        v1s_train = r["label"] == "v1s" and r["split"] == "train"
        assert labels == (["0.png"] if v1s_train else sorted(f"{k}.png" for k in range(n)))
        img = Image.open(clip / "labels_rgb" / "0.png")
        assert img.mode == "RGB" and img.size == (224, 224)
        with wave.open(str(clip / "audio.wav")) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16000, 2, 2, n * 16000)
        files += n + len(labels) + 1
    assert sum(1 for p in root.rglob("*") if p.is_file()) == files  # nothing but the listed files


def test_builder_reads_it_with_the_official_flags(bench, manifest):
    assert manifest.meta["exclusions"] == [] and manifest.meta["notes"] == []
    df = manifest.df
    assert df.groupby(["subset", "split"]).size().to_dict() == COUNTS
    for row in manifest.rows():
        n = 10 if row["subset"] == "v2" else 5
        assert row["num_frames"] == n and len(row["masks"]) == n
        one = row["subset"] == "v1s" and row["split"] == "train"
        assert row["annotated"] == [k == 0 or not one for k in range(n)]
        assert row["category"]  # a_obj: the sounding classes
    spec = DATASETS.get("synth-avss")
    assert (spec.task, spec.num_classes, spec.synthetic) == ("avss", 11, True)
    assert DATASETS.get("avss").num_classes == 71
    build = build_avss(spec.find_root(bench), spec)
    assert len(build.rows) == sum(COUNTS.values()) and not build.problems


def test_label_table_size_is_checked_per_dataset(bench, tmp_path):
    root = bench / "avs_released"
    check_label2idx(root, DATASETS.get("synth-avss"))
    with pytest.raises(DataError, match="has 11 entries; avss has 71"):
        check_label2idx(root, DATASETS.get("avss"))
    (tmp_path / "label2idx.json").write_text(json.dumps({"background": 0, "motor": 1}))
    with pytest.raises(DataError, match="has 2 entries; synth-avss has 11 .10 classes") as err:
        check_label2idx(tmp_path, DATASETS.get("synth-avss"))
    assert "avskit prepare synth" in err.value.hint


def test_palette_round_trip():
    labels = np.arange(224 * 224, dtype=np.int64).reshape(224, 224) % 11
    decoded = decode_gt_bytes(_png(to_rgb(labels.astype(np.uint8))), "avss")
    assert decoded.dtype == np.int64 and np.array_equal(decoded, labels)
    assert np.array_equal(to_rgb(np.array([0, 1, 2, 10], np.uint8)), avss_palette()[[0, 1, 2, 10]])
    assert tuple(to_rgb(np.array([1], np.uint8))[0]) == (128, 0, 0)  # class 1 in the official palette


def test_label_pixels_use_the_first_eleven_palette_colours(bench):
    allowed = {tuple(c) for c in avss_palette()[:11].tolist()}
    for png in sorted((bench / "avs_released").rglob("labels_rgb/*.png")):
        colours = np.unique(np.asarray(Image.open(png)).reshape(-1, 3), axis=0)
        assert {tuple(c) for c in colours.tolist()} <= allowed, png


def test_class_ids_follow_the_sounding_objects(bench, manifest):
    """Decoded through the real loader: each frame's class set = the classes sounding in that second
    (that are visible), every labelled pixel shows its class's colour, and silent objects are background."""
    world = {c["name"]: c for c in json.loads((bench / "synth.json").read_text())["world"]["classes"]}
    ids = class_ids()
    scenes = {s["uid"]: s for s in json.loads((bench / "synth_scenes.json").read_text())["avss"]}
    silent_seen = twin_split = checked = 0
    for split in ("train", "val", "test"):
        ds = AVSDataset(manifest, split, audio=None)
        for i, row in enumerate(ds.rows):
            item = ds[i]
            scene = scenes[row["clip"]]
            assert scene["subset"] == row["subset"]
            masks, frames = item["masks"].numpy(), (item["frames"].numpy() * 255).round()
            assert masks.shape == (row["num_frames"], 224, 224) and masks.max() <= 10
            for k in np.flatnonzero(row["annotated"]):
                frame = frames[k].transpose(1, 2, 0)
                sounding = {ids[o["class"]] for o in scene["objects"] if k in o["sounding"]}
                present = set(np.unique(masks[k]).tolist()) - {0}
                assert present <= sounding, (row["clip"], k)
                assert present == {c for c in sounding if (masks[k] == c).sum() > 0}
                for c in present:  # labelled pixels have the class colour (JPEG: loose tolerance)
                    name = next(n for n, j in ids.items() if j == c)
                    median = np.median(frame[masks[k] == c], axis=0)
                    assert np.abs(median - world[name]["rgb"]).max() < 40, (row["clip"], k, name)
                for o in scene["objects"]:
                    if k in o["visible"] and k not in o["sounding"]:
                        colour = np.abs(frame - world[o["class"]]["rgb"]).max(axis=-1) < 25
                        silent_seen += int((colour & (masks[k] == 0)).sum() > 50)
                looks = Counter(world[o["class"]]["appearance"] for o in scene["objects"])
                twin_split += int(any(n == 2 for n in looks.values()) and len(present) < len(
                    {ids[o["class"]] for o in scene["objects"] if k in o["visible"]}))
                checked += 1
    assert checked == sum(sum(r["annotated"]) for r in manifest.rows())
    assert silent_seen > 0 and twin_split > 0


def test_whole_gt_comes_from_the_geometry(bench, manifest):
    """The written label file decodes (official rule) to exactly the map drawn from the scene."""
    from avsbench_kit.data.synth import _render_clip, clip_rng
    from avsbench_kit.data.synth_avss import label_map
    from avsbench_kit.data.synth_scenes import avss_scene

    cfg = resolve_config("small", ONLY_AVSS)
    rng = clip_rng(0, "avss-v2", "val", 1)
    scene = avss_scene(rng, cfg, "v2", "synth-avss-v2-val-0001", "val", 1)
    _, parts, _ = _render_clip(scene, rng, cfg)
    clip = bench / "avs_released" / "v2" / f"{scene.name}_0_10000"
    for k in range(10):
        assert np.array_equal(decode_gt(clip / "labels_rgb" / f"{k}.png", "avss"), label_map(scene, parts[k], k))


def test_bad_avss_config_keys():
    for bad in ("avss.clips.v2.val=-1", "avss.objects=[1,3]", "avss.silent_prob=1.0", "avss.twin_prob=2"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            resolve_config("small", [bad])
    small = resolve_config("small")["avss"]["clips"]
    assert all(n % 4 == 0 for sub in small.values() for split, n in sub.items() if split != "train")


def test_scored_over_its_own_classes(manifest, home):
    """avss-v1 averages over every class of the label set: 11 here (71 would cap a perfect
    prediction at 11/71), and noBg drops the last index as the official code drops 70 of 71."""
    import torch

    from avsbench_kit.metrics.evaluator import Evaluator, evaluate_predictions

    report = evaluate_predictions("synth-avss", "test", "gt", home=home, progress=False)
    metrics = report["protocols"]["avss-v1"]["metrics"]
    assert metrics["mIoU"] == pytest.approx(1.0) and metrics["F"] == pytest.approx(1.0)
    gt = torch.arange(16).reshape(1, 4, 4) % 11  # every class of synth-avss, perfectly predicted
    for n, miou, nobg in ((11, 1.0, 1.0), (71, 11 / 71, 11 / 70)):
        ev = Evaluator("avss-v1", "test", num_classes=n)
        ev.update("a", gt, gt)
        got = ev.compute().metrics["avss-v1"]
        assert got["mIoU"] == pytest.approx(miou, rel=1e-6) and got["mIoU_noBg"] == pytest.approx(nobg, rel=1e-6)
    ev = Evaluator("avss-v1", "test", num_classes=11)
    ev.update("a", gt, torch.where(gt == 10, 0, gt))  # class 10 never predicted: noBg drops it
    got = ev.compute().metrics["avss-v1"]
    assert got["mIoU"] < 1.0 and got["mIoU_noBg"] < 1.0 and got["F_noBg"] < 1.0
