"""Sampling schemes: which frames each stage of long-video generation observes and generates."""

from flexvid.schemes import builtin as _builtin  # noqa: F401  (registers the paper's schemes)
