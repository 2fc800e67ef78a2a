"""`avskit prepare <dataset>`: find the root, run the dataset's builder, validate, write the manifest."""

from __future__ import annotations

from pathlib import Path

from avsbench_kit.data.datasets import DATASETS, DatasetSpec
from avsbench_kit.data.manifest import Manifest, build_manifest
from avsbench_kit.errors import DataError
from avsbench_kit.home import synth_dir
from avsbench_kit.registry import import_object


def resolve_root(spec: DatasetSpec, root: str | Path | None, home: str | Path | None = None) -> Path:
    """The dataset root to read: explicit ``--root``, else the data home's copy.

    Real benchmarks are never guessed: if they are not in the data home we say where the
    official release comes from. The embedded SynthAVS is generated on demand (seed 0, small).
    """
    if root is None:
        if spec.synthetic:
            root = synth_dir(home=home)
            if not root.exists():
                from avsbench_kit.data.synth import generate

                generate(root, seed=0, size="small")
        else:
            root = spec.default_raw_root(home)
            if not root.exists():
                raise DataError(
                    f"no {spec.name} data at {root} (the data home's default location)",
                    hint=f"get it from {spec.source}, then pass --root PATH or put it at {root}; "
                    f"expected layout: {spec.layout}",
                )
    return spec.find_root(Path(root))


def prepare(
    name: str,
    root: str | Path | None = None,
    *,
    home: str | Path | None = None,
    skip_bad: bool = False,
    checksum: bool = False,
) -> Manifest:
    """Build, validate and save the manifest of dataset ``name``; return it."""
    spec = DATASETS.get(name)
    resolved = resolve_root(spec, root, home)
    builder = import_object(spec.builder)
    build = builder(resolved, spec)
    manifest = build_manifest(name, resolved, build, skip_bad=skip_bad, checksum=checksum)
    manifest.save(spec.prepared_dir(home))
    return manifest


def load_manifest(name: str, home: str | Path | None = None) -> Manifest:
    """The prepared manifest of ``name`` (a clear error with the prepare command if absent)."""
    spec = DATASETS.get(name)
    return Manifest.load(spec.prepared_dir(home), dataset=name)
