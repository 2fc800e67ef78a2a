"""Input probes: the perturbations, the reader and encoder hooks, the figures, and `avskit probe`
end to end on a tiny SynthAVS with two tiny baselines (audio+image, image only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from avsbench_kit.baseline_spec import BaselineSpec
from avsbench_kit.cli.main import main
from avsbench_kit.errors import ConfigError, DataError, RegistryError
from avsbench_kit.probes import perturb
from avsbench_kit.probes.registry import PROBES, parse_probe
from avsbench_kit.probes.stats import combined, relative_drop

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_SYNTH = ["s4.clips.train=8", "s4.clips.val=4", "s4.clips.test=6", "ms3.clips.train=4", "ms3.clips.val=4",
              "ms3.clips.test=6", "refavs.clips.train=4", "refavs.clips.val=4", "refavs.clips.test_s=4",
              "refavs.clips.test_u=4", "refavs.nulls.train=1", "refavs.nulls.val=1", "refavs.nulls.test_n=2"]
AUDIO, IMAGE = "logmel_stats", "rgb_hist"


# -- the perturbations ----------------------------------------------------------------------------
def test_derangements_move_every_item_and_are_seeded():
    for n in (2, 3, 7, 32):
        p = perturb.derangement(n, seed=3)
        assert sorted(p.tolist()) == list(range(n)) and not (p == np.arange(n)).any()
    assert (perturb.derangement(9, 1) == perturb.derangement(9, 1)).all()
    assert not (perturb.derangement(9, 1) == perturb.derangement(9, 2)).all()
    with pytest.raises(DataError):
        perturb.derangement(1, 0)
    q = perturb.frame_derangement(5, np.random.default_rng(0))
    assert sorted(q.tolist()) == list(range(5)) and not (q == np.arange(5)).any()
    assert perturb.rolled(5, 2).tolist() == [3, 4, 0, 1, 2]


def test_shuffled_sources_swap_whole_clips():
    rows = [{"clip": c} for c in ("a", "a", "b", "c", "c", "d")]
    src = perturb.shuffled_sources(rows, seed=0)
    donor = [rows[s]["clip"] for s in src]
    assert all(d != r["clip"] for d, r in zip(donor, rows))  # never its own clip
    assert donor[0] == donor[1] and donor[3] == donor[4]  # one donor per clip
    assert sorted(set(donor)) == ["a", "b", "c", "d"]  # a permutation of the clips


def test_offscreen_donors_sound_only_absent_classes():
    rows = [{"clip": c} for c in "abcd"]
    present = {"a": {"dog", "car"}, "b": {"dog"}, "c": {"bell"}, "d": {"car", "bell"}}
    sounding = {"a": {"dog"}, "b": {"dog"}, "c": {"bell"}, "d": {"car"}}
    for seed in range(5):
        src = perturb.offscreen_sources(rows, present, sounding, seed)
        for r, s in zip(rows, src):
            assert not sounding[rows[s]["clip"]] & present[r["clip"]]
    with pytest.raises(DataError, match="no clip of the split"):
        perturb.offscreen_sources(rows[:2], present, sounding, 0)


def test_noise_has_the_stated_level_and_pink_falls_with_frequency():
    rng = np.random.default_rng(0)
    wave = np.zeros((2, 32000), np.float32)
    for color in ("white", "pink"):
        x = perturb.noise_like(wave, color, -20.0, rng)
        assert x.shape == wave.shape and x.dtype == np.float32
        np.testing.assert_allclose(np.sqrt((x ** 2).mean(-1)), 0.1, rtol=1e-4)
    power = np.abs(np.fft.rfft(perturb.noise_like(wave, "pink", -20.0, rng)[0])) ** 2
    low, high = power[10:100].mean(), power[10000:11000].mean()
    assert low > 30 * high  # ~1/f: two decades of frequency, ~100x in power
    white = np.abs(np.fft.rfft(perturb.noise_like(wave, "white", -20.0, rng)[0])) ** 2
    assert 0.5 < white[10:1000].mean() / white[10000:11000].mean() < 2


def test_probe_names_and_parameters():
    assert {"audio-shuffled", "audio-silent", "audio-noise", "audio-offscreen", "audio-time-shifted",
            "text-removed", "text-shuffled", "frames-shuffled"} <= set(PROBES.names())
    probe, params = parse_probe("audio-noise:color=pink,level_db=-30")
    assert probe.negative and params == {"color": "pink", "level_db": -30.0}
    with pytest.raises(ConfigError, match="no parameter"):
        parse_probe("audio-noise:colour=pink")
    with pytest.raises(ConfigError, match="white or pink"):
        parse_probe("audio-noise:color=brown")
    with pytest.raises(ConfigError, match="whole"):
        parse_probe("audio-time-shifted:shift_s=0")
    with pytest.raises(RegistryError):
        parse_probe("audio-shufled")
    silent = PROBES.get("audio-silent")
    assert "seed" not in silent.identity({}, 3)  # silence is the same whatever the seed: one cache
    assert PROBES.get("audio-noise").identity({}, 3)["seed"] == 3


# -- the figures -----------------------------------------------------------------------------------
def test_relative_drop_and_its_bootstrap():
    clean = [0.8, 0.6, 0.7, 0.9, 0.5, 0.4]
    probe = [0.4, 0.3, 0.35, 0.45, 0.25, 0.2]
    d = relative_drop(clean, probe, seed=0)
    assert d.value == pytest.approx(0.5) and d.low == pytest.approx(0.5) and d.high == pytest.approx(0.5)
    same = relative_drop(clean, clean, seed=0)
    assert same.value == 0.0 and same.low == 0.0 and same.high == 0.0
    noisy = relative_drop(clean, [0.8, 0.1, 0.7, 0.2, 0.5, 0.1], seed=0)
    assert noisy.low < noisy.value < noisy.high and noisy.low > -1
    assert noisy == relative_drop(clean, [0.8, 0.1, 0.7, 0.2, 0.5, 0.1], seed=0)  # seeded
    with pytest.raises(ValueError):
        relative_drop([0.1, 0.2], [0.1], seed=0)


def test_bootstrap_weights_draw_samples_or_whole_groups():
    from avsbench_kit.probes.stats import bootstrap_weights

    w = bootstrap_weights(6, seed=1, resamples=300)
    assert w.shape == (300, 6) and (w.sum(axis=1) == 6).all() and (w.std(axis=0) > 0).all()
    groups = ["a", "a", "a", "b", "c", "c"]
    g = bootstrap_weights(6, seed=1, resamples=300, groups=groups)
    assert (g[:, 0] == g[:, 1]).all() and (g[:, 1] == g[:, 2]).all() and (g[:, 4] == g[:, 5]).all()
    assert (g[:, [0, 3, 4]].sum(axis=1) == 3).all()  # three groups drawn per resample
    assert not (g[:, 0] == g[:, 3]).all()
    assert (bootstrap_weights(6, seed=1, resamples=300, groups=groups) == g).all()  # seeded
    with pytest.raises(ValueError, match="group labels"):
        bootstrap_weights(6, seed=1, groups=["a"])


def test_combined_score_is_the_harmonic_mean_of_j_and_one_minus_fpr():
    assert combined(0.6, 0.4) == pytest.approx(0.6)
    assert combined(0.8, 0.0) == pytest.approx(2 * 0.8 / 1.8)
    assert combined(0.9, 1.0) == 0.0 and combined(0.0, 1.0) == 0.0


# -- tiny baselines, trained on a tiny SynthAVS ----------------------------------------------------
from baselines.base import Baseline, BaselineOutput  # noqa: E402


class TinyAV(Baseline):
    """Per frame: [audio, image] features -> a 32x32 logit map (linear read-out + bias); with
    ``audio=off`` (or ``modality=vision-only``) the image features alone."""

    name = "tiny-av"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.feature_names = ([AUDIO] if self.inputs["audio"] else []) + [IMAGE]
        width = {AUDIO: 128, IMAGE: 64}
        self.read = nn.Linear(sum(width[i] for i in self.feature_names), 32 * 32)
        self.bias = nn.Parameter(torch.zeros(32, 32))

    def feature_requests(self):
        from baselines.base import feature_request

        return [feature_request(i, ["channels=concat"] if i == AUDIO else []) for i in self.feature_names]

    def forward(self, batch):
        x = torch.cat([batch["features"][i] for i in self.feature_names], -1)
        b, t, _ = x.shape
        return BaselineOutput(self.read(x).view(b, t, 32, 32) + self.bias)

    def loss(self, out, batch):
        from baselines.base import masks_at

        ann = batch["annotated"].bool()
        target = masks_at(batch["masks"], (32, 32))
        bce = nn.functional.binary_cross_entropy_with_logits(out.logits[ann], target[ann])
        return {"total": bce}


def tiny_config(name, preset, overrides):
    from avsbench_kit.config import apply_overrides

    cfg = {"name": name, "seed": 0, "output_size": 32,
           "train": {"epochs": 4, "batch_size": 4, "lr": 0.05, "val_every": 1}}
    return apply_overrides(cfg, list(overrides))


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    from avsbench_kit.plugins import BASELINES, load_plugins
    from synth_home import synth_home

    home = synth_home(tmp_path_factory.mktemp("home"), ("synth-s4", "synth-ms3"), TINY_SYNTH)
    load_plugins()
    if "tiny-av" not in BASELINES:
        BASELINES.add_spec(BaselineSpec("tiny-av", "test_probes:TinyAV", tasks=("s4", "ms3"),
                                        modalities=("audio", "image"), paper="test fixture", presets=("default",),
                                        default_preset="default"), TinyAV, config_loader=tiny_config)
    return home


@pytest.fixture(scope="module")
def runs(home):
    from avsbench_kit.runs.run import RunRequest, execute

    out = {}
    for name, args in (("tiny-av", ["baseline=tiny-av", "config=default"]),
                       ("tiny-v", ["baseline=tiny-av", "config=default", "modality=vision-only"]),
                       ("empty", ["baseline=empty"])):
        out[name] = execute(RunRequest.parse(args + ["dataset=synth-ms3"]), home, progress=False, say=lambda m: None)
    return out


def _batches(home, probe=None, seed=0, requests=None, **kw):
    from avsbench_kit.data.prepare import load_manifest
    from avsbench_kit.features import FeatureRequest
    from avsbench_kit.features.reader import feature_batches

    manifest = load_manifest("synth-ms3", home)
    requests = requests or [FeatureRequest(AUDIO, ("channels=concat",)), FeatureRequest(IMAGE)]
    plan = None
    if probe is not None:
        p, params = parse_probe(probe)
        plan = p.read_plan(manifest.rows("test"), params, seed, manifest)
    batches = feature_batches(manifest, "test", requests, batch_size=8, shuffle=False, seed=0, home=home,
                              perturbation=plan, **kw)
    return manifest, next(iter(batches))


def test_reader_applies_permutations_to_cached_rows(home, runs):
    from avsbench_kit.probes.labels import clip_classes

    manifest, clean = _batches(home, with_frames=True)
    rows = manifest.rows("test")
    a, v = clean["features"][AUDIO], clean["features"][IMAGE]
    _, shuf = _batches(home, "audio-shuffled", with_frames=True)
    src = perturb.shuffled_sources(rows, 0)
    assert torch.equal(shuf["features"][AUDIO], a[src]) and torch.equal(shuf["features"][IMAGE], v)
    assert torch.equal(shuf["masks"], clean["masks"]) and torch.equal(shuf["frames"], clean["frames"])
    _, rolled = _batches(home, "audio-time-shifted:shift_s=2")
    assert torch.equal(rolled["features"][AUDIO], a[:, [3, 4, 0, 1, 2]]) and torch.equal(rolled["features"][IMAGE], v)
    _, frames = _batches(home, "frames-shuffled", with_frames=True)
    moved = False
    for i in range(len(rows)):
        order = [int(torch.nonzero((clean["features"][IMAGE][i] == f).all(-1))[0]) for f in frames["features"][IMAGE][i]]
        assert sorted(order) == list(range(5))
        moved |= order != list(range(5))
        assert torch.equal(frames["masks"][i], clean["masks"][i][order])  # GT follows its frame
        assert torch.equal(frames["frames"][i], clean["frames"][i][order])
    assert moved and torch.equal(frames["features"][AUDIO], a)  # audio stays in place
    present, sounding = clip_classes(manifest)
    _, off = _batches(home, "audio-offscreen")
    plan = PROBES.get("audio-offscreen").read_plan(rows, {}, 0, manifest)
    for i, r in enumerate(rows):
        donor = rows[plan.sources["audio"][i]]["clip"]
        assert not sounding[donor] & present[r["clip"]]
        assert torch.equal(off["features"][AUDIO][i], a[plan.sources["audio"][i]])


def test_signal_probes_are_cached_under_their_own_fingerprint(home, runs):
    from avsbench_kit.data.prepare import load_manifest
    from avsbench_kit.features import build_encoder
    from avsbench_kit.features.extract import extract
    from avsbench_kit.probes.signal import PerturbedEncoder

    manifest = load_manifest("synth-ms3", home)
    inner = build_encoder(AUDIO, ("channels=concat",))
    silent = PerturbedEncoder(inner, PROBES.get("audio-silent"), {}, 0)
    noise = PerturbedEncoder(inner, PROBES.get("audio-noise"), PROBES.get("audio-noise").params(), 0)
    noise1 = PerturbedEncoder(inner, PROBES.get("audio-noise"), PROBES.get("audio-noise").params(), 1)
    fps = {e.fingerprint() for e in (inner, silent, noise, noise1)}
    assert len(fps) == 4 and PerturbedEncoder(inner, PROBES.get("audio-silent"), {}, 5).fingerprint() == silent.fingerprint()
    first = extract(manifest, silent, split="test", home=home, progress=False)
    again = extract(manifest, silent, split="test", home=home, progress=False)
    assert not first.cache_hit and again.cache_hit and first.path != build_cache_path(manifest, inner, home)
    _, batch = _batches(home, requests=[_request()], encoders={AUDIO: silent})
    x = batch["features"][AUDIO]
    assert torch.allclose(x, x[0, 0].expand_as(x))  # silence: the same descriptor everywhere
    _, clean = _batches(home, requests=[_request()])
    assert not torch.allclose(clean["features"][AUDIO], x)
    vgg_log_mel = build_encoder("vggish", ("input=log_mel",))
    with pytest.raises(ConfigError, match="raw audio"):
        PerturbedEncoder(vgg_log_mel, PROBES.get("audio-silent"), {}, 0)


def _request():
    from avsbench_kit.features import FeatureRequest

    return FeatureRequest(AUDIO, ("channels=concat",))


def build_cache_path(manifest, enc, home):
    from avsbench_kit.features.cache import cache_root
    from avsbench_kit.features.extract import open_cache

    return open_cache(manifest, enc, cache_root(home, None)).path


# -- `avskit probe` end to end -----------------------------------------------------------------------
def test_probe_audio_visual_run_records_everything(home, runs):
    from avsbench_kit.leaderboard import collect_tables
    from avsbench_kit.probes.engine import probe_run
    from avsbench_kit.runs.store import RunStore

    rid = runs["tiny-av"].run_id
    record, entries, plan = probe_run(rid, home=home, say=lambda m: None)
    names = [e["probe"] for e in entries]
    assert names == ["audio-shuffled", "audio-silent", "audio-noise", "audio-offscreen", "audio-time-shifted",
                     "frames-shuffled"]  # no text on MS3
    stored = RunStore(home).load(rid)
    assert stored.status == "complete" and stored.metrics == runs["tiny-av"].metrics  # only probes changed
    assert [e["probe"] for e in stored.probes] == names
    for e in entries:
        assert e["clean_matches_record"] and e["version"] == "1" and e["seed"] == record.seed
        assert e["split"] == "test" and e["reaches_model"] and set(e["metrics"]) == {"avsbench-v1", "avsbench-clip-v1"}
        lo, hi = e["drop"]["ci"]
        assert lo <= e["drop"]["value"] <= hi
        assert e["drop"]["J_clean"] == pytest.approx(stored.metrics["test"]["avsbench-clip-v1"]["mIoU"], abs=1e-6)
    by = {e["probe"]: e for e in entries}
    assert by["audio-shuffled"]["metrics"] != by["audio-shuffled"]["clean"]  # the audio reached the model
    assert by["frames-shuffled"]["drop"]["value"] == pytest.approx(
        1 - by["frames-shuffled"]["drop"]["J_probe"] / by["frames-shuffled"]["drop"]["J_clean"])
    for name in ("audio-silent", "audio-noise", "audio-offscreen"):
        e = by[name]
        assert 0 <= e["fpr"] <= 1 and e["combined"]["value"] == pytest.approx(combined(e["drop"]["J_clean"], e["fpr"]))
    assert by["audio-silent"]["features"][AUDIO] != record.features[AUDIO]  # read from the perturbed cache
    assert by["audio-shuffled"]["features"] == record.features
    # the same probe again replaces its entry; another seed adds one
    probe_run(rid, ["audio-shuffled"], home=home, say=lambda m: None)
    assert len(RunStore(home).load(rid).probes) == 6
    again = probe_run(rid, ["audio-shuffled"], seed=9, home=home, say=lambda m: None)[0]
    assert len(again.probes) == 7
    # leaderboard: the -clip-v1 table carries reliance / FPR / hJ
    tables = collect_tables(home, "synth-ms3")
    clip = next(t for t in tables if t.protocol == "avsbench-clip-v1")
    assert {("test", "reliance"), ("test", "FPR silent"), ("test", "hJ silent")} <= set(clip.columns)
    row = next(r for r in clip.rows if r.source == rid)
    assert row.cells[("test", "reliance")].mean == pytest.approx(by["audio-shuffled"]["drop"]["value"])


def test_vision_only_run_cannot_take_audio_probes_and_its_control_reliance_is_exactly_zero(home, runs, capsys):
    from avsbench_kit.probes.engine import probe_run

    rid = runs["tiny-v"].run_id
    assert main(["probe", rid, "--probe", "audio-shuffled", "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert "reads no audio" in err and "--control" in err and len(err.strip().splitlines()) == 2  # error + hint
    record, entries, plan = probe_run(rid, home=home, say=lambda m: None)
    assert [e["probe"] for e in entries] == ["frames-shuffled"]
    assert {name for name, _ in plan.skipped} == {"audio-shuffled", "audio-silent", "audio-noise", "audio-offscreen",
                                                  "audio-time-shifted"}
    _, entries, _ = probe_run(rid, ["audio-shuffled", "audio-silent"], control=True, home=home, say=lambda m: None)
    shuffled, silent = entries
    assert not shuffled["reaches_model"] and shuffled["drop"]["value"] == 0.0 and shuffled["drop"]["ci"] == [0.0, 0.0]
    assert shuffled["metrics"] == shuffled["clean"]
    clean_fg = silent["foreground"]
    assert silent["fpr"] == clean_fg == shuffled["foreground"]  # silence changes nothing it reads


def test_cli_probe_prints_the_table_and_runs_show_it(home, runs, capsys):
    rid = runs["tiny-av"].run_id
    assert main(["probe", rid, "--probe", "audio-silent", "--probe", "audio-noise:color=pink",
                 "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "audio-silent v1" in out and "color=pink" in out and "drop [95% CI]" in out
    assert main(["runs", "show", rid, "--home", str(home)]) == 0
    assert "audio-silent v1" in capsys.readouterr().out
    assert main(["probe", "--dataset", "synth-ms3", "--probe", "audio-silent", "--home", str(home)]) == 2
    assert "reads no audio" in capsys.readouterr().err  # explicit probe on the vision-only run
    assert main(["probe", "--dataset", "synth-ms3", "--home", str(home)]) == 0
    captured = capsys.readouterr()
    assert "skipped run" in captured.err and "empty" in captured.err  # the reference predictor reads nothing
    assert main(["probe", rid, "--probe", "text-removed", "--home", str(home)]) == 2
    assert "has none" in capsys.readouterr().err


def test_av2t_clip_only_predictions_ignore_audio_but_av2t_does_not():
    """probe-clip-only (and av2t with audio=off) read no audio: shuffled audio gives bit-identical
    predictions, so the reliance is exactly 0; the audio-visual AV2T-SAM's predictions change."""
    from avsbench_kit.metrics.evaluator import Evaluator
    from avsbench_kit.probes.engine import reads
    from avsbench_kit.runs.run import RunRequest, resolve_config
    from baselines.av2t.model import AV2TSAM

    audio = ["features.audio=clap", "dims.audio=16"]  # only where audio is read (others refuse dead keys)
    small = ["features.image=clip", "features.sam2=null", "dims.image=12",
             "image_size=64", "output_size=32", "text_encoder.kind=transformer", "text_encoder.transformer.hidden=32",
             "text_encoder.transformer.layers=1", "text_encoder.transformer.heads=2", "fused_dim=32"]
    g = torch.Generator().manual_seed(0)
    batch = {"key": list("abcd"), "annotated": torch.ones(4, 2, dtype=torch.bool),
             "frames": torch.rand(4, 2, 3, 64, 64, generator=g),
             "masks": (torch.rand(4, 2, 32, 32, generator=g) > 0.5).float(),
             "features": {"clap": torch.randn(4, 2, 16, generator=g), "clip": torch.randn(4, 2, 12, generator=g)}}
    src = perturb.shuffled_sources([{"clip": k} for k in batch["key"]], seed=0)
    shuffled = {**batch, "features": {**batch["features"], "clap": batch["features"]["clap"][src]}}

    def j_scores(model, b):
        with torch.no_grad():
            logits = model(b).logits
        ev = Evaluator(["avsbench-clip-v1"], "test")
        for i, key in enumerate(b["key"]):
            ev.update(key, logits[i], b["masks"][i])
        return logits, ev.compute().samples["mIoU"].to_numpy()

    results = {}
    for label, args in (("probe-clip-only", ["baseline=probe-clip-only"]), ("audio=off", ["baseline=av2t", "audio=off"]),
                        ("av2t", ["baseline=av2t"] + audio)):
        req = RunRequest.parse(args + small)
        model = AV2TSAM.from_config(resolve_config(req)).eval()  # features.sam2=null: frames, no cache
        requests = model.feature_requests()
        assert ("audio" in reads(model, requests)) == (label == "av2t")
        assert ("clap" in [r.encoder for r in requests]) == (label == "av2t")
        clean_logits, clean = j_scores(model, batch)
        pert_logits, pert = j_scores(model, shuffled)
        results[label] = (torch.equal(clean_logits, pert_logits), relative_drop(clean, pert, seed=0))
    for label in ("probe-clip-only", "audio=off"):
        same, drop = results[label]
        assert same and drop.value == 0.0 and (drop.low, drop.high) == (0.0, 0.0)
    assert not results["av2t"][0]
