"""Nodes: Image Compare (the paper's quality measures for the cutoff) and the paper's
acceleration table on your own checkpoint."""
import json
import time

import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
from comfy_api.latest import io, ui

from ..guidance_cutoff import patch as cutoff_patch
from ..guidance_cutoff import schedule as cs
from . import metrics as image_metrics
from . import paper_table

DEFAULT_PROMPTS = "\n".join([
    "a photograph of an astronaut riding a horse",
    "a red sports car parked in front of a modern house",
    "a bowl of fruit on a wooden table, oil painting",
])


def _encode(clip, text):
    # as the stock CLIPTextEncode node does
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def _empty_latent(model, width, height):
    channels = model.get_model_object("latent_format").latent_channels
    return torch.zeros([1, channels, height // 8, width // 8], device=comfy.model_management.intermediate_device())


class ShapeFirstPaperTable(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstPaperTable",
            display_name="Paper Table: Cutoff vs Full CFG (ShapeFirst)",
            category="shapefirst/evaluation",
            is_output_node=True,  # its table is the result, shown on the node
            description=(
                "Reproduces the paper's acceleration table on your checkpoint: for every prompt (one per line) "
                "it samples full CFG and the guidance cutoff with a = each given fraction of the steps run "
                "without text, from the same seed, then reports the median sampling time, the time and UNet "
                "work saved, and the similarity to the full-CFG image (L1, PSNR, SSIM and, with a CLIP vision "
                "model, the Image-CLIPScore). Each variant is warmed up first and the variants are interleaved."),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model to evaluate."),
                io.Clip.Input("clip", tooltip="Its text encoder."),
                io.Vae.Input("vae", tooltip="Its VAE, to decode the images that are compared."),
                io.String.Input("prompts", multiline=True, default=DEFAULT_PROMPTS,
                                tooltip="One prompt per line; lines starting with # are ignored."),
                io.String.Input("negative", multiline=True, default="",
                                tooltip="The negative prompt (the unconditional branch); the paper uses the empty prompt."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=False,
                             tooltip="Noise seed, the same for every variant of a prompt."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Sampling steps S."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance scale while the text is used (the paper: 7.5)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler",
                               tooltip="Sampler, as in KSampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="Scheduler, as in KSampler."),
                io.Int.Input("width", default=512, min=64, max=8192, step=8, tooltip="Image width in pixels."),
                io.Int.Input("height", default=512, min=64, max=8192, step=8, tooltip="Image height in pixels."),
                io.String.Input("text_free_fractions", default="0.3, 0.5, 0.7", tooltip=(
                    "The paper's a as fractions of the steps that run without text, separated by commas. "
                    "0.5 of 20 steps: text for 10 steps, then none.")),
                io.Combo.Input("keep", options=list(cs.KEEP_CHOICES), default=cs.KEEP_UNCOND,
                               tooltip="Branch kept after the cutoff: 'uncond' is the paper's method."),
                io.Int.Input("repeats", default=1, min=1, max=100,
                             tooltip="Timed runs of every prompt and variant; times are medians."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="Optional CLIP vision model for the Image-CLIPScore."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip=(
                    "Every decoded image: per prompt, full CFG first, then each a in the given order.")),
                io.String.Output(display_name="table", tooltip="The table as Markdown."),
                io.String.Output(display_name="json", tooltip="The table and every measurement as JSON."),
            ],
        )

    @classmethod
    def validate_inputs(cls, prompts, text_free_fractions):
        try:
            paper_table.parse_prompts(prompts)
            paper_table.parse_fractions(text_free_fractions)
        except ValueError as error:
            return str(error)
        return True

    @classmethod
    def execute(cls, model, clip, vae, prompts, negative, seed, steps, cfg, sampler_name, scheduler, width, height,
                text_free_fractions, keep, repeats, clip_vision=None) -> io.NodeOutput:
        prompt_list = paper_table.parse_prompts(prompts)
        fractions = paper_table.parse_fractions(text_free_fractions)
        negative_cond = _encode(clip, negative)
        conds = [_encode(clip, p) for p in prompt_list]
        latent = _empty_latent(model, width, height)
        noise = comfy.sample.prepare_noise(latent, seed)

        rows = [paper_table.Row("full CFG", 0)]
        models = [model]
        finished = {}  # variant -> its latest cutoff run, from the cutoff's report

        for fraction in fractions:
            a = paper_table.text_free_steps(steps, fraction)
            rows.append(paper_table.Row(f"cutoff a={a}", a))
            patched, _ = cutoff_patch.apply_cutoff(model, cs.CutoffSettings(guided_steps=steps - a, keep=keep),
                                                   report=lambda _, run, v=len(models): finished.update({v: run}))
            models.append(patched)

        def run(variant, positive, run_steps):
            start = time.perf_counter()
            samples = comfy.sample.sample(models[variant], noise, run_steps, cfg, sampler_name, scheduler, positive,
                                          negative_cond, latent, seed=seed, disable_pbar=True)
            seconds = time.perf_counter() - start  # the result is on the intermediate device: work is done
            cut = finished.get(variant) if variant else None
            saved = 0.0 if cut is None else cs.saved_share(cut.full_evaluations, cut.single_evaluations)
            return samples, seconds, saved

        total = len(models) * (1 + repeats * len(prompt_list))
        progress = comfy.utils.ProgressBar(total)
        for variant in range(len(models)):  # warm-up: loading, allocation, kernel selection
            comfy.model_management.throw_exception_if_processing_interrupted()
            run(variant, conds[0], steps)
            progress.update(1)

        decoded = [[None] * len(models) for _ in prompt_list]
        for repeat in range(repeats):
            for p, positive in enumerate(conds):
                shift = (repeat + p) % len(models)  # interleave: rotate which variant goes first
                for variant in [(v + shift) % len(models) for v in range(len(models))]:
                    comfy.model_management.throw_exception_if_processing_interrupted()
                    samples, seconds, saved = run(variant, positive, steps)
                    rows[variant].seconds.append(seconds)
                    rows[variant].saved_branch_share.append(saved)
                    if decoded[p][variant] is None:
                        decoded[p][variant] = vae.decode(samples)
                    progress.update(1)

        for p in range(len(prompt_list)):
            reference = decoded[p][0]
            for variant in range(len(models)):
                image = decoded[p][variant]
                values = {"L1": image_metrics.l1(reference, image).tolist(),
                          "PSNR": image_metrics.psnr(reference, image).tolist(),
                          "SSIM": image_metrics.ssim(reference, image).tolist()}
                if clip_vision is not None:
                    values["CLIP"] = image_metrics.cosine_similarity(
                        clip_vision.encode_image(reference).image_embeds, clip_vision.encode_image(image).image_embeds).tolist()
                rows[variant].add_metrics(values)

        metric_names = ["L1", "PSNR", "SSIM"] + (["CLIP"] if clip_vision is not None else [])
        summary = paper_table.summarize(rows, steps)
        table = paper_table.markdown(summary, metric_names)
        header = (f"{len(prompt_list)} prompts x {repeats} repeats, {steps} steps {sampler_name}/{scheduler}, cfg {cfg}, "
                  f"{width}x{height}, keep {keep}; metrics against full CFG (PSNR: identical pairs left out)")
        text = header + "\n\n" + table
        report = json.dumps({"settings": {"prompts": prompt_list, "steps": steps, "cfg": cfg, "sampler": sampler_name,
                                          "scheduler": scheduler, "width": width, "height": height, "keep": keep,
                                          "repeats": repeats, "seed": seed},
                             "rows": summary,
                             "measurements": [row.__dict__ for row in rows]}, indent=2, default=str)
        images = torch.cat([img for per_prompt in decoded for img in per_prompt], dim=0)
        ui_out = {**ui.PreviewImage(images, cls=cls).as_dict(), "text": [text]}
        return io.NodeOutput(images, text, report, ui=ui_out)


NO_CLIP_SCORE = -1.0


class ShapeFirstImageCompare(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstImageCompare",
            display_name="Image Compare (ShapeFirst)",
            category="shapefirst/evaluation",
            description=(
                "Compares two image batches pair by pair, e.g. the guidance-cutoff result against full CFG "
                "from the same seed, as the paper does: mean absolute difference (L1), PSNR and SSIM, and, "
                "with a CLIP vision model connected, the cosine similarity of the two images' CLIP embeddings "
                "(the paper's Image-CLIPScore). A batch of one is compared with every image of the other."),
            inputs=[
                io.Image.Input("image_a", tooltip="Reference images, e.g. from full CFG."),
                io.Image.Input("image_b", tooltip="Images to compare, e.g. from the guidance cutoff; same size as image_a."),
                io.ClipVision.Input("clip_vision", optional=True, tooltip=(
                    "Optional CLIP vision model (Load CLIP Vision) for the Image-CLIPScore.")),
            ],
            outputs=[
                io.Float.Output(display_name="l1", tooltip="Mean absolute pixel difference (0 = identical, 0..1 range)."),
                io.Float.Output(display_name="psnr", tooltip="Peak signal-to-noise ratio in dB (higher = closer; inf when identical)."),
                io.Float.Output(display_name="ssim", tooltip="Structural similarity (1 = identical)."),
                io.Float.Output(display_name="clip_score", tooltip=(
                    "Cosine similarity of the CLIP image embeddings (1 = same); -1 when no CLIP vision model is connected.")),
                io.String.Output(display_name="report", tooltip="The numbers as readable text, per pair and averaged."),
            ],
        )

    @classmethod
    def execute(cls, image_a, image_b, clip_vision=None) -> io.NodeOutput:
        metrics = {
            "L1": image_metrics.l1(image_a, image_b).tolist(),
            "PSNR": image_metrics.psnr(image_a, image_b).tolist(),
            "SSIM": image_metrics.ssim(image_a, image_b).tolist(),
        }
        clip_score = NO_CLIP_SCORE
        if clip_vision is not None:
            a, b = image_metrics.paired(image_a, image_b)
            metrics["CLIP"] = image_metrics.cosine_similarity(
                clip_vision.encode_image(a).image_embeds, clip_vision.encode_image(b).image_embeds).tolist()
            clip_score = sum(metrics["CLIP"]) / len(metrics["CLIP"])
        report = image_metrics.summarize(metrics)
        if clip_vision is None:
            report += "\nCLIP score: not computed (connect a CLIP vision model)"
        means = [sum(metrics["L1"]) / len(metrics["L1"]), image_metrics.mean_finite(metrics["PSNR"]),
                 sum(metrics["SSIM"]) / len(metrics["SSIM"])]
        return io.NodeOutput(*means, clip_score, report, ui=ui.PreviewText(report))


NODES = [ShapeFirstImageCompare, ShapeFirstPaperTable]
