"""One way for tests to build a data home on a tiny SynthAVS (generate once, prepare some tasks).

Every end-to-end test needs the same few seconds of setup; keeping it here means the tiny split
sizes, and the generate → prepare order, are defined once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: Split sizes small enough for a test to train on in seconds, with every task present.
TINY_SYNTH = ["s4.clips.train=8", "s4.clips.val=4", "s4.clips.test=4", "ms3.clips.train=4", "ms3.clips.val=4",
              "ms3.clips.test=4", "refavs.clips.train=4", "refavs.clips.val=4", "refavs.clips.test_s=4",
              "refavs.clips.test_u=4", "refavs.nulls.train=1", "refavs.nulls.val=1", "refavs.nulls.test_n=2",
              "avss.clips.v1s.train=4", "avss.clips.v1s.val=2", "avss.clips.v1s.test=2", "avss.clips.v1m.train=2",
              "avss.clips.v1m.val=2", "avss.clips.v1m.test=2", "avss.clips.v2.train=2", "avss.clips.v2.val=2",
              "avss.clips.v2.test=2"]


def synth_home(home: Path, datasets: Sequence[str] = ("synth-s4",), overrides: Sequence[str] = TINY_SYNTH) -> Path:
    """Generate SynthAVS `small` seed 0 (with ``overrides``) under ``home`` and prepare ``datasets``."""
    from avsbench_kit.data.prepare import prepare
    from avsbench_kit.data.synth import generate
    from avsbench_kit.home import synth_dir

    root = synth_dir("small", 0, home)
    generate(root, seed=0, overrides=list(overrides), progress=False)
    for ds in datasets:
        prepare(ds, root, home=home)
    return home
