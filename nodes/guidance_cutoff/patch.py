"""The guidance cutoff at sampling time: which UNet branches run at each evaluation.

Hooks (both written into a cloned ModelPatcher's model_options, never global):
- ``sampler_calc_cond_batch_function``: the host's one slot for computing the
  [cond, uncond] predictions. Inside the guided window it computes both as usual; before
  the guidance start (if one is set) and after the cutoff only one branch runs (half the
  UNet batch, ``cond_or_uncond`` still names the branch) and that prediction is returned for
  both slots, so CFG yields exactly it and pre/post-CFG hooks see a consistent pair. A
  function already in the slot is chained.
- a ``SAMPLER_SAMPLE`` wrapper: runs once per sampler run, gives every run fresh state
  (the schedule, counters, adaptive measurements) in that run's own model_options,
  counts steps through the sampler callback and reports what happened at the end.
"""
import logging
import math

import torch

import comfy.patcher_extension
import comfy.samplers

from . import schedule as cs
from ..validation import require

RUN_STATE_KEY = "shapefirst_guidance_cutoff"
WRAPPER_KEY = "shapefirst_guidance_cutoff"

log = logging.getLogger("ShapeFirst")


def traits_of(sampler, guider):
    """The schedule traits (``schedule.SamplerTraits``) of a sampler run by a guider: read off
    the function a KSAMPLER runs, its churn, and whether the guider is ComfyUI's own CFG."""
    function = getattr(sampler, "sampler_function", None)
    module, name = getattr(function, "__module__", "") or "", getattr(function, "__name__", "") or ""
    churn = getattr(sampler, "extra_options", {}).get("s_churn", 0)
    stock_guider = getattr(type(guider), "predict_noise", None) is comfy.samplers.CFGGuider.predict_noise
    return cs.sampler_traits(module, name, churn, stock_guider)


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
    into the next run, another sampler, or the model the node received.

    At a glance: ``traits`` say how the sampler walks ``schedule``; the counters say how many
    evaluations ran (``evaluations``) and how; ``next_sigma()`` is what is known of the next
    one's sigma, ``schedule.decide`` turns that into text / no text / read the sigma.
    """

    def __init__(self, settings, schedule, traits):
        self.settings = settings
        self.schedule = schedule
        self.total_steps = cs.step_count(schedule)
        self.traits = traits
        self.cut_sigma = cs.cutoff_sigma_for(settings, schedule)
        self.start_sigma = cs.start_sigma_for(settings, schedule)
        self.started = self.start_sigma is None  # the guided window reached (or passed)
        self.start_seen_sigma = None  # sigma of the first evaluation at or below the start
        self.before_start_evaluations = 0  # one-branch evaluations before the guidance start
        self.adaptive = settings.cutoff_mode == cs.MODE_ADAPTIVE
        self.adaptive_floor = cs.adaptive_floor_sigma(settings, schedule) if self.adaptive else None
        self.dropped = False
        self.drop_sigma = None  # sigma of the first single-branch evaluation
        self.adaptive_cut = None  # adaptive: the sigma whose measurement ended the text
        self.last_reported_step = -1
        self.full_evaluations = 0
        self.single_evaluations = 0
        self.no_uncond_evaluations = 0  # cfg 1: ComfyUI asked for the conditional branch only
        self.last_evaluation_single = False  # whether the latest evaluation ran one branch
        self.sigma_reads = 0
        self.replaced_by = None  # the function that took the slot from the cutoff, if one did
        self.stopped = False  # interrupted or failed before the sampler finished
        self.guidance_trace = []  # adaptive: (sigma, [relative guidance per image]) per measured evaluation
        if self.adaptive and self.adaptive_floor is None and self.total_steps:
            # adaptive_min_steps 0: nothing can be measured before the first evaluation
            self.dropped, self.drop_sigma = True, schedule[0]

    @property
    def evaluations(self):
        return self.full_evaluations + self.single_evaluations

    def next_sigma(self):
        """What is known of the next evaluation's sigma without a device read."""
        return cs.next_sigma(self.traits, self.schedule, self.evaluations + self.no_uncond_evaluations,
                             self.last_reported_step)

    def _read(self, *tensors):
        """One device->host copy of all values needed now (a synchronisation on a GPU)."""
        self.sigma_reads += 1
        return torch.cat([t.detach().float().reshape(-1) for t in tensors]).cpu().tolist()

    def plan(self, sigma, known):
        """``schedule.BEFORE_START``, ``TEXT`` or ``NO_TEXT`` for the evaluation about to run at
        ``sigma`` (a device tensor); the sigma is read (once) only when ``known`` does not settle
        it. The window's start (above ``start_sigma``: before it) and its cuts: the fixed one (at
        or below ``cut_sigma``) and, once the adaptive mode decided, below the sigma it measured
        (so a step that starts there, like heun's after its corrector, keeps the text)."""
        for cut, strict in ((self.cut_sigma, False), (self.adaptive_cut, True)):
            decision = cs.decide(cut, known, self.dropped, strict, self.start_sigma, self.started)
            if decision == cs.READ:
                (value,) = self._read(sigma.max())
                known = cs.NextSigma(exact=value)
                decision = cs.decide(cut, known, self.dropped, strict, self.start_sigma, self.started)
            if decision == cs.BEFORE_START:
                return decision
            if not self.started:  # (proved with the exact sigma: a floor cannot show "at or below")
                self.started, self.start_seen_sigma = True, known.exact
            if decision == cs.NO_TEXT:
                if not self.dropped:
                    self.dropped, self.drop_sigma = True, known.exact
                return decision
        return cs.TEXT

    def count(self, single, before_start=False):
        if single:
            self.single_evaluations += 1
            self.before_start_evaluations += before_start
        else:
            self.full_evaluations += 1
        self.last_evaluation_single = single

    def observe(self, sigma, known, cond_pred, uncond_pred, x):
        """Adaptive mode: after a guided evaluation past the minimum steps, drop the text
        from the next evaluation on once every image of the batch is under the threshold."""
        if self.adaptive_cut is not None or not cs.measures_guidance(self.adaptive_floor, known):
            return  # still inside the minimum steps: nothing to decide, nothing to read
        values = self._read(sigma.max(), relative_guidance(cond_pred, uncond_pred, x))
        value_sigma, per_image = values[0], values[1:]
        self.guidance_trace.append((value_sigma, per_image))
        # per batch: the text goes only when no image still needs it
        if value_sigma <= self.adaptive_floor and max(per_image) < self.settings.adaptive_threshold:
            self.adaptive_cut = value_sigma  # evaluations below it go without text

    def guided_steps(self):
        """Steps that used the text (before the guidance start too: ``U`` steps unguided, then
        full CFG), read off the schedule at the sigma where it stopped."""
        if not self.dropped:
            return self.total_steps
        return cs.guided_steps_below(self.schedule, self.drop_sigma)

    def steps_before_start(self):
        """``U``: steps before the guided window, read off the schedule at the sigma where the
        window (or, when it was empty, the cut) was reached; 0 without a guidance start."""
        if self.start_sigma is None or not self.before_start_evaluations:
            return 0
        if not self.started:
            return self.total_steps
        # (at least the step of the first evaluation, which ran before the start)
        return max(1, cs.guided_steps_below(self.schedule, self.start_seen_sigma))

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
        if self.before_start_evaluations:
            return f"ShapeFirst guidance cutoff: {self.window_summary(saved)}"
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

    def window_summary(self, saved):
        """The run with a guidance start, e.g. "text unguided for steps 0–2, full CFG for steps
        3–11, text dropped after step 12 of 20; 11 of 40 UNet branch evaluations saved (27.5 %)",
        then where each end was (sigmas, kept branches)."""
        before, guided, total = self.steps_before_start(), self.guided_steps(), self.total_steps
        parts = [f"{cs.before_start_words(self.settings.keep_before_start)} for {_steps(0, before - 1)}"]
        if guided > before:
            parts.append(f"full CFG for {_steps(before, guided - 1)}")
        if self.dropped:
            parts.append(f"{cs.after_cut_words(self.settings.keep)} after step {guided} of {total}")
        else:
            parts[-1] += f" of {total}"
        line = (f"{', '.join(parts)}; {self.single_evaluations} of {2 * self.evaluations} UNet branch "
                f"evaluations saved ({100 * saved:.1f} %).")
        details = [f"Before the window: {self.settings.keep_before_start} only"
                   + (f", above sigma {self.start_sigma:.4g}" if self.started else " (the window was never reached)")]
        if guided <= before and self.dropped:
            details.append("no step in the guided window: the guidance start is at or past the cutoff in this run")
        if self.dropped:
            details.append(f"after: {self.settings.keep} only ({self._where()}; paper's a = "
                           f"{cs.paper_a(total, guided)})")
        return f"{line} {'; '.join(details)}."

    def _where(self):
        if self.adaptive_cut is not None:
            return f"adaptive: guidance measured small at sigma {self.adaptive_cut:.4g}"
        return f"from sigma {self.drop_sigma:.4g}"


class GuidanceCutoffPatch:
    """Installed on a cloned ModelPatcher by :func:`apply_cutoff`. It holds settings only;
    each run's state is a :class:`CutoffRun` in that run's model_options."""

    def __init__(self, settings, previous_calc_cond_batch=None, report=None):
        self.settings = settings
        self.previous_calc_cond_batch = previous_calc_cond_batch
        self.report = report
        self.last_run = None  # the latest finished run, for introspection (the nodes use ``report``)

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options, slot included (0.3.64, 0.3.75; newer
        # hosts copy only its dicts and lists and share the slot's function as it is): every
        # later node (LoRA, FreeU, ...) would otherwise hold a copy that the run's wrapper, which
        # stays this object, cannot recognise. The patch holds settings only (run state lives in
        # each run's model_options), so the clones can share it.
        return self

    def _compute(self, args, conds):
        """The branches in ``conds`` (None: not computed), by the function that was in the slot
        before the cutoff or else by ComfyUI's own calc_cond_batch."""
        if self.previous_calc_cond_batch is not None:
            return self.previous_calc_cond_batch({**args, "conds": conds})
        return comfy.samplers.calc_cond_batch(args["model"], conds, args["input"], args["sigma"], args["model_options"])

    def evaluate_branches(self, args):
        """ComfyUI's ``sampler_calc_cond_batch_function`` slot: [cond, uncond] predictions,
        both computed while the text is used, only the kept one (returned in both places) after."""
        conds = args["conds"]
        run = args["model_options"].get(RUN_STATE_KEY)
        if run is None:  # called outside a sampler run we set up: behave like the host
            return self._compute(args, conds)
        if conds[0] is None or conds[1] is None:
            run.no_uncond_evaluations += 1
            return self._compute(args, conds)
        known = run.next_sigma()
        decision = run.plan(args["sigma"], known)
        if decision != cs.TEXT:
            before_start = decision == cs.BEFORE_START
            keep = self.settings.branch_before_start if before_start else self.settings.kept_branch
            single = [None, None]
            single[keep] = conds[keep]
            kept = self._compute(args, single)[keep]
            run.count(single=True, before_start=before_start)
            return [kept, kept]
        out = self._compute(args, conds)
        run.count(single=False)
        if run.adaptive:
            run.observe(args["sigma"], known, out[0], out[1], args["input"])
        return out

    def sampler_sample_wrapper(self, executor, guider, sigmas, extra_args, callback, *args, **kwargs):
        schedule = sigmas.detach().float().cpu().tolist()  # once per run, before any step
        run = CutoffRun(self.settings, schedule, traits_of(executor.class_obj, guider))
        model_options = extra_args["model_options"]  # this run's own copy (CFGGuider.inner_sample)
        require(check_run_inputs(self.settings, run, guider, model_options))
        slot = model_options.get("sampler_calc_cond_batch_function")
        if slot != self.evaluate_branches:  # a later patch overwrote the one slot: say so, don't pretend
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
    (ComfyUI itself fails on None deep inside, and evaluates an empty list as zeros), or None."""
    if negative is None or (len(negative) == 0 and not (cfg is not None and is_cfg_one(cfg))):
        return (
            "negative is missing or empty: classifier-free guidance (cfg above 1) and the cutoff's "
            "unconditional branch need it, and ComfyUI would evaluate it as zeros. Connect a CLIP Text "
            "Encode of your negative prompt, or of an empty prompt, to 'negative'.")


def check_run_inputs(settings, run, guider, model_options):
    """The message, before the first step, for a combination that cannot work, or None."""
    conds = getattr(guider, "conds", None)
    if isinstance(conds, dict) and "negative" in conds:
        problem = check_negative(conds["negative"], getattr(guider, "cfg", None))
        if problem:
            return problem
    if not model_options.get("disable_cfg1_optimization") or not run.schedule:
        return None
    # e.g. Self-Attention Guidance: it reads the unconditional branch's attention, and fails
    # deep inside ComfyUI when that branch has not run before (it keeps the latest one)
    first = cs.decide(run.cut_sigma, cs.NextSigma(exact=run.schedule[0]), run.dropped, False, run.start_sigma)
    reads = ("a patch on this model reads the unconditional prediction (it sets disable_cfg1_optimization, as "
             "Self-Attention Guidance does), which would never be computed")
    if first == cs.BEFORE_START and settings.keep_before_start == cs.KEEP_COND:
        return (f"keep_before_start 'cond' with a guidance start: {reads} before the start. Set keep_before_start "
                f"to 'uncond', or the guidance start to 0 (full CFG from the first step).")
    if first == cs.NO_TEXT and settings.keep == cs.KEEP_COND:
        return f"keep 'cond' with no guided step: {reads}. Use at least one guided step, or keep 'uncond'."
    return None


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
    patched.set_model_sampler_calc_cond_batch_function(patch.evaluate_branches)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY, patch.sampler_sample_wrapper)
    return patched, patch


def describe_plan(settings):
    """One line for the node UI: what will happen, in the user's own units."""
    if settings.has_start:
        return describe_window_plan(settings)
    if settings.cutoff_mode == cs.MODE_STEPS:
        plan = f"text for the first {settings.guided_steps} steps"
    elif settings.cutoff_mode == cs.MODE_FRACTION:
        plan = f"text for the first {100 * settings.guided_fraction:g}% of the steps"
    elif settings.cutoff_mode == cs.MODE_SIGMA:
        plan = f"text while sigma > {settings.cutoff_sigma:g}"
    else:
        plan = (f"text until ||eps_c - eps_u|| / ||eps_u|| < {settings.adaptive_threshold:g} "
                f"(between step {settings.adaptive_min_steps} and {settings.adaptive_max_steps})")
    return f"{plan}, then only the {settings.keep} branch"


def describe_window_plan(settings):
    """The plan with a guidance start, named like the run's summary: "text unguided for steps
    0–2, full CFG for steps 3–11, text dropped after step 12, ..." (in the mode's unit)."""
    what = cs.before_start_words(settings.keep_before_start)
    after = f"then only the {settings.keep} branch"
    mode = settings.cutoff_mode
    if mode == cs.MODE_STEPS:
        start, end = settings.guidance_start_step, settings.guided_steps
        return (f"{what} for {_steps(0, start - 1)}, full CFG for {_steps(start, end - 1)}, "
                f"{cs.after_cut_words(settings.keep)} after step {end} "
                f"({after}; steps counted within the run's steps)")
    if mode == cs.MODE_FRACTION:
        return (f"{what} for the first {100 * settings.guidance_start_fraction:g}% of the steps, full CFG until "
                f"{100 * settings.guided_fraction:g}% of them, {after}")
    if mode == cs.MODE_SIGMA:
        return (f"{what} while sigma > {settings.guidance_start_sigma:g}, full CFG for sigma in "
                f"({settings.cutoff_sigma:g}, {settings.guidance_start_sigma:g}], {after}")
    return (f"{what} for {_steps(0, settings.guidance_start_step - 1)}, full CFG until "
            f"||eps_c - eps_u|| / ||eps_u|| < {settings.adaptive_threshold:g} (between step "
            f"{settings.adaptive_min_steps} and {settings.adaptive_max_steps}), {after}")


def _steps(first, last):
    """"step 3" or "steps 3–11" (0-based, both included)."""
    return f"step {first}" if first == last else f"steps {first}–{last}"


def is_cfg_one(cfg):
    return math.isclose(cfg, 1.0)
