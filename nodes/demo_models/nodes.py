"""A tiny random-weight checkpoint, to try graphs without downloading weights."""
from comfy_api.latest import io

from . import tiny as tiny_models


class ShapeFirstTinyCheckpoint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstTinyCheckpoint",
            display_name="Tiny Random Checkpoint (ShapeFirst, testing)",
            category="shapefirst/testing",
            description=(
                "Builds a tiny model with random weights from ComfyUI's own classes: an SD1.5- or "
                "SDXL-shaped UNet a few channels wide, CLIP text encoders with the real tokenizer, "
                "and a small VAE. Samples on a CPU in seconds, so whole graphs can be tested and "
                "timed without a checkpoint. The images are noise: use a real checkpoint for pictures."),
            inputs=[
                io.Combo.Input("architecture", options=list(tiny_models.ARCHITECTURES), default="sd15",
                               tooltip="sd15: SD1.x-shaped UNet and CLIP-L. sdxl: SDXL-shaped UNet with its "
                                       "added (pooled text + size) input and CLIP-L + CLIP-G."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed of the random weights: the same seed gives the same model."),
            ],
            outputs=[
                io.Model.Output(tooltip="The tiny diffusion model."),
                io.Clip.Output(tooltip="The tiny text encoder(s) with the real tokenizer."),
                io.Vae.Output(tooltip="The tiny VAE (8x downscale, 4 latent channels)."),
            ],
        )

    @classmethod
    def execute(cls, architecture, seed) -> io.NodeOutput:
        return io.NodeOutput(tiny_models.tiny_model(architecture, seed),
                             tiny_models.tiny_clip(architecture, seed),
                             tiny_models.tiny_vae(seed))


NODES = [ShapeFirstTinyCheckpoint]
