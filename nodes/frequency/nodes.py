"""Nodes: see the shape (low frequencies) form before the details, as in Yi et al. (Fig. 2, 8b).

- ShapeFirstFrequencySplit: LATENT -> low-pass and high-pass LATENTs.
- ShapeFirstFrequencyTrace: samples like KSampler and records, per step, the bands of x_t
  and of the predicted x0 and the text guidance; the sampled latent is bit-identical to
  KSampler's. It samples itself because its plots exist only after sampling.
- ShapeFirstForwardFrequency: the same bands along the forward (noising) process.

The math and the drawings live in ``bands``, ``report`` and ``chart`` (host-free), the
sampling, recording and decoding in ``recording``; the chart in the node is ``js/frequency_chart.js``, fed live
through the host's message API and, on a cache hit, by the node's UI output.
"""
import comfy.samplers
from comfy_api.latest import io

from . import bands as fb
from . import chart as fp
from . import recording as rec
from . import report as fr
from ..validation import require

CATEGORY = "shapefirst/frequency"


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
        require(fb.check_cutoff(cutoff_radius))
        low, high = rec.split_bands(latent["samples"], cutoff_radius)
        return io.NodeOutput({**latent, "samples": low}, {**latent, "samples": high})


# ---------------------------------------------------------------- trace

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
                io.Latent.Input("latent_image", tooltip=(
                    "The latent to denoise (Empty Latent Image for text to image). Of a latent with several "
                    "parts (LTX-2 video + audio) all are sampled and the first, the video, is traced.")),
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
        require(fb.check_cutoff(cutoff_radius), rec.check_latent(latent_image["samples"], model, "latent_image"))
        recorder = rec.TraceRecorder(model, cutoff_radius, strip_columns, rec.live_sender(cls.hidden.unique_id),
                                     rec.part_shapes(latent_image["samples"]))
        latent = rec.sample_like_ksampler(recorder.traced(model), seed, steps, cfg, sampler_name, scheduler,
                                          positive, negative, latent_image, denoise)
        shape = rec.image_part(latent["samples"]).shape
        data = recorder.payload(f"Frequency trace: {sampler_name}/{scheduler}, {recorder.total_steps} steps, "
                                f"cfg {cfg:g}; {fr.latent_label(shape)}", shape)
        plot = rec.to_image(fp.render_chart(data))
        strip = rec.to_image(rec.decode_strip(vae, model, recorder, cutoff_radius))
        return io.NodeOutput(latent, plot, strip, fr.to_json(data), ui={fr.UI_KEY: [data]})


# ---------------------------------------------------------------- forward process

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
                    "The clean latent (e.g. from VAE Encode or a sampler). Give this or image. Of a latent with "
                    "several parts (LTX-2 video + audio) the first, the video, is used.")),
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
        require(fb.check_cutoff(cutoff_radius), rec.check_forward_source(latent, image, vae))
        if latent is not None:
            samples, name = latent["samples"], "latent"
        else:
            samples, name = vae.encode(image[:, :, :, :3]), "image (encoded)"
        require(rec.check_latent(samples, model, name))
        samples = rec.image_part(samples)  # of video + audio (LTX-2), the video
        require(rec.check_has_content(samples, name))
        samples = rec.as_sampled(model, samples)
        points, kind = rec.forward_curves(model, samples, steps, scheduler, seed, cutoff_radius)
        data = fr.payload(fr.KIND_FORWARD, f"Forward process ({kind}): {scheduler}, {len(points)} noise levels; "
                          f"{fr.latent_label(samples.shape)}",
                          points, cutoff_radius, len(points), parameterization=kind,
                          latent_shape=list(samples.shape))
        return io.NodeOutput(rec.to_image(fp.render_chart(data)), fr.to_json(data), ui={fr.UI_KEY: [data]})


NODES = [ShapeFirstFrequencySplit, ShapeFirstFrequencyTrace, ShapeFirstForwardFrequency]
