"""The authors' adaptive schemes: adaptive-autoreg, adaptive-hierarchy-2 and adaptive-hierarchy-3.

Frames are chosen as in the authors' sampling_schemes.py:
- a stage has max_frames - step_size observed slots (hierarchy: minus the step the stage actually
  used, which is smaller when the base scheme shrank it), and never more than the frames done;
- adaptive-autoreg always observes the latest done frame; the others are chosen among the done
  frames listed newest first;
- adaptive-hierarchy-N always observes the done frames strictly between its latent frames, then the
  closest done frame before them, the second closest before, and the closest after (in that order,
  cut to the slots); the others are chosen among the done frames in ascending order.
The rest of the slots are filled by farthest-point selection on LPIPS (flexvid.schemes.lpips_selection).
Where fewer frames are done than there are slots, the authors' code observes some frame twice (and
its hierarchy never finishes looking for a second frame before the latent ones when there is none);
here each done frame is observed once. Frames smaller than AlexNet takes are upsampled for LPIPS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from flexvid.schemes.adaptive import AdaptiveScheme
from flexvid.schemes.builtin import Autoregressive, Hierarchy
from flexvid.schemes.registry import register_scheme, scheme_class


@register_scheme("adaptive-autoreg")
class AdaptiveAutoregressive(AdaptiveScheme):
    description = "autoreg's latent frames; observes the latest frame and the most LPIPS-distinct others, per video"
    base_class = Autoregressive

    def always_observed(self, latent: Sequence[int], done: Sequence[int]) -> list[int]:
        return [done[-1]]

    def observed_slots(self) -> int:
        return self.max_frames - self.step_size

    def candidate_order(self, done: Sequence[int]) -> list[int]:
        return list(reversed(done))


class AdaptiveHierarchy(AdaptiveScheme):
    """A hierarchy's latent frames; observes the frames around them and the most LPIPS-distinct others."""

    base: Hierarchy
    base_class: ClassVar[type[Hierarchy]]

    def always_observed(self, latent: Sequence[int], done: Sequence[int]) -> list[int]:
        first, last = min(latent), max(latent)
        between = [i for i in done if first < i < last]
        before = [i for i in reversed(done) if i < first][:2]
        after = [i for i in done if i > last][:1]
        return between + before + after

    def observed_slots(self) -> int:
        return self.max_frames - self.base.stage_step


for _levels in (2, 3):
    _base = scheme_class(f"hierarchy-{_levels}")
    register_scheme(f"adaptive-hierarchy-{_levels}")(
        type(
            f"AdaptiveHierarchy{_levels}",
            (AdaptiveHierarchy,),
            {
                "__module__": __name__,
                "base_class": _base,
                "description": f"hierarchy-{_levels}'s latent frames; observes the frames around them and the most "
                "LPIPS-distinct others, per video",
            },
        )
    )
