"""The ``probes`` section of a run record: one entry per (probe, version, parameters, seed, split).

An entry holds everything its numbers depend on (probe identity, seed, split, protocols and the
fingerprints of the caches read, the perturbed ones included) and the figures: the run's metrics
under the probe and clean, the relative J drop with its bootstrap CI, and for negative probes the
FPR and the combined score. Re-running the same probe replaces its entry (the numbers are a
deterministic function of the entry's identity); other entries are kept.
"""

from __future__ import annotations

from typing import Any

from avsbench_kit.probes.stats import COMBINED_NAME, COMBINED_VERSION, combined, relative_drop

RELIANCE_PROBE = "audio-shuffled"


def entry(run: Any, split: str, seed: int, probe: Any, params: dict[str, Any], clean: Any, scored: Any,
          seconds: float) -> dict[str, Any]:
    """One probe result (see the module docstring)."""
    from avsbench_kit import __version__
    from avsbench_kit.probes.engine import j_column
    from avsbench_kit.provenance import git_sha
    from avsbench_kit.runs.record import iso, utc_now

    col = j_column(clean.samples)
    a = clean.samples.set_index("sample_key")
    b = scored.samples.set_index("sample_key").loc[a.index]
    drop = relative_drop(a[col].to_numpy(), b[col].to_numpy(), seed)
    fg = float(b["fg"].sum()) / max(float(b["pixels"].sum()), 1.0)
    recorded = (run.record.metrics.get(split) or {})
    out: dict[str, Any] = {
        "probe": probe.name, "version": probe.version, "params": dict(sorted(params.items())), "seed": int(seed),
        "split": split, "kind": probe.kind, "modality": probe.modality, "negative": probe.negative,
        "reaches_model": probe.modality in run.reads,
        "protocols": dict(scored.versions), "metrics": scored.metrics, "clean": clean.metrics,
        "clean_matches_record": all(abs(clean.metrics[p][m] - v) <= 1e-6
                                    for p, vals in recorded.items() if p in clean.metrics
                                    for m, v in vals.items() if m in clean.metrics[p]),
        "j_metric": col, "drop": drop.as_dict(), "foreground": fg,
        "features": dict(scored.features), "toolkit_version": __version__, "git_sha": git_sha(),
        "created_utc": iso(utc_now()), "seconds": round(float(seconds), 2),
    }
    if probe.negative:
        out["fpr"] = fg
        out["combined"] = {"name": COMBINED_NAME, "version": COMBINED_VERSION,
                           "value": combined(drop.clean, fg), "J_positive": drop.clean}
    return out


def identity(e: dict[str, Any]) -> tuple:
    return (e.get("probe"), e.get("version"), tuple(sorted((e.get("params") or {}).items())), e.get("seed"),
            e.get("split"))


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with the entries of ``new`` replacing those of the same identity (order kept)."""
    fresh = {identity(e): e for e in new}
    kept = [e for e in old if identity(e) not in fresh]
    return kept + list(new)


def summary(probes: list[dict[str, Any]], seed: int | None = None) -> dict[str, dict[str, float]]:
    """``{split: {"reliance": .., "FPR <probe>": .., "hJ <probe>": ..}}`` from the latest entries with
    default parameters (and probe seed ``seed`` when given: the run's own seed on the leaderboard)."""
    from avsbench_kit.probes.registry import PROBES

    out: dict[str, dict[str, float]] = {}
    for e in probes:
        name = e.get("probe")
        if name not in PROBES:
            continue
        probe = PROBES.get(name)
        if (e.get("params") or {}) != dict(sorted(probe.defaults.items())):
            continue
        if seed is not None and e.get("seed") != seed:
            continue
        cells = out.setdefault(str(e.get("split")), {})
        if name == RELIANCE_PROBE:
            cells["reliance"] = float(e["drop"]["value"])
        if e.get("negative") and "fpr" in e:
            short = name.removeprefix("audio-")
            cells[f"FPR {short}"] = float(e["fpr"])
            cells[f"{COMBINED_NAME} {short}"] = float(e["combined"]["value"])
    return out
