"""Reproducible random combinations for the reliability fuzz test (no host needed).

Case ``i`` of seed ``s`` depends on nothing but ``(s, i)``: a long run and the CI run share
their first cases, and one failing case is replayed alone from the id printed with it.
The lists are fixed here rather than read from the host, so a case id means the same
combination whatever sampler list a ComfyUI version has.
"""
import random
from dataclasses import dataclass, field, replace

from ..nodes.guidance_cutoff import schedule as cs
from ..nodes.guidance_cutoff import settled

DEFAULT_SEED = 20240531  # any fixed value; SHAPEFIRST_FUZZ_SEED overrides it in the test

UNET_ARCHITECTURES = ("sd15", "sdxl")
# Today's DiT and video families (tools/model_families.py, tiny in tools/tiny_test_models.py).
# A case is drawn as before and then, with this share, moved to one of them (drawn last, so
# every other case keeps the combination its id had before the families came in).
FAMILY_ARCHITECTURES = ("sd3.5-large", "flux-dev-cfg", "chroma", "wan2.1-1.3b", "wan2.2-5b", "hunyuan-video",
                        "lumina2", "qwen-image")
FAMILY_SHARE = 0.3
ARCHITECTURES = UNET_ARCHITECTURES + FAMILY_ARCHITECTURES
# The host's KSampler samplers (v0.3.64). dpm_fast and dpm_adaptive choose their own
# evaluation points from the latent, so a run with and one without the cutoff do not
# evaluate at the same sigmas: they get only the invariants that hold per evaluation.
SAMPLERS = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)
OFF_SCHEDULE_SAMPLERS = ("dpm_fast", "dpm_adaptive")
SCHEDULERS = ("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
              "linear_quadratic", "kl_optimal")
MODES = cs.MODES  # (the cutoff's own list: a new mode is drawn as soon as it exists)
# The modes a case's id has always drawn, in their order (a longer list would move every later draw
# of every case). A mode the cutoff adds later ("automatic (shape settled)", issue 23) is drawn last,
# in place of "adaptive" (the other measuring mode): LATE_MODE_SHARE of those cases.
EARLY_MODES = (cs.MODE_STEPS, cs.MODE_FRACTION, cs.MODE_SIGMA, cs.MODE_ADAPTIVE)
LATE_MODE_SHARE = 0.5
# The keeps a case's id has always drawn, in their order (a longer list would move every later
# draw of every case). keep_before_start draws from these too. A keep the cutoff adds later
# ("negative", issue 21) is drawn last, in place of "uncond": LATE_KEEP_SHARE.
KEEPS = ("uncond", "cond")
LATE_KEEP_SHARE = 0.3

# Other patches a user may have on the same model (the host's own nodes).
PATCHES = ("pag", "sag", "slg", "slg_simple", "apg", "cfg_zero_star", "freeu", "controlnet", "area")
# ("sag" with "area" can fail in ComfyUI itself: tests/test_reliability.py, sag_area_failure.)
# Patches that call the UNet themselves, outside ComfyUI's calc_cond_batch slot.
EXTRA_CALL_PATCHES = ("pag", "sag", "slg")
# Those that apply to a DiT too: PAG, SAG and FreeU patch UNet blocks, the ControlNet is the
# tiny UNet's own shape, areas crop 4-D image latents.
FAMILY_PATCHES = ("slg", "slg_simple", "apg", "cfg_zero_star")
# dpm_adaptive sizes its own steps: on a random-weight DiT it takes minutes of CPU per case
# (chroma, case s20240531-c0055: 100 s), so the families draw from the others.
FAMILY_SAMPLERS = tuple(s for s in SAMPLERS if s != "dpm_adaptive")
# dpm_adaptive sizes each step from its error estimate: once an evaluation differs from stock's,
# so do its later steps and their number (dpm_fast's steps are fixed by the step count).
STEP_SIZING_SAMPLERS = ("dpm_adaptive",)

# Drawn after everything above (like the families and the guidance start), so a case id keeps
# the combination its other fields had before these came in (issue 21: real graphs).
# A negative prompt instead of the empty one, for this share of the cases.
NEGATIVE_PROMPTS = ("blurry, low quality, watermark", "a blue sphere on grass")
NEGATIVE_SHARE = 0.3
# The host's caches (comfy_extras/nodes_easycache.py, 0.3.75): LazyCache skips whole
# evaluations (a PREDICT_NOISE wrapper), EasyCache skips diffusion-model forwards per branch.
CACHES = ("LazyCache", "EasyCache")
CACHE_SHARE = 0.25
# More of the host's guidance patches, on the model like PATCHES, for this share of the cases.
# (PerpNeg is not drawn: keep='uncond' without an empty conditioning is to be refused.)
GUIDANCE_PATCHES = ("rescale_cfg", "mahiro", "tcfg", "cfg_norm")
GUIDANCE_SHARE = 0.3
# The empty prompt on the cutoff's empty_conditioning (the paper's unconditional after the cut
# with keep 'uncond', in place of the graph's negative prompt), for this share of the cases.
EMPTY_SHARE = 0.4


@dataclass(frozen=True)
class Case:
    seed: int
    index: int
    architecture: str
    sampler: str
    scheduler: str
    steps: int
    denoise: float
    batch: int
    cfg: float
    mode: str
    keep: str
    cutoff: dict = field(hash=False)  # inputs of the cutoff node for this mode
    patches: dict = field(hash=False)  # patch name -> its node inputs
    noise_seed: int = 0
    start: dict = field(hash=False, default_factory=dict)  # the guidance start's inputs ({}: none)
    negative: str = ""  # the negative prompt's text ("": the empty prompt)
    cache: dict = field(hash=False, default_factory=dict)  # {"node": one of CACHES, its inputs} or {}
    empty: bool = False  # the empty prompt given to the cutoff's empty_conditioning

    @property
    def case_id(self):
        """Short and greppable: pytest shows it, ``-k`` selects it."""
        return f"s{self.seed}-c{self.index:04d}"

    def describe(self):
        """Everything needed to read a failure, on one line."""
        patches = ",".join(f"{k}{v}" if v else k for k, v in sorted(self.patches.items())) or "none"
        return (f"[{self.case_id}: SHAPEFIRST_FUZZ_SEED={self.seed} case {self.index}] {self.architecture} "
                f"{self.sampler}/{self.scheduler} steps={self.steps} denoise={self.denoise} batch={self.batch} "
                f"cfg={self.cfg} mode={self.mode!r} {self.cutoff} keep={self.keep} start={self.start or 'none'} "
                f"patches={patches} negative={self.negative!r} empty_conditioning={self.empty} "
                f"cache={self.cache or 'none'} "
                f"noise_seed={self.noise_seed}")


def _rounded(rng, low, high, digits=2):
    return round(rng.uniform(low, high), digits)


def _cutoff_inputs(rng, mode, steps):
    """The mode's own inputs, edges included: 0, exactly the last step, past it."""
    if mode == cs.MODE_STEPS:
        return {"guided_steps": rng.choice([0, steps, steps + 3, rng.randint(0, steps)])}
    if mode == cs.MODE_FRACTION:
        return {"guided_fraction": rng.choice([0.0, 1.0, 0.5, _rounded(rng, 0.0, 1.0)])}
    if mode == cs.MODE_SIGMA:
        # ("at", k): exactly the schedule's k-th sigma, resolved once the run's schedule is known
        return {"cutoff_sigma": rng.choice([0.0, 1000.0, ("at", rng.randint(0, steps)),
                                            round(10 ** rng.uniform(-1.5, 1.3), 4)])}
    low = rng.randint(0, steps)
    return {"adaptive_threshold": rng.choice([0.0, 10.0, _rounded(rng, 0.05, 2.0, 3)]),
            "adaptive_min_steps": low, "adaptive_max_steps": rng.randint(low, steps + 2)}


def _start_inputs(rng, mode, cutoff):
    """The guidance start for half of the cases, always before the mode's cutoff (refusing the
    others is the validation's test): steps and fractions below the cutoff's, edges included
    (0, one before it); for the sigma mode ("above", f): f times the cutoff sigma once it is
    resolved, and ("at", k) for the schedule's k-th sigma (above an ("at", j) cutoff: k < j)."""
    if rng.random() < 0.5:
        return {}
    keep = {"keep_before_start": rng.choice(KEEPS)}
    if mode in (cs.MODE_STEPS, cs.MODE_ADAPTIVE):
        end = cutoff["guided_steps" if mode == cs.MODE_STEPS else "adaptive_min_steps"]
        if end < 1:
            return {}
        return {"guidance_start_step": rng.choice([0, min(1, end - 1), end - 1, rng.randint(0, end - 1)]), **keep}
    if mode == cs.MODE_FRACTION:
        end = cutoff["guided_fraction"]
        if end <= 0.0:
            return {}
        return {"guidance_start_fraction": rng.choice([0.0, round(end / 2, 2), _rounded(rng, 0.0, end - 0.01)]), **keep}
    end = cutoff["cutoff_sigma"]
    # (a start at or below the cutoff once resolved is left out by the test: README's refusal)
    at = ("at", rng.randint(0, end[1] - 1) if isinstance(end, tuple) and end[1] > 0 else rng.randint(0, 2))
    choices = [at, 1000.0] + ([("above", _rounded(rng, 1.1, 30.0))] if end else [])
    return {"guidance_start_sigma": rng.choice(choices), **keep}


def _patch_inputs(rng, name):
    if name == "pag":
        return {"scale": _rounded(rng, 0.5, 3.0)}
    if name == "sag":
        return {"scale": _rounded(rng, 0.2, 1.0), "blur_sigma": _rounded(rng, 0.5, 3.0)}
    if name == "slg":
        start = _rounded(rng, 0.0, 0.6)
        return {"scale": _rounded(rng, 0.5, 3.0), "start_percent": start,
                "end_percent": _rounded(rng, start, 1.0), "rescaling_scale": rng.choice([0.0, 0.5])}
    if name == "slg_simple":
        start = _rounded(rng, 0.0, 0.6)
        return {"start_percent": start, "end_percent": _rounded(rng, start, 1.0)}
    if name == "apg":
        return {"eta": _rounded(rng, -1.0, 1.5), "norm_threshold": rng.choice([0.0, _rounded(rng, 1.0, 10.0)]),
                "momentum": rng.choice([0.0, _rounded(rng, -0.5, 0.9)])}
    if name == "freeu":
        return {"b1": _rounded(rng, 1.0, 1.5), "b2": _rounded(rng, 1.0, 1.6),
                "s1": _rounded(rng, 0.2, 1.0), "s2": _rounded(rng, 0.2, 1.0)}
    if name == "controlnet":
        start = rng.choice([0.0, _rounded(rng, 0.0, 0.5)])
        return {"strength": _rounded(rng, 0.3, 1.5), "start_percent": start,
                "end_percent": rng.choice([1.0, _rounded(rng, start, 1.0)]),
                "target": rng.choice(["positive", "both"])}
    if name == "area":
        # in pixels (multiples of 8) of the 64x64 image the 8x8 latents stand for
        width, height = rng.choice([16, 32, 48]), rng.choice([16, 32, 48])
        if width == height == 16:
            # Not a 2x2-latent crop: downsampled to 1x1 in a UNet call of its own at batch 1
            # (PAG's and SLG's cond-only calls, the cutoff's single branch), the tiny UNet's
            # GroupNorm (32 channels, 32 groups) gets one value per group and torch refuses it.
            # A fixture limit: real checkpoints have >= 10 channels per group.
            height = 24
        return {"width": width, "height": height, "x": 8 * rng.randint(0, (64 - width) // 8),
                "y": 8 * rng.randint(0, (64 - height) // 8), "strength": _rounded(rng, 0.5, 1.5)}
    if name == "rescale_cfg":
        return {"multiplier": rng.choice([0.7, _rounded(rng, 0.0, 1.0)])}
    if name == "cfg_norm":
        return {"strength": rng.choice([1.0, _rounded(rng, 0.5, 1.5)])}
    return {}


def _cache_inputs(rng):
    """One of the host's caches with its inputs: the defaults (threshold 0.2 from 15 % to
    95 %), or from the first step to the last, and thresholds up to the node's maximum (3.0),
    so that the tiny models' few steps do get skipped."""
    start = rng.choice([0.15, 0.0, _rounded(rng, 0.0, 0.5)])
    return {"node": rng.choice(CACHES), "reuse_threshold": rng.choice([0.2, 1.0, 3.0, _rounded(rng, 0.05, 3.0)]),
            "start_percent": start, "end_percent": rng.choice([0.95, 1.0, _rounded(rng, start, 1.0)])}


def _late_draws(rng, case):
    """The negative prompt, a cache, one more guidance patch, the keeps the cutoff added after
    the first and the empty prompt for the cutoff (in this order, after all the rest, so that
    adding one keeps the earlier fields of every case id)."""
    negative = rng.choice(NEGATIVE_PROMPTS) if rng.random() < NEGATIVE_SHARE else ""
    cache = _cache_inputs(rng) if rng.random() < CACHE_SHARE else {}
    patches = dict(case.patches)
    if rng.random() < GUIDANCE_SHARE:
        name = rng.choice(GUIDANCE_PATCHES)
        patches[name] = _patch_inputs(rng, name)
    # (two draws whatever the cutoff's keeps, so a draw added after this one does not move with them)
    swap, which = rng.random(), rng.random()
    keep, late_keeps = case.keep, [k for k in cs.KEEP_CHOICES if k not in KEEPS]
    if swap < LATE_KEEP_SHARE and late_keeps and keep == "uncond":
        keep = late_keeps[int(which * len(late_keeps))]
    empty = rng.random() < EMPTY_SHARE
    case = replace(case, negative=negative, cache=cache, patches=patches, keep=keep, empty=empty)
    return _late_mode(rng, case)


def _late_mode(rng, case):
    """The modes the cutoff added after the first four, in place of 'adaptive' (its guidance start, in
    steps, is kept). The same draws whatever the case, so a draw added after these does not move."""
    swap, which = rng.random(), rng.random()
    threshold = rng.choice([0.0, settled.DEFAULT_THRESHOLD, settled.MAX_THRESHOLD, _rounded(rng, 0.05, 2.0, 3)])
    late_modes = [m for m in MODES if m not in EARLY_MODES]
    if swap < LATE_MODE_SHARE and late_modes and case.mode == cs.MODE_ADAPTIVE:
        mode = late_modes[int(which * len(late_modes))]
        return replace(case, mode=mode, cutoff={"auto_threshold": threshold})
    return case


def draw_case(seed, index):
    """Case ``index`` of the stream ``seed``."""
    rng = random.Random(f"shapefirst-fuzz:{seed}:{index}")
    steps = rng.randint(4, 6)
    mode = rng.choice(EARLY_MODES)
    patch_count = rng.choices([0, 1, 2], weights=[3, 5, 2])[0]
    patch_names = sorted(rng.sample(PATCHES, patch_count))
    architecture = rng.choice(UNET_ARCHITECTURES)
    case = Case(
        seed=seed, index=index,
        architecture=architecture,
        sampler=rng.choice(SAMPLERS),
        scheduler=rng.choice(SCHEDULERS),
        steps=steps,
        denoise=rng.choice([1.0, 1.0, _rounded(rng, 0.35, 0.95)]),
        batch=rng.choice([1, 1, 2, 3]),
        cfg=rng.choice([1.0, _rounded(rng, 1.5, 9.0, 1), 7.5]),
        mode=mode,
        keep=rng.choice(KEEPS),
        cutoff=_cutoff_inputs(rng, mode, steps),
        patches={name: _patch_inputs(rng, name) for name in patch_names},
        noise_seed=rng.randint(0, 2**31 - 1),
    )
    if rng.random() < FAMILY_SHARE:
        architecture = rng.choice(FAMILY_ARCHITECTURES)
        sampler = case.sampler if case.sampler in FAMILY_SAMPLERS else rng.choice(FAMILY_SAMPLERS)
        case = replace(case, architecture=architecture, sampler=sampler,
                       patches={name: p for name, p in case.patches.items() if name in FAMILY_PATCHES})
    # drawn last, so every other field of a case id stays what it was before the start existed
    case = replace(case, start=_start_inputs(rng, mode, case.cutoff))
    return _late_draws(rng, case)


def draw_cases(seed, start, count):
    return [draw_case(seed, index) for index in range(start, start + count)]


def restrict_calls(calls, branch):
    """What is left of a run's UNet calls when only ``branch`` (0 cond, 1 uncond) is asked for.

    ``calls`` are ``(batch, cond_or_uncond, spatial shape)``; ComfyUI batches each branch's
    entries of one shape together, ``batch / len(cond_or_uncond)`` rows per entry, so the
    kept branch's entries keep their calls and shapes, with the other branch's rows gone.
    """
    kept = []
    for batch, branches, spatial in calls:
        count = sum(1 for b in branches if b == branch)
        if count:
            kept.append((batch // len(branches) * count, (branch,) * count, spatial))
    return sorted(kept)


def before_start(sigmas, start_sigma):
    """Per evaluation (at ``sigmas``, in run order), whether it comes before the guidance start
    (README: one branch above the start sigma, until the first evaluation at or below it;
    ``start_sigma`` None: none does)."""
    before, started = [], start_sigma is None
    for sigma in sigmas:
        started = started or sigma <= start_sigma
        before.append(not started)
    return before


def adaptive_branches(measured, sigmas, floor_sigma, latest_sigma, threshold, margin=1e-5):
    """Which evaluations of an adaptive run use the text, from the README's rule.

    ``sigmas[i]`` is evaluation i's noise level, ``measured[i]`` the largest
    ||eps_c - eps_u|| / ||eps_u|| of its batch (None when it ran one branch).
    Evaluations above ``floor_sigma`` (the last minimum step's sigma) always guide; the first
    guided one at or below it whose value is under ``threshold`` (the whole batch) ends the
    text for every evaluation below its sigma, and at the latest at ``latest_sigma`` (the
    maximum steps; None: never).
    ``floor_sigma`` None (minimum 0): no evaluation guides.
    Returns (a list of True = guided, whether a value was too close to the threshold
    to decide the outcome robustly).
    """
    guided, dropped, decided_at, ambiguous = [], floor_sigma is None, None, False  # None: minimum 0
    for value, sigma in zip(measured, sigmas):
        if not dropped and latest_sigma is not None and sigma <= latest_sigma:
            dropped = True
        if not dropped and decided_at is not None and sigma < decided_at:
            dropped = True  # below the sigma whose measurement ended the text
        guided.append(not dropped)
        if dropped or decided_at is not None or value is None or sigma > floor_sigma:
            continue
        if abs(value - threshold) <= margin * max(threshold, 1.0):
            ambiguous = True
        if value < threshold:
            decided_at = sigma
    return guided, ambiguous
