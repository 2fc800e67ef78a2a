"""Plugin discovery: baselines (ours in `baselines/`, third parties' through the
``avsbench_kit.plugins`` entry point group) register themselves into :data:`BASELINES`."""

from __future__ import annotations

from importlib import metadata

from avsbench_kit.baseline_spec import BaselineSpec
from avsbench_kit.registry import Registry


class BaselineRegistry(Registry):
    """The one registry, with baselines entered as typed :class:`BaselineSpec` objects."""

    def add_spec(self, spec: BaselineSpec, target=None, **meta) -> None:
        """Register ``spec`` (``target`` may be the class itself instead of ``spec.target``;
        ``meta`` may add a ``config_loader`` for a plugin that keeps its presets elsewhere)."""
        self.add(spec.name, target if target is not None else spec.target, spec=spec, **spec.listing(), **meta)

    def spec(self, name: str) -> BaselineSpec:
        meta = self.meta(name)  # RegistryError with did-you-mean for unknown names
        spec = meta.get("spec")
        if not isinstance(spec, BaselineSpec):
            raise TypeError(f"baseline {name!r} was registered without a BaselineSpec "
                            "(use registry.add_spec(BaselineSpec(...)))")
        return spec


BASELINES: BaselineRegistry = BaselineRegistry("baseline")
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


def baseline_spec(name: str) -> BaselineSpec:
    """The registered spec of ``name`` (plugins loaded first)."""
    load_plugins()
    return BASELINES.spec(name)
