"""flexvid: Flexible Diffusion Models (Harvey et al., 2022) for long videos, in PyTorch."""

__version__ = "0.1.0"
