"""The guidance cutoff at sampling time: which UNet branches run at each evaluation.

Hooks (both written into a cloned ModelPatcher's model_options, never global):
- ``sampler_calc_cond_batch_function``: the host's one slot for computing the
  [cond, uncond] predictions. Before the cutoff it computes both as usual; after it only
  the kept branch runs (half the UNet batch, ``cond_or_uncond`` still names the branch)
  and that prediction is returned for both slots, so CFG yields exactly it and
  pre/post-CFG hooks see a consistent pair. A function already in the slot is chained.
- a ``SAMPLER_SAMPLE`` wrapper: runs once per sampler run, gives every run fresh state
  (the schedule, counters, adaptive measurements) in that run's own model_options,
  counts steps through the sampler callback and reports what happened at the end.
"""
import logging
import math

import torch

import comfy.patcher_extension
import comfy.samplers

from ..shapefirst_core import cutoff_schedule as cs

RUN_STATE_KEY = "shapefirst_guidance_cutoff"
WRAPPER_KEY = "shapefirst_guidance_cutoff"

# Host samplers whose evaluations do not walk the given schedule step by step: the
# sigma is read at every evaluation for them instead of being bounded by counting.
_OFF_SCHEDULE_SAMPLERS = {"dpm_fast_function", "dpm_adaptive_function"}
_SCHEDULE_SAMPLER_MODULES = {"comfy.k_diffusion.sampling", "comfy.extra_samplers.uni_pc", "comfy.samplers"}

# Host samplers that evaluate the model once per step, at exactly the step's sigma (read
# from comfy/k_diffusion/sampling.py): evaluation k runs at schedule[k], so the cutoff needs
# no device read at all (a read would drain the GPU queue once; with CUDA graphs that costs
# a few ms). Euler only without churn (s_churn raises the evaluated sigma).
_ONE_EVALUATION_PER_STEP = {
    "sample_euler", "sample_euler_ancestral", "sample_euler_ancestral_RF", "sample_lms", "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde", "sample_dpmpp_2m_sde_gpu", "sample_dpmpp_3m_sde", "sample_dpmpp_3m_sde_gpu",
    "sample_lcm", "sample_ipndm", "sample_ipndm_v", "sample_deis",
}

# Host samplers whose step k evaluates below schedule[k + 1] (every other host sampler stays
# within [schedule[k + 1], schedule[k]]): heunpp2's step k also evaluates at schedule[k + 2].
# The floor from counting evaluations must reach that far, or such an evaluation at the
# cutoff sigma would run both branches without the sigma being read.
_SCHEDULE_LOOKAHEAD = {"sample_heunpp2": 2}

log = logging.getLogger("ShapeFirst")


def _sampler_function(sampler):
    """(module, name) of the function a KSAMPLER runs; empty strings for other samplers."""
    function = getattr(sampler, "sampler_function", None)
    return getattr(function, "__module__", "") or "", getattr(function, "__name__", "") or ""


def _walks_schedule(sampler):
    """True for the host's samplers, which evaluate step by step along the schedule."""
    module, name = _sampler_function(sampler)
    return name not in _OFF_SCHEDULE_SAMPLERS and module in _SCHEDULE_SAMPLER_MODULES


def _schedule_lookahead(sampler):
    """How many schedule sigmas past its start a step of this sampler may evaluate at."""
    module, name = _sampler_function(sampler)
    return _SCHEDULE_LOOKAHEAD.get(name, 1) if module == "comfy.k_diffusion.sampling" else 1


def _one_evaluation_per_step(sampler, guider):
    """True when this run's k-th model evaluation is at schedule[k]: a host sampler of
    that kind, and a guider that evaluates through ComfyUI's CFG function once per call."""
    module, name = _sampler_function(sampler)
    return (module == "comfy.k_diffusion.sampling" and name in _ONE_EVALUATION_PER_STEP
            and not getattr(sampler, "extra_options", {}).get("s_churn", 0)
            and getattr(type(guider), "predict_noise", None) is comfy.samplers.CFGGuider.predict_noise)


def relative_guidance(cond_pred, uncond_pred, x):
    """Per image ``||eps_c - eps_u|| / ||eps_u||`` from the two denoised predictions.

    With ``eps = (x - x0) / sigma`` the sigma cancels, so the denoised outputs suffice.
    """
    dims = tuple(range(1, x.ndim))
    difference = torch.linalg.vector_norm((cond_pred - uncond_pred).float(), dim=dims)
    reference = torch.linalg.vector_norm((x - uncond_pred).float(), dim=dims)
    return difference / reference.clamp_min(1e-12)


class CutoffRun:
    """State of one sampler run. Lives in that run's model_options, so it never leaks
    into the next run, another sampler, or the model the node received."""

    def __init__(self, settings, schedule, walks_schedule, one_evaluation_per_step=False, lookahead=1):
        self.settings = settings
        self.schedule = schedule
        self.total_steps = cs.step_count(schedule)
        self.walks_schedule = walks_schedule
        self.one_evaluation_per_step = one_evaluation_per_step
        self.lookahead = lookahead  # a step k evaluates at sigmas down to schedule[k + lookahead]
        self.cut_sigma = cs.cutoff_sigma_for(settings, schedule)
        self.adaptive = settings.mode == cs.MODE_ADAPTIVE
        self.adaptive_floor = cs.adaptive_floor_sigma(settings, schedule) if self.adaptive else None
        self.dropped = False
        self.drop_sigma = None  # sigma of the first single-branch evaluation (fixed modes)
        self.last_guided_sigma = None  # sigma of the last guided evaluation (adaptive mode)
        self.last_reported_step = -1
        self.full_evaluations = 0
        self.single_evaluations = 0
        self.sigma_reads = 0
        self.no_uncond_evaluations = 0
        self.replaced_by = None  # the function that took the slot from the cutoff, if one did
        self.stopped = False  # interrupted or failed before the sampler finished
        self.guidance_trace = []  # adaptive: (sigma, [relative guidance per image]) per measured evaluation

    @property
    def evaluations(self):
        return self.full_evaluations + self.single_evaluations

    def _read(self, *tensors):
        """One device->host copy of all values needed now (a synchronisation on a GPU)."""
        self.sigma_reads += 1
        return torch.cat([t.detach().float().reshape(-1) for t in tensors]).cpu().tolist()

    def _latch(self, sigma):
        self.dropped = True
        self.drop_sigma = sigma

    def known_sigma(self):
        """The next evaluation's sigma when it is known without reading the device."""
        calls = self.evaluations + self.no_uncond_evaluations  # every model evaluation so far
        if self.one_evaluation_per_step and calls < len(self.schedule):
            return self.schedule[calls]
        return None

    def known_floor_sigma(self):
        """A sigma the next evaluation is known to be at or above, without reading the
        device, or None when the sampler does not walk the schedule."""
        if not self.walks_schedule:
            return None
        floor = cs.sigma_floor_index(self.evaluations, self.last_reported_step, self.lookahead)
        return self.schedule[floor] if floor < len(self.schedule) else None

    def should_drop(self, sigma, floor_sigma, known_sigma=None):
        """Decide for the evaluation about to run at ``sigma`` (a device tensor), reading it
        only when neither ``known_sigma`` nor the floor settles the question."""
        if self.dropped:
            return True
        if self.cut_sigma is None or (floor_sigma is not None and floor_sigma > self.cut_sigma):
            return False
        (value,) = (known_sigma,) if known_sigma is not None else self._read(sigma.max())
        if value <= self.cut_sigma:
            self._latch(value)
            return True
        return False

    def observe(self, sigma, floor_sigma, cond_pred, uncond_pred, x):
        """Adaptive mode: after a guided evaluation past the minimum steps, drop the text
        from the next evaluation on once every image of the batch is under the threshold."""
        if floor_sigma is not None and floor_sigma > self.adaptive_floor:
            return  # still inside the minimum steps: nothing to decide, nothing to read
        values = self._read(sigma.max(), relative_guidance(cond_pred, uncond_pred, x))
        value_sigma, per_image = values[0], values[1:]
        self.guidance_trace.append((value_sigma, per_image))
        # per batch: the text goes only when no image still needs it
        if value_sigma <= self.adaptive_floor and max(per_image) < self.settings.adaptive_threshold:
            self.dropped = True
            self.last_guided_sigma = value_sigma

    def guided_steps(self):
        """Steps that used the text, read off the schedule at the sigma where it stopped."""
        if not self.dropped:
            return self.total_steps
        if self.drop_sigma is None:
            return sum(1 for s in self.schedule[:self.total_steps] if s >= self.last_guided_sigma)
        return cs.guided_steps_below(self.schedule, self.drop_sigma)

    def summary(self, distilled=False):
        if self.replaced_by is not None:
            return (f"ShapeFirst guidance cutoff: not applied: {self.replaced_by}, from a node applied after "
                    f"Guidance Cutoff, took ComfyUI's calc_cond_batch slot (it holds one function). Apply "
                    f"Guidance Cutoff after that node.")
        if self.stopped:
            return (f"ShapeFirst guidance cutoff: the run stopped early (interrupted or failed) after "
                    f"{self.evaluations} model evaluations, {self.single_evaluations} of them without text.")
        if self.no_uncond_evaluations and not self.evaluations:
            reason = ("this model is guidance-distilled and sampled at cfg 1"
                      if distilled else "cfg is 1")
            return (f"ShapeFirst guidance cutoff: no-op, {reason}: ComfyUI evaluates only the conditional "
                    f"branch, so there is no second branch to drop. Use cfg > 1 to compare.")
        saved = cs.saved_share(self.full_evaluations, self.single_evaluations)
        if not self.single_evaluations:  # (adaptive mode can decide after the last evaluation)
            why = ("the guidance never fell below the threshold before the last evaluation" if self.adaptive
                   else "the cutoff is at or past the last step")
            return (f"ShapeFirst guidance cutoff: text kept for all {self.total_steps} steps "
                    f"({why}): full guidance, nothing saved.")
        guided = self.guided_steps()
        return (f"ShapeFirst guidance cutoff: text dropped after step {guided} of {self.total_steps} "
                f"({self._where()}; paper's a = {cs.paper_a(self.total_steps, guided)}), "
                f"keeping {self.settings.keep}; {self.single_evaluations} of "
                f"{2 * self.evaluations} UNet branch evaluations saved ({100 * saved:.1f}%).")


    def _where(self):
        if self.drop_sigma is not None:
            return f"from sigma {self.drop_sigma:.4g}"
        return f"adaptive, after sigma {self.last_guided_sigma:.4g}"


class GuidanceCutoffPatch:
    """Installed on a cloned ModelPatcher by :func:`apply_cutoff`."""

    def __init__(self, settings, previous_calc_cond_batch=None, report=None):
        self.settings = settings
        self.previous_calc_cond_batch = previous_calc_cond_batch
        self.report = report
        self.last_run = None  # the latest finished run, for tests and the node UI

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options, slot included (0.3.64, 0.3.75; newer
        # hosts copy only its dicts and lists and share the slot's function as it is): every
        # later node (LoRA, FreeU, ...) would otherwise hold a copy that the run's wrapper, which
        # stays this object, cannot recognise. The patch holds settings only (run state lives in
        # each run's model_options), so the clones can share it.
        return self

    def _compute(self, args, conds):
        if self.previous_calc_cond_batch is not None:
            return self.previous_calc_cond_batch({**args, "conds": conds})
        return comfy.samplers.calc_cond_batch(args["model"], conds, args["input"], args["sigma"], args["model_options"])

    def calc_cond_batch(self, args):
        conds = args["conds"]
        run = args["model_options"].get(RUN_STATE_KEY)
        if run is None:  # called outside a sampler run we set up: behave like the host
            return self._compute(args, conds)
        if conds[0] is None or conds[1] is None:
            run.no_uncond_evaluations += 1
            return self._compute(args, conds)
        keep = self.settings.kept_branch
        known_sigma = run.known_sigma()
        floor_sigma = known_sigma if known_sigma is not None else run.known_floor_sigma()
        if run.should_drop(args["sigma"], floor_sigma, known_sigma):
            single = [None, None]
            single[keep] = conds[keep]
            kept = self._compute(args, single)[keep]
            run.single_evaluations += 1
            return [kept, kept]
        out = self._compute(args, conds)
        run.full_evaluations += 1
        if run.adaptive:
            run.observe(args["sigma"], floor_sigma, out[0], out[1], args["input"])
        return out

    def sampler_sample_wrapper(self, executor, guider, sigmas, extra_args, callback, *args, **kwargs):
        schedule = sigmas.detach().float().cpu().tolist()  # once per run, before any step
        run = CutoffRun(self.settings, schedule, _walks_schedule(executor.class_obj),
                        _one_evaluation_per_step(executor.class_obj, guider), _schedule_lookahead(executor.class_obj))
        model_options = extra_args["model_options"]  # this run's own copy (CFGGuider.inner_sample)
        check_run_inputs(self.settings, run, guider, model_options)
        slot = model_options.get("sampler_calc_cond_batch_function")
        if slot != self.calc_cond_batch:  # a later patch overwrote the one slot: say so, don't pretend
            run.replaced_by = getattr(slot, "__qualname__", repr(slot))
        # beside, not inside, transformer_options: those reach the UNet, and a compiled UNet
        # would recompile when their size changes
        model_options[RUN_STATE_KEY] = run

        def step_counter(step, x0, x, total_steps):
            run.last_reported_step = step
            if callback is not None:
                callback(step, x0, x, total_steps)

        try:
            return executor(guider, sigmas, extra_args, step_counter, *args, **kwargs)
        except BaseException:
            run.stopped = True
            raise
        finally:
            self.last_run = run
            distilled = _is_guidance_distilled(guider)
            message = run.summary(distilled)
            log.info(message)
            if self.report is not None:
                self.report(message, run)


def check_negative(negative, cfg):
    """A message naming 'negative' when there is no unconditional conditioning to evaluate
    (ComfyUI itself fails on None deep inside, and evaluates an empty list as zeros)."""
    if negative is None or (len(negative) == 0 and not (cfg is not None and is_cfg_one(cfg))):
        raise ValueError(
            "negative is missing or empty: classifier-free guidance (cfg above 1) and the cutoff's "
            "unconditional branch need it, and ComfyUI would evaluate it as zeros. Connect a CLIP Text "
            "Encode of your negative prompt, or of an empty prompt, to 'negative'.")


def check_run_inputs(settings, run, guider, model_options):
    """Clear messages, before the first step, for combinations that cannot work."""
    conds = getattr(guider, "conds", None)
    if isinstance(conds, dict) and "negative" in conds:
        check_negative(conds["negative"], getattr(guider, "cfg", None))
    first_single = run.cut_sigma is not None and run.cut_sigma >= run.schedule[0]
    if settings.keep == cs.KEEP_COND and first_single and model_options.get("disable_cfg1_optimization"):
        # e.g. Self-Attention Guidance: it reads the unconditional branch's attention, and fails
        # deep inside ComfyUI when that branch never runs
        raise ValueError(
            "keep 'cond' with no guided step: a patch on this model reads the unconditional prediction "
            "(it sets disable_cfg1_optimization, as Self-Attention Guidance does), which would never be "
            "computed. Use at least one guided step, or keep 'uncond'.")


def _is_guidance_distilled(guider):
    model = getattr(guider, "inner_model", None) or getattr(getattr(guider, "model_patcher", None), "model", None)
    unet_config = getattr(getattr(model, "model_config", None), "unet_config", {}) or {}
    return bool(unet_config.get("guidance_embed"))


def apply_cutoff(model, settings, report=None):
    """A clone of ``model`` (a ModelPatcher) with the cutoff installed; ``model`` is untouched.

    Applying it to a model that already has a ShapeFirst cutoff replaces that one (the
    last node wins) instead of stacking two.
    """
    patched = model.clone()
    previous = patched.model_options.get("sampler_calc_cond_batch_function")
    owner = getattr(previous, "__self__", None)
    if isinstance(owner, GuidanceCutoffPatch):
        previous = owner.previous_calc_cond_batch
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY)
    patch = GuidanceCutoffPatch(settings, previous, report)
    patched.set_model_sampler_calc_cond_batch_function(patch.calc_cond_batch)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY, patch.sampler_sample_wrapper)
    return patched, patch


def describe_plan(settings):
    """One line for the node UI: what will happen, in the user's own units."""
    if settings.mode == cs.MODE_STEPS:
        plan = f"text for the first {settings.guided_steps} steps"
    elif settings.mode == cs.MODE_FRACTION:
        plan = f"text for the first {100 * settings.guided_fraction:g}% of the steps"
    elif settings.mode == cs.MODE_SIGMA:
        plan = f"text while sigma > {settings.cutoff_sigma:g}"
    else:
        plan = (f"text until ||eps_c - eps_u|| / ||eps_u|| < {settings.adaptive_threshold:g} "
                f"(between step {settings.adaptive_min_steps} and {settings.adaptive_max_steps})")
    return f"{plan}, then only the {settings.keep} branch"


def is_cfg_one(cfg):
    return math.isclose(cfg, 1.0)
