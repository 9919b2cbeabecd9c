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
from ..validation import require, verdict

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
                               tooltip=("Branch kept after the cutoff: 'uncond' is the paper's method (the empty prompt, which "
                                        "this node encodes itself), 'cond' the prompt, 'negative' the negative prompt alone.")),
                io.Int.Input("repeats", default=1, min=1, max=100,
                             tooltip="Timed runs of every prompt and variant; times are medians."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="Optional CLIP vision model for the Image-CLIPScore."),
                io.Float.Input("window_start_fraction", default=0.0, min=0.0, max=0.99, step=0.01, optional=True,
                               tooltip=(
                    "Beside each cutoff, a guidance window variant (limited-interval guidance): this share of "
                    "the steps first runs the conditional branch alone, then full CFG until the cutoff. "
                    "0 (default): no window variants. Must be below 1 - a for every a.")),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip=(
                    "Every decoded image: per prompt, full CFG first, then each a in the given order (its "
                    "window variant right after it, when there is one).")),
                io.String.Output(display_name="table", tooltip="The table as Markdown."),
                io.String.Output(display_name="json", tooltip="The table and every measurement as JSON."),
            ],
        )

    @classmethod
    def validate_inputs(cls, prompts, text_free_fractions, window_start_fraction=0.0):
        return verdict(paper_table.check_prompts(prompts), paper_table.check_fractions(text_free_fractions),
                       paper_table.check_window(window_start_fraction, text_free_fractions))

    @classmethod
    def execute(cls, model, clip, vae, prompts, negative, seed, steps, cfg, sampler_name, scheduler, width, height,
                text_free_fractions, keep, repeats, clip_vision=None, window_start_fraction=0.0) -> io.NodeOutput:
        prompt_list = paper_table.parse_prompts(prompts)
        require(paper_table.check_window(window_start_fraction, text_free_fractions))
        run = TableRun(model, vae, [_encode(clip, p) for p in prompt_list], _encode(clip, negative), seed, steps,
                       cfg, sampler_name, scheduler, _empty_latent(model, width, height))
        run.empty = _encode(clip, "")  # the paper's unconditional, for keep 'uncond' (the negative may be set)
        run.add_cutoffs(paper_table.parse_fractions(text_free_fractions), keep, window_start_fraction)
        run.time_all(repeats)
        run.score(clip_vision_embedder(clip_vision))

        metric_names = list(image_metrics.METRIC_NAMES) + ([image_metrics.CLIP_SCORE] if clip_vision is not None else [])
        summary = paper_table.summarize(run.rows, steps)
        header = (f"{len(prompt_list)} prompts x {repeats} repeats, {steps} steps {sampler_name}/{scheduler}, cfg {cfg}, "
                  f"{width}x{height}, keep {keep}; metrics against full CFG (PSNR: identical pairs left out)")
        text = header + "\n\n" + paper_table.markdown(summary, metric_names)
        report = json.dumps({"settings": {"prompts": prompt_list, "steps": steps, "cfg": cfg, "sampler": sampler_name,
                                          "scheduler": scheduler, "width": width, "height": height, "keep": keep,
                                          "repeats": repeats, "seed": seed,
                                          "window_start_fraction": window_start_fraction},
                             "rows": summary,
                             "measurements": [row.__dict__ for row in run.rows]}, indent=2, default=str)
        images = run.images()
        ui_out = {**ui.PreviewImage(images, cls=cls).as_dict(), "text": [text]}
        return io.NodeOutput(images, text, report, ui=ui_out)


class TableRun:
    """The Paper Table's measurements: full CFG (variant 0) and one cutoff per ``a``, each
    sampled from the same noise for every prompt, then compared with full CFG."""

    def __init__(self, model, vae, conds, negative, seed, steps, cfg, sampler_name, scheduler, latent):
        self.vae, self.conds, self.negative = vae, conds, negative
        self.seed, self.steps, self.cfg = seed, steps, cfg
        self.sampler_name, self.scheduler, self.latent = sampler_name, scheduler, latent
        self.noise = comfy.sample.prepare_noise(latent, seed)
        self.rows = [paper_table.Row("full CFG", 0)]
        self.models = [model]
        self.finished = {}  # variant -> its latest cutoff run, from the cutoff's report
        self.decoded = []  # per prompt, per variant: the images of its first timed run
        self.empty = None  # the empty prompt's conditioning (keep 'uncond' evaluates it after the cut)

    def add_cutoffs(self, fractions, keep, window_start_fraction=0.0):
        """One cutoff variant per ``a``; with a window start, its window variant after it."""
        for fraction in fractions:
            a = cs.steps_for_fraction(self.steps, fraction)
            self._add_variant(paper_table.Row(f"cutoff a={a}", a), cs.CutoffSettings(guided_steps=self.steps - a, keep=keep))
            if window_start_fraction:
                u = paper_table.window_steps(self.steps, window_start_fraction, a)
                self._add_variant(paper_table.Row(f"window u={u} a={a}", a, steps_before_start=u),
                                  cs.CutoffSettings(guided_steps=self.steps - a, keep=keep, guidance_start_step=u))

    def _add_variant(self, row, settings):
        variant = len(self.models)
        self.rows.append(row)
        patched, _ = cutoff_patch.apply_cutoff(self.models[0], settings,
                                               report=lambda _, run, v=variant: self.finished.update({v: run}),
                                               empty_conditioning=self.empty)
        self.models.append(patched)

    def _sample(self, variant, positive):
        """One timed run: (samples, seconds, share of UNet branch evaluations saved)."""
        start = time.perf_counter()
        samples = comfy.sample.sample(self.models[variant], self.noise, self.steps, self.cfg, self.sampler_name,
                                      self.scheduler, positive, self.negative, self.latent, seed=self.seed,
                                      disable_pbar=True)
        seconds = time.perf_counter() - start  # the result is on the intermediate device: work is done
        cut = self.finished.get(variant) if variant else None
        saved = 0.0 if cut is None else cs.saved_share(cut.full_evaluations, cut.single_evaluations)
        return samples, seconds, saved

    def time_all(self, repeats):
        """Warms every variant up, then times them interleaved, ``repeats`` times per prompt."""
        variants = len(self.models)
        self.decoded = [[None] * variants for _ in self.conds]
        progress = comfy.utils.ProgressBar(variants * (1 + repeats * len(self.conds)))
        for variant in range(variants):  # warm-up: loading, allocation, kernel selection
            comfy.model_management.throw_exception_if_processing_interrupted()
            self._sample(variant, self.conds[0])
            progress.update(1)
        for repeat in range(repeats):
            for p, positive in enumerate(self.conds):
                shift = (repeat + p) % variants  # interleave: rotate which variant goes first
                for variant in [(v + shift) % variants for v in range(variants)]:
                    comfy.model_management.throw_exception_if_processing_interrupted()
                    samples, seconds, saved = self._sample(variant, positive)
                    self.rows[variant].seconds.append(seconds)
                    self.rows[variant].saved_branch_share.append(saved)
                    if self.decoded[p][variant] is None:
                        self.decoded[p][variant] = self.vae.decode(samples)
                    progress.update(1)

    def score(self, embed=None):
        """Every variant's images against full CFG's of the same prompt."""
        for per_prompt in self.decoded:
            for variant, image in enumerate(per_prompt):
                self.rows[variant].add_metrics(image_metrics.compare(per_prompt[0], image, embed))

    def images(self):
        """Per prompt, full CFG first, then each cutoff."""
        return torch.cat([image for per_prompt in self.decoded for image in per_prompt], dim=0)


def clip_vision_embedder(clip_vision):
    """images -> CLIP image embeddings with a CLIP vision model, or None without one."""
    if clip_vision is None:
        return None
    return lambda images: clip_vision.encode_image(images).image_embeds


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
        metrics = image_metrics.compare(image_a, image_b, clip_vision_embedder(clip_vision))
        clip_score = NO_CLIP_SCORE
        if clip_vision is not None:
            clip_score = image_metrics.mean_finite(metrics[image_metrics.CLIP_SCORE])
        report = image_metrics.summarize(metrics)
        if clip_vision is None:
            report += "\nCLIP score: not computed (connect a CLIP vision model)"
        means = [image_metrics.mean_finite(metrics[name]) for name in image_metrics.METRIC_NAMES]
        return io.NodeOutput(*means, clip_score, report, ui=ui.PreviewText(report))


NODES = [ShapeFirstImageCompare, ShapeFirstPaperTable]
