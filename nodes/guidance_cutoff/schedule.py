"""When to stop using the text: pure schedule math for the guidance cutoff.

Vocabulary (used across the pack and its README):
- ``schedule``: the sigmas the sampler really runs, highest first, usually ending in 0.
  A run of ``S`` steps has ``S + 1`` sigmas; step ``k`` goes from ``schedule[k]`` to
  ``schedule[k + 1]``.
- ``guided steps`` ``N``: how many steps use the text (full classifier-free guidance).
  The paper counts the other end: its ``a`` (steps without text) is ``S - N``.
- ``cutoff sigma``: every model evaluation at a noise level above it uses the text;
  every one at or below it evaluates a single branch. For ``N`` guided steps it is
  ``schedule[N]``, so multi-evaluation samplers (heun, dpm_2, ...) are cut by the noise
  level they actually evaluate at, not by counting calls.
"""
import math
from dataclasses import dataclass

MODE_STEPS = "guided steps"
MODE_FRACTION = "fraction of steps"
MODE_SIGMA = "sigma"
MODE_ADAPTIVE = "adaptive"
MODES = (MODE_STEPS, MODE_FRACTION, MODE_SIGMA, MODE_ADAPTIVE)

KEEP_UNCOND = "uncond"
KEEP_COND = "cond"
KEEP_CHOICES = (KEEP_UNCOND, KEEP_COND)

# Index of each branch in the host's [cond, uncond] pair.
BRANCH_INDEX = {KEEP_COND: 0, KEEP_UNCOND: 1}


@dataclass(frozen=True)
class CutoffSettings:
    """What the user asked for; validated on construction."""
    mode: str = MODE_STEPS
    guided_steps: int = 10
    guided_fraction: float = 0.5
    cutoff_sigma: float = 1.0
    keep: str = KEEP_UNCOND
    adaptive_threshold: float = 0.15
    adaptive_min_steps: int = 3
    adaptive_max_steps: int = 1000

    def __post_init__(self):
        problem = validate_settings(self)
        if problem:
            raise ValueError(problem)

    @property
    def kept_branch(self):
        return BRANCH_INDEX[self.keep]


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_settings(s):
    """An error message naming the bad input and the fix, or None when all is well."""
    if s.mode not in MODES:
        return f"cutoff_mode must be one of {', '.join(MODES)}; got {s.mode!r}."
    if s.keep not in KEEP_CHOICES:
        return f"keep must be 'uncond' (the paper) or 'cond'; got {s.keep!r}."
    if not _finite(s.guided_steps) or s.guided_steps < 0 or int(s.guided_steps) != s.guided_steps:
        return f"guided_steps must be a whole number >= 0; got {s.guided_steps!r}."
    if not _finite(s.guided_fraction) or not 0.0 <= s.guided_fraction <= 1.0:
        return f"guided_fraction must be between 0 and 1 (share of steps that use the text); got {s.guided_fraction!r}."
    if not _finite(s.cutoff_sigma) or s.cutoff_sigma < 0:
        return f"cutoff_sigma must be a noise level >= 0 (see the sigmas your scheduler makes); got {s.cutoff_sigma!r}."
    if not _finite(s.adaptive_threshold) or s.adaptive_threshold < 0:
        return f"adaptive_threshold must be >= 0; got {s.adaptive_threshold!r}."
    for name in ("adaptive_min_steps", "adaptive_max_steps"):
        value = getattr(s, name)
        if not _finite(value) or value < 0 or int(value) != value:
            return f"{name} must be a whole number >= 0; got {value!r}."
    if s.adaptive_min_steps > s.adaptive_max_steps:
        return (f"adaptive_min_steps ({s.adaptive_min_steps}) must not exceed adaptive_max_steps "
                f"({s.adaptive_max_steps}); lower the minimum or raise the maximum.")
    return None


def step_count(schedule):
    return max(len(schedule) - 1, 0)


def guided_steps_from_fraction(total_steps, fraction):
    """``round(fraction * S)``, halves rounded up, so 0.5 of 25 steps guides 13."""
    return min(total_steps, int(math.floor(fraction * total_steps + 0.5)))


def guided_steps_below(schedule, sigma):
    """How many steps start above ``sigma``: the steps that keep the text for a cutoff sigma."""
    return sum(1 for s in schedule[:step_count(schedule)] if s > sigma)


def fixed_guided_steps(settings, schedule):
    """``N`` for the fixed modes (for adaptive: its maximum), clamped to the run's steps."""
    total = step_count(schedule)
    if settings.mode == MODE_STEPS:
        return min(int(settings.guided_steps), total)
    if settings.mode == MODE_FRACTION:
        return guided_steps_from_fraction(total, settings.guided_fraction)
    if settings.mode == MODE_SIGMA:
        return guided_steps_below(schedule, settings.cutoff_sigma)
    return min(int(settings.adaptive_max_steps), total)


def cutoff_sigma_for(settings, schedule):
    """The noise level at and below which one branch is evaluated, or None: text everywhere.

    For the adaptive mode this is the latest possible cutoff (its maximum step).
    """
    total = step_count(schedule)
    if settings.mode == MODE_SIGMA:
        return settings.cutoff_sigma if guided_steps_below(schedule, settings.cutoff_sigma) < total else None
    n = fixed_guided_steps(settings, schedule)
    return schedule[n] if n < total else None


def adaptive_floor_sigma(settings, schedule):
    """The adaptive mode guides every evaluation above this sigma (its minimum steps)."""
    n = min(int(settings.adaptive_min_steps), step_count(schedule))
    return schedule[n]


def paper_a(total_steps, guided_steps):
    """The paper's ``a``: how many final steps run without text."""
    return total_steps - guided_steps


def sigma_floor_index(evaluations_before, last_reported_step, lookahead=1):
    """An index ``f`` such that the next evaluation's sigma is ``>= schedule[f]``.

    For samplers that walk the schedule, step ``k`` evaluates at sigmas in
    ``[schedule[k + lookahead], schedule[k]]``: ``lookahead`` is 1 for most samplers, 2 for
    heunpp2 (its step ``k`` also evaluates at ``schedule[k + 2]``). The ``E``-th evaluation
    (0-based) belongs to a step ``k <= E``; once the sampler has reported step ``c`` through
    its callback, the next evaluation is a later stage of step ``c`` or the first one of step
    ``c + 1`` (at ``schedule[c + 1]``). Either way the sigma is at least
    ``schedule[min(E, c) + lookahead]``. Knowing this without reading the sigma from
    the device avoids a GPU->CPU synchronisation at every step: the sigma is only read
    once this bound no longer proves the evaluation is above the cutoff.
    """
    return min(evaluations_before, last_reported_step) + lookahead


def saved_share(full_evaluations, single_evaluations):
    """Share of UNet branch evaluations saved against full guidance at every evaluation."""
    total = 2 * (full_evaluations + single_evaluations)
    return single_evaluations / total if total else 0.0
