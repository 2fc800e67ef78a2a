"""Per-frame cost of SAM2 decoding alone vs. decoding with each hook of the SAM2 layer.

In one run, for ``sam2.1_hiera_t`` (random weights: the cost does not depend on the values) at each
``--sizes`` on this machine's CPU, with image features computed beforehand (a baseline reads them
from a ``sam2_image`` cache), it times per frame, interleaved round by round so that load from other
processes hits every variant alike:

* ``decode``: SAM2's mask decoder on one frame through the layer, no hook (the reference, 1.00x);
* ``+ extra sparse``: one extra sparse prompt token (AV2T-SAM, SAM2-LOVE);
* ``+ dense``: a dense prompt in place of ``no_mask_embed``;
* ``+ image injection``: additions to the image embedding and both high-res maps;
* ``+ two-way injection``: additions to the image keys and the 4 mask tokens before layer 0, layer 1
  and the final attention (AuralSAM2; the decoder is re-run from SAM2's sub-modules);
* ``propagate``: SAM2's memory attention + decoder + memory encoder per frame over a --frames clip;
* ``propagate + two-way``: the same with two-way injections on every frame (AuralSAM2's loop).

and prints the process CPU time per frame (median of --rounds; unlike wall time it does not count
the time other processes hold the cores, so ratios stay meaningful on a shared machine), the ratio
to ``decode``, the wall time for reference, the CPU model and the torch thread count. ``--grad``
times forward + backward (to the prompts and to image features made trainable) instead of
inference.

    .venv/bin/python benchmarks/bench_sam2_hooks.py [--sizes 128 256] [--frames 5] [--rounds 30]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Callable


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo; else what platform knows)."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def variants(sam, feats, frames, grad: bool) -> dict[str, tuple[Callable[[], None], int]]:
    """name -> (callable doing the work for ``len(frames)`` frames, frames it covers)."""
    import torch

    from avsbench_kit.models.sam2 import Injection

    n, e = feats.levels[2].shape[0], sam.embed_size
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * 0.1).requires_grad_(grad)

    extra, dense = rand(n, 1, 256), rand(n, 256, e, e)
    image = Injection(image=rand(n, 256, e, e), high_res=(rand(n, 32, 4 * e, 4 * e), rand(n, 64, 2 * e, 2 * e)))
    two_way = Injection(keys={p: rand(n, 256, e, e) for p in (0, 1, "final")},
                        tokens={p: rand(n, 4, 256) for p in (0, 1, "final")})
    t = len(frames)

    def run(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def call() -> None:
            if grad:
                fn().sum().backward()
            else:
                with torch.no_grad():
                    fn()
        return call

    return {
        "decode": (run(lambda: sam.decode(feats).masks), 1),
        "+ extra sparse": (run(lambda: sam.decode(feats, extra).masks), 1),
        "+ dense": (run(lambda: sam.decode(feats, dense=dense).masks), 1),
        "+ image injection": (run(lambda: sam.decode(feats, injection=image).masks), 1),
        "+ two-way injection": (run(lambda: sam.decode(feats, injection=two_way).masks), 1),
        "propagate": (run(lambda: sam.propagate(frames, {0: extra}, object_score=False).masks), t),
        "propagate + two-way": (run(lambda: sam.propagate(frames, injections={k: two_way for k in range(t)},
                                                          object_score=False, pad_point=False).masks), t),
    }


def measure(size: int, args: argparse.Namespace) -> list[tuple[str, float]]:
    import torch

    from avsbench_kit.models.sam2 import SAM2Wrapper

    sam = SAM2Wrapper("sam2.1_hiera_t", None, size, init_seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        frames = [sam.features(sam.preprocess(torch.rand(1, 3, size, size, generator=g)))
                  for _ in range(args.frames)]
    if args.grad:  # as if a trainable module produced the features: every variant backpropagates
        from avsbench_kit.models.sam2 import ImageFeatures

        frames = [ImageFeatures(tuple(t.clone().requires_grad_(True) for t in f.levels)) for f in frames]
    cases = variants(sam, frames[0], frames, args.grad)
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(args.warmup + args.rounds):
        for name, (fn, per) in cases.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            if r >= args.warmup:
                cpu[name].append((time.process_time() - c0) / per)
                wall[name].append((time.perf_counter() - w0) / per)
    return [(name, statistics.median(cpu[name]), statistics.median(wall[name])) for name in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--frames", type=int, default=5, help="clip length for the propagation rows")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--grad", action="store_true", help="time forward + backward to prompts and features")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from importlib.metadata import version

    mode = "forward + backward" if args.grad else "inference (no_grad)"
    print(f"CPU: {cpu_model()} | torch {torch.__version__}, {torch.get_num_threads()} thread(s) | "
          f"sam2 {version('sam2')} | sam2.1_hiera_t, random weights, batch 1 | {mode} | "
          f"median of {args.rounds} interleaved rounds")
    results = {size: measure(size, args) for size in args.sizes}
    names = [name for name, _, _ in results[args.sizes[0]]]
    head = f"{'per frame':<22}" + "".join(f"{f'{s} px CPU ms':>15}{'ratio':>8}{'wall ms':>10}" for s in args.sizes)
    print(head)
    print("-" * len(head))
    for i, name in enumerate(names):
        row = f"{name:<22}"
        for size in args.sizes:
            base = results[size][0][1]
            _, cpu_s, wall_s = results[size][i]
            row += f"{cpu_s * 1e3:>15.2f}{cpu_s / base:>7.2f}x{wall_s * 1e3:>10.2f}"
        print(row)


if __name__ == "__main__":
    main()
