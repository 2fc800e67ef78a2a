"""`empty`, `full` and `gt`: predictions made from the ground truth's shape (or content), with no
parameters, no features and no training — ordinary registered baselines, so a run, the scorer,
the leaderboard and the probes treat them like any other.

On AVSS, ``empty`` and ``gt`` answer with class logits (background everywhere / the GT's classes),
``full`` has no class to fill with and answers in the binary view only.
"""

from __future__ import annotations

from typing import Any

import torch

from baselines.base import Baseline, BaselineOutput


class ReferencePredictor(Baseline):
    """Constant or oracle logits at the GT's own resolution."""

    name = "reference"
    kinds = ("empty", "full", "gt")

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__(cfg)
        self.kind = str(self.cfg.get("name"))
        if self.kind not in self.kinds:
            raise ValueError(f"reference predictor {self.kind!r} is not one of {self.kinds}")
        self.logit = float(self.cfg.get("logit", 20.0))
        self.semantic = self.cfg.get("task") == "avss" and self.kind != "full"
        self.register_buffer("_device_anchor", torch.zeros(()), persistent=False)

    def feature_requests(self) -> list:
        return []

    def forward(self, batch: dict) -> BaselineOutput:
        masks = batch["masks"].to(self._device_anchor.device)
        if self.kind == "full":
            return BaselineOutput(torch.full_like(masks, self.logit, dtype=torch.float32))
        if self.kind == "empty":
            fg = torch.zeros_like(masks, dtype=torch.bool)
        else:
            fg = masks > 0.5
        if self.semantic:  # class logits [B,T,C,H,W]: +logit on the answer's class, -logit elsewhere
            labels = masks.long() if self.kind == "gt" else torch.zeros_like(masks, dtype=torch.long)
            onehot = torch.nn.functional.one_hot(labels, int(labels.max()) + 1).movedim(-1, 2).float()
            return BaselineOutput(onehot * 2 * self.logit - self.logit)
        return BaselineOutput(torch.where(fg, self.logit, -self.logit).float())

    def loss(self, out: BaselineOutput, batch: dict) -> dict[str, torch.Tensor]:
        zero = out.logits.sum() * 0.0
        return {"total": zero}

    def trainable_parameters(self) -> list:
        return []
