"""The typed registry entry of a baseline: what it trains on, what it reads, where its presets live.

Light on purpose (no torch): ``avskit ls baselines`` and ``avskit run`` read these before any model
is built, and the probe suite decides from ``modalities`` which inputs it can perturb.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TASKS = ("s4", "ms3", "refavs", "avss")
MODALITIES = ("audio", "image", "text")
OUTPUTS = ("binary", "semantic")


@dataclass(frozen=True)
class BaselineSpec:
    """One registered method (or a named variant of one, through ``preset_overrides``)."""

    name: str
    target: str  # "module:Class" of the Baseline subclass (imported lazily)
    tasks: tuple[str, ...]
    modalities: tuple[str, ...]  # inputs the full method reads: subset of MODALITIES
    paper: str = ""
    presets: tuple[str, ...] = ("cpu-small",)
    config_dir: str = ""  # baselines/<config_dir>/configs/; "" = the name
    preset_overrides: tuple[str, ...] = ()  # overrides that define a variant (enforced)
    description: str = ""
    trains: bool = True  # False: a reference predictor evaluated as is (empty/full/gt)
    outputs: tuple[str, ...] = ("binary",)  # "semantic": [B,T,C,H,W] class logits on AVSS
    default_preset: str = "cpu-small"
    #: overrides that make the cpu-small preset tiny for the conformance test
    tiny: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS] + [m for m in self.modalities if m not in MODALITIES]
        bad += [o for o in self.outputs if o not in OUTPUTS]
        if bad or not self.tasks:
            raise ValueError(f"baseline {self.name!r}: bad tasks/modalities/outputs {bad or 'none given'}")
        if self.default_preset not in self.presets:
            raise ValueError(f"baseline {self.name!r}: default preset {self.default_preset!r} not in {self.presets}")

    @property
    def configs_dir(self) -> str:
        return self.config_dir or self.name

    def listing(self) -> dict[str, str]:
        """Flat text fields for ``avskit ls baselines``."""
        return {"task": ",".join(self.tasks), "modalities": ",".join(self.modalities),
                "configs": ",".join(self.presets), "paper": self.paper, "description": self.description}
