"""Sampling schemes: which frames each stage of long-video generation observes and generates.

`get_scheme(name_or_yaml, video_length=, num_observed_frames=, max_frames=, step_size=)` builds a
scheme; iterating a SamplingScheme yields `Stage(obs, latent)` tuples. `scheme_stages(...)` plans and
validates all stages up front: a list of Stages, or for an adaptive scheme (observed frames chosen per
video from the frames made so far) an `AdaptivePlan`. New schemes subclass `SamplingScheme` (or
`AdaptiveScheme`) and register with `@register_scheme`.
"""

from flexvid.schemes import adaptive_builtin as _adaptive  # noqa: F401  (registers the adaptive schemes)
from flexvid.schemes import builtin as _builtin  # noqa: F401  (registers the paper's schemes)
from flexvid.schemes import optimized as _optimized  # noqa: F401  (registers "optimized")
from flexvid.schemes.adaptive import AdaptivePlan, AdaptiveScheme, AdaptiveStage
from flexvid.schemes.base import SamplingScheme
from flexvid.schemes.custom import ExplicitStages, load_scheme_yaml
from flexvid.schemes.factory import get_scheme, is_scheme_file, scheme_stages
from flexvid.schemes.optimized import load_schedule, save_schedule
from flexvid.schemes.registry import register_scheme, scheme_class, scheme_names
from flexvid.schemes.stage import LATENT_FRAMES_DEFAULT, Stage, latent_frames_per_stage
from flexvid.schemes.validate import plan_stages, validate_stages
from flexvid.schemes.visualise import render_scheme_png

__all__ = [
    "LATENT_FRAMES_DEFAULT",
    "AdaptivePlan",
    "AdaptiveScheme",
    "AdaptiveStage",
    "ExplicitStages",
    "SamplingScheme",
    "Stage",
    "get_scheme",
    "is_scheme_file",
    "latent_frames_per_stage",
    "load_schedule",
    "load_scheme_yaml",
    "plan_stages",
    "register_scheme",
    "render_scheme_png",
    "save_schedule",
    "scheme_class",
    "scheme_names",
    "scheme_stages",
    "validate_stages",
]
