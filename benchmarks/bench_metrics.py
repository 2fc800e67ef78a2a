"""Speed of the toolkit's metric kernels vs the straightforward official algorithm, same inputs,
one run, plus end-to-end evaluations from prediction folders with the GT read from PNGs vs from
the decoded-GT cache (Ref-AVS test_s + test_u, AVSS v2 test class maps, S4 and MS3 test).

    .venv/bin/python benchmarks/bench_metrics.py                 # everything (10-20 minutes)
    .venv/bin/python benchmarks/bench_metrics.py --skip-e2e      # kernels only (a few minutes)
    .venv/bin/python benchmarks/bench_metrics.py --only-e2e --e2e refavs
    .venv/bin/python benchmarks/bench_metrics.py --quick         # smaller subsets, no end-to-end run

The official side is ``tests/official_reference.py`` (loops over frames and 255 thresholds,
sigmoid inside, mask_iou as whole-call tensor expressions like the official code). Where the loop
side would take minutes, it is timed on a subset of the same inputs and scaled linearly (printed
as such). Both sides run with the same torch thread count (default 1: on this shared 2-core
machine one intra-op thread is the faster and steadier setting for both), and kernel times are the
process CPU time of single-threaded runs (``--clock wall`` for wall-clock): other engineers' jobs
on the machine then inflate both sides much less than wall time. Every row names the CPU, its
SIMD level and the torch / numpy builds, and says whether the row's target is MET or MISSED. The
end-to-end runs are wall-clock (two worker threads) with the load average printed beside them;
their datasets are synthetic, sized like the official test splits (read from the metadata files
in shared/data when present).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import official_reference as R  # noqa: E402

from avsbench_kit.metrics import functional as Fn  # noqa: E402

ROWS: list[dict] = []
ENV_TAG = ""  # short machine/build description printed next to every ratio (set in main)

#: speed-up targets per metric kind (issue 19): F >= 100x, AVSS >= 2x, mIoU / S not slower
TARGETS = {"F (Eval_Fmeasure)": 100.0, "F, float16 logits": 100.0, "mIoU (mask_iou)": 1.0, "S (Ref-AVS null)": 1.0}


def target_of(metric: str) -> float | None:
    if metric.startswith(("logits", "class maps")):
        return 2.0
    return TARGETS.get(metric)


def machine_info() -> dict:
    """CPU model and SIMD flags, torch / numpy builds and thread settings: a speed ratio means
    nothing without them (the same code measured x60 and x130 on two machines of one kind)."""
    import platform

    cpu, flags, ids = "", set(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not cpu:
                cpu = value.strip()
            elif key in ("cpu family", "model") and key not in ids:
                ids[key] = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
        if ids:  # VMs often hide the marketing name ("AMD EPYC"): family/model tell the generation
            cpu += f" (family {ids.get('cpu family', '?')} model {ids.get('model', '?')})"
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16") if f in flags]
    try:
        from numpy._core import _multiarray_umath as mu  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import _multiarray_umath as mu
    np_simd = [k for k, v in mu.__cpu_features__.items() if v and (k == "AVX2" or k.startswith("AVX512"))]
    try:
        from threadpoolctl import threadpool_info

        pools = [f"{p['internal_api']}:{p['num_threads']}" + (f"({p['architecture']})" if p.get("architecture") else "")
                 for p in threadpool_info()]
    except ImportError:  # pragma: no cover
        pools = []
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cpu_flags": simd,
        "avx512": any(f.startswith("avx512") for f in flags),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "numpy_simd": np_simd,
        "thread_pools": pools,
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                           "ATEN_CPU_CAPABILITY") if k in os.environ},
    }


def env_tag(info: dict) -> str:
    avx = "AVX-512" if info["avx512"] else ("AVX2" if "avx2" in info["cpu_flags"] else "no AVX2")
    return (f"{info['cpu']} [{avx}] | torch {info['torch']} ({info['torch_cpu_capability']}, {info['torch_threads']} thr) "
            f"| numpy {info['numpy']} ({'+'.join(info['numpy_simd']) or 'baseline'})")


CLOCK = time.process_time  # CPU seconds of this process (set in main)


def timed(fn, repeat: int = 1):
    """Best of ``repeat`` runs on CLOCK; also keeps the wall time of that run in LAST_WALL."""
    global LAST_WALL
    best, out, wall = math.inf, None, math.inf
    for _ in range(repeat):
        t0, w0 = CLOCK(), time.perf_counter()
        out = fn()
        dt = CLOCK() - t0
        if dt < best:
            best, wall = dt, time.perf_counter() - w0
    LAST_WALL = wall
    return best, out


LAST_WALL = 0.0


def record(workload: str, metric: str, ref_s: float, ref_note: str, mine_s: float, match: str) -> None:
    ratio = ref_s / mine_s if mine_s > 0 else math.inf
    target = target_of(metric)
    verdict = "" if target is None else ("MET" if ratio >= target else "MISSED")
    ROWS.append(dict(workload=workload, metric=metric, official_s=ref_s, toolkit_s=mine_s, ratio=ratio,
                     note=ref_note, match=match, target=target, verdict=verdict, machine=ENV_TAG))
    goal = f"target >=x{target:g} {verdict}" if target is not None else ""
    print(f"  {metric:<22} official {ref_s:9.3f} s{ref_note:<28} toolkit {mine_s:8.4f} s   x{ratio:7.1f}  "
          f"{goal:<19} {match:<9} | {ENV_TAG}", flush=True)


def blobs(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, max(1, h // 16), max(1, w // 16), generator=g)
    return (torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[:, 0] < 0.35).float()


def make_inputs(n: int, h: int, w: int, seed: int):
    g = blobs(n, h, w, seed)
    noise = torch.randn(n, h, w, generator=torch.Generator().manual_seed(seed + 1))
    return (g - 0.5) * 4 + noise * 2.5, g


def calls(n: int, size: int):
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def same(a, b) -> str:
    return "identical" if a == b else f"differ ({a} vs {b})"


def bench_binary(label: str, n: int, h: int, w: int, f_subset: int, call: int = 20) -> None:
    print(f"\n{label}: {n} frames {h}x{w}, official calls of {call} frames (S4 batch: 4 clips x 5)")
    x, g = make_inputs(n, h, w, seed=h)
    parts = calls(n, call)
    ref_t, ref_m = timed(lambda: [R.mask_iou_batched(x[a:b], g[a:b]).item() for a, b in parts])
    my_t, my_m = timed(lambda: [Fn.avs_miou(x[a:b], g[a:b]) for a, b in parts], repeat=3)
    record(label, "mIoU (mask_iou)", ref_t, "", my_t, same(my_m, ref_m))

    sub = calls(f_subset, min(call, f_subset))
    ref_t, ref_f = timed(lambda: [R.eval_fmeasure(x[a:b], g[a:b]) for a, b in sub])
    scale = n / f_subset
    f_official = ref_t * scale
    my_t, my_f = timed(lambda: [Fn.avs_fscore(x[a:b], g[a:b]) for a, b in parts], repeat=2)
    mine_sub = [Fn.avs_fscore(x[a:b], g[a:b]) for a, b in sub]
    note = f" (x{scale:g} from {f_subset} frames)" if scale != 1 else ""
    record(label, "F (Eval_Fmeasure)", f_official, note, my_t, same(mine_sub, ref_f))

    s_parts = calls(n, 2 * call)
    ref_t, ref_s = timed(lambda: [R.refavs_s_batch(x[a:b]).item() for a, b in s_parts])
    my_t, my_s = timed(lambda: [Fn.refavs_s(x[a:b]) for a, b in s_parts], repeat=3)
    record(label, "S (Ref-AVS null)", ref_t, "", my_t, same(my_s, ref_s))

    xh = x.half()
    my_t, _ = timed(lambda: [Fn.avs_fscore(xh[a:b], g[a:b]) for a, b in parts], repeat=2)
    ref_fh = [R.eval_fmeasure(xh[a:b].float(), g[a:b]) for a, b in sub]
    record(label, "F, float16 logits", f_official, " (official time as above)", my_t,
           same([Fn.avs_fscore(xh[a:b], g[a:b]) for a, b in sub], ref_fh))


def bench_avss(n_logits: int, n_maps: int, h: int = 224, w: int = 224, call: int = 20) -> None:
    print(f"\nAVSS {h}x{w}, official calls of {call} frames x 71 classes")
    g = torch.Generator().manual_seed(5)
    ref_total = mine_total = 0.0
    ok = True
    for a, b in calls(n_logits, call):
        gt = torch.randint(0, 71, (b - a, h // 16, w // 16), generator=g)
        gt = torch.nn.functional.interpolate(gt[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
        logits = torch.randn(b - a, 71, h, w, generator=g)
        logits.scatter_add_(1, gt[:, None], torch.full((b - a, 1, h, w), 3.0))
        t_ref, ref = timed(lambda: R.calc_color_miou_fscore(logits, gt))
        t_mine, st = timed(lambda: Fn.avss_accumulate(logits, gt))
        ref_total += t_ref
        mine_total += t_mine
        ok &= torch.equal(st.iou_sum, ref[0]) and torch.equal(st.f_sum, ref[1]) and torch.equal(st.count, ref[2])
        del logits
    record(f"AVSS {h}x{w}", f"logits, {n_logits} frames", ref_total, " (softmax both sides)", mine_total,
           "identical" if ok else "DIFFER")
    labels = torch.randint(0, 71, (n_maps, h // 16, w // 16), generator=g)
    # uint8 storage (int64 maps of 1000 frames took 0.8 GB): both sides convert with .long() inside
    labels = torch.nn.functional.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].to(torch.uint8)
    gt = labels.roll(1, dims=2)
    parts = calls(n_maps, call)
    t_ref, ref = timed(lambda: [R.calc_color_miou_fscore(labels[a:b], gt[a:b]) for a, b in parts])
    t_mine, mine = timed(lambda: [Fn.avss_accumulate(labels[a:b], gt[a:b]) for a, b in parts], repeat=2)
    ok = all(torch.equal(m.iou_sum, r[0]) and torch.equal(m.f_sum, r[1]) for m, r in zip(mine, ref))
    record(f"AVSS {h}x{w}", f"class maps, {n_maps} fr", t_ref, "", t_mine, "identical" if ok else "DIFFER")


# ---------------------------------------------------------------------------------------------
# end to end: prediction folders -> avskit eval, GT from PNGs vs from the decoded-GT cache
# ---------------------------------------------------------------------------------------------
def official_sizes() -> dict[str, dict[str, int]]:
    """Test-split sizes: from the official metadata files in shared/data when present (Ref-AVS
    test_s/test_u rows, AVSS v2 test clips), else the published counts."""
    import pandas as pd

    sizes = {"refavs": {"test_s": 2288, "test_u": 1656}, "avss": {"test": 750}, "s4": {"test": 740}, "ms3": {"test": 64}}
    data = ROOT.parent.parent / "shared" / "data"
    for base in (data, Path("/work/shared/data")):
        ref, avss = base / "refavs" / "metadata.csv", base / "avss" / "metadata.csv"
        if ref.is_file():
            counts = pd.read_csv(ref)["split"].value_counts()
            sizes["refavs"] = {s: int(counts[s]) for s in ("test_s", "test_u")}
        if avss.is_file():
            meta = pd.read_csv(avss)
            sizes["avss"] = {"test": int(((meta["label"] == "v2") & (meta["split"] == "test")).sum())}
        if ref.is_file():
            break
    return sizes


#: name, task, frames per sample, GT size, prediction kind
E2E = {
    "refavs": ("synth-refavs", "refavs", 10, 256, "float16 .npy logits"),
    "avss": ("avss", "avss", 10, 224, "class-map PNGs"),
    "s4": ("synth-s4", "s4", 5, 224, "float16 .npy logits"),
    "ms3": ("synth-ms3", "ms3", 5, 224, "float16 .npy logits"),
}


def write_e2e(tmp: Path, which: str, sizes: dict[str, int]) -> tuple[Path, Path]:
    """A prepared synthetic dataset shaped like ``which``'s test split(s) (GT PNGs: 0/255 grey, or
    AVSS palette RGB) and a prediction folder; returns (home, predictions). Not timed."""
    import cv2

    from avsbench_kit.data.manifest import ManifestBuild, build_manifest
    from avsbench_kit.data.masks import avss_palette
    from avsbench_kit.home import prepared_dir

    name, task, t, size, _ = E2E[which]
    rng = np.random.default_rng(0)
    root, pred, home = tmp / which / "raw", tmp / which / "pred", tmp / which / "home"
    palette = avss_palette()[:, ::-1]  # BGR for cv2
    rows, i, t0 = [], 0, time.perf_counter()
    for split, count in sizes.items():
        for _ in range(count):
            key = f"{i:05d}"
            cells = rng.integers(0, 71, (8, 8)) if task == "avss" else (rng.random((8, 8)) < 0.3).astype(np.uint8) * 255
            base = cv2.resize(cells.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
            masks = []
            (root / "gt" / key).mkdir(parents=True)
            (pred / key).mkdir(parents=True)
            for k in range(t):
                m = np.roll(base, 4 * k, axis=1)
                rel = f"gt/{key}/{k:05d}.png"
                cv2.imwrite(str(root / rel), palette[m] if task == "avss" else m)
                masks.append(rel)
                if task == "avss":
                    noisy = np.where(rng.random(m.shape) < 0.1, rng.integers(0, 71, m.shape), m).astype(np.uint8)
                    cv2.imwrite(str(pred / key / f"{k}.png"), noisy)
                else:
                    logit = (m > 0).astype(np.float32) * 4 - 2 + rng.standard_normal(m.shape, dtype=np.float32) * 2
                    np.save(pred / key / f"{k}.npy", logit.astype(np.float16))
            rows.append({"sample_key": key, "split": split, "clip": key, "row": i, "num_frames": t,
                         "frames": [f"media/{key}/frames/{k}.jpg" for k in range(t)], "masks": masks,
                         "annotated": [True] * t, "subset": "v2" if task == "avss" else ""})
            i += 1
    build_manifest(name, root, ManifestBuild(rows=rows, media_dirs=["gt"])).save(prepared_dir(name, home))
    print(f"  wrote {i:,} samples x {t} frames (GT PNG + {E2E[which][4]}) in {time.perf_counter() - t0:.0f} s (not timed)")
    return home, pred


def _eval_splits(name: str, splits: list[str], pred: Path, home: Path, mode: str):
    from avsbench_kit.metrics.evaluator import evaluate_predictions

    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    reports = [evaluate_predictions(name, s, str(pred), home=home, progress=False, ignore_extra=True, gt_cache=mode)
               for s in splits]
    return time.perf_counter() - t0, time.process_time() - c0, load, reports


def bench_codecs(n: int = 400) -> None:
    """How to store binary GT masks: bytes per 256x256 frame and decode time (process CPU) for
    bit-packed, bit-packed + deflate (the GT cache's codec), COCO RLE (pycocotools, if installed)
    and PNG; and AVSS 224x224 class maps as uint8 + deflate."""
    import zlib

    import cv2

    masks = blobs(n, 256, 256, seed=11).numpy().astype(bool)
    size = 256 * 256
    print(f"\nGT codecs: {n} binary 256x256 masks (blobs), decode = back to a bool/uint8 array")

    def row(label: str, payloads: list, decode) -> None:
        c0 = time.process_time()
        for b in payloads:
            decode(b)
        dt = (time.process_time() - c0) / len(payloads)
        print(f"  {label:<28} {np.mean([len(b) for b in payloads]):7.0f} B/frame   decode {dt * 1e6:6.1f} us/frame")

    row("bit-packed", [np.packbits(m).tobytes() for m in masks],
        lambda b: np.unpackbits(np.frombuffer(b, np.uint8), count=size))
    for level in (1, 6):
        row(f"bit-packed + deflate {level}", [zlib.compress(np.packbits(m).tobytes(), level) for m in masks],
            lambda b: np.unpackbits(np.frombuffer(zlib.decompress(b), np.uint8), count=size))
    try:
        from pycocotools import mask as coco
    except ImportError:
        print("  COCO RLE                     skipped (pip install pycocotools to compare)")
    else:
        rles = coco.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        c0 = time.process_time()
        for r in rles:
            coco.decode(r)
        dt = (time.process_time() - c0) / len(rles)
        print(f"  {'COCO RLE (pycocotools)':<28} {np.mean([len(r['counts']) for r in rles]):7.0f} B/frame   "
              f"decode {dt * 1e6:6.1f} us/frame (Fortran order)")
    row("PNG (cv2, grey)", [cv2.imencode(".png", m.astype(np.uint8) * 255)[1].tobytes() for m in masks],
        lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE))
    low = torch.randint(0, 71, (n // 2, 1, 14, 14), generator=torch.Generator().manual_seed(3)).float()
    labels = torch.nn.functional.interpolate(low, size=(224, 224), mode="nearest")[:, 0].numpy().astype(np.uint8)
    row("AVSS 224x224 u8 + deflate 6", [zlib.compress(m.tobytes(), 6) for m in labels],
        lambda b: np.frombuffer(zlib.decompress(b), np.uint8))


def bench_gt_e2e(which: str, scale: float, keep: bool) -> None:
    """PNG path vs decoded-GT-cache path, same predictions, one run: wall and CPU seconds, the
    cache build cost, identical metrics, cache size vs the PNG tree."""
    from avsbench_kit.data import gt_cache as GC
    from avsbench_kit.data.prepare import load_manifest

    name, task, t, size, kind = E2E[which]
    sizes = {k: max(1, round(v * scale)) for k, v in official_sizes()[which].items()}
    total = sum(sizes.values())
    print(f"\n{which} end to end: {' + '.join(f'{s} {n:,}' for s, n in sizes.items())} samples x {t} frames at "
          f"{size}x{size}, {kind} -> avskit eval (official + clip protocols, 2 worker threads)")
    tmp = Path(tempfile.mkdtemp(prefix=f"avskit-bench-{which}-"))
    try:
        home, pred = write_e2e(tmp, which, sizes)
        splits = list(sizes)
        png_s, png_cpu, png_load, png = _eval_splits(name, splits, pred, home, "off")
        manifest = load_manifest(name, home)
        c0, t0 = time.process_time(), time.perf_counter()
        GC.build(manifest, task, splits, home=home)
        build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
        cache_s, cache_cpu, cache_load, cached = _eval_splits(name, splits, pred, home, "auto")
        assert all(r["gt_source"] == "cache" for r in cached)
        same = all(a["protocols"] == b["protocols"] for a, b in zip(png, cached)) and all(
            a["_samples"].equals(b["_samples"]) for a, b in zip(png, cached))
        tree = sum(f.stat().st_size for f in (manifest.root / "gt").rglob("*.png"))
        cache_bytes = GC.GtCache(manifest, task, home).size_bytes()
        print(f"  PNG path   {png_s:6.1f} s wall {png_cpu:6.1f} CPU-s (load {png_load:.1f}), "
              f"{png_cpu / total * 1e3:.1f} ms CPU per sample")
        print(f"  cache path {cache_s:6.1f} s wall {cache_cpu:6.1f} CPU-s (load {cache_load:.1f}), "
              f"{cache_cpu / total * 1e3:.1f} ms CPU per sample; CPU-s / 2 = {cache_cpu / 2:.1f} s "
              f"(the wall time two idle cores would need)   x{png_s / cache_s:.1f} wall; "
              f"metrics {'identical' if same else 'DIFFER'}")
        print(f"  cache build (once per prepared dataset): {build_s:.1f} s wall, {build_cpu:.1f} CPU-s; "
              f"cache {cache_bytes / 1e6:.1f} MB vs PNG tree {tree / 1e6:.1f} MB ({cache_bytes / tree:.2f}x)")
        for r in cached:
            m = r["protocols"][next(iter(r["protocols"]))]["metrics"]
            print(f"  {r['split']}: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()))
        target = 10.0 if which == "refavs" and scale == 1 else None
        note = f"{total} samples; load {png_load:.1f}/{cache_load:.1f}; cache {cache_bytes / 1e6:.1f} MB, PNG {tree / 1e6:.1f} MB"
        ROWS.append(dict(workload=f"{which} e2e", metric="PNG vs GT cache (wall s)", official_s=png_s, toolkit_s=cache_s,
                         ratio=png_s / cache_s, note=note, match="identical" if same else "DIFFER", target=target,
                         verdict="" if target is None else ("MET" if cache_s < target else "MISSED"), machine=ENV_TAG,
                         cpu_s={"png": png_cpu, "cache": cache_cpu, "build": build_cpu}))
        if target is not None:
            print(f"  target: full Ref-AVS test_s + test_u under {target:g} s wall on an idle 2-core machine: "
                  f"{cache_s:.1f} s at load {cache_load:.1f} -> {'MET' if cache_s < target else 'MISSED'}"
                  f"{'' if cache_s < target or cache_load < 1.5 else ' (not an idle machine: see CPU-s / 2)'} | {ENV_TAG}")
    finally:
        if keep:
            print(f"  kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small subsets, skip the end-to-end runs")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both sides (default 1)")
    ap.add_argument("--e2e-scale", "--refavs-scale", type=float, default=1.0, dest="e2e_scale",
                    help="fraction of the official test-split sizes in the end-to-end runs")
    ap.add_argument("--e2e", default="refavs,avss,s4,ms3",
                    help="end-to-end runs (PNG vs GT cache), comma-separated from refavs,avss,s4,ms3")
    ap.add_argument("--skip-refavs", "--skip-e2e", action="store_true", dest="skip_e2e", help="no end-to-end runs")
    ap.add_argument("--only-refavs", "--only-e2e", action="store_true", dest="only_e2e", help="only the end-to-end runs")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the Ref-AVS temp folder")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="kernel timing: process CPU time (default; needs --threads 1) or wall clock")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if (args.clock == "cpu" and args.threads == 1) else time.perf_counter
    from avsbench_kit.provenance import environment_info

    global ENV_TAG
    env = environment_info()
    machine = machine_info()
    ENV_TAG = env_tag(machine)
    clock = "process CPU time" if CLOCK is time.process_time else "wall clock"
    print(f"machine: {machine['cpu']}, {machine['cpus']} cpus, flags {' '.join(machine['cpu_flags']) or '-'}"
          f"{'' if machine['avx512'] else ' (no AVX-512)'}")
    print(f"builds: torch {machine['torch']} (kernels {machine['torch_cpu_capability']}, {machine['torch_threads']} intra-op "
          f"threads), numpy {machine['numpy']} (SIMD {'+'.join(machine['numpy_simd']) or 'baseline'}); thread pools "
          f"{', '.join(machine['thread_pools']) or '-'}; env {machine['env'] or '-'}")
    print(f"load={os.getloadavg()[0]:.1f} git {env['git'][:12]}; kernel times = {clock}")
    q = args.quick
    if not args.only_e2e:
        bench_binary("224x224", 200 if q else 1000, 224, 224, f_subset=20 if q else 40)
        bench_binary("720x1280", 20 if q else 100, 720, 1280, f_subset=1 if q else 2)
        bench_avss(n_logits=20 if q else 40, n_maps=100 if q else 1000)
    if not (q or args.skip_e2e):
        bench_codecs()
        for which in args.e2e.split(","):
            bench_gt_e2e(which.strip(), args.e2e_scale, args.keep_tmp)
    judged = [r for r in ROWS if r.get("verdict")]
    if judged:
        missed = [r for r in judged if r["verdict"] == "MISSED"]
        print(f"\ntargets ({ENV_TAG}):")
        for r in judged:
            if "cpu_s" in r:  # end to end: the target is a wall time, not a ratio
                print(f"  {r['workload']:<10} {'GT cache path, wall':<22} {r['toolkit_s']:6.1f} s  target <{r['target']:g} s "
                      f"(CPU-s / 2 = {r['cpu_s']['cache'] / 2:.1f} s, {r['note']})  {r['verdict']}")
                continue
            print(f"  {r['workload']:<10} {r['metric']:<22} x{r['ratio']:7.1f}  target >=x{r['target']:g}  {r['verdict']}")
        print(f"  {len(judged) - len(missed)}/{len(judged)} MET" + (f"; MISSED: {len(missed)}" if missed else ""))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        from avsbench_kit.atomic import write_json

        write_json(args.json, {"environment": env, "machine": machine, "threads": args.threads, "clock": args.clock,
                               "rows": ROWS})


if __name__ == "__main__":
    main()
