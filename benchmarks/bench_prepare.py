"""Prepare throughput, and raw-sample read throughput: WebDataset shards vs. the folder tree.

Builds a Ref-AVS-like tree (official layout: metadata.csv, media/<folder>/{frames/k.jpg,
audio.wav}, gt_mask/<folder>/fid_<fid>/0000k.png) in a temp dir, then in one run:

1. prepare: the registered `refavs` builder + validation + manifest save;
2. shard export throughput;
3. reading every sample back, decoded identically (`decode_row`: frames -> float tensors, GT by
   the official Ref-AVS rule, WAV -> float32) from the folder tree (AVSDataset) and from the
   shards (iter_decoded), interleaved, best of --repeats; also the undecoded-bytes read rate.

Both reads run on a warm page cache (the files were just written): the ratio measures the
per-file overhead, not cold-disk seeks. Prints a JSON record with what produced the numbers.

    .venv/bin/python benchmarks/bench_prepare.py [--samples 300] [--clips 100]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def build_tree(root: Path, clips: int, samples: int, frame_size: tuple[int, int], audio_s: float, seed: int) -> None:
    """A Ref-AVS-like tree: ``clips`` media folders, ``samples`` expressions spread over them."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = frame_size
    splits = ["train", "val", "test_s", "test_u"]
    rows = []
    for i in range(samples):
        c = i % clips
        vid = f"clip{c:04d}_{1000 * c}_{1000 * c + 10000}"
        null = i % 10 == 9
        uid = f"null_c-{vid}_null_{i}" if null else f"{vid}_dog_{i}"
        rows.append({"vid": vid, "uid": uid, "split": splits[c % len(splits)] if not null else "test_n",
                     "fid": 0 if null else i // clips, "exp": f"the dog that barks number {i}"})
    yy, xx = np.mgrid[0:h, 0:w]
    for row in rows:
        folder = row["uid"].rsplit("_", 2)[0]
        media = root / "media" / folder
        if not media.exists():
            (media / "frames").mkdir(parents=True)
            for k in range(10):
                # smooth content + mild noise: JPEG sizes like real frames, unlike pure noise
                coarse = Image.fromarray(rng.integers(0, 256, size=(9, 16, 3), dtype=np.uint8))
                img = np.asarray(coarse.resize((w, h), Image.BILINEAR), dtype=np.int16)
                img = np.clip(img + rng.integers(-6, 7, size=img.shape), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(media / "frames" / f"{k}.jpg", quality=90)
            sf.write(media / "audio.wav", (rng.standard_normal(int(audio_s * 16000)) * 0.1).astype(np.float32),
                     16000, subtype="PCM_16")
        gt = root / "gt_mask" / folder / f"fid_{row['fid']}"
        gt.mkdir(parents=True, exist_ok=True)
        for k in range(10):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(5, h // 2)
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) & (not row["uid"].startswith("null"))
            Image.fromarray(mask.astype(np.uint8) * 255).save(gt / f"0000{k}.png")
    with open(root / "metadata.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["vid", "uid", "split", "fid", "exp"])
        writer.writeheader()
        writer.writerows(rows)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def timed_both(fn):
    """(wall s, this process's CPU s, result): CPU time is the steadier number on a busy machine."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--frame-size", default="320x180", help="WxH of frames and masks")
    ap.add_argument("--audio-seconds", type=float, default=10.0)
    ap.add_argument("--samples-per-shard", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the record here")
    args = ap.parse_args()
    w, h = (int(v) for v in args.frame_size.lower().split("x"))

    import torch

    torch.set_num_threads(1)
    from avsbench_kit.data.loaders import AVSDataset, FolderReader
    from avsbench_kit.data.prepare import prepare
    from avsbench_kit.data.shards import export_shards, iter_decoded, read_shards
    from avsbench_kit.provenance import environment_info

    with tempfile.TemporaryDirectory(prefix="avskit-bench-") as tmp:
        root, home = Path(tmp) / "REFAVS", Path(tmp) / "home"
        root.mkdir()
        t_build, _ = timed(lambda: build_tree(root, args.clips, args.samples, (w, h), args.audio_seconds, args.seed))
        prepare_mode = "prepare('refavs'): registered builder + validation + manifest save"
        t_prep, manifest = timed(lambda: prepare("refavs", root, home=home))
        n = len(manifest.df)
        splits = sorted(manifest.df["split"].unique())
        t_shards, index_path = timed(lambda: export_shards(manifest, home=home,
                                                           samples_per_shard=args.samples_per_shard, progress=False))

        def read_folder() -> int:
            count = 0
            for split in splits:
                ds = AVSDataset(manifest, split, audio="wav")
                for i in range(len(ds)):
                    count += ds[i]["masks"].shape[0]
            return count

        def read_shard_decoded() -> int:
            return sum(s["masks"].shape[0] for split in splits
                       for s in iter_decoded(index_path, split, task="refavs", audio="wav"))

        def bytes_folder() -> int:
            from avsbench_kit.data.manifest import referenced_files

            reader = FolderReader(root)
            return sum(len(reader(rel)) for r in manifest.rows() for rel in referenced_files(r))

        def bytes_shards() -> int:
            return sum(len(v) for split in splits for s in read_shards(index_path, split)
                       for k, v in s.items() if not k.startswith("__") and k != "meta.json")

        best: dict[str, float] = {}
        best_cpu: dict[str, float] = {}
        checks: dict[str, int] = {}
        for _ in range(args.repeats):  # interleaved, so both sides see the same machine state
            for name, fn in (("folder_decoded", read_folder), ("shards_decoded", read_shard_decoded),
                             ("folder_bytes", bytes_folder), ("shards_bytes", bytes_shards)):
                t, cpu, out = timed_both(fn)
                best[name] = min(best.get(name, float("inf")), t)
                best_cpu[name] = min(best_cpu.get(name, float("inf")), cpu)
                checks[name] = out
        assert checks["folder_decoded"] == checks["shards_decoded"] == 10 * n
        assert checks["folder_bytes"] == checks["shards_bytes"]

        rate = {k: n / v for k, v in best.items()}
        cpu_rate = {k: n / v for k, v in best_cpu.items()}
        record = {
            "benchmark": "bench_prepare",
            "samples": n,
            "clips": args.clips,
            "frame_size": [w, h],
            "audio_seconds": args.audio_seconds,
            "samples_per_shard": args.samples_per_shard,
            "repeats": args.repeats,
            "torch_threads": 1,
            "prepare_mode": prepare_mode,
            "manifest_fingerprint": manifest.fingerprint,
            "tree_build_s": round(t_build, 3),
            "prepare_samples_per_s": round(n / t_prep, 1),
            "shard_export_samples_per_s": round(n / t_shards, 1),
            "read_decoded_samples_per_s": {"folder": round(rate["folder_decoded"], 1),
                                           "shards": round(rate["shards_decoded"], 1)},
            "read_decoded_ratio_shards_over_folder": round(rate["shards_decoded"] / rate["folder_decoded"], 3),
            "read_bytes_samples_per_s": {"folder": round(rate["folder_bytes"], 1),
                                         "shards": round(rate["shards_bytes"], 1)},
            "read_bytes_ratio_shards_over_folder": round(rate["shards_bytes"] / rate["folder_bytes"], 3),
            "cpu_samples_per_s": {k: round(v, 1) for k, v in cpu_rate.items()},
            "cpu_ratio_decoded_shards_over_folder": round(cpu_rate["shards_decoded"] / cpu_rate["folder_decoded"], 3),
            "cpu_ratio_bytes_shards_over_folder": round(cpu_rate["shards_bytes"] / cpu_rate["folder_bytes"], 3),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "payload_mb": round(checks["folder_bytes"] / 1e6, 1),
            "environment": environment_info(),
        }
    print(f"tree: {n} Ref-AVS-like samples ({args.clips} clips, {w}x{h}, {args.audio_seconds:g}s audio), "
          f"{record['payload_mb']} MB referenced; fingerprint {manifest.fingerprint[:12]}")
    print(f"prepare ({prepare_mode}): {record['prepare_samples_per_s']:.1f} samples/s")
    print(f"shard export: {record['shard_export_samples_per_s']:.1f} samples/s")
    print(f"read + decode, folder tree: {rate['folder_decoded']:.1f} samples/s")
    print(f"read + decode, shards:      {rate['shards_decoded']:.1f} samples/s")
    print(f"  ratio shards/folder: {record['read_decoded_ratio_shards_over_folder']:.2f}x")
    print(f"raw bytes only, folder: {rate['folder_bytes']:.1f} samples/s, shards: {rate['shards_bytes']:.1f} "
          f"samples/s, ratio {record['read_bytes_ratio_shards_over_folder']:.2f}x")
    print(f"per CPU second (steadier when the machine is shared): decoded ratio "
          f"{record['cpu_ratio_decoded_shards_over_folder']:.2f}x, bytes ratio "
          f"{record['cpu_ratio_bytes_shards_over_folder']:.2f}x (load average {record['load_average_1min']})")
    print(json.dumps(record, indent=1, sort_keys=True))
    if args.json:
        from avsbench_kit.atomic import write_json

        write_json(args.json, record)


if __name__ == "__main__":
    main()
