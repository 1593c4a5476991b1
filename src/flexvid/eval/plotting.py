"""matplotlib, an optional dependency (the `plots` extra), loaded only when a command draws a plot."""

from __future__ import annotations

from types import ModuleType

from flexvid.errors import ConfigError


def pyplot(purpose: str) -> ModuleType:
    """`matplotlib.pyplot` on the file-only Agg backend, or a ConfigError naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(f"{purpose} needs matplotlib; install it with pip install 'flexvid[plots]'.") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
