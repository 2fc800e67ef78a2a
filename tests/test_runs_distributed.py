"""`avskit run` under `torchrun` with two gloo processes: rank 0 writes, both train, and a run whose
rank 0 is SIGKILLed mid-training resumes to exactly the metrics of an uninterrupted 2-process run.

Run as a script under torchrun it is the worker: ``tests/test_runs_distributed.py HOME [KILL_AFTER]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN = ["baseline=tiny-seg", "config=default", "dataset=synth-s4", "train.epochs=3", "train.batch_size=2",
       "seed=7", "train.checkpoint_every=1"]


def _torchrun(home: Path, *extra: str, port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           __file__, str(home), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    from synth_home import synth_home

    return synth_home(tmp_path_factory.mktemp("dist-home"))


def _records(home: Path) -> dict[str, dict]:
    root = home / "runs"
    return {p.name: json.loads((p / "record.json").read_text()) for p in root.iterdir()
            if not p.name.startswith(".")} if root.is_dir() else {}  # runs/.locks holds the run locks


@pytest.mark.slow
def test_two_process_run_and_its_resume_after_sigkill(home):
    done = _torchrun(home, "resume=false", port=29541)
    assert done.returncode == 0, done.stderr[-3000:]
    (reference,) = [r for r in _records(home).values() if r["status"] == "complete"]
    assert reference["hardware"]["world_size"] == 2 and reference["hardware"]["device"] == "cpu"

    killed = _torchrun(home, "resume=false", "--kill-after", "3", port=29542)  # rank 0 dies in epoch 2
    assert killed.returncode != 0
    victims = [rid for rid, r in _records(home).items() if r["status"] == "running"]
    assert len(victims) == 1, _records(home)
    resumed = _torchrun(home, port=29543)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = _records(home)[victims[0]]
    assert record["status"] == "complete" and record["training"]["resumed_from"] is not None
    assert record["metrics"] == reference["metrics"]
    assert record["training"]["epoch_losses"] == reference["training"]["epoch_losses"]


def _worker(home: Path, args: list[str]) -> None:
    from avsbench_kit.runs.run import RunRequest, execute
    from tiny_baseline import TinySeg, register_tiny

    if "--kill-after" in args:
        i = args.index("--kill-after")
        if int(os.environ.get("RANK", "0")) == 0:
            TinySeg.kill_after, TinySeg.hard_kill = int(args[i + 1]), True
        args = args[:i] + args[i + 2:]
    register_tiny()
    execute(RunRequest.parse(RUN + args), home, progress=False, say=lambda m: None)


if __name__ == "__main__":  # torchrun entry
    _worker(Path(sys.argv[1]), sys.argv[2:])
