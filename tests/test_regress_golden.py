"""The CI regression gate: short deterministic SynthAVS runs gated against
``leaderboards/golden/ci-*.json`` with ``avskit regress --strict``.

Gated: S4 (``av2t``, ``probe-clip-only``), MS3 (``av2t``; test scored in batches of 2, so the
official per-batch aggregation differs from the clip-level one, and MS3 has frames with empty
GT), Ref-AVS (``tiny-seg``: J, F on test_s/test_u/Mix = ``test_mix``, S on the null split) and
AVSS (``tiny-seg``: ``avss-v1`` and the class-agnostic binary view).

``--strict`` fails on a difference beyond tolerance in *either* direction, so a change that
inflates a metric cannot land unnoticed. Runs are pinned to one torch intra-op thread
(``one_torch_thread``): reductions split over threads add in another order, so the thread count
can move the last bits of a metric.

To refresh the goldens after an intended change (new SynthAVS generator, new encoder code, a
better baseline), from a clean tree:  ``make goldens``  (= ``AVSKIT_UPDATE_GOLDENS=1
.venv/bin/python -m pytest tests/test_regress_golden.py``), then commit the JSON files (they
record the run, config, fingerprints, toolkit version, git SHA).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_baseline import register_tiny

from avsbench_kit.cli.main import main
from avsbench_kit.runs.run import RunRequest, execute

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "leaderboards" / "golden"
#: a tiny SynthAVS (seed 0): S4 8/4/4 clips, MS3 4/4/4, Ref-AVS 4 per split + nulls, AVSS 2+1+1 per split
CI_SYNTH = ["s4.clips.train=8", "s4.clips.val=4", "s4.clips.test=4", "ms3.clips.train=4", "ms3.clips.val=4",
            "ms3.clips.test=4", "refavs.clips.train=4", "refavs.clips.val=4", "refavs.clips.test_s=4",
            "refavs.clips.test_u=4", "refavs.nulls.train=1", "refavs.nulls.val=1", "refavs.nulls.test_n=2"] + [
    f"avss.clips.{sub}.{split}={n}" for sub, n in (("v1s", 2), ("v1m", 1), ("v2", 1)) for split in ("train", "val", "test")]
#: the short deterministic run the goldens come from (3 epochs, seed 0)
CI_RUN = ["seed=0", "train.epochs=3", "train.batch_size=4", "train.val_every=1", "resume=false"]
TINY = ["baseline=tiny-seg", "config=default", "train.epochs=2", "train.batch_size=2"]
#: golden name -> the run's arguments
GATED = {
    "ci-synth-s4-av2t": ["baseline=av2t", "dataset=synth-s4", "config=cpu-small", *CI_RUN],
    "ci-synth-s4-probe-clip-only": ["baseline=probe-clip-only", "dataset=synth-s4", "config=cpu-small", *CI_RUN],
    "ci-synth-ms3-av2t": ["baseline=av2t", "dataset=synth-ms3", "config=cpu-small", *CI_RUN,
                          "train.eval_batch_size=2"],
    "ci-synth-refavs-tiny-seg": ["dataset=synth-refavs", "seed=0", "resume=false", *TINY],
    "ci-synth-avss-tiny-seg": ["dataset=synth-avss", "seed=0", "resume=false", *TINY],
}
#: Tolerance of every gated metric (absolute, on fractions). Measured: the S4 av2t gate run with
#: the same seed twice in one process gave bit-identical metrics, and equal to the golden recorded
#: with 2 torch threads (so CPU training and evaluation here are deterministic, not just close).
#: 1e-5 leaves room only for float32 rounding of a different BLAS/SIMD kernel on another CPU
#: (~1e-6 on a mean of ~0.4) and catches any change of the model, data or metric code that moves
#: a metric by 1e-5 (about one pixel in 100 frames of 224x224), up or down.
GATE_TOLERANCE = 1e-5
UPDATE = os.environ.get("AVSKIT_UPDATE_GOLDENS") == "1"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ci_home(tmp_path_factory) -> Path:
    from synth_home import synth_home

    home = synth_home(tmp_path_factory.mktemp("ci-home"), ("synth-s4", "synth-ms3", "synth-refavs", "synth-avss"),
                      CI_SYNTH)
    register_tiny()
    return home


_RUNS: dict[str, object] = {}


def gated_run(name: str, home: Path):
    """The gated run of golden ``name`` (once per module: the perturbation test reuses it)."""
    if name not in _RUNS:
        record = execute(RunRequest.parse(GATED[name]), home, progress=False, say=lambda m: None)
        assert record.status == "complete"
        _RUNS[name] = record
    return _RUNS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GATED))
def test_short_synth_run_matches_golden(ci_home, name, capsys):
    golden = GOLDEN_DIR / f"{name}.json"
    if not golden.is_file() and not UPDATE:
        pytest.fail(f"{golden} is missing: create it with `make goldens` (see the module docstring)")
    record = gated_run(name, ci_home)
    args = ["regress", "--golden", str(golden), record.run_id, "--home", str(ci_home)]
    code = main(args + (["--update", "--tolerance", str(GATE_TOLERANCE)] if UPDATE else ["--strict"]))
    out = capsys.readouterr()
    assert code == 0, out.out + out.err


@pytest.mark.slow
@pytest.mark.parametrize("sign", [+1, -1], ids=["inflated", "deflated"])
def test_a_biased_iou_kernel_fails_the_gate(ci_home, sign, monkeypatch, capsys):
    """Acceptance: bias the per-frame IoU kernel (``iou_from_counts``) by 3 tolerances (a few hundred float32 ulps of a
    ~0.2 IoU) up or down; re-evaluating the gated checkpoint must fail ``--strict``, while the
    unbiased re-evaluation passes (so the failure is the bias, not the re-evaluation)."""
    from avsbench_kit.metrics import functional as Fn

    if UPDATE:
        pytest.skip("regenerating goldens")
    name = "ci-synth-s4-av2t"
    golden = GOLDEN_DIR / f"{name}.json"
    trained = gated_run(name, ci_home)

    def reevaluate():
        rec = execute(RunRequest.parse([*GATED[name], "mode=eval", f"from={trained.run_id}"]), ci_home,
                      progress=False, say=lambda m: None)
        # an eval-only run has its own config hash: compare the numbers, not the provenance
        return main(["regress", "--golden", str(golden), rec.run_id, "--strict", "--ignore-provenance",
                     "--home", str(ci_home)])

    assert reevaluate() == 0
    kernel = Fn.iou_from_counts  # every binary IoU (mIoU, J) goes through it
    monkeypatch.setattr(Fn, "iou_from_counts", lambda *a, **k: kernel(*a, **k) + sign * 3 * GATE_TOLERANCE)
    assert reevaluate() == 1
    err = capsys.readouterr().err
    assert "test/avsbench-v1/mIoU (" + ("improved" if sign > 0 else "regressed") + ")" in err


#: the gated probe result: audio reliance (relative drop of J under shuffled audio, probe seed = the
#: run's seed 0, default parameters) of the gated S4 av2t run on test. Its golden holds the run's
#: metrics and ``probes/test/reliance``, with the same GATE_TOLERANCE: the clean and the
#: shuffled-audio passes are the same deterministic CPU evaluation as the metrics, and
#: reliance = (J_clean - J_probe) / J_clean with J_clean = 0.17 here scales a rounding difference of
#: the J values by ~6 (still ~1e-6 at most), while a J shift of 3e-5 under the probe moves it by
#: ~1.8e-4 (caught: test_a_biased_probe_fails_the_gate).
PROBE_GOLDEN = "ci-synth-s4-av2t-probe"
PROBE_ARGS = ["-p", "audio-shuffled", "--split", "test"]


def probed_run(home: Path):
    record = gated_run("ci-synth-s4-av2t", home)
    assert main(["probe", record.run_id, *PROBE_ARGS, "--home", str(home)]) == 0
    return record


@pytest.mark.slow
def test_probe_result_matches_golden(ci_home, capsys):
    golden = GOLDEN_DIR / f"{PROBE_GOLDEN}.json"
    if not golden.is_file() and not UPDATE:
        pytest.fail(f"{golden} is missing: create it with `make goldens` (see the module docstring)")
    record = probed_run(ci_home)
    args = ["regress", "--golden", str(golden), record.run_id, "--home", str(ci_home)]
    code = main(args + (["--update", "--tolerance", str(GATE_TOLERANCE)] if UPDATE else ["--strict"]))
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    import json

    assert "probes/test/reliance" in json.loads(golden.read_text())["metrics"]
    # the metric-only golden of the same run must not hold probe figures (its bias test re-evaluates
    # with mode=eval, which has none): it is recorded before the probe runs
    assert not [k for k in json.loads((GOLDEN_DIR / "ci-synth-s4-av2t.json").read_text())["metrics"]
                if k.startswith("probes/")]


@pytest.mark.slow
def test_a_biased_probe_fails_the_gate(ci_home, monkeypatch, capsys):
    """Lower every per-sample J of the shuffled-audio pass by 3 tolerances: the reliance moves up and
    ``--strict`` fails on ``probes/test/reliance``; the unbiased probe passes again."""
    import numpy as np

    from avsbench_kit.probes import record as probe_record

    if UPDATE:
        pytest.skip("regenerating goldens")
    golden = str(GOLDEN_DIR / f"{PROBE_GOLDEN}.json")
    real = probe_record.relative_drop
    monkeypatch.setattr(probe_record, "relative_drop",
                        lambda clean, probe, seed, **k: real(clean, np.asarray(probe) - 3 * GATE_TOLERANCE, seed, **k))
    record = probed_run(ci_home)
    assert main(["regress", "--golden", golden, record.run_id, "--strict", "--home", str(ci_home)]) == 1
    assert "probes/test/reliance (improved)" in capsys.readouterr().err
    monkeypatch.undo()
    probed_run(ci_home)
    assert main(["regress", "--golden", golden, record.run_id, "--strict", "--home", str(ci_home)]) == 0
