"""Training-loader throughput: cached ``sam2_image`` + ``vggish`` shards vs. on-the-fly encoding.

In one run, on SynthAVS (generated and prepared in the data home if needed):

1. makes sure the two caches exist (`sam2_image`: sam2.1_hiera_t at --image-size, forward_image
   levels, float16; `vggish`: default preset) for the chosen dataset/split;
2. **cached**: `feature_batches(..., shuffle=True)` -> the trainer's batches (features + masks);
3. **on the fly**: for the *same samples in the same order and batch size*, decode frames, audio
   and masks with the data loader and run both frozen encoders (models built before timing);

and prints samples/s of both and the ratio (target >= 20x at 256x256 with hiera_t), plus a JSON
record of what produced the numbers (fingerprints, configs, library versions, machine).
Caches are read on a warm page cache (they were just written or read): the ratio measures
decoding + encoding vs. reading features, not cold-disk seeks.

    .venv/bin/python benchmarks/bench_features.py [--home DIR] [--dataset synth-s4] [--samples 32]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=None, help="data home (default: $AVSKIT_HOME or the user cache dir)")
    parser.add_argument("--dataset", default="synth-s4")
    parser.add_argument("--split", default="train")
    parser.add_argument("--size", default="small", help="SynthAVS size if it must be generated")
    parser.add_argument("--samples", type=int, default=32, help="samples timed on each side")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from avsbench_kit.data.datasets import DATASETS
    from avsbench_kit.data.loaders import AVSDataset
    from avsbench_kit.data.prepare import load_manifest, prepare
    from avsbench_kit.features import FeatureRequest, build_encoder
    from avsbench_kit.features.reader import ensure_caches, feature_batches
    from avsbench_kit.provenance import environment_info

    spec = DATASETS.get(args.dataset)
    if not spec.is_prepared(args.home):
        if spec.synthetic:
            from avsbench_kit.data.synth import generate
            from avsbench_kit.home import synth_dir

            root = synth_dir(args.size, 0, args.home)
            if not root.exists():
                generate(root, seed=0, size=args.size)
            prepare(args.dataset, root, home=args.home)
        else:
            raise SystemExit(f"prepare {args.dataset} first (`avskit prepare {args.dataset}`)")
    manifest = load_manifest(args.dataset, args.home)
    requests = [FeatureRequest("sam2_image", (f"image_size={args.image_size}",)), FeatureRequest("vggish")]
    t0 = time.perf_counter()
    summaries = ensure_caches(manifest, requests, args.home, progress=True)
    extract_s = time.perf_counter() - t0

    # ---- cached: the trainer's path -----------------------------------------------------------
    def cached_run() -> tuple[list[str], float]:
        keys: list[str] = []
        start = time.perf_counter()
        for batch in feature_batches(manifest, args.split, requests, batch_size=args.batch_size, shuffle=True,
                                     seed=args.seed, home=args.home):
            keys.extend(batch["key"])
            if len(keys) >= args.samples:
                break
        return keys[: args.samples], time.perf_counter() - start

    cached_run()  # warm-up (page cache, imports)
    keys, cached_s = min((cached_run() for _ in range(3)), key=lambda r: r[1])
    n = len(keys)

    # ---- on the fly: decode + frozen encoders, same samples, same batch size -------------------
    encoders = [build_encoder(r.encoder, r.overrides) for r in requests]
    for enc in encoders:
        enc.model  # build / load weights before timing
    ds = AVSDataset(manifest, args.split, load_frames=True, load_masks=True, audio="wav")
    position = {r["sample_key"]: i for i, r in enumerate(manifest.rows(args.split))}
    start = time.perf_counter()
    for b in range(0, n, args.batch_size):
        items = [ds[position[k]] for k in keys[b:b + args.batch_size]]
        units = [{**it, "num_frames": int(it["frames"].shape[0])} for it in items]
        feats = {enc.registry_name: enc.encode(units) for enc in encoders}
        masks = torch.stack([it["masks"].float() for it in items])
        _ = (feats, masks)
    live_s = time.perf_counter() - start

    cached_rate, live_rate = n / cached_s, n / live_s
    ratio = cached_rate / live_rate
    print(f"dataset {args.dataset}/{args.split}, {n} samples, batch {args.batch_size}, "
          f"sam2.1_hiera_t @ {args.image_size}x{args.image_size} + vggish, torch threads {torch.get_num_threads()}")
    print(f"cached shards : {cached_rate:10.1f} samples/s  ({cached_s:.3f} s, best of 3)")
    print(f"on the fly    : {live_rate:10.2f} samples/s  ({live_s:.2f} s)")
    print(f"ratio         : {ratio:10.1f}x  (target >= 20x)")
    record = {
        "benchmark": "bench_features",
        "dataset": args.dataset,
        "split": args.split,
        "manifest_fingerprint": manifest.fingerprint,
        "samples": n,
        "batch_size": args.batch_size,
        "cached_samples_per_s": round(cached_rate, 2),
        "on_the_fly_samples_per_s": round(live_rate, 3),
        "ratio": round(ratio, 2),
        "caches": [{"encoder": s.encoder, "path": str(s.path), "cache_hit": s.cache_hit} for s in summaries],
        "extract_or_check_s": round(extract_s, 2),
        "encoders": {e.registry_name: {"fingerprint": e.fingerprint(), "config": e.cfg} for e in encoders},
        "torch_threads": torch.get_num_threads(),
        "environment": environment_info(),
    }
    print(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
