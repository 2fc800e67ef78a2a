"""The one conformance test: every registered baseline, on every task it declares (that has a
SynthAVS dataset), fulfils the contract of baselines/base.py (see baselines/conformance.py)."""

from __future__ import annotations

import pytest
import torch

from avsbench_kit.data.datasets import DATASETS
from avsbench_kit.errors import ConfigError
from avsbench_kit.plugins import BASELINES, load_plugins
from baselines.base import BaselineOutput
from baselines.conformance import SYNTH_DATASET, build, check_baseline, synthetic_batch
from tiny_baseline import register_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cases() -> list[tuple[str, str]]:
    load_plugins()
    register_tiny()
    return [(name, task) for name in BASELINES.names() for task in BASELINES.spec(name).tasks
            if SYNTH_DATASET[task] in DATASETS]


@pytest.mark.parametrize("name,task", _cases())
def test_baseline_fulfils_the_contract(name: str, task: str) -> None:
    check_baseline(name, task)


#: variants of a registered baseline selected by config keys, checked like the registered ones
_BEIT3_TINY = ("text_encoder.kind=beit3", "text_encoder.beit3.size=base", "text_encoder.beit3.layers=1",
               "text_encoder.beit3.hidden=32", "text_encoder.beit3.heads=4", "text_encoder.beit3.ffn_dim=48",
               "text_encoder.beit3.img_size=32")
VARIANTS = {
    "av2t-beit3": ("av2t", _BEIT3_TINY),
    "av2t-beit3-adapters": ("av2t", _BEIT3_TINY + ("adapters=true",)),
    # the paper presets' key sets at tiny sizes (the same keys, so unread keys are still caught)
    "av2t-paper": ("av2t", ("config=paper", "require_weights=false", "image_size=64",
                            "sam2.config=sam2.1_hiera_t") + _BEIT3_TINY[1:]),
    "av2t-paper-noadapter": ("av2t", ("config=paper-noadapter", "require_weights=false", "image_size=64",
                                      "sam2.config=sam2.1_hiera_t") + _BEIT3_TINY[1:]),
    # the SAM1 (EVF-SAM) path: a random 4-block SAM ViT from config, on frames
    "av2t-sam1": ("av2t", ("sam.backbone=sam1",)),
    "av2t-sam1-adapters": ("av2t", ("sam.backbone=sam1", "adapters=true")),
    "av2t-sam1-beit3": ("av2t", ("sam.backbone=sam1",) + _BEIT3_TINY),
    "av2t-paper-sam1": ("av2t", ("config=paper-sam1", "require_weights=false", "image_size=64",
                                 "sam1.size=small") + _BEIT3_TINY[1:]),
    "av2t-paper-sam1-noadapter": ("av2t", ("config=paper-sam1-noadapter", "require_weights=false",
                                           "image_size=64", "sam1.size=small") + _BEIT3_TINY[1:]),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_fulfils_the_contract(variant: str) -> None:
    load_plugins()
    name, overrides = VARIANTS[variant]
    tiny = tuple(o for o in BASELINES.spec(name).tiny if not o.startswith("text_encoder."))
    check_baseline(name, "s4", *overrides, tiny=tiny)


def test_every_shipped_baseline_and_the_tiny_one_are_checked() -> None:
    names = {n for n, _ in _cases()}
    assert {"av2t", "probe-clip-only", "empty", "full", "gt", "tiny-seg"} <= names


def test_the_checks_can_fail() -> None:
    """A baseline that lets gradients reach a frozen part, or returns a bare tensor, is caught."""
    from baselines.base import ParamGroup
    from tiny_baseline import TinySeg

    class Leaky(TinySeg):
        def trainable_parameters(self):
            return [self.bias]  # claims `read` is frozen, yet the loss trains it

        def param_groups(self):
            return [ParamGroup("bias", [self.bias])]

    class Bare(TinySeg):
        def forward(self, batch):
            return super().forward(batch).logits

    for cls, message in ((Leaky, "gradients reach frozen"), (Bare, "must return BaselineOutput")):
        BASELINES._entries["tiny-seg"].target = cls
        try:
            with pytest.raises(AssertionError, match=message):
                check_baseline("tiny-seg", "s4")
        finally:
            BASELINES._entries["tiny-seg"].target = TinySeg


def test_unread_preset_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="text_encoder.beit3.checkpoint.*no effect"):
        build("av2t", "s4", "text_encoder.beit3.checkpoint=/w/evf")  # kind=transformer: another variant's key


def test_reference_predictors_answer_from_the_ground_truth() -> None:
    gt = build("gt", "s4")
    batch = synthetic_batch(gt, "s4")
    out = gt(batch)
    assert isinstance(out, BaselineOutput)
    assert torch.equal(out.logits > 0, batch["masks"] > 0.5)
    assert (build("empty", "s4")(batch).logits < 0).all() and (build("full", "s4")(batch).logits > 0).all()
