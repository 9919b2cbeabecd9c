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
- ``guided window``: the sigmas ``(cutoff sigma, start sigma]`` that run full CFG. An optional
  ``guidance start`` (default 0: none) leaves out the guidance at the highest noise levels
  too (limited-interval guidance, Kynkaanniemi et al. 2024): every evaluation above the
  ``start sigma`` runs one branch (``keep_before_start``, the conditional one by default).
  Given in the cutoff's unit: ``U`` steps before the window make it ``schedule[U]``; the
  evaluation at exactly a boundary sigma belongs to the lower side at both ends.

Also here, as pure functions of the schedule and the run's counts: what is known of the next
evaluation's sigma without reading it from the device (``SamplerTraits``, ``next_sigma``),
and the decision that follows (``decide``).
"""
import math
from dataclasses import dataclass, fields
from types import SimpleNamespace

from . import settled
from ..validation import require

MODE_STEPS = "guided steps"
MODE_FRACTION = "fraction of steps"
MODE_SIGMA = "sigma"
MODE_ADAPTIVE = "adaptive"  # the ratio rule ||eps_c - eps_u|| / ||eps_u||, kept as it was for saved workflows
MODE_AUTOMATIC = "automatic (shape settled)"  # the text's effect on the shape of x0 (``settled``)
MODES = (MODE_STEPS, MODE_FRACTION, MODE_SIGMA, MODE_ADAPTIVE, MODE_AUTOMATIC)

KEEP_UNCOND = "uncond"  # the paper's unconditional: the empty prompt where one is given, else the negative
KEEP_COND = "cond"
KEEP_NEGATIVE = "negative"  # ComfyUI's uncond slot as it is: the graph's negative prompt alone
KEEP_CHOICES = (KEEP_UNCOND, KEEP_COND, KEEP_NEGATIVE)
KEEP_BEFORE_CHOICES = (KEEP_COND, KEEP_UNCOND)  # before the window: the interval paper's cond first

# Index of each branch in the host's [cond, uncond] pair (the empty prompt, when used, takes the
# uncond slot).
BRANCH_INDEX = {KEEP_COND: 0, KEEP_UNCOND: 1, KEEP_NEGATIVE: 1}


@dataclass(frozen=True)
class CutoffSettings:
    """What the user asked for; validated on construction. The field names are the node
    inputs' names (``INPUT_NAMES``), in the order the nodes show them."""
    cutoff_mode: str = MODE_STEPS
    guided_steps: int = 10
    guided_fraction: float = 0.5
    cutoff_sigma: float = 1.0
    keep: str = KEEP_UNCOND
    adaptive_threshold: float = 0.15
    adaptive_min_steps: int = 3
    adaptive_max_steps: int = 1000
    guidance_start_step: int = 0
    guidance_start_fraction: float = 0.0
    guidance_start_sigma: float = 0.0
    keep_before_start: str = KEEP_COND
    auto_threshold: float = settled.DEFAULT_THRESHOLD

    def __post_init__(self):
        require(check_settings(self))

    @property
    def kept_branch(self):
        return BRANCH_INDEX[self.keep]

    @property
    def branch_before_start(self):
        return BRANCH_INDEX[self.keep_before_start]

    @property
    def has_start(self):
        """Whether a guidance start is set for the mode in use (0: full CFG from the first step)."""
        return bool(start_input_value(self))


INPUT_NAMES = tuple(f.name for f in fields(CutoffSettings))
# The inputs added with the guidance start: optional in the nodes (missing means default).
START_INPUT_NAMES = ("guidance_start_step", "guidance_start_fraction", "guidance_start_sigma", "keep_before_start")
# The automatic mode's inputs: optional and after every other input (a saved workflow's widget
# values keep their positions; missing means default).
AUTOMATIC_INPUT_NAMES = ("auto_threshold",)

# The guidance start's input and the cutoff's, per mode (adaptive: its start in steps, its own end).
START_INPUT = {MODE_STEPS: "guidance_start_step", MODE_FRACTION: "guidance_start_fraction",
               MODE_SIGMA: "guidance_start_sigma", MODE_ADAPTIVE: "guidance_start_step",
               MODE_AUTOMATIC: "guidance_start_step"}
CUTOFF_INPUT = {MODE_STEPS: "guided_steps", MODE_FRACTION: "guided_fraction",
                MODE_SIGMA: "cutoff_sigma", MODE_ADAPTIVE: "adaptive_min_steps"}


def start_input_value(settings):
    return getattr(settings, START_INPUT.get(settings.cutoff_mode, "guidance_start_step"))


def settings_from_inputs(values):
    """CutoffSettings from a node's input values (other keys, such as ``model``, ignored);
    inputs left out take their defaults. Raises ValueError naming a bad input."""
    return CutoffSettings(**{name: values[name] for name in INPUT_NAMES if name in values})


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_inputs(values):
    """The message naming the first bad cutoff input of a node's ``values``, or None."""
    defaults = {f.name: f.default for f in fields(CutoffSettings)}
    return check_settings(SimpleNamespace(**{**defaults, **{n: values[n] for n in INPUT_NAMES if n in values}}))


def check_settings(s):
    """An error message naming the bad input and the fix, or None when all is well."""
    if s.cutoff_mode not in MODES:
        return f"cutoff_mode must be one of {', '.join(MODES)}; got {s.cutoff_mode!r}."
    if s.keep not in KEEP_CHOICES:
        return (f"keep must be 'uncond' (the paper: the empty prompt), 'cond' or 'negative' (the negative prompt "
                f"alone); got {s.keep!r}.")
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
    problem = settled.check_threshold(s.auto_threshold)
    if problem:
        return problem
    return check_start(s)


def check_start(s):
    """The guidance start's own checks: its range, then that it comes before the cutoff."""
    if s.keep_before_start not in KEEP_BEFORE_CHOICES:
        return (f"keep_before_start must be 'cond' (the interval paper: the text unguided) or 'uncond'; "
                f"got {s.keep_before_start!r}.")
    if not _finite(s.guidance_start_step) or s.guidance_start_step < 0 or int(s.guidance_start_step) != s.guidance_start_step:
        return (f"guidance_start_step must be a whole number >= 0 (steps before full CFG starts; 0: from the "
                f"first step); got {s.guidance_start_step!r}.")
    if not _finite(s.guidance_start_fraction) or not 0.0 <= s.guidance_start_fraction <= 1.0:
        return (f"guidance_start_fraction must be between 0 and 1 (share of steps before full CFG starts; 0: "
                f"from the first step); got {s.guidance_start_fraction!r}.")
    if not _finite(s.guidance_start_sigma) or s.guidance_start_sigma < 0:
        return (f"guidance_start_sigma must be a noise level >= 0 (full CFG once sigma is at or below it; 0: "
                f"from the first step); got {s.guidance_start_sigma!r}.")
    if s.cutoff_mode == MODE_AUTOMATIC:
        return None  # it measures from the guidance start on (a start past the run: no full-CFG step)
    start, cutoff = START_INPUT[s.cutoff_mode], CUTOFF_INPUT[s.cutoff_mode]
    start_value, cutoff_value = getattr(s, start), getattr(s, cutoff)
    if not start_value:
        return None
    if s.cutoff_mode == MODE_SIGMA:
        if start_value <= cutoff_value:
            return (f"guidance_start_sigma ({start_value:g}) must be above cutoff_sigma ({cutoff_value:g}): full "
                    f"CFG runs for the sigmas in (cutoff_sigma, guidance_start_sigma]. Raise guidance_start_sigma, "
                    f"lower cutoff_sigma, or set guidance_start_sigma to 0 for full CFG from the first step.")
        return None
    if start_value >= cutoff_value:
        what = ("the adaptive mode measures the guidance in full-CFG steps only, and decides from "
                "step adaptive_min_steps on" if s.cutoff_mode == MODE_ADAPTIVE
                else "full CFG runs between the two")
        return (f"{start} ({start_value:g}) must be below {cutoff} ({cutoff_value:g}): {what}. Lower {start} "
                f"(0: full CFG from the first step) or raise {cutoff}.")
    return None


def step_count(schedule):
    return max(len(schedule) - 1, 0)


def steps_for_fraction(total_steps, fraction):
    """``round(fraction * S)``, halves rounded up: 0.5 of 25 steps is 13 (the guided steps of the
    fraction mode, the paper's text-free steps ``a`` of the Paper Table)."""
    return min(total_steps, int(math.floor(fraction * total_steps + 0.5)))


def guided_steps_below(schedule, sigma):
    """How many steps start above ``sigma``: the steps that keep the text for a cutoff sigma."""
    return sum(1 for s in schedule[:step_count(schedule)] if s > sigma)


def steps_in_unit(mode, value, schedule):
    """How many of the run's steps ``value`` stands for in the unit of ``mode``: a count
    (guided steps, adaptive; clamped to the run), a share of the steps (rounded half up), or
    the steps that start above a sigma."""
    total = step_count(schedule)
    if mode == MODE_FRACTION:
        return steps_for_fraction(total, value)
    if mode == MODE_SIGMA:
        return guided_steps_below(schedule, value)
    return min(int(value), total)


def fixed_guided_steps(settings, schedule):
    """``N`` for the fixed modes (for adaptive: its maximum; automatic: every step, it has no
    fixed end), clamped to the run's steps."""
    mode = settings.cutoff_mode
    if mode == MODE_AUTOMATIC:
        return step_count(schedule)
    name = "adaptive_max_steps" if mode == MODE_ADAPTIVE else CUTOFF_INPUT[mode]
    return steps_in_unit(mode, getattr(settings, name), schedule)


def cutoff_sigma_for(settings, schedule):
    """The noise level at and below which one branch is evaluated, or None: text everywhere.

    For the adaptive mode this is the latest possible cutoff (its maximum step); the automatic
    mode has none.
    """
    total = step_count(schedule)
    if settings.cutoff_mode == MODE_SIGMA:
        return settings.cutoff_sigma if guided_steps_below(schedule, settings.cutoff_sigma) < total else None
    n = fixed_guided_steps(settings, schedule)
    return schedule[n] if n < total else None


def steps_before_start(settings, schedule):
    """``U``: how many steps run before the guided window (0: none), clamped to the run's steps.
    For the sigma mode: the steps that start above its start sigma."""
    if not settings.has_start:
        return 0
    return steps_in_unit(settings.cutoff_mode, start_input_value(settings), schedule)


def start_sigma_for(settings, schedule):
    """The noise level at and below which the guided window begins (every evaluation above it
    runs the branch before the start), or None: guided from the first evaluation. For ``U``
    steps before the window it is ``schedule[U]`` (``U`` = all steps: the schedule's last
    sigma, which no evaluation reaches)."""
    if not settings.has_start:
        return None
    if settings.cutoff_mode == MODE_SIGMA:
        return settings.guidance_start_sigma
    return schedule[steps_before_start(settings, schedule)] if schedule else None


def adaptive_floor_sigma(settings, schedule):
    """The sigma of the last of the adaptive mode's minimum steps: evaluations above it always
    use the text, a guided one at or below it may decide to drop it from the next evaluation on.
    None for ``adaptive_min_steps = 0``: the text is dropped before the first evaluation.
    (With ``k`` minimum steps, step ``k - 1`` evaluates at ``schedule[k - 1]``, so its
    measurement can end the text after exactly ``k`` steps.)"""
    n = min(int(settings.adaptive_min_steps), step_count(schedule))
    return schedule[n - 1] if n > 0 else None


def before_start_words(keep_before_start):
    """What runs before the guidance start, as the summaries, plans and charts name it."""
    return "text unguided" if keep_before_start == KEEP_COND else "no text"


def after_cut_words(keep):
    """What runs after the cutoff, as the summaries, plans and charts name it."""
    if keep == KEEP_NEGATIVE:
        return "only the negative prompt"
    return "text dropped" if keep == KEEP_UNCOND else f"only the {keep} branch"


def uses_unconditional(settings):
    """Whether a run with these settings evaluates the unconditional branch alone somewhere (after
    the cut with keep 'uncond', or before the guidance start with keep_before_start 'uncond'): where
    the empty prompt, if given, stands in for the negative prompt."""
    return settings.keep == KEEP_UNCOND or (settings.has_start and settings.keep_before_start == KEEP_UNCOND)


def paper_a(total_steps, guided_steps):
    """The paper's ``a``: how many final steps run without text."""
    return total_steps - guided_steps


# --- what is known of the next evaluation's sigma -------------------------------------------

# Host samplers whose evaluations do not walk the given schedule step by step (the sigma must
# be read at every evaluation for them), and the modules whose samplers do walk it.
OFF_SCHEDULE_SAMPLERS = {"dpm_fast_function", "dpm_adaptive_function"}
SCHEDULE_SAMPLER_MODULES = {"comfy.k_diffusion.sampling", "comfy.extra_samplers.uni_pc", "comfy.samplers"}
K_DIFFUSION = "comfy.k_diffusion.sampling"

# Host samplers that evaluate the model once per step, at exactly the step's sigma (read from
# comfy/k_diffusion/sampling.py): evaluation k runs at schedule[k], so the cutoff needs no
# device read at all (a read drains the GPU queue; with CUDA graphs that costs a few ms).
# Euler only without churn (s_churn raises the evaluated sigma).
ONE_EVALUATION_PER_STEP = {
    "sample_euler", "sample_euler_ancestral", "sample_euler_ancestral_RF", "sample_lms", "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde", "sample_dpmpp_2m_sde_gpu", "sample_dpmpp_3m_sde", "sample_dpmpp_3m_sde_gpu",
    "sample_lcm", "sample_ipndm", "sample_ipndm_v", "sample_deis",
}

# Host samplers whose step k evaluates below schedule[k + 1] (every other host sampler stays
# within [schedule[k + 1], schedule[k]]): heunpp2's step k also evaluates at schedule[k + 2].
SCHEDULE_LOOKAHEAD = {"sample_heunpp2": 2}


@dataclass(frozen=True)
class SamplerTraits:
    """How a sampler's evaluations relate to the schedule.

    - ``walks_schedule``: step ``k`` evaluates at sigmas in
      ``[schedule[k + lookahead], schedule[k]]`` (the host's samplers, but dpm_fast/dpm_adaptive);
    - ``lookahead``: 1 for most samplers, 2 for heunpp2;
    - ``one_evaluation_per_step``: evaluation ``k`` runs at exactly ``schedule[k]``.
    """
    walks_schedule: bool = False
    lookahead: int = 1
    one_evaluation_per_step: bool = False


def sampler_traits(module, name, churn=0.0, stock_guider=True):
    """The traits of the sampler function ``module.name`` (unknown samplers: none), run with
    ``s_churn = churn`` by a guider that evaluates through ComfyUI's CFG once per call."""
    walks = name not in OFF_SCHEDULE_SAMPLERS and module in SCHEDULE_SAMPLER_MODULES
    k_diffusion = module == K_DIFFUSION
    return SamplerTraits(
        walks_schedule=walks,
        lookahead=SCHEDULE_LOOKAHEAD.get(name, 1) if k_diffusion else 1,
        one_evaluation_per_step=k_diffusion and name in ONE_EVALUATION_PER_STEP and not churn and stock_guider)


@dataclass(frozen=True)
class NextSigma:
    """The next evaluation's sigma as far as it is known without a device read: ``exact``
    when known, else ``floor``, a sigma it is at or above (None: nothing known)."""
    exact: float = None
    floor: float = None

    @property
    def bound(self):
        """The best lower bound there is: the exact value, else the floor."""
        return self.exact if self.exact is not None else self.floor


def next_sigma(traits, schedule, evaluations, last_reported_step):
    """What is known of evaluation number ``evaluations`` (0-based: that many went through the
    cutoff before it) once the sampler has reported step ``last_reported_step`` (-1: none yet)
    through its callback.

    One evaluation per step: it belongs to the step after the last reported one, and runs at that
    step's sigma. The callback decides, not the count: a cache that skips whole evaluations
    (LazyCache) leaves the count behind the sampler, never the callback; the count only helps
    where no callback came. Samplers that walk the schedule: at or above
    ``schedule[sigma_floor_index(...)]``. Nothing is known otherwise. Knowing this avoids a
    GPU->CPU synchronisation at every step: the sigma is only read once the bound no longer
    proves the evaluation is above the cutoff.
    """
    if traits.one_evaluation_per_step:
        step = max(evaluations, last_reported_step + 1)
        if step < len(schedule):
            return NextSigma(exact=schedule[step])
    if traits.walks_schedule:
        floor = sigma_floor_index(last_reported_step, traits.lookahead)
        return NextSigma(floor=schedule[floor] if floor < len(schedule) else None)
    return NextSigma()


def sigma_floor_index(last_reported_step, lookahead=1):
    """An index ``f`` such that the next evaluation's sigma is ``>= schedule[f]``, for a
    sampler that walks the schedule (step ``k`` evaluates within
    ``[schedule[k + lookahead], schedule[k]]``). Once the sampler has reported step ``c``
    through its callback, the next evaluation is a later stage of step ``c`` or the first one of
    step ``c + 1`` (at ``schedule[c + 1]``): either way at least ``schedule[c + lookahead]``.
    Counting evaluations would not bound it: a cache that skips evaluations (LazyCache) leaves
    the count behind the sampler.
    """
    return last_reported_step + lookahead


TEXT, NO_TEXT, READ = "text", "no text", "read the sigma"
BEFORE_START = "before the guidance start"


def at_or_below(boundary, known, strict=False):
    """Whether the next evaluation's sigma is at or below ``boundary`` (``strict``: below):
    True, False, or None when only the sigma itself can tell. No boundary: False. A floor can
    only prove "above"; "at or below" needs the exact sigma."""
    if boundary is None:
        return False
    if known.exact is not None:
        return known.exact < boundary if strict else known.exact <= boundary
    if known.floor is not None and (known.floor >= boundary if strict else known.floor > boundary):
        return False
    return None


def decide(cut_sigma, known, dropped=False, strict=False, start_sigma=None, started=False):
    """For the next evaluation: ``BEFORE_START`` (one branch, the one before the window),
    ``TEXT`` (both branches), ``NO_TEXT`` (one branch, the kept one), or ``READ`` when only the
    sigma itself can tell. The guided window is ``(cut_sigma, start_sigma]``: one branch above
    ``start_sigma`` (None: no start) until the window has ``started``, and at sigma <= cut_sigma
    (``strict``: < cut_sigma, for the adaptive mode's cut at the sigma it measured) once reached.
    Both ends are one-way: a run, once inside the window (or past it), never goes back."""
    if dropped:
        return NO_TEXT
    if start_sigma is not None and not started:
        inside = at_or_below(start_sigma, known)
        if inside is None:
            return READ
        if not inside:
            return BEFORE_START
    below = at_or_below(cut_sigma, known, strict)
    if below is None:
        return READ
    return NO_TEXT if below else TEXT


def measures_guidance(adaptive_floor, known):
    """Adaptive mode: whether the guided evaluation just run may decide (False while the
    known bound still lies above the last minimum step's sigma: nothing to read then)."""
    return known.bound is None or known.bound <= adaptive_floor


def saved_share(full_evaluations, single_evaluations):
    """Share of UNet branch evaluations saved against full guidance at every evaluation."""
    total = 2 * (full_evaluations + single_evaluations)
    return single_evaluations / total if total else 0.0
