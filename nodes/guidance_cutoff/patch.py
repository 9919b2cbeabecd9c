"""The guidance cutoff at sampling time: which UNet branches run at each evaluation.

Hooks (all written into a cloned ModelPatcher's model_options, never global):
- ``sampler_calc_cond_batch_function``: the host's one slot for computing the
  [cond, uncond] predictions. Inside the guided window it computes both as usual; before
  the guidance start (if one is set) and after the cutoff only one branch runs (half the
  UNet batch, ``cond_or_uncond`` still names the branch) and that prediction is returned for
  both slots, so CFG yields exactly it and pre/post-CFG hooks see a consistent pair. A
  function already in the slot is chained.
- a ``SAMPLER_SAMPLE`` wrapper: runs once per sampler run, gives every run fresh state
  (the schedule, counters, adaptive measurements) in that run's own model_options,
  counts steps through the sampler callback and reports what happened at the end.
- an ``OUTER_SAMPLE`` wrapper: hands the empty prompt (``empty_conditioning``, when given) to
  the guider beside its positive and negative, so the host prepares it like the negative
  (areas, ControlNet, model conds); after the cut it stands in the uncond slot: the paper's
  unconditional, where ComfyUI's uncond is the graph's negative prompt.
- a ``CALC_COND_BATCH`` wrapper: counts every branch evaluation of the run, the neighbours'
  own passes (PAG, SAG, PerpNeg...) and a guider's own batch included, so the summary says
  what really ran.
"""
import logging
import math

import torch

import comfy.patcher_extension
import comfy.sampler_helpers
import comfy.samplers

from . import neighbours as nb
from . import schedule as cs
from . import settled
from ..validation import require

RUN_STATE_KEY = "shapefirst_guidance_cutoff"
WRAPPER_KEY = "shapefirst_guidance_cutoff"
EMPTY_PROMPT_KEY = "shapefirst_empty_prompt"  # the guider's conds key of the empty prompt

NEGATIVE_ALONE = ("After the cut the graph's negative prompt runs alone (ComfyUI's unconditional branch is the "
                  "negative prompt; the paper's is the empty prompt): connect a CLIP Text Encode of an empty prompt "
                  "to empty_conditioning, or choose keep 'negative' to keep this on purpose.")

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
        self.automatic = settings.cutoff_mode == cs.MODE_AUTOMATIC
        self.cfg = None  # the guider's cfg when it is one number (the automatic mode's measure uses it)
        self.shape_trace = []  # automatic: (sigma, the batch's largest shape effect) per measured evaluation
        self.dropped = False
        self.drop_sigma = None  # sigma of the first single-branch evaluation
        self.adaptive_cut = None  # adaptive, automatic: the sigma whose measurement ended the text
        self.last_reported_step = -1
        self.full_evaluations = 0
        self.single_evaluations = 0
        self.no_uncond_evaluations = 0  # cfg 1: ComfyUI asked for the conditional branch only
        self.last_evaluation_single = False  # whether the latest evaluation ran one branch
        self.sigma_reads = 0
        self.replaced_by = None  # the function that took the slot from the cutoff, if one did
        self.stopped = False  # interrupted or failed before the sampler finished
        self.guidance_trace = []  # adaptive: (sigma, [relative guidance per image]) per measured evaluation
        self.empty_conds = None  # the empty prompt, prepared by the host, in the uncond slot (None: the negative)
        self.neighbours = ()  # other nodes on the model whose behaviour changes after the cut
        self.guider_name = None
        self.branch_evaluations = 0  # every branch evaluated through the host's calc_cond_batch in this run
        self.cache_skips = {}  # EasyCache / LazyCache: how many of their evaluations they skipped
        self.cache_lost_its_branch = False  # EasyCache followed a branch that stopped at the cut
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

    def observe_shape(self, sigma, known, cond_pred, uncond_pred):
        """Automatic mode: after each guided evaluation, drop the text from the next evaluation on
        once the text's effect on the shape of the predicted picture is below the threshold for
        every image of the batch (``settled``). One read per measured evaluation: the batch's
        largest effect, with the sigma only where the schedule does not give it exactly."""
        if self.adaptive_cut is not None:
            return
        value = settled.batch_effect(cond_pred, uncond_pred, self.cfg, self.settings.keep == cs.KEEP_COND)
        if known.exact is not None:
            value_sigma, (measured,) = known.exact, self._read(value)
        else:
            value_sigma, measured = self._read(sigma.max(), value)
        self.shape_trace.append((value_sigma, measured))
        if settled.settled(measured, self.settings.auto_threshold):
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
        """What really ran, in one paragraph: the plan as it happened, then one sentence each for the
        empty or negative prompt, the evaluations the neighbours ran, and each neighbour that changes."""
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
        if not self.evaluations and self.total_steps:
            return self.bypassed_summary()
        return " ".join([f"ShapeFirst guidance cutoff: {self.plan_as_run()}", *self.notes()])

    def plan_as_run(self):
        saved = cs.saved_share(self.full_evaluations, self.single_evaluations)
        if self.before_start_evaluations:
            return self.window_summary(saved)
        if not self.single_evaluations:  # (adaptive mode can decide after the last evaluation)
            if self.adaptive:
                why = "the guidance never fell below the threshold before the last evaluation"
            elif self.automatic:
                largest = f" (at the last measurement {self.shape_trace[-1][1]:.3g})" if self.shape_trace else ""
                why = (f"the text's effect on the shape never fell below auto_threshold "
                       f"{self.settings.auto_threshold:g}{largest} before the last evaluation")
            elif self.cut_sigma is None:
                why = "the cutoff is at or past the last step"
            else:
                why = f"no evaluation ran at or below the cutoff's sigma {self.cut_sigma:.4g}"
            return f"text kept for all {self.total_steps} steps ({why}): full guidance, nothing saved."
        guided = self.guided_steps()
        return (f"text dropped after step {guided} of {self.total_steps} "
                f"({self._where()}; paper's a = {cs.paper_a(self.total_steps, guided)}), "
                f"keeping {self.kept_words()}; {self.single_evaluations} of "
                f"{2 * self.evaluations} UNet branch evaluations saved ({100 * saved:.1f}%).")

    def kept_words(self):
        """The branch kept after the cut, with the prompt it really evaluated."""
        if self.settings.keep == cs.KEEP_UNCOND:
            return "uncond (the empty prompt)" if self.empty_conds is not None else "uncond (the negative prompt)"
        return self.settings.keep

    def notes(self):
        """One sentence each: the prompt in the uncond slot, the neighbours' own evaluations and
        caches, and what changes for each neighbour after the cut."""
        notes = []
        if self.single_evaluations and self.empty_conds is None and cs.uses_unconditional(self.settings):
            notes.append(NEGATIVE_ALONE)
        extra = self.branch_evaluations - self.full_evaluations * 2 - self.single_evaluations
        if extra > 0:
            by = nb.extra_pass_names(self.neighbours) or "other nodes on the model"
            notes.append(f"Besides these, {extra} branch evaluations ran for {by} (not counted as saved or spent "
                         f"by the cutoff).")
        for name, skipped in self.cache_skips.items():
            notes.append(f"{name} skipped {skipped} of the {self.total_steps} steps' model evaluations.")
        if self.single_evaluations:
            notes += [note for n in self.neighbours if (note := nb.after_cut_note(n, self.settings.keep))]
            if self.cache_lost_its_branch:
                notes.append(nb.EASYCACHE_LOST_BRANCH)
        return notes

    def bypassed_summary(self):
        """No evaluation went through the cutoff: a guider that computes its batch itself."""
        who = nb.guider_node_name(self.guider_name)
        ran = (f" ({self.branch_evaluations} branch evaluations ran, all of them guided)"
               if self.branch_evaluations else "")
        return (f"ShapeFirst guidance cutoff: not applied: {who} computes its branches itself and never uses "
                f"ComfyUI's calc_cond_batch slot, where the cutoff works{ran}. {nb.instead_of_guider(self.guider_name)}")

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
        if self.automatic and self.adaptive_cut is not None:
            step = cs.guided_steps_below(self.schedule, self.adaptive_cut) + 1
            return (f"automatic: in step {step} (sigma {self.adaptive_cut:.4g}) the text changed the shape of the "
                    f"predicted picture by {self.shape_trace[-1][1]:.3g} at most over the batch, below auto_threshold "
                    f"{self.settings.auto_threshold:g}: the shape had settled")
        if self.adaptive_cut is not None:
            return f"adaptive: guidance measured small at sigma {self.adaptive_cut:.4g}"
        return f"from sigma {self.drop_sigma:.4g}"


class GuidanceCutoffPatch:
    """Installed on a cloned ModelPatcher by :func:`apply_cutoff`. It holds settings only (and
    the empty prompt's conditioning, when given); each run's state is a :class:`CutoffRun` in that
    run's model_options."""

    def __init__(self, settings, previous_calc_cond_batch=None, report=None, empty_conditioning=None):
        self.settings = settings
        self.previous_calc_cond_batch = previous_calc_cond_batch
        self.report = report
        self.empty_conditioning = empty_conditioning
        self.last_run = None  # the latest finished run, for introspection (the nodes use ``report``)

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options, slot included (0.3.64, 0.3.75; newer
        # hosts copy only its dicts and lists and share the slot's function as it is): every
        # later node (LoRA, FreeU, ...) would otherwise hold a copy that the run's wrapper, which
        # stays this object, cannot recognise. The patch holds settings only (run state lives in
        # each run's model_options), so the clones can share it.
        return self

    def _compute(self, args, conds, single=False):
        """The branches in ``conds`` (None: not computed), by the function that was in the slot
        before the cutoff or else by ComfyUI's own calc_cond_batch. One branch alone skips
        SkipLayerGuidanceDiTSimple's function: its layer-skipped uncond is guidance, which ends
        with the text (it would otherwise become the kept prediction)."""
        previous = self.previous_calc_cond_batch
        if previous is not None and not (single and nb.is_skip_layer_simple(previous)):
            return previous({**args, "conds": conds})
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
            keep_name = self.settings.keep_before_start if before_start else self.settings.keep
            keep = cs.BRANCH_INDEX[keep_name]
            single = [None, None]
            single[keep] = conds[keep]
            if keep_name == cs.KEEP_UNCOND and run.empty_conds is not None:
                single[keep] = run.empty_conds  # the paper's unconditional, in the uncond slot
            kept = self._compute(args, single, single=True)[keep]
            run.count(single=True, before_start=before_start)
            return [kept, kept]
        out = self._compute(args, conds)
        run.count(single=False)
        if run.adaptive:
            run.observe(args["sigma"], known, out[0], out[1], args["input"])
        elif run.automatic:
            run.observe_shape(args["sigma"], known, out[0], out[1])
        return out

    def outer_sample_wrapper(self, executor, *args, **kwargs):
        """Before the host prepares the conds: the empty prompt joins the guider's conds for this
        run only (``CFGGuider.sample`` rebuilds them from its own copy every run)."""
        guider = executor.class_obj
        conds = getattr(guider, "conds", None)
        if self.empty_conditioning is not None and isinstance(conds, dict) and cs.uses_unconditional(self.settings):
            # (the host's own conversion, as set_conds does it)
            conds[EMPTY_PROMPT_KEY] = [c.copy() for c in comfy.sampler_helpers.convert_cond(self.empty_conditioning)]
        return executor(*args, **kwargs)

    def calc_cond_batch_wrapper(self, executor, model, conds, x, sigma, model_options, *args, **kwargs):
        """Counts every branch evaluation of the run: the cutoff's own and the neighbours'."""
        run = model_options.get(RUN_STATE_KEY)
        if run is not None:
            run.branch_evaluations += sum(c is not None for c in conds)
        return executor(model, conds, x, sigma, model_options, *args, **kwargs)

    def sampler_sample_wrapper(self, executor, guider, sigmas, extra_args, callback, *args, **kwargs):
        schedule = sigmas.detach().float().cpu().tolist()  # once per run, before any step
        run = CutoffRun(self.settings, schedule, traits_of(executor.class_obj, guider))
        model_options = extra_args["model_options"]  # this run's own copy (CFGGuider.inner_sample)
        require(check_run_inputs(self.settings, run, guider, model_options))
        run.neighbours = nb.find_neighbours(model_options, self.previous_calc_cond_batch)
        require(nb.refusal(run.neighbours, self.settings))
        run.guider_name = type(guider).__name__
        run.cfg = getattr(guider, "cfg", None)  # (KJNodes' scheduled guider holds a list there: not used)
        run.empty_conds = _empty_in_uncond_slot(guider)
        slot = model_options.get("sampler_calc_cond_batch_function")
        if slot != self.evaluate_branches:  # a later patch overwrote the one slot: say so, don't pretend
            run.replaced_by = getattr(slot, "__qualname__", repr(slot))
        # beside, not inside, transformer_options: those reach the UNet, and a compiled UNet
        # would recompile when their size changes
        model_options[RUN_STATE_KEY] = run
        caches = nb.cache_holders(model_options)
        require(nb.cache_refusal(caches, run.start_sigma, schedule[0] if schedule else None))

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
            # (read before EasyCache's own wrapper, outside this one, resets its count)
            run.cache_skips = {name: holder.total_steps_skipped for name, holder in caches}
            run.cache_lost_its_branch = any(
                not nb.cache_follows(holder, _kept_uuids(guider, self.settings.keep)) for _, holder in caches)
            self.last_run = run
            distilled = _is_guidance_distilled(guider)
            message = run.summary(distilled)
            log.info(message)
            if self.report is not None:
                self.report(message, run)


def _kept_uuids(guider, keep):
    """The uuids of the conds that run after the cut (the empty prompt carries the negative's)."""
    conds = getattr(guider, "conds", None)
    if not isinstance(conds, dict):
        return set()
    kept = conds.get("positive" if keep == cs.KEEP_COND else "negative") or []
    return {c.get("uuid") for c in kept if isinstance(c, dict)}


def _empty_in_uncond_slot(guider):
    """The empty prompt's conds as the host prepared them for this run (None: not given), under
    the negative prompt's uuid: the uncond slot keeps its identity for the caches that follow a
    branch by uuid (EasyCache decides from the first branch of the batch)."""
    conds = getattr(guider, "conds", None)
    empty = conds.get(EMPTY_PROMPT_KEY) if isinstance(conds, dict) else None
    if not empty:
        return None
    negative = conds.get("negative") or []
    uuid = negative[0].get("uuid") if negative and isinstance(negative[0], dict) else None
    return [{**c, "uuid": uuid} for c in empty] if uuid is not None else empty


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
        cfg = getattr(guider, "cfg", None)  # (KJNodes' scheduled guider holds a list there)
        problem = check_negative(conds["negative"], cfg if isinstance(cfg, (int, float)) else None)
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


def apply_cutoff(model, settings, report=None, empty_conditioning=None):
    """A clone of ``model`` (a ModelPatcher) with the cutoff installed; ``model`` is untouched.
    ``empty_conditioning``: the empty prompt's conditioning, evaluated in place of the negative
    prompt wherever only the unconditional branch runs (keep 'uncond').

    Applying it to a model that already has a ShapeFirst cutoff replaces that one (the
    last node wins) instead of stacking two.
    """
    patched = model.clone()
    previous = patched.model_options.get("sampler_calc_cond_batch_function")
    owner = getattr(previous, "__self__", None)
    if isinstance(owner, GuidanceCutoffPatch):
        previous = owner.previous_calc_cond_batch
    patch = GuidanceCutoffPatch(settings, previous, report, empty_conditioning)
    patched.set_model_sampler_calc_cond_batch_function(patch.evaluate_branches)
    kinds = comfy.patcher_extension.WrappersMP
    for kind, wrapper in ((kinds.SAMPLER_SAMPLE, patch.sampler_sample_wrapper),
                          (kinds.OUTER_SAMPLE, patch.outer_sample_wrapper),
                          (kinds.CALC_COND_BATCH, patch.calc_cond_batch_wrapper)):
        patched.remove_wrappers_with_key(kind, WRAPPER_KEY)  # a cutoff already on the model: replaced
        patched.add_wrapper_with_key(kind, WRAPPER_KEY, wrapper)
    return patched, patch


def describe_plan_on(model, settings, empty_given):
    """The node's plan for ``model`` (a ModelPatcher): the plan, then the prompt that runs alone
    after the cut and what changes for each neighbour already on the model (those applied after
    the cutoff are named by the run's summary). Raises ValueError for a neighbour that would make
    the result wrong, before anything runs."""
    options = model.model_options
    neighbours = nb.find_neighbours(options, options.get("sampler_calc_cond_batch_function"))
    require(nb.refusal(neighbours, settings))
    notes = [describe_plan(settings) + "."]
    if not empty_given and cs.uses_unconditional(settings):
        notes.append(NEGATIVE_ALONE)
    notes += [note for n in neighbours if (note := nb.after_cut_note(n, settings.keep))]
    return " ".join(notes)


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
    elif settings.cutoff_mode == cs.MODE_AUTOMATIC:
        plan = f"text {_automatic_words(settings)}"
    else:
        plan = (f"text until ||eps_c - eps_u|| / ||eps_u|| < {settings.adaptive_threshold:g} "
                f"(between step {settings.adaptive_min_steps} and {settings.adaptive_max_steps})")
    return f"{plan}, then only the {_kept_words(settings.keep)}"


def describe_window_plan(settings):
    """The plan with a guidance start, named like the run's summary: "text unguided for steps
    0–2, full CFG for steps 3–11, text dropped after step 12, ..." (in the mode's unit)."""
    what = cs.before_start_words(settings.keep_before_start)
    after = f"then only the {_kept_words(settings.keep)}"
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
    if mode == cs.MODE_AUTOMATIC:
        return f"{what} for {_steps(0, settings.guidance_start_step - 1)}, full CFG {_automatic_words(settings)}, {after}"
    return (f"{what} for {_steps(0, settings.guidance_start_step - 1)}, full CFG until "
            f"||eps_c - eps_u|| / ||eps_u|| < {settings.adaptive_threshold:g} (between step "
            f"{settings.adaptive_min_steps} and {settings.adaptive_max_steps}), {after}")


def _automatic_words(settings):
    return (f"until its effect on the shape of the predicted picture (low band of x0) is below "
            f"{settings.auto_threshold:g} for every image of the batch")


def _kept_words(keep):
    return "negative prompt" if keep == cs.KEEP_NEGATIVE else f"{keep} branch"


def _steps(first, last):
    """"step 3" or "steps 3–11" (0-based, both included)."""
    return f"step {first}" if first == last else f"steps {first}–{last}"


def is_cfg_one(cfg):
    return math.isclose(cfg, 1.0)
