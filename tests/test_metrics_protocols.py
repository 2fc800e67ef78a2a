"""Protocol registry, and batch (in)dependence: official max-F depends on which clips share a
batch, the -clip-v1 variants do not."""

from __future__ import annotations

import random

import pytest
import torch

import official_reference as R
from avsbench_kit.cli.main import main
from avsbench_kit.errors import ConfigError, RegistryError
from avsbench_kit.metrics.evaluator import Evaluator
from avsbench_kit.metrics.protocols import PROTOCOLS, default_protocols, get_protocol


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registry_contents() -> None:
    names = PROTOCOLS.names()
    for name in ("avsbench-v1", "avsbench-clip-v1", "refavs-v1", "refavs-clip-v1", "avss-v1"):
        assert name in names
        p = get_protocol(name)
        assert p.version and p.description and p.quirks
        assert PROTOCOLS.meta(name)["version"] == p.version
        assert p.official == (not name.endswith("-clip-v1"))
    assert get_protocol("avsbench-v1").batch_size == 4
    assert get_protocol("refavs-v1").resolution == (256, 256)
    assert get_protocol("avss-v1").pad_frames_to == 10
    assert default_protocols("s4") == ["avsbench-v1", "avsbench-clip-v1"]
    assert default_protocols("avss") == ["avss-v1"]
    with pytest.raises(RegistryError) as err:
        get_protocol("avsbench-v2")
    assert "avsbench-v1" in (err.value.hint or "")
    with pytest.raises(ConfigError):
        get_protocol("refavs-v1").check_task("avsbench-s4", "s4")


def test_metrics_per_split() -> None:
    p = get_protocol("refavs-v1")
    assert p.metrics("test_s") == ("J", "F", "J&F")
    assert p.metrics("test_n") == ("S",)
    assert p.metrics("val", null_split=True) == ("S",)
    assert get_protocol("avss-v1").metrics("test") == ("mIoU", "F", "mIoU_noBg", "F_noBg")


def test_ls_protocols(capsys) -> None:
    assert main(["ls", "protocols"]) == 0
    out = capsys.readouterr().out
    for name in PROTOCOLS.names():
        assert name in out


def clips_with_different_best_thresholds():
    """Clips whose best F thresholds differ: low-confidence objects vs confident false positives."""
    g = torch.Generator().manual_seed(0)
    preds, gts = [], []
    for i in range(8):
        gt = torch.zeros(5, 16, 16)
        gt[:, 4:12, 4:12] = 1
        if i >= 4:  # objects found with low logits, background clean
            x = torch.where(gt > 0, -1.0, -6.0)
        else:  # objects confident, plus confident clutter
            x = torch.where(gt > 0, 6.0, -6.0)
            x[:, :3, :] = 4.0
        preds.append(x + 0.1 * torch.randn(5, 16, 16, generator=g))
        gts.append(gt)
    return preds, gts


def metrics(protocols, preds, gts):
    ev = Evaluator(protocols, "test")
    for i, (x, g) in enumerate(zip(preds, gts)):
        ev.update(str(i), x, g)
    return ev.compute().metrics


def test_official_f_depends_on_batches() -> None:
    preds, gts = clips_with_different_best_thresholds()
    official = metrics("avsbench-v1", preds, gts)["avsbench-v1"]["F"]
    assert official == R.avsbench_test(preds, gts, batch_size=4)[1]
    one_call = R.eval_fmeasure(torch.cat(preds), torch.cat(gts))
    assert abs(official - one_call) > 1e-3  # batch-level max-F != dataset-level max-F
    # grouping like clips together changes the official number too
    order = [0, 4, 1, 5, 2, 6, 3, 7]  # mixed batches
    regrouped = metrics("avsbench-v1", [preds[i] for i in order], [gts[i] for i in order])["avsbench-v1"]["F"]
    assert abs(official - regrouped) > 1e-3
    assert regrouped == R.avsbench_test([preds[i] for i in order], [gts[i] for i in order])[1]


def test_clip_variants_ignore_batch_composition() -> None:
    preds, gts = clips_with_different_best_thresholds()
    base = metrics(["avsbench-clip-v1"], preds, gts)
    rng = random.Random(1)
    for _ in range(3):
        order = list(range(len(preds)))
        rng.shuffle(order)
        assert metrics(["avsbench-clip-v1"], [preds[i] for i in order], [gts[i] for i in order]) == base
    ev = Evaluator(["refavs-clip-v1"], "test_u")
    for i, (x, g) in enumerate(zip(preds, gts)):
        ev.update(str(i), x, g)
    ref_base = ev.compute().metrics
    ev = Evaluator(["refavs-clip-v1"], "test_u")
    for i in reversed(range(len(preds))):
        ev.update(str(i), preds[i], gts[i])
    assert ev.compute().metrics == ref_base
