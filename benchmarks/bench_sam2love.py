"""SAM2-LOVE's fusion overhead: fusion Transformer + prompt projection vs SAM2 decoding, per clip.

    .venv/bin/python benchmarks/bench_sam2love.py                    # cpu-small, 10-frame clips
    .venv/bin/python benchmarks/bench_sam2love.py --preset paper-sized # paper's fusion (6 x 256) and
                                                                       # SAM2 Hiera-L at 1024 (random)

Both parts run on the same inputs at inference (no gradients): the fusion side is the frame-by-
frame token propagation/accumulation loop that builds the ``[seg]`` prompt; the SAM2 side is the
memory-propagated decoding of every frame from cached image features (the image encoder is a
feature cache, outside both parts). Times are process CPU seconds with one torch thread (other
jobs on a shared machine inflate CPU time much less than wall time); the CPU model is printed.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what platform reports."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


PRESETS = {
    "cpu-small": [],
    "paper-sized": ["fusion.layers=6", "fusion.width=256", "fusion.heads=8", "fusion.ffn=1024",
                    "sam2.config=sam2_hiera_l", "image_size=1024", "sam2.round_features=null"],
}


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    from baselines.configs import load_config
    from baselines.sam2love.model import SAM2LOVE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    ap.add_argument("--clips", type=int, default=4, help="clips per batch")
    ap.add_argument("--frames", type=int, default=10, help="frames per clip (Ref-AVS: 10)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    overrides = PRESETS[args.preset] + ["features.image=vit", "dims.image=768",
                                        "features.audio=vggish", "dims.audio=128",
                                        "features.text=distilroberta", "features.text_overrides=[]",
                                        "dims.text=768"]
    model = SAM2LOVE.from_config(load_config("sam2love", "cpu-small", overrides)).eval()
    b, t, size = args.clips, args.frames, model.image_size
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # cached image features of the clip (outside both timed parts)
        frames = model.sam.features(model.sam.preprocess(torch.rand(b * t, 3, size, size, generator=g)))
    cache = {k: v.float().unflatten(0, (b, t)) for k, v in frames.to_cache().items()}
    batch = {"key": [f"c{i}" for i in range(b)], "annotated": torch.ones(b, t, dtype=torch.bool),
             "features": {"vggish": torch.randn(b, t, 128, generator=g),
                          "distilroberta": torch.randn(b, 25, 768, generator=g),
                          "distilroberta_mask": torch.ones(b, 25, dtype=torch.bool),
                          "vit": torch.randn(b, t, 197, 768, generator=g), "sam2_image": cache}}
    feats = model.image_features(batch, t)
    with torch.no_grad():
        prompt = model.prompt(batch)
        fusion_s = best_of(lambda: model.prompt(batch), args.repeat)
        sam_s = best_of(lambda: model.sam.propagate(feats, {0: prompt}, multimask=model.multimask,
                                                    output_size=model.output_size,
                                                    object_score=model.object_score), args.repeat)
    f = model.fcfg
    print(f"CPU: {cpu_name()} (1 torch thread, process CPU time, best of {args.repeat})")
    print(f"preset {args.preset}: fusion {f.layers} layers x {f.width} wide, ViT 197 tokens/frame, "
          f"SAM2 {model.sam.config_name} at {size} px, {b} clips x {t} frames")
    print(f"fusion + prompt : {1000 * fusion_s / b:9.1f} ms per clip")
    print(f"SAM2 decoding   : {1000 * sam_s / b:9.1f} ms per clip (memory attention + decoder + memory encoder)")
    print(f"overhead ratio  : {fusion_s / sam_s:9.3f} (fusion + prompt / SAM2 decoding)")


if __name__ == "__main__":
    main()
