"""A tiny contract-shaped baseline for every task, registered like a third-party plugin (its own
config loader, no packaged YAML): CLIP per frame (+ MiniLM expression tokens on Ref-AVS) -> logit
maps; on AVSS, class logits over the 71 AVSBench-semantic classes. Fast enough for end-to-end runs
in tests."""

from __future__ import annotations

import torch
from torch import nn

from avsbench_kit.baseline_spec import BaselineSpec
from avsbench_kit.errors import ConfigError
from avsbench_kit.plugins import BASELINES, load_plugins
from baselines.base import Baseline, BaselineOutput, decay_groups, feature_request, masks_at

TINY_CFG = {"name": "tiny-seg", "seed": 0, "output_size": 32, "width": 32, "text_width": 384, "grid": 8,
            "head_lr_mult": 1.0, "train": {"epochs": 3, "batch_size": 4, "lr": 0.05, "val_every": 1}}


class TinySeg(Baseline):
    """A learnt bias map + a linear read-out of the frame's CLIP feature (and of the expression)."""

    name = "tiny-seg"
    kill_after: int | None = None  # raise KeyboardInterrupt after this many training forwards
    hard_kill = False  # SIGKILL this process instead (a deterministic kill point for crash tests)
    calls = 0

    def __init__(self, cfg):
        super().__init__(cfg)
        cfg = self.cfg
        self.task = cfg.get("task", "s4")
        self.classes = int(cfg["num_classes"]) if self.task == "avss" else 1  # set by the run on AVSS
        grid = int(cfg["grid"]) if self.task == "avss" else None
        self.grid = grid
        size = (grid, grid) if grid else self.output_size
        self.bias = nn.Parameter(torch.zeros(self.classes, *size))
        self.read = nn.Linear(cfg["width"], self.classes * size[0] * size[1])
        self.head_lr_mult = float(cfg["head_lr_mult"])
        self.uses_text = self.task == "refavs" and self.inputs["text"]
        self.text = nn.Linear(int(cfg["text_width"]), self.classes * size[0] * size[1]) if self.uses_text else None
        if not self.uses_text:
            self.inactive("text_width")
        if not grid:
            self.inactive("grid")

    def feature_requests(self):
        return [feature_request("clip")] + ([feature_request("minilm")] if self.uses_text else [])

    def modalities(self):
        return ("image", "text") if self.uses_text else ("image",)  # text exists on Ref-AVS only

    def param_groups(self):
        return decay_groups([("bias", self.bias)], name="bias") + \
            decay_groups([(n, p) for n, p in self.named_parameters() if n != "bias"], name="heads",
                         lr_mult=self.head_lr_mult)

    def forward(self, batch):
        if self.training:
            TinySeg.calls += 1
            if TinySeg.kill_after is not None and TinySeg.calls > TinySeg.kill_after:
                if TinySeg.hard_kill:
                    import os
                    import signal

                    os.kill(os.getpid(), signal.SIGKILL)
                raise KeyboardInterrupt("simulated kill")
        x = batch["features"]["clip"]
        b, t, _ = x.shape
        y = self.read(x)
        if self.text is not None:
            tokens, mask = batch["features"]["minilm"], batch["features"]["minilm_mask"].float()
            pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            y = y + self.text(pooled)[:, None]
        size = (self.grid, self.grid) if self.grid else self.output_size
        maps = y.view(b, t, self.classes, *size) + self.bias
        if self.task != "avss":
            return BaselineOutput(maps[:, :, 0])
        up = nn.functional.interpolate(maps.flatten(0, 1), size=self.output_size, mode="bilinear",
                                       align_corners=False)
        return BaselineOutput(up.view(b, t, self.classes, *self.output_size))

    def loss(self, out, batch):
        ann = batch["annotated"].bool()
        if self.task == "avss":
            target = masks_at(batch["masks"], self.output_size).long()
            ce = nn.functional.cross_entropy(out.logits[ann], target[ann])
            return {"total": ce, "ce": ce}
        target = masks_at(batch["masks"], tuple(out.logits.shape[-2:]))
        bce = nn.functional.binary_cross_entropy_with_logits(out.logits[ann], target[ann])
        return {"total": bce, "bce": bce, "mean_logit": out.logits.detach().mean()}


def tiny_config(name, preset, overrides):
    from avsbench_kit.config import apply_overrides

    if preset != "default":
        raise ConfigError(f"no preset {preset!r}")
    return apply_overrides(TINY_CFG, list(overrides))


def register_tiny() -> None:
    load_plugins()
    if "tiny-seg" not in BASELINES:
        BASELINES.add_spec(BaselineSpec("tiny-seg", "tiny_baseline:TinySeg", tasks=("s4", "ms3", "refavs", "avss"),
                                        modalities=("image", "text"), paper="test fixture", presets=("default",),
                                        default_preset="default", outputs=("semantic", "binary")),
                           TinySeg, config_loader=tiny_config)
