"""Progress in logs: one plain line per epoch / shard / step when stderr is not a terminal."""

from __future__ import annotations

import re
import sys

import pytest

from avsbench_kit.progress import PlainProgress, Steps, current_mode, make_progress, progress_mode, steps, track


class _Tty:
    def isatty(self) -> bool:
        return True

    def write(self, s):  # pragma: no cover - never written in these tests
        return len(s)

    def flush(self):  # pragma: no cover
        pass


def test_mode_follows_the_terminal_the_env_and_the_cli(monkeypatch):
    monkeypatch.delenv("AVSKIT_PROGRESS", raising=False)
    assert current_mode() == "plain"  # pytest's captured stderr is not a terminal
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert current_mode() == "bar"
    with progress_mode("plain"):  # --no-progress
        assert current_mode() == "plain"
        assert isinstance(make_progress(), PlainProgress)
    assert current_mode() == "bar"  # restored after the command
    monkeypatch.setenv("AVSKIT_PROGRESS", "plain")
    assert current_mode() == "plain"
    with pytest.raises(ValueError):
        with progress_mode("fancy"):
            pass


def test_plain_progress_prints_one_line_per_finished_task():
    lines: list[str] = []
    p = PlainProgress("batches", write=lines.append)
    with p:
        t1 = p.add_task("epoch 1/2", total=3, rate="")
        for _ in range(3):
            p.update(t1, advance=1, rate="loss 0.5000  10.0 samples/s")
        assert p.tasks[t1].speed is not None
        p.console.print("epoch 1/2: total 0.5000  dice 0.2000 | val 0.3000")  # the caller's summary joins
        assert len(lines) == 1
        t2 = p.add_task("epoch 2/2", total=3, rate="")
        p.advance(t2)  # stopped after one batch (e.g. max_steps)
        p.console.print("something else")  # not a continuation: its own line, after the task's
    assert len(lines) == 3
    assert re.match(r"epoch 1/2: 3/3 batches in \d+\.\d s \| loss 0\.5000  10\.0 samples/s \| total 0\.5000  "
                    r"dice 0\.2000 \| val 0\.3000$", lines[0]), lines[0]
    assert lines[1] == "something else"
    assert lines[2].startswith("epoch 2/2: 1/3 batches") and lines[2].endswith("(stopped early)")
    p.stop()
    assert len(lines) == 3  # a second stop() prints nothing again


def test_plain_progress_line_of_an_unfinished_task():
    lines: list[str] = []
    with PlainProgress("batches", write=lines.append) as p:
        p.advance(p.add_task("epoch 2/2", total=3))
    assert len(lines) == 1 and lines[0].startswith("epoch 2/2: 1/3 batches") and lines[0].endswith("(stopped early)")


def test_track_prints_one_line_at_the_end(capsys):
    with progress_mode("plain"):
        assert list(track(range(5), "eval test", unit="samples")) == list(range(5))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(r"eval test: 5/5 samples in", err[0])


def test_steps_print_one_line_per_step_with_totals_and_eta():
    lines: list[str] = []
    with Steps("vggish synth-s4", steps=2, total=5, unit="samples", write=lines.append) as job:
        job.advance(3)
        job.step_done("shard train-000000.tar")
        job.advance(2)
        job.step_done("shard train-000001.tar", "repaired (sha256 mismatch)")
    assert len(lines) == 2
    assert lines[0].startswith("vggish synth-s4: 1/2 shard train-000000.tar | 3 samples in")
    assert "total 3/5, ETA" in lines[0]
    assert "total 5/5" in lines[1] and "ETA" not in lines[1] and lines[1].endswith("repaired (sha256 mismatch)")


def test_steps_iterator_and_disabled(capsys):
    with progress_mode("plain"):
        assert list(steps(["audio-silent", "audio-shuffled"], "probes", unit="probes")) == ["audio-silent",
                                                                                            "audio-shuffled"]
        list(steps(["x"], "quiet", enabled=False))
    err = capsys.readouterr().err.strip().splitlines()
    assert [re.sub(r"^\[[\d:]+\] ", "", e).split(" | ")[0] for e in err] == ["probes: 1/2 audio-silent",
                                                                             "probes: 2/2 audio-shuffled"]


def test_trainer_prints_one_line_per_epoch(tmp_path, capsys):
    from test_runs_trainer import batch_factory, N, TinyBaseline
    from avsbench_kit.runs.trainer import TrainConfig, Trainer, seed_everything

    seed_everything(0)
    cfg = TrainConfig(epochs=3, batch_size=4, lr=0.05)
    trainer = Trainer(TinyBaseline(), cfg, batches=batch_factory(4, 0), num_train_samples=N, ckpt_dir=tmp_path,
                      seed=0, identity="x", progress=True)
    with progress_mode("plain"):
        trainer.fit()
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 3  # one line per epoch: count, time, rate, then the loss components
    for i, line in enumerate(err, 1):
        assert re.search(rf"\] epoch {i}/3: \d+/6 batches in .* \| loss \d+\.\d{{4}} .* \| total \d+\.\d{{4}}", line), line


def test_extract_prints_one_line_per_shard(tmp_path, capsys):
    from test_features_plan import make_s4_dataset
    from avsbench_kit.features.extract import extract

    manifest, _ = make_s4_dataset(tmp_path)
    OV = ("shard_size=2",)  # 2 clips per shard: several shards on the tiny tree
    with progress_mode("plain"):
        summary = extract(manifest, "vggish", OV, cache=tmp_path / "cache")
    err = [line for line in capsys.readouterr().err.splitlines() if " shard " in line]
    assert len(err) == len(summary.computed) >= 2
    assert all(re.search(r"vggish \S+: \d+/\d+ shard \S+\.tar \| \d+ samples in", line) for line in err)
