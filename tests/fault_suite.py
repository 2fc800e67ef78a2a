"""The fault-injection suite: SIGKILL `avskit prepare`, `features extract`, `run` and `eval` at
seeded points, then check that nothing was lost and that re-running gives what an uninterrupted
command gives, bit for bit.

A *fault* is one interrupted command on a fresh copy of its starting data home. After the kill:
- every artefact that was there before is unchanged (the command's own unfinished record and
  checkpoint excepted), and ``avskit verify`` finds nothing corrupt (the home holds the previous
  state or the complete new one, plus scratch temp files);
- re-running the same command succeeds, ``avskit verify`` is clean, and the results (manifests,
  feature shards, GT caches, metrics, per-sample tables, saved predictions, eval JSON) equal the
  uninterrupted run's bit for bit. Such a fault *recovered*; any failed check *lost data*.

Kill points: every commit (a rename into place ends each atomic write) before and after it — or
a seeded sample of them — the named steps of `avskit run` (train, select, predict, evaluate,
record), and seeded random times from outside. ``make faults`` runs the full suite
(``python tests/fault_suite.py``); tests/test_faults.py runs a short seeded subset in CI.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import faults  # noqa: E402

#: the tiny SynthAVS of the CI gate (tests/test_regress_golden.py), S4 and MS3 only
SYNTH = ["s4.clips.train=8", "s4.clips.val=4", "s4.clips.test=4", "ms3.clips.train=4", "ms3.clips.val=4",
         "ms3.clips.test=4", "refavs.clips.train=4", "refavs.clips.val=4", "refavs.clips.test_s=4",
         "refavs.clips.test_u=4", "refavs.nulls.train=1", "refavs.nulls.val=1", "refavs.nulls.test_n=2"] + [
    f"avss.clips.{sub}.{split}=1" for sub in ("v1s", "v1m", "v2") for split in ("train", "val", "test")]
RUN = ["run", "baseline=tiny-seg", "config=default", "dataset=synth-s4", "seed=0", "train.epochs=2",
       "train.batch_size=2", "train.checkpoint_every=2", "save_predictions=true", "--no-progress"]


@dataclass
class Scenario:
    """One command, the data home it starts from, and what it may rewrite while unfinished."""

    name: str
    base: str  # key of the starting home (see Bases)
    args: Callable[[Path], list[str]]
    owned: tuple[str, ...] = ()  # artefact prefixes the command itself rewrites (a running record)
    extra: Callable[[Path], list[Path]] = lambda home: []
    steps: dict[str, str] = field(default_factory=dict)  # phase -> kill-at spec


SCENARIOS = {
    "prepare": Scenario("prepare", "empty", lambda h: ["prepare", "synth", "--home", str(h), *SYNTH]),
    "features": Scenario("features", "prepared",
                         lambda h: ["features", "extract", "encoder=clip", "dataset=synth-s4", "shard_size=2",
                                    "--home", str(h), "--no-progress"]),
    "run": Scenario("run", "cached", lambda h: [*RUN, "--home", str(h)], owned=("runs/",), steps={
        # 2 epochs of 4 batches, validated after each: forward 1-4 epoch 1, 5-6 val, 7-10 epoch 2
        "train": "tiny_baseline:TinySeg.forward:8",
        "select": "avsbench_kit.runs.trainer:Trainer.load_best:1",
        "predict": "avsbench_kit.runs.run:predict:3",  # calls 1-2 validate, 3 predicts test
        "evaluate": "avsbench_kit.runs.scoring:Scorer.result:3",
        "record": "avsbench_kit.runs.store:RunStore.write_per_sample:1",
    }),
    "eval": Scenario("eval", "predicted",
                     lambda h: ["eval", "--dataset", "synth-s4", "--split", "test", "--pred", str(h / "preds"),
                                "--json", str(h / "eval.json"), "--home", str(h)],
                     extra=lambda h: [h / "eval.json"]),
}


class Bases:
    """The starting data homes, built once under ``root``: ``empty``; ``prepared`` (tiny SynthAVS
    prepared); ``cached`` (+ the CLIP cache tiny-seg reads); ``predicted`` (+ saved test
    predictions in ``preds/``, no GT cache)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[str, Path] = {}

    def get(self, name: str) -> Path:
        if name not in self._built:
            self._built[name] = getattr(self, f"_{name}")(self.root / name)
        return self._built[name]

    def _empty(self, home: Path) -> Path:
        home.mkdir(parents=True)
        return home

    def _prepared(self, home: Path) -> Path:
        cli(["prepare", "synth", "--home", str(home), *SYNTH])
        return home

    def _cached(self, home: Path) -> Path:
        faults.copy_home(self.get("prepared"), home)
        cli(["features", "extract", "encoder=clip", "dataset=synth-s4", "--home", str(home), "--no-progress"])
        return home

    def _predicted(self, home: Path) -> Path:
        faults.copy_home(self.get("cached"), home)
        cli([*RUN, "--home", str(home)])
        (run,) = (home / "runs").glob("2*")  # run ids start with the year
        shutil.move(str(run / "predictions" / "test"), str(home / "preds"))
        shutil.rmtree(home / "runs")
        for gt in (home / "prepared").glob("*/gt-cache"):
            shutil.rmtree(gt)
        return home


def cli(args: list[str], check: bool = True) -> tuple[int, str]:
    """``avskit ARGS`` in this process (tiny-seg registered); (exit code, its output)."""
    import contextlib
    import io

    from tiny_baseline import register_tiny

    from avsbench_kit.cli.main import main

    register_tiny()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = main(list(args))
    if check and code != 0:
        raise RuntimeError(f"avskit {' '.join(args)} exited {code}:\n{buf.getvalue()[-3000:]}")
    return code, buf.getvalue()


@dataclass
class Outcome:
    scenario: str
    fault: str
    killed: bool  # the fault fired (the point was reached)
    lost: list[str] = field(default_factory=list)  # what went wrong; empty = recovered

    @property
    def recovered(self) -> bool:
        return not self.lost


class Suite:
    """Reference results per scenario and the fault loop (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bases = Bases(root / "bases")
        self.reference: dict[str, dict] = {}
        self.commits: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self._n = 0
        self._child_s: dict[str, float] = {}

    def fresh(self, scenario: Scenario) -> Path:
        self._n += 1
        return faults.copy_home(self.bases.get(scenario.base), self.root / f"h{self._n:04d}-{scenario.name}")

    def prepare(self, name: str) -> None:
        """Count the commits of an uninterrupted run (in this process) and keep its results."""
        if name in self.reference:
            return
        sc = SCENARIOS[name]
        home = self.fresh(sc)
        faults.install("count:")
        start = time.perf_counter()
        try:
            cli(sc.args(home))
        finally:
            faults.uninstall()
        self.seconds[name] = time.perf_counter() - start
        self.commits[name] = faults.COMMITS["n"]
        self.reference[name] = faults.results(home, sc.extra(home))
        shutil.rmtree(home)

    def child_seconds(self, name: str) -> float:
        """How long the uninterrupted command takes as a fresh `avskit` process (imports included):
        the range of the random-time kills."""
        if name not in self._child_s:
            sc = SCENARIOS[name]
            home = self.fresh(sc)
            start = time.perf_counter()
            faults.child(sc.args(home))
            self._child_s[name] = time.perf_counter() - start
            shutil.rmtree(home)
        return self._child_s[name]

    def inject(self, name: str, fault: str | None = None, after_s: float | None = None) -> Outcome:
        """One fault: ``fault`` (an ``AVSKIT_FAULT`` spec) from inside, or SIGKILL after ``after_s``
        seconds from outside; then the checks and the re-run."""
        from avsbench_kit.verify import verify_home

        self.prepare(name)
        sc = SCENARIOS[name]
        home = self.fresh(sc)
        before = faults.snapshot(home)
        args = sc.args(home)
        if fault is not None:
            proc = faults.child(args, fault)
            killed, code = proc.returncode == -signal.SIGKILL, proc.returncode
            label, detail = fault, proc.stderr[-1500:]
        else:
            p = subprocess.Popen(faults.child_cmd(args), env=faults.child_env(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, cwd=str(faults.REPO))
            try:
                p.wait(timeout=after_s)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
            detail = p.communicate()[1][-1500:]
            killed, code = p.returncode == -signal.SIGKILL, p.returncode
            label = f"outside:{after_s:.2f}s"
        out = Outcome(name, label, killed)
        if code not in (0, -signal.SIGKILL):
            out.lost.append(f"the faulted command failed with exit {code}: {detail}")
        out.lost += [f"lost after the kill: {k}" for k in faults.lost(before, faults.snapshot(home), sc.owned)]
        out.lost += [f"corrupt after the kill: {p}: {r}" for p, r in verify_home(home).corrupt]
        code, text = cli(args, check=False)
        if code != 0:
            out.lost.append(f"re-run exited {code}: {text[-1500:]}")
        else:
            out.lost += [f"corrupt after the re-run: {p}: {r}" for p, r in verify_home(home).corrupt]
            got = faults.results(home, sc.extra(home))
            if got != self.reference[name]:
                keys = sorted(k for k in set(got) | set(self.reference[name])
                              if got.get(k) != self.reference[name].get(k))
                out.lost.append(f"re-run differs from the uninterrupted run in {keys[:5]}")
        if not out.lost:
            shutil.rmtree(home)
        return out

    def plan(self, name: str, rng: random.Random, points: int | None, outside: int) -> list[tuple]:
        """Faults for one scenario: kill before/after ``points`` seeded commits (all when None),
        every named step, and ``outside`` seeded random-time kills."""
        self.prepare(name)
        n = self.commits[name]
        commits = [(f"kill-{w}:{i}", None) for i in range(1, n + 1) for w in ("before", "after")]
        if points is not None and points < len(commits):
            commits = rng.sample(commits, points)
        steps = [(f"kill-at:{spec}", None) for spec in SCENARIOS[name].steps.values()]
        span = self.child_seconds(name) if outside else 0.0
        times = [(None, rng.uniform(0.3, 1.0) * span) for _ in range(outside)]
        return commits + steps + times


def report(outcomes: list[Outcome]) -> str:
    fired = [o for o in outcomes if o.killed]
    lines = [f"{'scenario':<10} {'faults':>6} {'killed':>6} {'lost data':>9} {'recovered':>9}"]
    for name in dict.fromkeys(o.scenario for o in outcomes):
        mine = [o for o in outcomes if o.scenario == name]
        lines.append(f"{name:<10} {len(mine):>6} {sum(o.killed for o in mine):>6} "
                     f"{sum(not o.recovered for o in mine):>9} {sum(o.recovered for o in mine):>9}")
    lines.append(f"{'total':<10} {len(outcomes):>6} {len(fired):>6} {sum(not o.recovered for o in outcomes):>9} "
                 f"{sum(o.recovered for o in outcomes):>9}")
    for o in outcomes:
        if not o.recovered:
            lines.append(f"LOST {o.scenario} {o.fault}: " + " | ".join(o.lost))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--points", type=int, default=None, help="commit kill points per scenario (default: all)")
    ap.add_argument("--outside", type=int, default=4, help="random-time kills per scenario")
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir, removed)")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="avskit-faults-"))
    suite, rng, outcomes = Suite(work), random.Random(args.seed), []
    start = time.perf_counter()
    for name in args.scenario or list(SCENARIOS):
        for fault, after in suite.plan(name, rng, args.points, args.outside):
            o = suite.inject(name, fault, after)
            outcomes.append(o)
            print(f"{name:<9} {o.fault:<62} {'killed' if o.killed else 'ran through'}  "
                  f"{'recovered' if o.recovered else 'LOST: ' + o.lost[0][:200]}", flush=True)
    print(f"\ncommits per uninterrupted command: {suite.commits}; seconds in this process: "
          f"{ {k: round(v, 1) for k, v in suite.seconds.items()} }; as a fresh process: "
          f"{ {k: round(v, 1) for k, v in suite._child_s.items()} }")
    print(report(outcomes))
    print(f"{time.perf_counter() - start:.0f} s, seed {args.seed}")
    if args.work is None and all(o.recovered for o in outcomes):
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(o.recovered for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
