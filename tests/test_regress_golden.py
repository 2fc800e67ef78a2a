"""The CI regression gate: a short deterministic SynthAVS run of `av2t` and `probe-clip-only`,
gated against ``leaderboards/golden/ci-synth-s4-*.json``.

The gate is ``avskit regress --strict``: a difference beyond tolerance in *either* direction
fails, so a change that inflates a metric cannot land unnoticed. Runs are pinned to one torch
intra-op thread (``one_torch_thread``): reductions split over threads sum in another order, so
the thread count can move the last bits of a metric.

To refresh the goldens after an intended change (new SynthAVS generator, new encoder code, a
better baseline), from a clean tree:  ``make goldens``  (= ``AVSKIT_UPDATE_GOLDENS=1
.venv/bin/python -m pytest tests/test_regress_golden.py``), then commit the JSON files (they
record the run, config, fingerprints, toolkit version, git SHA; tolerances are kept).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avsbench_kit.cli.main import main
from avsbench_kit.runs.run import RunRequest, execute

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "leaderboards" / "golden"
#: a tiny SynthAVS S4 (8 train / 4 val / 4 test clips), seed 0
CI_SYNTH = ["s4.clips.train=8", "s4.clips.val=4", "s4.clips.test=4", "ms3.clips.train=4", "ms3.clips.val=4",
            "ms3.clips.test=4", "refavs.clips.train=4", "refavs.clips.val=4", "refavs.clips.test_s=4",
            "refavs.clips.test_u=4", "refavs.nulls.train=1", "refavs.nulls.val=1", "refavs.nulls.test_n=2"]
#: the short deterministic run the goldens come from (cpu-small, 3 epochs, seed 0)
CI_RUN = ["dataset=synth-s4", "config=cpu-small", "seed=0", "train.epochs=3", "train.batch_size=4",
          "train.val_every=1", "resume=false"]
UPDATE = os.environ.get("AVSKIT_UPDATE_GOLDENS") == "1"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ci_home(tmp_path_factory) -> Path:
    from avsbench_kit.data.prepare import prepare
    from avsbench_kit.data.synth import generate
    from avsbench_kit.home import synth_dir

    home = tmp_path_factory.mktemp("ci-home")
    generate(synth_dir("small", 0, home), seed=0, overrides=CI_SYNTH, progress=False)
    prepare("synth-s4", synth_dir("small", 0, home), home=home)
    return home


@pytest.mark.slow
@pytest.mark.parametrize("baseline", ["av2t", "probe-clip-only"])
def test_short_synth_run_matches_golden(ci_home, baseline, capsys):
    golden = GOLDEN_DIR / f"ci-synth-s4-{baseline}.json"
    if not golden.is_file() and not UPDATE:
        pytest.fail(f"{golden} is missing: create it with AVSKIT_UPDATE_GOLDENS=1 (see the module docstring)")
    record = execute(RunRequest.parse([f"baseline={baseline}", *CI_RUN]), ci_home, progress=False,
                     say=lambda m: None)
    assert record.status == "complete"
    args = ["regress", "--golden", str(golden), record.run_id, "--home", str(ci_home)]
    code = main(args + (["--update"] if UPDATE else ["--strict"]))
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
