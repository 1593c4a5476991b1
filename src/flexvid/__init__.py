"""flexvid: Flexible Diffusion Models (Harvey et al., 2022) for long videos, in PyTorch."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Import `load_pretrained` lazily, so `import flexvid` (and `flexvid --version`) stays fast."""
    if name == "load_pretrained":
        from flexvid.checkpoint import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'flexvid' has no attribute {name!r}")
