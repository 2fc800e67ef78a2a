"""Official AVSBench / Ref-AVS / AVSS metrics, exact and fast (see docs/metrics.md).

* :mod:`~avsbench_kit.metrics.functional` — vectorised torch kernels (one official metric call each);
* :mod:`~avsbench_kit.metrics.protocols` — named, versioned protocols (``PROTOCOLS`` registry);
* :mod:`~avsbench_kit.metrics.evaluator` — streaming evaluation over a split;
* :mod:`~avsbench_kit.metrics.predictions` — reading prediction folders for ``avskit eval``.

Importing this package is cheap (no torch); the heavy modules load on first attribute access.
"""

from __future__ import annotations

from typing import Any

from avsbench_kit.metrics.protocols import PROTOCOLS, Protocol, default_protocols, get_protocol

__all__ = ["PROTOCOLS", "Protocol", "default_protocols", "get_protocol", "Evaluator", "EvalResult"]


def __getattr__(name: str) -> Any:
    if name in ("Evaluator", "EvalResult"):
        from avsbench_kit.metrics import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
