"""flexvid: Flexible Diffusion Models (Harvey et al., 2022) for long videos, in PyTorch."""

__version__ = "0.1.0"

# Public name -> module defining it, imported on first use so `import flexvid` (and `flexvid --version`) stays fast.
_LAZY = {"load_pretrained": "flexvid.checkpoint", "generate": "flexvid.sampling.generate"}


def __getattr__(name: str):
    """Import `load_pretrained` and `generate` lazily."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flexvid' has no attribute {name!r}")
