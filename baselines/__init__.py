"""Baselines shipped with avsbench-kit, one sub-package per method.

The toolkit calls :func:`register` through the ``avsbench_kit.plugins`` entry point; a third-party
package adds its own methods the same way (an entry point in that group whose module has a
``register(registry)`` function). Register lazily (``"module:Class"``) so listing stays fast.
"""

from __future__ import annotations


def register(registry) -> None:
    """Add this package's baselines to the toolkit's baseline registry (none are shipped yet)."""
    del registry
