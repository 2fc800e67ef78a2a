"""Plugin discovery: baselines (ours in `baselines/`, third parties' through the
``avsbench_kit.plugins`` entry point group) register themselves into :data:`BASELINES`."""

from __future__ import annotations

from importlib import metadata

from avsbench_kit.registry import Registry

BASELINES: Registry = Registry("baseline")
_loaded = False


def load_plugins() -> None:
    """Import every ``avsbench_kit.plugins`` entry point once; each registers what it provides."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in metadata.entry_points(group="avsbench_kit.plugins"):
        module = ep.load()
        hook = getattr(module, "register", None)
        if callable(hook):
            hook(BASELINES)
