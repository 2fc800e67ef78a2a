"""Feature caches on disk: layout, shard plan, deterministic shard bytes, index, verification.

Layout::

    <cache>/<dataset>/<manifest-fp12>/<encoder>-<encoder-fp12>/
        cache.json            header: full fingerprints, encoder config, output fields, shard size
        shard-000000.tar      WebDataset shard: <key>.<field>.npy (+ <key>.json), sorted, mtime 0
        shard-000000.json     sidecar written after its shard: count, keys, sha256, bytes
        index.json            header + every complete shard + per-split completeness

Why this shape: the directory name alone says which manifest and which encoder produced it, so a
change of either can never overwrite or silently reuse a cache. The shard plan is a pure
function of the manifest (split order, units in manifest order, fixed shard size), so any worker
of any run agrees on which unit goes into which shard: runs can be killed and resumed, or split
over W workers, and the result is byte-identical to one uninterrupted run. A shard counts as
complete only once its sidecar exists (the tar is renamed into place first); the index is
rebuilt from the sidecars, so concurrent workers cannot lose each other's work.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from avsbench_kit.atomic import write_bytes, write_json
from avsbench_kit.errors import DataError
from avsbench_kit.hashing import canonical_json, sha256_file, short
from avsbench_kit.home import data_home

FORMAT = "avsbench-kit/feature-cache"
FORMAT_VERSION = 1
SHARD_MTIME = 0
_SAFE = re.compile(r"[^A-Za-z0-9_\-]")


def cache_root(home: str | Path | None = None, cache: str | Path | None = None) -> Path:
    """Where feature caches live: ``--cache DIR``, else ``<data home>/features``."""
    return Path(cache).expanduser().resolve() if cache else data_home(home) / "features"


def cache_dir(root: Path, dataset: str, manifest_fp: str, encoder: str, encoder_fp: str) -> Path:
    return Path(root) / dataset / short(manifest_fp) / f"{encoder}-{short(encoder_fp)}"


def unit_key(ident: str) -> str:
    """A WebDataset-safe key (no dots or slashes) for a clip name or sample key; reversible."""
    return _SAFE.sub(lambda m: "~" + m.group(0).encode("utf-8").hex(), ident)


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


# ---- the plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """One cache entry: a clip (image/audio encoders) or a sample (text encoders)."""

    key: str  # WebDataset key
    ident: str  # clip name or sample key, as in the manifest
    row: int  # position in the split's rows of the first sample that uses it


@dataclass(frozen=True)
class ShardPlan:
    index: int
    split: str
    units: tuple[Unit, ...]

    @property
    def name(self) -> str:
        return shard_name(self.index)


def split_order(manifest: Any) -> list[str]:
    """Splits in the registered order (then any others in order of first appearance)."""
    present = list(dict.fromkeys(manifest.df["split"].tolist()))
    try:
        from avsbench_kit.data.datasets import DATASETS

        registered = list(DATASETS.get(manifest.dataset).splits) if manifest.dataset in DATASETS else []
    except Exception:
        registered = []
    return [s for s in registered if s in present] + [s for s in present if s not in registered]


def plan_units(rows: list[dict[str, Any]], key_by: str, source: str = "") -> list[Unit]:
    """The cache entries of one split, in manifest order (clips deduplicated by first use)."""
    units: list[Unit] = []
    if key_by == "sample":
        return [Unit(unit_key(r["sample_key"]), r["sample_key"], i) for i, r in enumerate(rows)]
    seen: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(rows):
        clip = r["clip"]
        media = {"frames": list(r["frames"]), "audio": r["audio"], "log_mel": r["log_mel"]}
        if clip in seen:
            if seen[clip] != media:
                raise DataError(
                    f"{source}clip {clip!r} points at different media in samples of the same split",
                    hint="clip-keyed feature caches need one media folder per clip name: fix the manifest builder",
                )
            continue
        seen[clip] = media
        units.append(Unit(unit_key(clip), clip, i))
    keys = [u.key for u in units]
    if len(set(keys)) != len(keys):
        raise DataError(f"{source}two clip names map to the same cache key", hint="report this as a bug")
    return units


def plan_shards(manifest: Any, key_by: str, shard_size: int) -> list[ShardPlan]:
    """Every shard of the cache, over all splits; numbering never depends on what is extracted."""
    shards: list[ShardPlan] = []
    for split in split_order(manifest):
        units = plan_units(manifest.rows(split), key_by, source=f"{manifest.dataset}/{split}: ")
        for start in range(0, len(units), shard_size):
            shards.append(ShardPlan(len(shards), split, tuple(units[start:start + shard_size])))
    return shards


# ---- shard bytes --------------------------------------------------------------------------------
def npy_bytes(array: Any) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), version=(1, 0), allow_pickle=False)
    return buf.getvalue()


def tar_bytes(samples: Iterable[tuple[str, dict[str, Any], dict[str, Any]]]) -> bytes:
    """Deterministic tar of ``(key, {field: array}, meta)``: samples in the given order, members
    of a sample sorted by name, fixed mtime/uid/gid/mode, no owner names, no compression."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for key, arrays, meta in samples:
            members = {f"{key}.{name}.npy": npy_bytes(arr) for name, arr in arrays.items()}
            members[f"{key}.json"] = canonical_json(meta).encode("utf-8")
            for name in sorted(members):
                data = members[name]
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), SHARD_MTIME, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def parse_shard(data: bytes, source: str) -> dict[str, dict[str, Any]]:
    """Shard bytes -> ``{key: {field: array}}`` (the ``.json`` meta member under ``"__meta__"``)."""
    import numpy as np

    out: dict[str, dict[str, Any]] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                raw = tar.extractfile(member).read()  # type: ignore[union-attr]
                key, _, rest = member.name.partition(".")
                if rest == "json":
                    out.setdefault(key, {})["__meta__"] = json.loads(raw)
                elif rest.endswith(".npy"):
                    out.setdefault(key, {})[rest[:-4]] = np.load(io.BytesIO(raw), allow_pickle=False)
    except (tarfile.TarError, ValueError, OSError, EOFError) as exc:
        raise DataError(f"corrupt feature shard {source}: {exc}", hint="re-run the extract command to repair it") from None
    return out


# ---- the cache directory -------------------------------------------------------------------------
@dataclass
class Problem:
    shard: str
    problem: str


@dataclass
class FeatureCache:
    """One cache directory (see the module docstring)."""

    path: Path
    _header: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def header_path(self) -> Path:
        return self.path / "cache.json"

    @property
    def index_path(self) -> Path:
        return self.path / "index.json"

    def exists(self) -> bool:
        return self.header_path.is_file()

    @property
    def header(self) -> dict[str, Any]:
        if self._header is None:
            self._header = read_json(self.header_path)
        return self._header

    def write_header(self, header: dict[str, Any]) -> None:
        """Create ``cache.json``, or check an existing one names the same fingerprints."""
        if self.header_path.is_file():
            old = read_json(self.header_path)
            for key in ("manifest_fingerprint", "encoder_fingerprint", "shard_size", "key_by", "format_version"):
                if old.get(key) != header.get(key):
                    raise DataError(
                        f"{self.header_path} belongs to another cache ({key}: {old.get(key)!r} != {header.get(key)!r})",
                        hint=f"move {self.path} away (a short-hash collision or a hand-edited cache)",
                    )
            self._header = old
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.header_path, header)
        self._header = header

    def tar_path(self, name: str) -> Path:
        return self.path / name

    def sidecar_path(self, name: str) -> Path:
        return self.path / (name[:-4] + ".json")

    def sidecar(self, name: str) -> dict[str, Any] | None:
        path = self.sidecar_path(name)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None

    def write_shard(self, plan: ShardPlan, data: bytes, extra: dict[str, Any]) -> dict[str, Any]:
        """Write a shard atomically, then its sidecar (the shard is complete once the sidecar exists)."""
        import hashlib

        record = {
            "name": plan.name,
            "split": plan.split,
            "count": len(plan.units),
            "keys": [u.key for u in plan.units],
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            **extra,
        }
        write_bytes(self.tar_path(plan.name), data)
        write_json(self.sidecar_path(plan.name), record)
        return record

    def check_shard(self, name: str, record: dict[str, Any] | None = None) -> str | None:
        """None if the shard matches its record, else what is wrong (missing/truncated/corrupt)."""
        record = record or self.sidecar(name)
        if record is None:
            return "no record (incomplete)"
        path = self.tar_path(name)
        if not path.is_file():
            return "missing"
        size = path.stat().st_size
        if size != record["bytes"]:
            return f"truncated or resized ({size} bytes, expected {record['bytes']})"
        if sha256_file(path) != record["sha256"]:
            return "corrupt (sha256 mismatch)"
        return None

    def read_shard(self, name: str, sha256: str) -> dict[str, dict[str, Any]]:
        """Read and decode a shard, checking its bytes against the index's sha256."""
        import hashlib

        path = self.tar_path(name)
        hint = "run `avskit features verify` and re-run the extract command to recompute it: " + self.extract_command()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"feature shard {path} is missing ({exc.strerror or exc})", hint=hint) from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise DataError(f"feature shard {path} is corrupt or truncated (sha256 mismatch)", hint=hint)
        return parse_shard(data, str(path))

    def extract_command(self, home: str | Path | None = None, cache: str | Path | None = None) -> str:
        h = self.header
        return extract_command(h["encoder"], h["dataset"], None, h.get("overrides", []),
                               None if home is None else str(home), None if cache is None else str(cache))

    # ---- index ---------------------------------------------------------------------------------
    def build_index(self) -> dict[str, Any]:
        """The index as a pure function of the header and the sidecars present."""
        header = self.header
        shards, splits = [], {}
        for split, planned in header["plan"].items():
            done = 0
            for name in planned["shards"]:
                record = self.sidecar(name)
                if record is not None and self.tar_path(name).is_file():
                    shards.append(record)
                    done += 1
            splits[split] = {**planned, "complete_shards": done, "complete": done == len(planned["shards"])}
        envs = sorted({canonical_json(s.get("environment", {})) for s in shards})
        return {
            **{k: v for k, v in header.items() if k != "plan"},
            "splits": splits,
            "shards": sorted(shards, key=lambda s: s["name"]),
            "num_samples": sum(s["count"] for s in shards),
            "total_bytes": sum(s["bytes"] for s in shards),
            "environments": [json.loads(e) for e in envs],
        }

    def refresh_index(self) -> dict[str, Any]:
        """Rewrite ``index.json`` until it reflects every sidecar (safe with concurrent workers)."""
        for _ in range(20):
            index = self.build_index()
            try:
                write_json(self.index_path, index)
            except FileNotFoundError:  # another worker cleaned our temp file: try again
                continue
            if self.build_index() == index:
                return index
        return index

    def index(self) -> dict[str, Any]:
        if not self.index_path.is_file():
            return self.build_index()
        return read_json(self.index_path)

    def verify(self) -> list[Problem]:
        """Re-hash every shard the index or a sidecar names; report missing/corrupt ones."""
        problems: list[Problem] = []
        try:
            index = read_json(self.index_path) if self.index_path.is_file() else None
        except DataError as exc:
            problems.append(Problem("index.json", exc.message))
            index = None
        records: dict[str, dict[str, Any]] = {}
        for split in self.header["plan"].values():
            for name in split["shards"]:
                record = self.sidecar(name)
                if record is not None:
                    records[name] = record
                elif self.sidecar_path(name).is_file():
                    problems.append(Problem(name, "unreadable sidecar " + self.sidecar_path(name).name))
        for entry in (index or {}).get("shards", []):
            name = entry["name"]
            if name not in records:
                problems.append(Problem(name, "listed in index.json but its sidecar is missing"))
                records[name] = entry
            elif records[name]["sha256"] != entry["sha256"]:
                problems.append(Problem(name, "index.json and sidecar disagree on sha256"))
        for name in sorted(records):
            issue = self.check_shard(name, records[name])
            if issue:
                problems.append(Problem(name, issue))
        return problems

    def summary(self) -> dict[str, Any]:
        index = self.index()
        splits = index["splits"]
        return {
            "path": str(self.path),
            "dataset": index["dataset"],
            "manifest": short(index["manifest_fingerprint"]),
            "encoder": index["encoder"],
            "fingerprint": short(index["encoder_fingerprint"]),
            "splits": {s: f"{splits[s]['complete_shards']}/{len(splits[s]['shards'])}"
                       for s in index.get("split_order", list(splits))},
            "complete": all(v["complete"] for v in splits.values()),
            "samples": index["num_samples"],
            "bytes": index["total_bytes"],
        }


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} does not exist", hint="run `avskit features extract ...` first") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({exc})", hint="delete it and re-run `avskit features extract`") from None


def find_caches(root: Path) -> list[FeatureCache]:
    """Every cache directory under a cache root (``<dataset>/<manifest>/<encoder>-<fp>``)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [FeatureCache(p.parent) for p in sorted(root.glob("*/*/*/cache.json"))]


def extract_command(encoder: str, dataset: str, split: str | None, overrides: Iterable[str],
                    home: str | None = None, cache: str | None = None) -> str:
    """The exact `avskit features extract` command for a cache (the hint of every cache error)."""
    parts = ["avskit features extract", f"encoder={encoder}", f"dataset={dataset}"]
    if split:
        parts.append(f"split={split}")
    parts += [_quote(o) for o in overrides]
    if cache:
        parts.append(f"--cache {_quote(str(cache))}")
    elif home:
        parts.append(f"--home {_quote(str(home))}")
    return " ".join(parts)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def environment() -> dict[str, str]:
    """Library versions that can change the bits of a feature (recorded per shard)."""
    from avsbench_kit.provenance import library_versions
    from avsbench_kit import __version__

    env = {"avsbench-kit": __version__}
    env.update({k: v for k, v in library_versions().items() if k in ("torch", "transformers", "sam2", "numpy")})
    return env
