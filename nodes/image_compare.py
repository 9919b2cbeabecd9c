"""Node: compare two image batches (the paper's quality measures for the cutoff)."""

from comfy_api.latest import io, ui

from ..shapefirst_core import image_metrics

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


NODES = [ShapeFirstImageCompare]

