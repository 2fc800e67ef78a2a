"""Fault injection in CI: a short seeded subset of tests/fault_suite.py (``make faults`` runs all
of it), plus the faults that are not kills: a full disk while writing a feature shard or a
checkpoint, a read-only data home, two identical `avskit run` commands at once, and two
extraction workers given the same shard.

Each case is a regression test of a bug the suite found (see docs/reliability.md, "Fault
injection"): without its fix, the named test fails.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from pathlib import Path

import faults
import pytest
from fault_suite import SCENARIOS, Suite, cli

from avsbench_kit.verify import verify_home

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

#: the CI subset: one seeded commit kill per command, and the evaluate step of `avskit run`
SEED = 15


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Suite:
    return Suite(tmp_path_factory.mktemp("faults"))


def _ci_faults() -> list[tuple[str, str]]:
    rng = random.Random(SEED)
    # commit counts of the uninterrupted commands (checked by test_commit_counts_are_current)
    chosen = [(name, f"kill-{rng.choice(['before', 'after'])}:{rng.randint(1, COMMITS[name])}")
              for name in SCENARIOS]
    return chosen + [("run", "kill-at:" + SCENARIOS["run"].steps["evaluate"])]


COMMITS = {"prepare": 13, "features": 18, "eval": 5, "run": 32}


def test_commit_counts_are_current(suite):
    """The CI points are drawn from these counts; a change in how many writes a command makes must
    update them (otherwise a point may fall past the end and kill nothing)."""
    for name in SCENARIOS:
        suite.prepare(name)
    assert suite.commits == COMMITS, suite.commits


@pytest.mark.parametrize("scenario,fault", _ci_faults())
def test_a_kill_loses_nothing_and_the_rerun_is_identical(suite, scenario, fault):
    outcome = suite.inject(scenario, fault)
    assert outcome.killed, f"{fault} never fired"
    assert outcome.recovered, outcome.lost


def test_a_torn_write_is_caught(suite):
    """The checks can fail: a write that is not atomic (the file renamed into place, then cut in
    half by the kill) is reported as lost data."""
    outcome = suite.inject("features", "torn-after:3")  # 1 = cache.json, 2 = a shard, 3 = its sidecar
    assert outcome.killed and not outcome.recovered
    assert any("corrupt" in line or "differs" in line for line in outcome.lost), outcome.lost


# -- faults that are not kills (in this process: the fault raises, nothing dies) ------------------
def _with_fault(spec: str, args: list[str]) -> tuple[int, str]:
    faults.install(spec)
    try:
        return cli(args, check=False)
    finally:
        faults.uninstall()


@pytest.mark.parametrize("scenario,temp", [("features", 2), ("run", 3)], ids=["shard", "checkpoint"])
def test_disk_full_is_one_line_and_loses_nothing(suite, scenario, temp):
    """ENOSPC half-way through a temp file (features: the 2nd temp is a shard tar; run: the 3rd is
    a checkpoint, after the record and the lock): exit 7 with one line naming the file, nothing
    that was there is changed, no corrupt artefact, and the re-run gives the reference results."""
    sc = SCENARIOS[scenario]
    suite.prepare(scenario)
    home = suite.fresh(sc)
    before = faults.snapshot(home)
    code, text = _with_fault(f"enospc:{temp}", sc.args(home))
    assert code == 7, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the disk is full (ENOSPC)" in errors[0], text
    assert ("shard-" if scenario == "features" else ".pt") in errors[0] and "Traceback" not in text
    assert faults.lost(before, faults.snapshot(home), sc.owned) == []
    assert verify_home(home).ok
    assert cli(sc.args(home), check=False)[0] == 0
    assert faults.results(home, sc.extra(home)) == suite.reference[scenario]


@pytest.mark.parametrize("scenario", ["features", "run"])
def test_read_only_home_is_one_line_and_loses_nothing(suite, scenario):
    sc = SCENARIOS[scenario]
    home = suite.fresh(sc)
    before = faults.snapshot(home)
    code, text = _with_fault(f"erofs:{home}", sc.args(home))
    assert code == 7, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "read-only (EROFS)" in errors[0] and str(home) in errors[0], text
    assert faults.snapshot(home) == before


def _paused_child(args: list[str], commit: int, flag: Path) -> subprocess.Popen:
    """``avskit ARGS`` in a child that stops before its ``commit``-th rename until ``flag`` is deleted."""
    proc = subprocess.Popen(faults.child_cmd(args), env=faults.child_env(f"pause-before:{commit}:{flag}"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(faults.REPO))
    deadline = time.time() + 300
    while not flag.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc


def test_two_identical_runs_at_once(suite, tmp_path):
    """The second `avskit run` of the same config and data while the first is mid-training is
    refused in one line naming the first one's pid (exit 6); the first completes untouched, with
    the reference metrics. Without the lock the second started a second run of the same seed (counted
    twice in the leaderboard's mean ± std), and with an unfinished run present both resumed it,
    writing into one run directory."""
    sc = SCENARIOS["run"]
    suite.prepare("run")
    home = suite.fresh(sc)
    flag = tmp_path / "paused"
    first = _paused_child(sc.args(home), 6, flag)  # stopped with its record and a checkpoint written
    try:
        code, text = cli(sc.args(home), check=False)
        assert code == 6, text
        assert f"already in progress in {home / 'runs'} (pid {first.pid})" in text
    finally:
        flag.unlink()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert len(list((home / "runs").glob("2*"))) == 1 and verify_home(home).ok
    assert faults.results(home) == suite.reference["run"]


def test_two_workers_given_the_same_shard(suite, tmp_path):
    """Worker A stops with shard-000000.tar complete in its temp file; worker B, given the same
    shard, extracts everything. B must not delete A's temp (before the fix its start-up cleanup
    did, and A died on the rename); A then finishes, and the cache equals the reference."""
    sc = SCENARIOS["features"]
    suite.prepare("features")
    home = suite.fresh(sc)
    flag = tmp_path / "paused"
    args = [*sc.args(home), "-W", "1", "-I", "0"]
    first = _paused_child(args, 2, flag)  # commit 1 = cache.json, 2 = the first shard
    try:
        assert cli(args, check=False)[0] == 0
    finally:
        flag.unlink()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert verify_home(home).ok
    assert faults.results(home) == suite.reference["features"]
    shutil.rmtree(home)


def test_verify_names_corrupt_artefacts_and_cleans_stale_temps(suite, capsys):
    """`avskit verify` on a clean home exits 0; a flipped byte in a feature shard, a manifest edited
    after prepare and an unreadable record each make it exit 3 naming the file; a temp file of a
    dead writer is listed and removed by --clean, a live writer's is kept."""
    from avsbench_kit.atomic import owner_tag
    from avsbench_kit.cli.main import main

    home = suite.fresh(SCENARIOS["run"])  # prepared + a feature cache
    assert main(["verify", "--home", str(home)]) == 0
    shard = sorted(home.glob("features/synth-s4/*/*/shard-000000.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    (home / "runs" / "20990101T000000Z-deadbeef-s0").mkdir(parents=True)
    (home / "runs" / "20990101T000000Z-deadbeef-s0" / "record.json").write_text("{not json")
    meta = home / "prepared" / "synth-s4" / "manifest.json"
    meta.write_text(meta.read_text().replace('"fingerprint": "', '"fingerprint": "0', 1))
    host, _, pid = owner_tag().rpartition("~")
    dead = home / "prepared" / "synth-s4" / f".manifest.json.{host}~{2 ** 22 + 7}.ab12.tmp"
    live = home / "prepared" / "synth-s4" / f".manifest.json.{host}~{pid}.cd34.tmp"
    dead.write_text("x")
    live.write_text("x")
    capsys.readouterr()
    assert main(["verify", "--home", str(home), "--clean"]) == 3
    out = capsys.readouterr()
    text = out.out + out.err
    assert f"corrupt     {shard}" in text and "record.json" in text and "unreadable run record" in text
    assert "does not match the fingerprint" in text
    assert f"removed     {dead}" in text and f"leftover    {live}" in text
    assert not dead.exists() and live.exists()
