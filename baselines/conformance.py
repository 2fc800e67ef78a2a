"""The baseline contract as executable checks, run over every registered baseline by
``tests/test_baseline_conformance.py`` (a third-party plugin runs :func:`check_baseline` on its own).

Batches are synthesised from what the baseline asks for: each feature request's encoder declares
its output fields (shape, dtype, role), so a batch with the reader's exact layout can be made
without data on disk. A baseline whose tiny config leaves a symbolic width (``"D"``) unresolved
fails here, naming the encoder.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from baselines.base import Baseline, BaselineOutput

DESCRIBE_KEYS = ("name", "class", "backbone", "checkpoints", "parameters", "modules", "modalities")
#: the SynthAVS dataset of each task (the conformance run resolves configs against it)
SYNTH_DATASET = {"s4": "synth-s4", "ms3": "synth-ms3", "refavs": "synth-refavs", "avss": "synth-avss"}


def build(name: str, task: str, *overrides: str, tiny: tuple[str, ...] | None = None) -> Baseline:
    """The baseline's default preset with its ``tiny`` overrides (or ``tiny`` given here, for a
    variant whose keys differ), built as ``avskit run`` builds it."""
    from avsbench_kit.runs.run import RunRequest, build_model, check_weights, resolve_config

    from avsbench_kit.plugins import baseline_spec

    spec = baseline_spec(name)
    tiny = spec.tiny if tiny is None else tiny
    req = RunRequest.parse([f"baseline={name}", f"dataset={SYNTH_DATASET[task]}", *tiny, *overrides])
    cfg = resolve_config(req)
    check_weights(req, cfg)
    return build_model(req, cfg)


def synthetic_batch(model: Baseline, task: str, *, batch_size: int = 2, frames: int = 3, size: int = 48,
                    seed: int = 0) -> dict[str, Any]:
    """A reader-shaped batch for ``model``'s feature requests (random values, fixed seed)."""
    from avsbench_kit.features.base import build_encoder

    g = torch.Generator().manual_seed(seed)
    b, t = batch_size, frames
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = [[((yy - size // 3 - 3 * k - 5 * i) ** 2 + (xx - size // 2) ** 2 < (size // 4) ** 2)
             for k in range(t)] for i in range(b)]
    masks = torch.stack([torch.stack(row) for row in disc]).float()
    if task == "avss":
        masks = masks * torch.tensor([1.0, 3.0]).view(b, 1, 1, 1)  # two classes besides background
    batch: dict[str, Any] = {"key": [f"clip{i}" for i in range(b)], "masks": masks,
                             "annotated": torch.ones(b, t, dtype=torch.bool),
                             "is_null": torch.zeros(b, dtype=torch.bool), "features": {}}
    if task == "s4":
        batch["annotated"][:, 1:] = False  # S4 train: the first frame only
    if task == "refavs":
        batch["is_null"][-1] = True
        batch["masks"][-1] = 0.0
    if getattr(model, "needs_frames", False):
        batch["frames"] = torch.rand(b, t, 3, size, size, generator=g)
    for request in model.feature_requests():
        enc = build_encoder(request.encoder, request.overrides)
        for field, spec in enc.output_spec().items():
            shape = [t if d == "T" else d for d in spec.shape]
            bad = [d for d in shape if not isinstance(d, int)]
            if bad:
                raise AssertionError(f"{request.encoder} field {field} has unresolved dims {bad}: make the "
                                     "baseline's tiny config give concrete widths")
            if spec.dtype == "bool":
                value = torch.ones(b, *shape, dtype=torch.bool)
                if value.dim() > 1:
                    value[..., shape[-1] // 2:] = False
            else:
                value = torch.randn(b, *shape, generator=g)
            if spec.role == "primary":
                batch["features"][request.label] = value
            elif spec.role == "level":
                batch["features"].setdefault(request.label, {})[field] = value
            else:
                batch["features"][f"{request.label}_{spec.role}"] = value
    return batch


def _trainable_ids(model: Baseline) -> set[int]:
    return {id(p) for p in model.trainable_parameters()}


def check_baseline(name: str, task: str, *overrides: str, tiny: tuple[str, ...] | None = None) -> None:
    """Every clause of the contract for baseline ``name`` on ``task`` (AssertionError on a breach);
    ``overrides`` (key=value, after the tiny ones; ``tiny`` replaces the spec's) check a variant."""
    from avsbench_kit.plugins import baseline_spec
    from avsbench_kit.runs.trainer import _param_groups, load_trainable_state, trainable_state

    spec = baseline_spec(name)
    model = build(name, task, *overrides, tiny=tiny)
    batch = synthetic_batch(model, task)
    b, t = batch["masks"].shape[:2]
    # output shapes
    model.eval()
    with torch.no_grad():
        out = model(copy.deepcopy(batch))
    assert isinstance(out, BaselineOutput), f"{name}.forward must return BaselineOutput, got {type(out).__name__}"
    semantic = task == "avss" and "semantic" in spec.outputs
    lead = 3 if semantic else 2
    assert out.logits.shape[:2] == (b, t) and out.logits.dim() == lead + 2, \
        f"{name}: logits {tuple(out.logits.shape)} on {task}, expected [B,T,{'C,' if semantic else ''}H,W]"
    assert tuple(out.logits.shape[-2:]) in (tuple(model.output_size), tuple(batch["masks"].shape[-2:]))
    assert torch.isfinite(out.logits).all(), f"{name}: non-finite logits"
    # same seed => same output
    twin = build(name, task, *overrides, tiny=tiny)
    twin.eval()
    with torch.no_grad():
        assert torch.equal(twin(copy.deepcopy(batch)).logits, out.logits), f"{name}: same seed, different output"
    # describe()
    info = model.describe()
    missing = [k for k in DESCRIBE_KEYS if k not in info]
    assert not missing, f"{name}.describe() lacks {missing}"
    assert sum(m["trainable"] for m in info["modules"].values()) == info["parameters"]["trainable"]
    assert set(info["modalities"]) <= set(spec.modalities)
    # input switches drop the matching feature caches
    from avsbench_kit.features.base import build_encoder

    for modality in ("audio", "text"):
        if modality not in spec.modalities:
            continue
        off = build(name, task, f"{modality}=off")
        assert modality not in off.modalities(), f"{name}: {modality}=off but modalities() = {off.modalities()}"
        read = [r.encoder for r in off.feature_requests() if build_encoder(r.encoder, r.overrides).modality == modality]
        assert not read, f"{name}: {modality}=off still requests {read}"
    if not spec.trains:
        assert not model.trainable_parameters(), f"{name} trains nothing but has trainable parameters"
        return
    # loss dict, gradients only on trainable parameters, frozen parameters unchanged by a step
    groups = _param_groups(model)
    grouped = {id(p) for g in groups for p in g.params}
    assert grouped == _trainable_ids(model), f"{name}: param_groups() must partition trainable_parameters()"
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in grouped}
    model.train()
    out = model(copy.deepcopy(batch))
    losses = model.loss(out, batch)
    assert isinstance(losses, dict) and "total" in losses, f"{name}.loss must return a dict with 'total'"
    assert all(v.dim() == 0 for v in losses.values()), f"{name}: loss components must be scalars"
    assert torch.isfinite(losses["total"]), f"{name}: loss {losses['total']}"
    losses["total"].backward()
    named = dict(model.named_parameters())
    stray = [n for n, p in named.items() if p.grad is not None and id(p) not in grouped]
    assert not stray, f"{name}: gradients reach frozen parameters {stray[:3]}"
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for g in groups for p in g.params), \
        f"{name}: no trainable parameter received a gradient"
    opt = torch.optim.AdamW([{"params": g.params} for g in groups], lr=1e-3)
    opt.step()
    changed = [n for n, v in frozen.items() if not torch.equal(named[n].detach(), v)]
    assert not changed, f"{name}: frozen parameters changed after a step: {changed[:3]}"
    # checkpoint round trip: the trained state restores the same predictions in a fresh model
    model.eval()
    with torch.no_grad():
        trained = model(copy.deepcopy(batch)).logits
    state = trainable_state(model, [p for g in groups for p in g.params])
    fresh = build(name, task, *overrides, tiny=tiny)
    load_trainable_state(fresh, state)
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(copy.deepcopy(batch)).logits, trained), f"{name}: checkpoint round trip differs"
