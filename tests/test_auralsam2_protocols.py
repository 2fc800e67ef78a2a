"""AuralSAM2's own evaluation as named protocols: they differ from the official ones exactly as
documented (1024² scoring with nearest-resized GT; Ref-AVS null S without the square root)."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from avsbench_kit.metrics.evaluator import Evaluator
from avsbench_kit.metrics.protocols import default_protocols, get_protocol
from avsbench_kit.runs.scoring import score

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registered_beside_not_instead_of_the_official_ones() -> None:
    a, r = get_protocol("avsbench-auralsam2-v1"), get_protocol("refavs-auralsam2-v1")
    assert not a.official and not r.official
    assert a.resolution == (1024, 1024) and a.gt_resize == "nearest" and a.s_sqrt
    assert r.resolution == get_protocol("refavs-v1").resolution and not r.s_sqrt
    assert a.batch_size == get_protocol("avsbench-v1").batch_size
    assert r.j_logit_threshold == get_protocol("refavs-v1").j_logit_threshold
    assert "avsbench-auralsam2-v1" not in default_protocols("ms3")  # opt-in only
    assert "refavs-auralsam2-v1" not in default_protocols("refavs")


def _null_batch(fractions: list[float]) -> list[torch.Tensor]:
    """One logit map [10, 16, 16] per expression whose foreground fraction is exact."""
    out = []
    for frac in fractions:
        x = torch.full((10, 16 * 16), -5.0)
        x[:, : int(frac * 256)] = 5.0
        out.append(x.view(10, 16, 16))
    return out


def test_null_s_is_the_fraction_without_sqrt() -> None:
    fractions = [0.25, 0.5, 0.0, 0.25, 1.0, 0.0, 0.0, 0.0]  # two official batches of 4 expressions
    ev = Evaluator(["refavs-v1", "refavs-auralsam2-v1"], "test_n")
    for i, x in enumerate(_null_batch(fractions)):
        ev.update(str(i), x, torch.zeros(10, 16, 16))
    m = ev.compute().metrics
    batch_fracs = [sum(fractions[:4]) / 4, sum(fractions[4:]) / 4]  # 0.25, 0.25
    assert m["refavs-auralsam2-v1"]["S"] == pytest.approx(sum(batch_fracs) / 2, abs=1e-7)
    assert m["refavs-v1"]["S"] == pytest.approx(sum(f ** 0.5 for f in batch_fracs) / 2, abs=1e-7)
    assert m["refavs-v1"]["S"] == pytest.approx(0.5) and m["refavs-auralsam2-v1"]["S"] == pytest.approx(0.25)


def test_refavs_j_f_identical_off_the_null_split() -> None:
    g = torch.Generator().manual_seed(0)
    ev = Evaluator(["refavs-v1", "refavs-auralsam2-v1"], "test_s")
    for i in range(6):
        gt = torch.zeros(10, 16, 16)
        gt[:, 3:9, 4:12] = 1
        ev.update(str(i), torch.randn(10, 16, 16, generator=g) * 3 + 2 * gt, gt)
    m = ev.compute().metrics
    assert m["refavs-v1"] == m["refavs-auralsam2-v1"]


class _Manifest:
    dataset = "synth-ms3"

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def rows(self, split: str) -> list[dict]:
        return [{"sample_key": k, "is_null": False} for k in self.keys]


def _thin_object_batch() -> dict:
    """224² GT with thin structures and logits with soft borders: resizing changes the counts."""
    gt = torch.zeros(2, 5, 224, 224)
    gt[:, :, 50:53, 20:200] = 1  # 3-px bar
    gt[:, :, 100:160, 100:160] = 1
    yy, xx = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    logits = (6.0 - ((yy - 130) ** 2 + (xx - 128) ** 2).sqrt() / 5.0).expand(2, 5, 224, 224).clone()
    logits[:, 1:, 49:54, 20:200] = 3.0
    return {"key": ["c0", "c1"], "masks": gt, "annotated": torch.ones(2, 5, dtype=torch.bool)}, logits


def test_avsbench_auralsam2_is_avsbench_v1_at_1024_with_nearest_gt() -> None:
    batch, logits = _thin_object_batch()
    manifest = _Manifest(batch["key"])
    official = score([(batch, logits)], manifest, "test", ["avsbench-v1"]).metrics["avsbench-v1"]
    paper = score([(batch, logits)], manifest, "test", ["avsbench-auralsam2-v1"]).metrics["avsbench-auralsam2-v1"]
    # by hand: bilinear logits and nearest GT at 1024², then the official computation
    ev = Evaluator(["avsbench-v1"], "test")
    up = F.interpolate(logits.flatten(0, 1)[:, None], size=(1024, 1024), mode="bilinear",
                       align_corners=False).view(2, 5, 1024, 1024)
    gt = F.interpolate(batch["masks"].flatten(0, 1)[:, None], size=(1024, 1024),
                       mode="nearest").view(2, 5, 1024, 1024)
    for i, key in enumerate(batch["key"]):
        ev.update(key, up[i], gt[i])
    assert paper == ev.compute().metrics["avsbench-v1"]
    assert paper["mIoU"] != official["mIoU"]  # the resolution alone moves the number


def test_reported_auralsam2_numbers_live_in_their_protocols_table() -> None:
    from avsbench_kit.leaderboard.build import REPORTED, build_tables
    from avsbench_kit.leaderboard.published import load_published, protocol_for

    assert protocol_for("AuralSAM2", "avsbench-ms3", "J&F") == "avsbench-auralsam2-v1"
    assert protocol_for("AuralSAM2", "refavs", "S") == "refavs-auralsam2-v1"
    assert protocol_for("AuralSAM2", "avsbench-ms3", "claim:fps_drop_with_visual_prompts") == "paper (relative claim)"
    tables = [t for t in build_tables([], load_published()) if t.dataset == "avsbench-ms3"]
    own = [t for t in tables if t.reported_under == "avsbench-auralsam2-v1"]
    assert len(own) == 1 and own[0].protocol == REPORTED
    assert [r.method for r in own[0].rows] == ["AuralSAM2"]
    assert "avsbench-auralsam2-v1" in own[0].title
    general = [t for t in tables if t.protocol == REPORTED and not t.reported_under]
    assert general and all(r.method != "AuralSAM2" for t in general for r in t.rows)
