"""AuralSAM2's cost: the AuralFuser's overhead as a ratio of SAM2's decoding cost per frame.

The paper's efficiency claim (arXiv 2506.01015, introduction): adding AuralSAM2 to SAM2's prompt
path costs "only a 2.3 FPS drop", against ~6.5 FPS for adapter methods (GAVS / SAMA-AVS ported to
SAM2), because AuralSAM2 changes only the mask-decoder inputs. The recovered text gives no absolute
FPS, so the claim cannot be turned into a ratio; this script measures the ratio on this machine
and prints it next to the claim.

Per frame of a T-frame clip, with random weights (timing does not depend on them), no gradients:

* encoder: SAM2's image encoder (``SAM2Wrapper.features``);
* decoding: SAM2's tracking loop without prompts (memory attention, mask decoder, memory
  encoder) — the part AuralSAM2 touches;
* fuser: the AuralFuser over the clip (divided by T) + the decoding loop with the injections,
  minus plain decoding.

    .venv/bin/python benchmarks/bench_auralsam2.py [--image-size 256] [--sam2 sam2.1_hiera_t]
        [--fuser cpu-small|paper] [--frames 5] [--repeats 5] [--threads 1]

Paper setting: ``--image-size 1024 --sam2 sam2_hiera_l --fuser paper`` (slow on a CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

PAPER_CLAIM = {"auralsam2_fps_drop": 2.3, "adapter_methods_fps_drop": 6.5,
               "source": "AuralSAM2 paper (arXiv 2506.01015), introduction; absolute FPS not recovered"}


def cpu_name() -> str:
    """The CPU model as the kernel reports it (``/proc/cpuinfo``), else the platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, RoPE tables)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--sam2", default="sam2.1_hiera_t", help="SAM2 config name")
    parser.add_argument("--fuser", default="cpu-small", choices=("cpu-small", "paper"),
                        help="fuser sizes of this preset (blocks per level, spatial reduction)")
    parser.add_argument("--frames", type=int, default=5, help="frames per clip (AVSBench: 5, Ref-AVS: 10)")
    parser.add_argument("--text-tokens", type=int, default=0, help="25 for Ref-AVS")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from avsbench_kit.models.sam2 import Injection, SAM2Wrapper
    from baselines.auralsam2.fuser import AuralFuser, FuserConfig
    from baselines.configs import load_config

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fz = load_config("auralsam2", args.fuser)["fuser"]
    fuser = AuralFuser(FuserConfig(visual_blocks=tuple(fz["visual_blocks"]), audio_blocks=fz["audio_blocks"],
                                   sr_ratio=fz["sr_ratio"])).eval()
    sam = SAM2Wrapper(args.sam2, None, args.image_size).eval()
    t, s = args.frames, args.image_size
    images = sam.preprocess(torch.rand(t, 3, s, s))
    tokens = torch.randn(1, t + args.text_tokens, 256)
    points = (0, 1, "final")

    with torch.no_grad():
        feats = [sam.features(images[i:i + 1]) for i in range(t)]
        levels = tuple(torch.stack([f.levels[k] for f in feats], 1) for k in range(3))  # [1,T,C,h,w]

        def encode():
            for i in range(t):
                sam.features(images[i:i + 1])

        def decode():
            sam.propagate(feats, cond_frames=[t // 2], object_score=False, pad_point=False)

        def decode_with_fuser():
            out = fuser(levels, tokens, t)
            inj = {i: Injection(keys={p: out.dense[2 - k][:, i] for k, p in enumerate(points)},
                                tokens={p: out.sparse[2 - k][:, i, None] for k, p in enumerate(points)})
                   for i in range(t)}
            sam.propagate(feats, injections=inj, cond_frames=[t // 2], object_score=False, pad_point=False)

        enc = _median_time(encode, args.repeats) / t
        dec = _median_time(decode, args.repeats) / t
        fused = _median_time(decode_with_fuser, args.repeats) / t
    overhead = fused - dec
    fps_plain, fps_fused = 1.0 / (enc + dec), 1.0 / (enc + fused)
    result = {
        "cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
        "sam2": args.sam2, "image_size": s, "fuser": args.fuser, "frames": t, "text_tokens": args.text_tokens,
        "fuser_params_M": round(sum(p.numel() for p in fuser.parameters()) / 1e6, 2),
        "seconds_per_frame": {"encoder": round(enc, 4), "decoding": round(dec, 4),
                              "decoding_with_fuser": round(fused, 4)},
        "fuser_overhead_over_decoding": round(overhead / dec, 3),
        "fuser_overhead_over_frame": round(overhead / (enc + dec), 3),
        "fps": {"sam2": round(fps_plain, 3), "with_fuser": round(fps_fused, 3),
                "drop": round(fps_plain - fps_fused, 3)},
        "paper_claim": PAPER_CLAIM,
    }
    print(f"CPU: {result['cpu']} ({args.threads} thread(s)); {args.sam2} at {s}px, fuser={args.fuser}, T={t}")
    print(f"per frame: encoder {enc * 1e3:.1f} ms, SAM2 decoding {dec * 1e3:.1f} ms, "
          f"decoding + AuralFuser {fused * 1e3:.1f} ms")
    print(f"AuralFuser overhead = {overhead / dec:.2f} x SAM2 decoding per frame "
          f"({overhead / (enc + dec):.1%} of a whole frame incl. the image encoder); "
          f"FPS {fps_plain:.2f} -> {fps_fused:.2f} (drop {fps_plain - fps_fused:.2f})")
    print("paper claim: 2.3 FPS drop (AuralSAM2) vs ~6.5 FPS (adapter methods) on a GPU, absolute FPS not "
          "given in the recovered text: compare the ratios' direction, not the numbers")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
