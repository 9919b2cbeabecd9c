"""What the frequency nodes (``frequency``) do with the host: band summaries on its device
(with a CPU fallback), the trace recorder installed on a clone of the model, KSampler's own
sampling path, the forward (noising) process, decoding and chart messages to the browser.

The band math, the payload format and the drawings need no host: ``bands``, ``report`` and
``chart`` beside this module.
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

from .. import server_messages
from ..validation import require
from ..guidance_cutoff import patch as cutoff_patch
from . import bands as fb
from . import chart as fp
from . import report as fr

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
    server = server_messages.prompt_server()
    client_id = server_messages.queueing_client(server)
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


# ---------------------------------------------------------------- multi-part latents
# ComfyUI 0.3.75 and newer hosts (not 0.3.64) carry a latent of several parts, e.g. LTX-2's
# video + audio, as a NestedTensor (``is_nested``) and sample it packed flat as [batch, 1, n]
# (comfy.utils.pack_latents). The frequency nodes follow its first part, the picture, as the
# host's own preview does. Feature checks, not version checks: older hosts never pass one.

def is_multi_part(samples):
    return bool(getattr(samples, "is_nested", False))


def image_part(samples):
    """A multi-part latent's first part (the video of video + audio); a plain latent as it is."""
    return samples.unbind()[0] if is_multi_part(samples) else samples


def part_shapes(samples):
    """The shapes of a multi-part latent's parts, or None for a plain latent."""
    return [part.shape for part in samples.unbind()] if is_multi_part(samples) else None


def unpacked_image_part(x, shapes):
    """The first part, in its own shape, of a tensor the sampler holds packed from parts of
    these ``shapes``; ``x`` itself when nothing was packed."""
    if is_multi_part(x):
        return image_part(x)
    if shapes is None or len(shapes) < 2 or x.ndim != 3:
        return x
    return comfy.utils.unpack_latents(x, shapes)[0]


def check_latent(samples, model, name):
    """The message (naming the input) when a latent does not fit the model, or None."""
    if is_multi_part(samples):
        # The host's formats for several parts give one channel count for all of them
        # (MiniMax H3 AV: 32, the larger of its video's 24 and audio's 32): check the axes only.
        return fb.check_spatial(image_part(samples), f"{name} (its first part)")
    problem = fb.check_spatial(samples, name)
    if problem:
        return problem
    expected = model.get_model_object("latent_format").latent_channels
    if samples.shape[1] != expected and torch.count_nonzero(samples) > 0:
        return (f"{name} has {samples.shape[1]} channels but this model works on {expected}-channel latents: "
                f"encode the image with this model's VAE, or use a latent made for this model.")
    return None


def check_forward_source(latent, image, vae):
    """The message when the forward process has no clean picture to noise, or None."""
    if latent is None and image is None:
        return "Give a latent or an image (with its vae): the forward process needs a clean picture to noise."
    if latent is None and vae is None:
        return "image needs a vae to encode it: connect the checkpoint's VAE to vae, or give a latent instead."
    return None


def check_has_content(samples, name):
    """The message when ``samples`` is all zeros (an empty latent has no picture to noise), or None."""
    if torch.count_nonzero(samples) == 0:
        return (f"{name} is all zeros (an empty latent): the forward process needs real content; "
                f"encode an image with VAE Encode, or use a sampled latent.")
    return None


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


def split_bands(samples, cutoff_radius, name="latent"):
    """(low, high) of a latent, on the host's intermediate device; a clear error naming
    ``name`` when it has no spatial axes."""
    if is_multi_part(samples):
        # the outputs are single latents: splitting only the first part would drop the others
        raise ValueError(
            f"{name} holds several latents (e.g. LTX-2 video + audio); the split gives one low and one "
            f"high latent. Split its parts first (ComfyUI's Separate AV Latent node) and connect one of them.")
    require(fb.check_spatial(samples, name))
    low, high = run_with_fallback(lambda x: fb.split(x, cutoff_radius), samples)
    out_device = comfy.model_management.intermediate_device()
    return low.to(out_device), high.to(out_device)


# ---------------------------------------------------------------- trace

class TraceRecorder:
    """Records one sampler run of a cloned model. Installed as a post-CFG function (sees
    both predictions of each evaluation) and a SAMPLER_SAMPLE wrapper (sees the schedule
    and wraps the step callback). Returns every prediction unchanged."""

    def __init__(self, model, cutoff_radius, strip_columns, send=None, latent_part_shapes=None):
        self.model_sampling = model.get_model_object("model_sampling")
        self.part_shapes = latent_part_shapes  # the input's parts, when it has several
        self.cutoff_radius = cutoff_radius
        self.strip_columns = strip_columns
        self.send = send
        self.sigmas = []
        self.points = []
        self.strip_x0 = {}  # step -> predicted x0 (model space) for the strip
        self.strip_steps = set()
        self.last_evaluation = (None, None)  # (guidance tensor or None, branches)
        self.cutoff_run = None

    def traced(self, model):
        """A clone of ``model`` with this recorder installed; the input stays as it is."""
        traced = model.clone()
        traced.set_model_sampler_post_cfg_function(self.post_cfg)
        traced.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY,
                                    self.sampler_sample_wrapper)
        return traced

    @property
    def total_steps(self):
        return max(len(self.sigmas) - 1, 0)

    def post_cfg(self, args):
        cond, uncond, x, sigma = args["cond_denoised"], args["uncond_denoised"], args["input"], args["sigma"]
        run = args["model_options"].get(cutoff_patch.RUN_STATE_KEY)
        if run is not None:
            self.cutoff_run = run
        if uncond is None or args.get("uncond") is None:
            # cfg 1: the host evaluated the conditional branch only (uncond_denoised is zeros)
            self.last_evaluation = (None, fr.ONE_BRANCH)
            return args["denoised"]
        single = run is not None and run.last_evaluation_single  # the cutoff ran one branch for it
        self.last_evaluation = (self.guidance(cond, uncond, x, sigma), fr.ONE_BRANCH if single else fr.BOTH_BRANCHES)
        return args["denoised"]

    def guidance(self, cond, uncond, x, sigma):
        """RMS of the two branches' difference in the model's output units, batch mean:
        (x0_u - x0_c) / sigma, which is eps_c - eps_u for noise-predicting models (x = x0 +
        sigma * eps) and the velocity difference for flow models (x0 = x - sigma * v)."""
        cond, uncond, x = (unpacked_image_part(t, self.part_shapes) for t in (cond, uncond, x))
        sigma = sigma.to(torch.float32).reshape((-1,) + (1,) * (x.ndim - 1))
        return fb.rms((uncond.float() - cond.float()) / sigma).mean()

    def start_run(self, sigmas, shapes=None):
        """Fresh state for a sampler run over ``sigmas`` (a list); ``shapes``: the parts of a
        multi-part latent as the host packed them for this run, if it says so."""
        self.sigmas = list(sigmas)
        self.part_shapes = shapes or self.part_shapes
        self.points = []
        self.strip_steps = set(fp.strip_steps(self.total_steps, self.strip_columns))

    def sampler_sample_wrapper(self, executor, guider, sigmas, extra_args, callback, *args, **kwargs):
        # Newer hosts name the packed parts on the model (latent_shapes; also when they built the
        # parts themselves from an empty latent); older ones packed only the input given.
        host_shapes = getattr(getattr(guider, "inner_model", None), "latent_shapes", None)
        self.start_run(sigmas.detach().float().cpu().tolist(), host_shapes)  # once per run
        total = self.total_steps
        if self.send is not None:
            self.send(fr.EVENT_START, {"kind": fr.KIND_TRACE, "total_steps": total, "panels": fr.panels(fr.KIND_TRACE),
                                       "title": "sampling trace (live)", "cutoff_radius": self.cutoff_radius})

        def record(step, x0, x, total_steps):
            comfy.model_management.throw_exception_if_processing_interrupted()
            self.record(step, x0, x)
            if callback is not None:
                callback(step, x0, x, total_steps)

        return executor(guider, sigmas, extra_args, record, *args, **kwargs)

    def record(self, step, x0, x):
        x0, x = unpacked_image_part(x0, self.part_shapes), unpacked_image_part(x, self.part_shapes)
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
            self.send(fr.EVENT_STEP, {"point": point})

    def cutoff_marker(self, total_steps):
        run = self.cutoff_run
        if run is None or not run.dropped:
            return None
        return fr.cutoff_marker(run.guided_steps(), total_steps, run.settings.keep, run.drop_sigma)

    def guidance_start_marker(self, total_steps):
        run = self.cutoff_run
        if run is None or not run.before_start_evaluations:
            return None
        return fr.guidance_start_marker(run.steps_before_start(), total_steps, run.settings.keep_before_start,
                                        run.start_sigma)

    def payload(self, title, latent_shape):
        """The recorded run as a ``frequency_report`` payload."""
        total = self.total_steps
        return fr.payload(
            fr.KIND_TRACE, title, self.points, self.cutoff_radius, total, self.cutoff_marker(total),
            guidance_start=self.guidance_start_marker(total),
            parameterization=parameterization(self.model_sampling),
            latent_shape=list(latent_shape), sigmas=[fr.clean(s) for s in self.sigmas])


def as_sampled(model, samples):
    """The latent as KSampler hands it to the model: a 4-D [B, C, H, W] latent for a model whose
    latents are 5-D (Wan, Qwen-Image) becomes one frame [B, C, 1, H, W]. Without it the latent
    format's per-channel statistics ([1, C, 1, 1, 1]) would broadcast it to [1, C, C, H, W].
    An empty (all-zero) latent also gets the model's channel count, as KSampler gives it."""
    return comfy.sample.fix_empty_latent_channels(model, samples)


def sample_like_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise):
    """The host's KSampler path (nodes.common_ksampler), step for step, so results match."""
    latent_image = as_sampled(model, latent["samples"])
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
