"""SAM2-LOVE oracles: can a run's SAM2 decoder and features be conditioned on the expression at all?

Both skip SAM2-LOVE's fusion, to tell a fusion problem from a decoder / image-feature problem.

    python -m baselines.sam2love.oracle decoder RUN [--epochs 8] [--lr 3e-4] [--batch-size 4]
                                                [--frames 0] [--every 1] [--home DIR]
    python -m baselines.sam2love.oracle ridge RUN [--level 2] [--home DIR]
    python -m baselines.sam2love.oracle audio RUN [--ridge 100] [--home DIR]

``decoder``: the sparse prompt is an MLP of the pooled sentence embedding (``<text>_pooled``; the
most direct text -> prompt map there is), decoded on *every* frame (10× the paper's frame-0 signal)
with the run's decoder and prompt encoder trained alongside (AdamW, constant rate); ``--frames n``
decodes only n frames per training clip (annotated, non-empty ones first, else at random), so a
step holds more expressions for the same cost. Every ``--every`` epochs: test_s J by expression
kind with the real and with the batch-rolled text. Equal columns = the decoder does not follow
the text.
``ridge``: a closed-form linear read-out from one cached SAM2 level to the area-pooled target mask,
one per target appearance (oracle: told the colour and shape) vs one shared by all, fitted on 2/3
of the appearance expressions of each look and scored (cell IoU) on the rest. Per-look ≫ shared
= the frozen features do single out the target linearly.
``audio``: do the run's cached audio features name the target of the onset expressions (first /
last), which only the audio can resolve? A closed-form one-vs-rest read-out from the clip's audio
(each second's features and their rise from the second before, plus a first/last flag) to the
target's class, fitted on train and scored (accuracy) on test_s against the majority class.
Above the majority = the information is in the features; whether the fusion uses it is the
separate question the ``audio=off`` runs answer.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F

from avsbench_kit.errors import DataError
from baselines.base import masks_at
from baselines.common.losses import masked_bce_dice


def _text(batch: dict, model: Any) -> torch.Tensor:
    name = model.names["text"]
    if not name or f"{name}_pooled" not in batch["features"]:
        raise DataError(f"the decoder oracle needs the pooled sentence embedding ({name}_pooled)",
                        hint="use a run with text on and a text encoder that caches <name>_pooled (e.g. minilm)")
    return batch["features"][f"{name}_pooled"].float()


def some_frames(batch: dict, n: int, generator: torch.Generator) -> dict:
    """The batch restricted to ``n`` frames per clip: annotated non-empty frames first, ties at random."""
    b, t = batch["annotated"].shape
    score = torch.rand(b, t, generator=generator) + batch["annotated"].float() \
        + (batch["masks"].flatten(2).amax(-1) > 0).float()
    idx = score.topk(min(n, t), dim=1).indices
    rows = torch.arange(b)[:, None]
    feats = {k: ({kk: vv[rows, idx] for kk, vv in v.items()} if isinstance(v, dict) else v)
             for k, v in batch["features"].items()}
    return {**batch, "annotated": batch["annotated"][rows, idx], "masks": batch["masks"][rows, idx],
            "features": feats}


def oracle_logits(model: Any, net: torch.nn.Module, batch: dict, roll: bool = False,
                  size: tuple[int, int] = (64, 64)) -> torch.Tensor:
    """[B,T,h,w] logits of every frame decoded from ``net(pooled text)`` as the extra sparse token."""
    text = _text(batch, model)
    prompt = net(text.roll(1, 0) if roll else text)[:, None]
    b, t = batch["annotated"].shape
    feats = model.all_frame_features(batch)
    out = model.sam.decode(feats, prompt.repeat_interleave(t, 0), multimask=model.multimask,
                           output_size=size, pad_point=True)
    return out.masks.unflatten(0, (b, t))


def per_clip_j(logits: torch.Tensor, masks: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """Mean J (the metrics' per-frame IoU kernel) over each clip's annotated frames with a non-empty
    target, at the logits' resolution: [B] (NaN: none)."""
    from avsbench_kit.metrics.functional import frame_iou

    gt = masks_at(masks, tuple(logits.shape[-2:])) > 0.5
    keep = annotated.bool() & gt.flatten(2).any(-1)
    j = frame_iou(logits.flatten(0, 1), gt.flatten(0, 1)).view(keep.shape)
    return torch.where(keep, j, torch.nan).nanmean(1)


def decoder_oracle(model: Any, train_batches, eval_batches, kinds: dict[str, str], *, epochs: int,
                   lr: float, frames: int = 0, every: int = 1, seed: int = 0
                   ) -> list[tuple[int, dict[str, dict[str, float]]]]:
    """Train ``net`` + the decoder/prompt encoder; every ``every`` epochs
    ``(epoch, {"real"|"rolled": {kind: J}})``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dim = _text(next(iter(eval_batches())), model).shape[-1]
    hidden = model.sam.hidden_dim
    net = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden))
    params = list(net.parameters()) + [p for n, p in model.named_parameters()
                                       if n.startswith("sam.") and p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    history = []
    for epoch in range(epochs):
        model.train()
        for batch in train_batches(epoch):
            if frames:
                batch = some_frames(batch, frames, gen)
            logits = oracle_logits(model, net, batch)
            loss = masked_bce_dice(logits, masks_at(batch["masks"], tuple(logits.shape[-2:])),
                                   batch["annotated"].bool())
            opt.zero_grad()
            loss.backward()
            opt.step()
        if (epoch + 1) % every:
            continue
        model.eval()
        scores: dict[str, dict[str, list[float]]] = {"real": {}, "rolled": {}}
        with torch.no_grad():
            for batch in eval_batches():
                for arm, roll in (("real", False), ("rolled", True)):
                    j = per_clip_j(oracle_logits(model, net, batch, roll), batch["masks"], batch["annotated"])
                    for key, v in zip(batch["key"], j.tolist()):
                        if v == v and kinds.get(key):
                            scores[arm].setdefault(kinds[key], []).append(v)
        history.append((epoch + 1, {arm: {k: sum(v) / len(v) for k, v in sorted(d.items())} for arm, d in scores.items()}))
    return history


def ridge_fit(x: torch.Tensor, y: torch.Tensor, ridge: float) -> torch.Tensor:
    """Closed-form ridge weights (last row = bias) of ``y [N,K]`` (or [N]) on ``x [N,C]``."""
    x = torch.cat([x, torch.ones(len(x), 1)], 1)
    return torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1]), x.T @ y)


def ridge_predict(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(len(x), 1)], 1) @ w


def ridge_oracle(samples: list[tuple[str, torch.Tensor, torch.Tensor]], ridge: float = 1.0) -> dict[str, float]:
    """``samples``: (look, cells [N,C], pooled target [N]) per expression. Per-look vs shared linear
    read-out, fitted on the first 2/3 of each look's samples, mean cell IoU (threshold 0.25) on the rest."""
    by_look: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for look, x, y in samples:
        by_look.setdefault(look, []).append((x, y))
    fit_on = {k: v[: 2 * len(v) // 3] for k, v in by_look.items() if len(v) >= 3}
    score_on = {k: v[2 * len(v) // 3:] for k, v in by_look.items() if len(v) >= 3}

    def fit(pairs):
        return ridge_fit(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]), ridge)

    def iou(w, pairs):
        out = []
        for x, y in pairs:
            pred, gt = ridge_predict(w, x) > 0.25, y > 0.25
            if gt.any():
                out.append(float((pred & gt).sum() / (pred | gt).sum().clamp_min(1)))
        return out

    if not fit_on:
        raise DataError("the ridge oracle needs at least 3 appearance expressions of one look",
                        hint="a larger SynthAVS (avskit prepare synth --size medium) has more")
    shared = fit([p for v in fit_on.values() for p in v])
    per, common = [], []
    for look, pairs in score_on.items():
        per += iou(fit(fit_on[look]), pairs)
        common += iou(shared, pairs)
    return {"per_look": sum(per) / len(per), "shared": sum(common) / len(common),
            "looks": float(len(fit_on)), "scored": float(len(per))}


def onset_features(audio: torch.Tensor, first: bool) -> torch.Tensor:
    """One clip's audio ``[T,D]`` as a vector: every second's features, their rise from the second
    before (onsets), and whether the expression asks for the first or the last onset."""
    rise = torch.cat([audio[:1], audio[1:] - audio[:-1]])
    return torch.cat([audio.flatten(), rise.flatten(), torch.tensor([float(first)])])


def audio_oracle(train: list[tuple[torch.Tensor, str]], test: list[tuple[torch.Tensor, str]],
                 ridge: float = 100.0) -> dict[str, float]:
    """``(onset_features, target class)`` pairs -> test accuracy of a standardised one-vs-rest ridge
    read-out fitted on ``train``, the majority-class accuracy and chance."""
    if len(train) < 2 or not test:
        raise DataError(f"the audio oracle needs onset (first / last) expressions in train and test_s "
                        f"(got {len(train)} / {len(test)})",
                        hint="a larger SynthAVS (avskit prepare synth --size medium) has more")
    classes = sorted({c for _, c in train})
    x = torch.stack([v for v, _ in train]).float()
    mu, sd = x.mean(0), x.std(0) + 1e-6
    y = torch.tensor([[c == t for c in classes] for _, t in train], dtype=torch.float32)
    w = ridge_fit((x - mu) / sd, y, ridge)
    pred = ridge_predict(w, (torch.stack([v for v, _ in test]).float() - mu) / sd).argmax(1)
    truth = [t for _, t in test]
    majority = max(classes, key=[t for _, t in train].count)
    return {"accuracy": sum(classes[i] == t for i, t in zip(pred.tolist(), truth)) / len(truth),
            "majority": sum(t == majority for t in truth) / len(truth), "chance": 1 / len(classes),
            "classes": float(len(classes)), "scored": float(len(truth))}


def main(argv: list[str] | None = None) -> None:
    from avsbench_kit.data.synth_scenes import expression_kind
    from avsbench_kit.features.reader import feature_batches
    from avsbench_kit.probes.engine import load_run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("oracle", choices=("decoder", "ridge", "audio"))
    ap.add_argument("run")
    ap.add_argument("--home", default=None)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch-size", type=int, default=4, help="decoder: training clips per step")
    ap.add_argument("--frames", type=int, default=0, help="decoder: frames decoded per training clip (0 = all)")
    ap.add_argument("--every", type=int, default=1, help="decoder: evaluate every N epochs")
    ap.add_argument("--level", type=int, default=2, choices=(0, 1, 2), help="ridge: SAM2 level (stride 4/8/16)")
    ap.add_argument("--ridge", type=float, default=100.0, help="audio: ridge penalty")
    args = ap.parse_args(argv)
    run = load_run(args.run, args.home)
    model = run.model

    def batches(split: str, shuffle: bool = False, seed: int = 0, size: int = 8, requests=None):
        """The run's batches of ``split``; ``requests``: only those caches, no masks (cheap reads)."""
        return feature_batches(run.manifest, split, requests or run.requests, batch_size=size,
                               shuffle=shuffle, seed=seed, home=args.home, with_masks=requests is None)

    if args.oracle == "decoder":
        kinds = {r["sample_key"]: expression_kind(r["text"]) for r in run.manifest.rows("test_s")}
        hist = decoder_oracle(model, lambda e: batches("train", True, e, args.batch_size),
                              lambda: batches("test_s"), kinds, epochs=args.epochs, lr=args.lr,
                              frames=args.frames, every=args.every)
        for epoch, h in hist:
            print(f"epoch {epoch}: test_s J real " + " ".join(f"{k} {v:.3f}" for k, v in h["real"].items())
                  + " | rolled text " + " ".join(f"{k} {v:.3f}" for k, v in h["rolled"].items()))
        return
    if args.oracle == "audio":
        name = model.names["audio"]
        if not name:
            raise DataError(f"run {args.run} has audio switched off", hint="use a run with audio on")
        audio_only = [r for r in run.requests if r.encoder == name]
        pairs: dict[str, list[tuple[torch.Tensor, str]]] = {}
        for split in ("train", "test_s"):
            texts = {r["sample_key"]: r["text"] for r in run.manifest.rows(split)}
            for batch in batches(split, size=32, requests=audio_only):
                for i, key in enumerate(batch["key"]):
                    kind = expression_kind(texts[key])
                    if kind in ("first", "last") and not bool(batch["is_null"][i]):
                        pairs.setdefault(split, []).append(
                            (onset_features(batch["features"][name][i].float(), kind == "first"),
                             batch["category"][i]))
        r = audio_oracle(pairs.get("train", []), pairs.get("test_s", []), args.ridge)
        print(f"{name}: target class of {int(r['scored'])} test_s first/last expressions from the audio "
              f"alone: accuracy {r['accuracy']:.3f} vs majority class {r['majority']:.3f} "
              f"(chance {r['chance']:.3f}, {int(r['classes'])} classes)")
        return
    samples = []
    for split in ("train", "test_s", "test_u"):
        texts = {r["sample_key"]: r["text"] for r in run.manifest.rows(split)}
        with torch.no_grad():
            for batch in batches(split):
                cells = model.all_frame_features(batch).levels[args.level].float()
                b, t = batch["annotated"].shape
                cells = cells.unflatten(0, (b, t))
                pooled = F.interpolate(batch["masks"].flatten(0, 1)[:, None].float(), size=cells.shape[-2:],
                                       mode="area")[:, 0].unflatten(0, (b, t))
                for i, key in enumerate(batch["key"]):
                    if expression_kind(texts[key]) != "appearance" or bool(batch["is_null"][i]):
                        continue
                    ok = batch["annotated"][i].bool()
                    look = " ".join(sorted(set(texts[key].split()) - {"the", "in", "video", "that", "is"}))
                    samples.append((look, cells[i][ok].permute(0, 2, 3, 1).flatten(0, 2), pooled[i][ok].flatten()))
    r = ridge_oracle(samples)
    print(f"level {args.level}: {int(r['looks'])} looks, {int(r['scored'])} held-out appearance expressions: "
          f"cell IoU per-look read-out {r['per_look']:.3f} vs shared {r['shared']:.3f}")


if __name__ == "__main__":
    from avsbench_kit.errors import run_script

    raise SystemExit(run_script(main))
