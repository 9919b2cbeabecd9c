"""Nodes: see the shape (low frequencies) form before the details, as in Yi et al. (Fig. 2, 8b).

- ShapeFirstFrequencySplit: LATENT -> low-pass and high-pass LATENTs.
- ShapeFirstFrequencyTrace: samples like KSampler and records, per step, the bands of x_t
  and of the predicted x0 and the text guidance; the sampled latent is bit-identical to
  KSampler's. It samples itself because its plots exist only after sampling.
- ShapeFirstForwardFrequency: the same bands along the forward (noising) process.

The math and the drawings live in ``shapefirst_core``; the chart in the node is
``js/frequency_chart.js``, fed live through the host's message API and, on a cache hit,
by the node's UI output.
"""
import logging

import numpy as np
import torch

import comfy.model_management
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io

from ..shapefirst_core import frequency_bands as fb
from ..shapefirst_core import frequency_plot as fp
from ..shapefirst_core import frequency_report as fr
from . import cutoff_patch

CATEGORY = "shapefirst/frequency"
# Names shared with js/frequency_chart.js.
UI_KEY = "shapefirst_frequency"
EVENT_START = "shapefirst.frequency.start"
EVENT_STEP = "shapefirst.frequency.step"
WRAPPER_KEY = "shapefirst_frequency_trace"

log = logging.getLogger("ShapeFirst")


# ---------------------------------------------------------------- devices and messages

def compute_device():
    return comfy.model_management.get_torch_device()


def run_with_fallback(function, *tensors):
    """``function(*tensors)`` in float32 on the host's device; on the CPU if that device
    cannot (no FFT support, out of memory). Results stay where they were computed."""
    device = compute_device()
    try:
        return function(*(t.to(device, torch.float32) for t in tensors))
    except (RuntimeError, NotImplementedError) as error:
        if torch.device(device).type == "cpu":
            raise
        log.warning("ShapeFirst: FFT on %s failed (%s); computing on the CPU instead.", device, error)
        return function(*(t.to("cpu", torch.float32) for t in tensors))


def live_sender(node_id):
    """Sends chart events to the client that queued the prompt; None when there is no such
    client (API calls without client_id, tests): nothing is broadcast to other users."""
    try:
        from server import PromptServer
    except ImportError:
        return None
    server = getattr(PromptServer, "instance", None)
    client_id = getattr(server, "client_id", None)
    if server is None or client_id is None or node_id is None:
        return None

    def send(event, data):
        server.send_sync(event, {"node": str(node_id), **data}, client_id)
    return send


def to_image(pil_image):
    """PIL RGB -> ComfyUI IMAGE [1, H, W, 3] in 0..1."""
    array = np.asarray(pil_image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array)[None].to(comfy.model_management.intermediate_device())


def to_uint8(images):
    """IMAGE [N, H, W, 3] (or video [N, T, H, W, 3]: first frame) -> list of uint8 arrays."""
    if images.ndim == 5:
        images = images[:, 0]
    return [np.clip(image.detach().float().cpu().numpy() * 255.0, 0, 255).astype(np.uint8)[..., :3] for image in images]


def check_latent(samples, model, name):
    """A clear error (naming the input) when a latent does not fit the model."""
    problem = fb.check_spatial(samples, name)
    if problem:
        raise ValueError(problem)
    expected = model.get_model_object("latent_format").latent_channels
    if samples.shape[1] != expected and torch.count_nonzero(samples) > 0:
        raise ValueError(
            f"{name} has {samples.shape[1]} channels but this model works on {expected}-channel latents: "
            f"encode the image with this model's VAE, or use a latent made for this model.")


def check_cutoff(cutoff_radius):
    problem = fb.check_cutoff(cutoff_radius)
    if problem:
        raise ValueError(problem)


def parameterization(model_sampling):
    """EPS, V_PREDICTION, CONST (flow), ...: the host's class name for how the model predicts."""
    for base in type(model_sampling).__mro__:
        if base.__module__ == "comfy.model_sampling" and not base.__name__.startswith("ModelSampling"):
            return base.__name__
    return type(model_sampling).__name__


def model_input(model_sampling, sigma, x):
    """x_t as the network sees it (EPS: divided by sqrt(1 + sigma^2), the paper's VP x_t;
    flow: unchanged), so forward and reverse curves share one scale."""
    return model_sampling.calculate_input(torch.as_tensor(sigma, dtype=torch.float32, device=x.device), x)


def summaries(*tensors, cutoff):
    """Batch-mean (low, high, ratio) of each tensor, one device->host copy for all."""
    def compute(*xs):
        return torch.stack([fb.band_summary(x, cutoff) for x in xs])
    return run_with_fallback(compute, *tensors).cpu().tolist()


def cutoff_input(default=fb.DEFAULT_CUTOFF):
    return io.Float.Input("cutoff_radius", default=default, min=0.0, max=fb.MAX_CUTOFF, step=0.01, tooltip=(
        "Border between low and high frequencies, as a share of the highest (Nyquist) frequency of "
        "each spatial axis, so 64x64 and 128x128 latents compare. 0.25 keeps the coarse layout in the "
        "low band; 0 keeps only the mean; 1.42 or more puts everything in the low band."))


# ---------------------------------------------------------------- split

class ShapeFirstFrequencySplit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstFrequencySplit",
            display_name="Frequency Split (ShapeFirst)",
            category=CATEGORY,
            description=(
                "Splits a latent into its low-frequency part (the shape, layout, colours) and its "
                "high-frequency part (edges, texture) with an FFT over the spatial axes. low + high "
                "gives back the input. Works for any channel count (SD1.x/SDXL 4, SD3/Flux 16) and "
                "video latents (per frame). Decode the parts with VAE Decode to look at them."),
            inputs=[
                io.Latent.Input("latent", tooltip="The latent to split; it is not modified."),
                cutoff_input(),
            ],
            outputs=[
                io.Latent.Output("low", tooltip="The low-frequency part: frequencies up to cutoff_radius."),
                io.Latent.Output("high", tooltip="The high-frequency part: everything above cutoff_radius."),
            ],
        )

    @classmethod
    def execute(cls, latent, cutoff_radius) -> io.NodeOutput:
        check_cutoff(cutoff_radius)
        samples = latent["samples"]
        problem = fb.check_spatial(samples, "latent")
        if problem:
            raise ValueError(problem)
        low, high = run_with_fallback(lambda x: fb.split(x, cutoff_radius), samples)
        out_device = comfy.model_management.intermediate_device()
        return io.NodeOutput({**latent, "samples": low.to(out_device)}, {**latent, "samples": high.to(out_device)})


# ---------------------------------------------------------------- trace

class TraceRecorder:
    """Records one sampler run of a cloned model. Installed as a post-CFG function (sees
    both predictions of each evaluation) and a SAMPLER_SAMPLE wrapper (sees the schedule
    and wraps the step callback). Returns every prediction unchanged."""

    def __init__(self, model, cutoff_radius, strip_columns, send=None):
        self.model_sampling = model.get_model_object("model_sampling")
        self.cutoff_radius = cutoff_radius
        self.strip_columns = strip_columns
        self.send = send
        self.sigmas = []
        self.points = []
        self.strip_x0 = {}  # step -> predicted x0 (model space) for the strip
        self.strip_steps = set()
        self.last_evaluation = (None, None)  # (guidance tensor or None, branches)
        self.cutoff_run = None
        self._single_seen = 0

    def post_cfg(self, args):
        cond, uncond, x, sigma = args["cond_denoised"], args["uncond_denoised"], args["input"], args["sigma"]
        run = args["model_options"].get(cutoff_patch.RUN_STATE_KEY)
        if run is not None:
            self.cutoff_run = run
        if uncond is None or args.get("uncond") is None:
            # cfg 1: the host evaluated the conditional branch only (uncond_denoised is zeros)
            self.last_evaluation = (None, fr.ONE_BRANCH)
            return args["denoised"]
        branches = fr.BOTH_BRANCHES
        if run is not None:
            # The cutoff counts its single-branch evaluations: a new one means this was one.
            if run.single_evaluations > self._single_seen:
                branches = fr.ONE_BRANCH
            self._single_seen = run.single_evaluations
        self.last_evaluation = (self.guidance(cond, uncond, x, sigma), branches)
        return args["denoised"]

    def guidance(self, cond, uncond, x, sigma):
        """RMS of the two branches' difference in the model's output units, batch mean:
        (x0_u - x0_c) / sigma, which is eps_c - eps_u for noise-predicting models (x = x0 +
        sigma * eps) and the velocity difference for flow models (x0 = x - sigma * v)."""
        sigma = sigma.to(torch.float32).reshape((-1,) + (1,) * (x.ndim - 1))
        return fb.rms((uncond.float() - cond.float()) / sigma).mean()

    def sampler_sample_wrapper(self, executor, guider, sigmas, extra_args, callback, *args, **kwargs):
        self.sigmas = sigmas.detach().float().cpu().tolist()  # once per run
        total = max(len(self.sigmas) - 1, 0)
        self.points = []
        self.strip_steps = set(strip_steps(total, self.strip_columns))
        if self.send is not None:
            self.send(EVENT_START, {"kind": fr.KIND_TRACE, "total_steps": total, "panels": fr.panels(fr.KIND_TRACE),
                                    "title": "sampling trace (live)", "cutoff_radius": self.cutoff_radius})

        def record(step, x0, x, total_steps):
            comfy.model_management.throw_exception_if_processing_interrupted()
            self.record(step, x0, x)
            if callback is not None:
                callback(step, x0, x, total_steps)

        return executor(guider, sigmas, extra_args, record, *args, **kwargs)

    def record(self, step, x0, x):
        sigma = self.sigmas[step] if step < len(self.sigmas) else None
        guidance, branches = self.last_evaluation
        self.last_evaluation = (None, None)
        xt, x0_bands = summaries(model_input(self.model_sampling, sigma, x), x0, cutoff=self.cutoff_radius)
        guidance = None if guidance is None else float(guidance)
        point = fr.trace_point(step + 1, sigma, xt, x0_bands, guidance, branches)
        self.points.append(point)
        if step in self.strip_steps:
            self.strip_x0[step] = x0.detach().to(comfy.model_management.intermediate_device(), copy=True)
        if self.send is not None:
            self.send(EVENT_STEP, {"point": point})

    def cutoff_marker(self, total_steps):
        run = self.cutoff_run
        if run is None or not run.dropped:
            return None
        return fr.cutoff_marker(run.guided_steps(), total_steps, run.settings.keep, run.drop_sigma)


def strip_steps(total_steps, columns):
    """``columns`` steps spread evenly from the first to the last."""
    if total_steps <= 0:
        return []
    if columns >= total_steps:
        return list(range(total_steps))
    if columns == 1:
        return [total_steps - 1]
    return sorted({round(i * (total_steps - 1) / (columns - 1)) for i in range(columns)})


def sample_like_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise):
    """The host's KSampler path (nodes.common_ksampler), step for step, so results match."""
    latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
    callback = latent_preview.prepare_callback(model, steps)
    samples = comfy.sample.sample(
        model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=denoise,
        noise_mask=latent.get("noise_mask"), callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    return {**latent, "samples": samples}


def decode_strip(vae, model, recorder, cutoff_radius):
    """The predicted x0 of a few steps, its low and its high part, decoded (first image of the batch)."""
    if vae is None:
        return fp.message_image("Connect a VAE to see the decoded low/high parts per step.")
    latent_format = model.get_model_object("latent_format")
    steps = sorted(recorder.strip_x0)
    rows = [[], [], []]
    bar = comfy.utils.ProgressBar(len(steps))
    for index, step in enumerate(steps):
        comfy.model_management.throw_exception_if_processing_interrupted()
        x0 = recorder.strip_x0[step][:1]
        low, _ = run_with_fallback(lambda x: fb.split(x, cutoff_radius), x0)
        x0_out = latent_format.process_out(x0.float())
        low_out = latent_format.process_out(low.to(x0.device))
        # The latent's offset (SD3/Flux shift) belongs to the constant, i.e. low, part.
        decoded = vae.decode(torch.cat([x0_out, low_out, x0_out - low_out]))
        for row, image in zip(rows, to_uint8(decoded)):
            row.append(image)
        bar.update_absolute(index + 1)
    labels = [f"step {step + 1}" for step in steps]
    return fp.compose_strip(rows, labels, ["predicted x0", "low", "high"])


class ShapeFirstFrequencyTrace(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstFrequencyTrace",
            display_name="Frequency Trace Sampler (ShapeFirst)",
            category=CATEGORY,
            description=(
                "A KSampler that also records how the image forms: per step the low- and high-frequency "
                "size (RMS) of the noisy latent x_t and of the predicted clean latent x0, their ratio, and "
                "the size of the text guidance ||eps_c - eps_u||, with the step where "
                "ShapeFirstGuidanceCutoff dropped the text. The low band settles first (the shape), the "
                "high band later (details) and the guidance shrinks (Yi et al., NeurIPS 2024, Fig. 2, 8b). "
                "The sampled latent is exactly KSampler's. A live chart in the node follows the run."),
            inputs=[
                io.Model.Input("model", tooltip="The model to sample with (optionally patched by Guidance "
                                                 "Cutoff); the input itself is not modified."),
                io.Conditioning.Input("positive", tooltip="The prompt's conditioning."),
                io.Conditioning.Input("negative", tooltip="The negative or empty prompt's conditioning."),
                io.Latent.Input("latent_image", tooltip="The latent to denoise (Empty Latent Image for text to image)."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="The noise seed; same as KSampler's for the same result."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Number of sampling steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01, tooltip=(
                    "Classifier-free guidance scale (the paper: 7.5). At 1 only the conditional branch "
                    "runs and there is no guidance to measure.")),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS,
                               tooltip="The sampling algorithm, as in KSampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS,
                               tooltip="How the noise levels are spaced over the steps, as in KSampler."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Share of the schedule to run; below 1 keeps part of the input latent."),
                cutoff_input(),
                io.Vae.Input("vae", optional=True, tooltip=(
                    "Optional: decode the predicted x0 and its low and high parts at a few steps into the "
                    "strip output (the paper's Fig. 2a).")),
                io.Int.Input("strip_columns", default=6, min=1, max=64, tooltip=(
                    "How many steps (spread from first to last) the strip shows when a VAE is connected.")),
            ],
            outputs=[
                io.Latent.Output("latent", tooltip="The sampled latent, identical to KSampler's."),
                io.Image.Output("plot", tooltip="The recorded curves as an image (axes and legend labelled)."),
                io.Image.Output("strip", tooltip=(
                    "Decoded predicted x0, low part and high part at a few steps (needs the vae input).")),
                io.String.Output("json", tooltip="Every recorded number, as JSON (one entry per step)."),
            ],
            hidden=[io.Hidden.unique_id],
            # An output node: it runs (and shows its chart) with nothing connected, and on a
            # cache hit the host re-sends its UI output, so the chart is drawn again.
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler,
                denoise, cutoff_radius, strip_columns, vae=None) -> io.NodeOutput:
        check_cutoff(cutoff_radius)
        check_latent(latent_image["samples"], model, "latent_image")
        recorder = TraceRecorder(model, cutoff_radius, strip_columns, live_sender(cls.hidden.unique_id))
        traced = model.clone()  # the recorder is installed on a clone; the input stays as it is
        traced.set_model_sampler_post_cfg_function(recorder.post_cfg)
        traced.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY,
                                    recorder.sampler_sample_wrapper)
        latent = sample_like_ksampler(traced, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                      latent_image, denoise)
        total = max(len(recorder.sigmas) - 1, 0)
        data = fr.payload(
            fr.KIND_TRACE, f"Frequency trace: {sampler_name}/{scheduler}, {total} steps, cfg {cfg:g}",
            recorder.points, cutoff_radius, total, recorder.cutoff_marker(total),
            parameterization=parameterization(recorder.model_sampling),
            latent_shape=list(latent["samples"].shape), sigmas=[fr.clean(s) for s in recorder.sigmas])
        plot = to_image(fp.render_chart(data))
        strip = to_image(decode_strip(vae, model, recorder, cutoff_radius))
        return io.NodeOutput(latent, plot, strip, fr.to_json(data), ui={UI_KEY: [data]})


# ---------------------------------------------------------------- forward process

def forward_curves(model, samples, steps, scheduler, seed, cutoff_radius):
    """Points of x_t = noise_scaling(sigma, noise, x0) over the scheduler's sigmas, x0 being
    the latent in the model's own scaling (latent_format.process_in)."""
    model_sampling = model.get_model_object("model_sampling")
    latent_format = model.get_model_object("latent_format")
    sigmas = comfy.samplers.calculate_sigmas(model_sampling, scheduler, steps).float().cpu()
    noise = comfy.sample.prepare_noise(samples, seed)  # the host's seeded CPU noise
    x0 = latent_format.process_in(samples.float())
    bar = comfy.utils.ProgressBar(len(sigmas))

    def compute(x0, noise):
        rows = []
        for index, sigma in enumerate(sigmas.tolist()):
            comfy.model_management.throw_exception_if_processing_interrupted()
            sigma_t = torch.tensor(sigma, dtype=torch.float32, device=x0.device)
            xt = model_sampling.noise_scaling(sigma_t, noise, x0)
            rows.append(fb.band_summary(model_input(model_sampling, sigma, xt), cutoff_radius))
            bar.update_absolute(index + 1)
        return torch.stack(rows)

    values = run_with_fallback(compute, x0, noise).cpu().tolist()
    timesteps = model_sampling.timestep(sigmas).float().cpu().tolist()
    points = [fr.forward_point(i + 1, s, t, v) for i, (s, t, v) in enumerate(zip(sigmas.tolist(), timesteps, values))]
    return points, parameterization(model_sampling)


class ShapeFirstForwardFrequency(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstForwardFrequency",
            display_name="Forward Process Frequencies (ShapeFirst)",
            category=CATEGORY,
            description=(
                "Adds the model's own noise to a latent (or an image encoded with the VAE) at every noise "
                "level of a schedule and plots the low- and high-frequency size of the noisy latent and "
                "their ratio: the high band drowns early, the low band (the shape) survives almost to "
                "pure noise, which is why sampling rebuilds the shape first (Yi et al., Fig. 2). Uses the "
                "model's parameterization (noise prediction or flow) and latent scaling."),
            inputs=[
                io.Model.Input("model", tooltip="Its noise schedule, parameterization and latent scaling are used; "
                                                 "the UNet is not run."),
                io.Int.Input("steps", default=50, min=1, max=10000,
                             tooltip="How many noise levels to sample along the schedule."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="Spacing of the noise levels; pick the sampler's to compare with a trace."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff,
                             tooltip="Seed of the added noise."),
                cutoff_input(),
                io.Latent.Input("latent", optional=True, tooltip=(
                    "The clean latent (e.g. from VAE Encode or a sampler). Give this or image.")),
                io.Image.Input("image", optional=True, tooltip="An image to encode with vae; used when no latent is given."),
                io.Vae.Input("vae", optional=True, tooltip="Encodes image; needed only with image."),
            ],
            outputs=[
                io.Image.Output("plot", tooltip="The forward-process curves as an image."),
                io.String.Output("json", tooltip="Every number (sigma, timestep, low, high, ratio per level), as JSON."),
            ],
            hidden=[io.Hidden.unique_id],
            # An output node: it runs (and shows its chart) with nothing connected, and on a
            # cache hit the host re-sends its UI output, so the chart is drawn again.
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, steps, scheduler, seed, cutoff_radius, latent=None, image=None, vae=None) -> io.NodeOutput:
        check_cutoff(cutoff_radius)
        if latent is not None:
            samples, name = latent["samples"], "latent"
        elif image is not None:
            if vae is None:
                raise ValueError("image needs a vae to encode it: connect the checkpoint's VAE to vae, "
                                 "or give a latent instead.")
            samples, name = vae.encode(image[:, :, :, :3]), "image (encoded)"
        else:
            raise ValueError("Give a latent or an image (with its vae): the forward process needs a clean picture to noise.")
        check_latent(samples, model, name)
        if torch.count_nonzero(samples) == 0:
            raise ValueError(f"{name} is all zeros (an empty latent): the forward process needs real content; "
                             f"encode an image with VAE Encode, or use a sampled latent.")
        points, kind = forward_curves(model, samples, steps, scheduler, seed, cutoff_radius)
        data = fr.payload(fr.KIND_FORWARD, f"Forward process ({kind}): {scheduler}, {len(points)} noise levels",
                          points, cutoff_radius, len(points), parameterization=kind,
                          latent_shape=list(samples.shape))
        return io.NodeOutput(to_image(fp.render_chart(data)), fr.to_json(data), ui={UI_KEY: [data]})


NODES = [ShapeFirstFrequencySplit, ShapeFirstFrequencyTrace, ShapeFirstForwardFrequency]
