"""Nodes: the text-guidance cutoff as a MODEL patch (any KSampler) and as a GUIDER."""
import comfy.samplers
from comfy_api.latest import io, ui

from .. import server_messages
from . import patch as cutoff_patch
from . import schedule as cs
from . import settled
from ..validation import require, verdict

CATEGORY = "shapefirst/guidance"


# The widget of each cutoff input; the inputs themselves, their order and defaults are the
# fields of ``schedule.CutoffSettings`` (one list for both nodes, the validation and the tests).
WIDGETS = {
    "cutoff_mode": lambda default: io.Combo.Input("cutoff_mode", options=list(cs.MODES), default=default, tooltip=(
        "How the moment the text is dropped is given. 'guided steps': after this many sampling "
        "steps. 'fraction of steps': after this share of the steps. 'sigma': once the noise level "
        "falls to this sigma. 'adaptive': when ||eps_c - eps_u|| / ||eps_u|| falls below adaptive_threshold "
        "(the older rule; its threshold means something different on every model). 'automatic (shape "
        "settled)': when the text no longer changes the shape of the predicted picture (auto_threshold), "
        "measured at every guided step; no step count to tune. "
        "The paper's a (final steps without text) is total steps minus guided steps.")),
    "guided_steps": lambda default: io.Int.Input("guided_steps", default=default, min=0, max=10000, tooltip=(
        "Mode 'guided steps': how many steps use the text (full CFG); the rest evaluate one branch. "
        "Counted within the steps this sampler run takes (after denoise or start_at_step). "
        "At or past the last step nothing changes.")),
    "guided_fraction": lambda default: io.Float.Input(
        "guided_fraction", default=default, min=0.0, max=1.0, step=0.01, tooltip=(
            "Mode 'fraction of steps': share of the run's steps that use the text, rounded to a whole "
            "step (0.5 of 25 steps = 13). 0 drops the text from the start, 1 keeps it throughout.")),
    "cutoff_sigma": lambda default: io.Float.Input(
        "cutoff_sigma", default=default, min=0.0, max=1000.0, step=0.01, round=0.0001, tooltip=(
            "Mode 'sigma': every model evaluation at a noise level (sigma) above this uses the text, "
            "every one at or below it does not. SD1.x/SDXL schedules run from about 14.6 down to 0.03, "
            "flow models (SD3, Flux, Wan) from 1 to 0. One sigma holds across samplers that share a "
            "schedule (Wan 2.2's two experts): Sigma at Step gives the sigma of step N of the whole schedule.")),
    "keep": lambda default: io.Combo.Input("keep", options=list(cs.KEEP_CHOICES), default=default, tooltip=(
        "Which branch still runs after the cutoff. 'uncond' (the paper): only the unconditional "
        "prediction, guidance weight 0: the empty prompt connected to empty_conditioning, else ComfyUI's "
        "uncond, which is your negative prompt (the plan and summary then say so). 'cond': only the "
        "conditional one, as Adaptive Guidance and NGMS do, for comparison. 'negative': the negative "
        "prompt alone, even with empty_conditioning connected.")),
    "adaptive_threshold": lambda default: io.Float.Input(
        "adaptive_threshold", default=default, min=0.0, max=10.0, step=0.005, tooltip=(
            "Mode 'adaptive': drop the text once ||eps_cond - eps_uncond|| / ||eps_uncond|| is below this "
            "for every image of the batch. 0.15 is roughly a cosine similarity of 0.99 between the two.")),
    "adaptive_min_steps": lambda default: io.Int.Input("adaptive_min_steps", default=default, min=0, max=10000, tooltip=(
        "Mode 'adaptive': the first this many steps always use the text; the guidance measured in the last "
        "of them may already end it, so with every measurement under the threshold the text goes after exactly "
        "this many steps. 0: no step uses the text (nothing can be measured before the first).")),
    "adaptive_max_steps": lambda default: io.Int.Input("adaptive_max_steps", default=default, min=0, max=10000, tooltip=(
        "Mode 'adaptive': drop the text after this many steps even if the guidance is still large "
        "(equal to adaptive_min_steps: exactly that many steps use the text).")),
    # The guidance start (limited-interval guidance): optional, so workflows saved before it
    # existed load and run unchanged; each default means "full CFG from the first step".
    "guidance_start_step": lambda default: io.Int.Input(
        "guidance_start_step", default=default, min=0, max=10000, optional=True, tooltip=(
            "Modes 'guided steps' and 'adaptive': how many steps run before full CFG starts, evaluating "
            "one branch (keep_before_start). 0: full CFG from the first step (as without it). Must be "
            "below guided_steps (adaptive: below adaptive_min_steps). E.g. 3 with guided_steps 12 of 20: "
            "steps 0-2 unguided, 3-11 full CFG, 12-19 without text.")),
    "guidance_start_fraction": lambda default: io.Float.Input(
        "guidance_start_fraction", default=default, min=0.0, max=1.0, step=0.01, optional=True, tooltip=(
            "Mode 'fraction of steps': share of the run's steps before full CFG starts, rounded to a whole "
            "step like guided_fraction. 0: full CFG from the first step. Must be below guided_fraction.")),
    "guidance_start_sigma": lambda default: io.Float.Input(
        "guidance_start_sigma", default=default, min=0.0, max=10000.0, step=0.01, round=0.0001, optional=True,
        tooltip=(
            "Mode 'sigma': full CFG only for sigmas at or below this (and above cutoff_sigma): the upper end "
            "sigma_hi of the interval paper's (sigma_lo, sigma_hi]. Evaluations above it run one branch "
            "(keep_before_start). "
            "0: no start, full CFG from the first step. Must be above cutoff_sigma.")),
    "keep_before_start": lambda default: io.Combo.Input(
        "keep_before_start", options=list(cs.KEEP_BEFORE_CHOICES), default=default, optional=True, tooltip=(
            "Which branch runs before the guidance start (when one is set). 'cond' (the interval paper, "
            "Kynkaanniemi et al. 2024): the prompt, unamplified (cfg 1). 'uncond': no text at all yet.")),
    # The automatic mode (optional, after every other input: saved workflows keep their widget order).
    "auto_threshold": lambda default: io.Float.Input(
        "auto_threshold", default=default, min=0.0, max=settled.MAX_THRESHOLD, step=0.01, optional=True, tooltip=(
            "Mode 'automatic (shape settled)': at every full-CFG step the node measures how much dropping the text "
            "now would change the shape of the predicted picture (the low band of x0, as a share of it; the same "
            "for eps, v and flow models, and it includes the noise level and cfg). The text goes once this is "
            "below the threshold for every image of the batch. Lower keeps the text longer (closer to full CFG, "
            "less saved); 0 never cuts. 0.25 kept every shape attribute of the demo model (docs/demo_model/report.md, "
            "the frontier).")),
}


def cutoff_inputs():
    """The inputs both nodes share, in the order the widgets appear."""
    defaults = cs.CutoffSettings()
    names = [name for name in cs.INPUT_NAMES if name not in cs.AUTOMATIC_INPUT_NAMES]
    return ([WIDGETS[name](getattr(defaults, name)) for name in names] + [empty_conditioning_input()]
            + [WIDGETS[name](getattr(defaults, name)) for name in cs.AUTOMATIC_INPUT_NAMES])


def empty_conditioning_input():
    # optional and last, so workflows saved before it existed load and run unchanged
    return io.Conditioning.Input("empty_conditioning", optional=True, tooltip=(
        "The empty prompt: a CLIP Text Encode with no text, from the same CLIP. The paper's unconditional "
        "prediction is the empty prompt's, while ComfyUI's uncond branch is your negative prompt; with this "
        "connected, keep 'uncond' evaluates the empty prompt after the cut (and before a guidance start). "
        "Not connected: the negative prompt runs alone there (said in the plan and the summary)."))


def validate_cutoff_inputs(**kwargs):
    """True, or the message naming the bad input; the graph is left as it is."""
    if any(kwargs.get(name, 0) is None for name in cs.INPUT_NAMES):
        # an input fed by a link (Sigma at Step -> cutoff_sigma) reaches validation as None: its
        # value exists only at run time, where execute checks all of them
        return True
    return verdict(cs.check_inputs(kwargs))


def progress_reporter(node_id):
    """Sends the end-of-run summary to the node as progress text, when a server runs."""
    def report(message, run):
        server = server_messages.prompt_server()
        if server is not None and node_id is not None:
            # to the client that queued the prompt, like the host's own progress messages
            server.send_progress_text(message, node_id, server_messages.queueing_client(server))
    return report


def _node_id(cls):
    """The executing node's id (None when the class is called outside the executor)."""
    return cls.hidden.unique_id if cls.hidden is not None else None


class ShapeFirstGuidanceCutoff(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstGuidanceCutoff",
            display_name="Guidance Cutoff (ShapeFirst)",
            category=CATEGORY,
            description=(
                "Text-to-image diffusion builds the shape first; after that the prompt barely matters "
                "(Yi et al., NeurIPS 2024). This patch keeps full classifier-free guidance for the first "
                "steps, then evaluates only one branch of the UNet (by default the unconditional one, "
                "as in the paper), saving up to half the UNet work of each late step. Works with "
                "KSampler, KSamplerAdvanced, SamplerCustom and SamplerCustomAdvanced. Optionally full CFG "
                "starts late too (guidance_start_*, limited-interval guidance): the first steps then run one "
                "branch, the conditional one by default. After each run the node shows where the text was "
                "dropped and what was saved."),
            inputs=[io.Model.Input("model", tooltip="The model to patch; the input itself is not modified.")]
            + cutoff_inputs(),
            outputs=[io.Model.Output(tooltip="The same model with the guidance cutoff; connect it to a sampler.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        return validate_cutoff_inputs(**kwargs)

    @classmethod
    def execute(cls, model, empty_conditioning=None, **kwargs) -> io.NodeOutput:
        settings = cs.settings_from_inputs(kwargs)
        plan = cutoff_patch.describe_plan_on(model, settings, empty_conditioning is not None)
        patched, _ = cutoff_patch.apply_cutoff(model, settings, progress_reporter(_node_id(cls)), empty_conditioning)
        return io.NodeOutput(patched, ui=ui.PreviewText(plan))


class ShapeFirstCutoffGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstCutoffGuider",
            display_name="Cutoff Guider (ShapeFirst)",
            category=CATEGORY,
            description=(
                "Classifier-free guidance with the text dropped after the shape stage, as a GUIDER for "
                "SamplerCustomAdvanced: full CFG for the first steps, then only one branch (with a guidance "
                "start, one branch before full CFG too). Shows the plan here and, after sampling, where the "
                "text was dropped and the UNet work saved."),
            inputs=[
                io.Model.Input("model", tooltip="The model to sample with; it is not modified."),
                io.Conditioning.Input("positive", tooltip="The prompt's conditioning (used until the cutoff)."),
                io.Conditioning.Input("negative", tooltip="The negative or empty prompt: the unconditional branch."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01, tooltip=(
                    "Guidance scale until the cutoff (the paper uses 7.5). At 1 there is no second branch "
                    "to drop and the cutoff does nothing.")),
            ] + cutoff_inputs(),
            outputs=[io.Guider.Output(tooltip="Connect to SamplerCustomAdvanced.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, **kwargs):
        return validate_cutoff_inputs(**kwargs)

    @classmethod
    def execute(cls, model, positive, negative, cfg, empty_conditioning=None, **kwargs) -> io.NodeOutput:
        settings = cs.settings_from_inputs(kwargs)
        require(cutoff_patch.check_negative(negative, cfg))
        plan = cutoff_patch.describe_plan_on(model, settings, empty_conditioning is not None)
        patched, _ = cutoff_patch.apply_cutoff(model, settings, progress_reporter(_node_id(cls)), empty_conditioning)
        guider = comfy.samplers.CFGGuider(patched)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        if cutoff_patch.is_cfg_one(cfg):
            plan = ("cfg is 1: ComfyUI evaluates only the conditional branch, so there is no second "
                    "branch to drop; the cutoff does nothing.")
        return io.NodeOutput(guider, ui=ui.PreviewText(plan))


class ShapeFirstStepSigma(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstStepSigma",
            display_name="Sigma at Step (ShapeFirst)",
            category=CATEGORY,
            description=(
                "The noise level (sigma) at which step N of a whole schedule starts, for the Guidance "
                "Cutoff's 'sigma' mode. When one schedule is split over several samplers (Wan 2.2: the "
                "high-noise expert in one KSamplerAdvanced, the low-noise expert in the next), each "
                "sampler sees only its part, so 'guided steps' counts per sampler; this sigma, given to "
                "the cutoff on every expert, drops the text after step N of the whole schedule."),
            inputs=[
                io.Model.Input("model", tooltip=(
                    "The model whose schedule the samplers use (after ModelSamplingSD3 or any shift node); "
                    "only its noise schedule is read.")),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="simple",
                               tooltip="The samplers' scheduler."),
                io.Int.Input("steps", default=20, min=1, max=10000,
                             tooltip="The whole schedule's steps (KSamplerAdvanced's steps)."),
                io.Int.Input("guided_steps", default=10, min=0, max=10000, tooltip=(
                    "How many steps of the whole schedule use the text: the sigma of the step after them. "
                    "0 drops the text from the start; steps or more keeps it throughout.")),
            ],
            outputs=[io.Float.Output("sigma", tooltip=(
                "Connect to the Guidance Cutoff's cutoff_sigma (cutoff_mode 'sigma') on each sampler's model."))],
        )

    @classmethod
    def execute(cls, model, scheduler, steps, guided_steps) -> io.NodeOutput:
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps)
        # sigmas[steps] is the schedule's end (0): at 0 no evaluation is at or below it
        return io.NodeOutput(float(sigmas[min(guided_steps, steps)]))


NODES = [ShapeFirstGuidanceCutoff, ShapeFirstCutoffGuider, ShapeFirstStepSigma]
