"""The demo checkpoints: the trained ShapeFirst demo model, and a tiny random-weight one for tests."""
from comfy_api.latest import io

from . import tiny as tiny_models
from . import trained as trained_model


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


class ShapeFirstDemoCheckpoint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstDemoCheckpoint",
            display_name="ShapeFirst Demo Checkpoint",
            category="shapefirst/demo",
            description=(
                "Loads the ShapeFirst demo model that ships with the pack: a small SD1.x-family "
                "text-to-image model (UNet, causal CLIP text encoder with the real tokenizer, 8x VAE) "
                "trained from scratch on 64x64 pictures of one shape: circle, square, triangle or "
                "cross; red, green, blue or yellow; small or large; left, right, top, bottom or centre; "
                "plain, striped, dotted or checkered; on a black, gray or white background. Prompt it "
                "like 'a small red circle, striped, on the left, black background' at 64x64 px. It "
                "makes the paper's effects visible without downloading a checkpoint."),
            inputs=[],
            outputs=[
                io.Model.Output(tooltip="The demo diffusion model (SD1.x family, 64x64 px pictures, 8x8 latents)."),
                io.Clip.Output(tooltip="The demo text encoder: SD1 CLIP architecture, 77-token chunks, small."),
                io.Vae.Output(tooltip="The demo VAE (8x downscale, 4 latent channels)."),
            ],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        try:
            model, clip, vae = trained_model.load_demo_checkpoint()
        except trained_model.DemoWeightsError as error:
            raise ValueError(str(error)) from None
        return io.NodeOutput(model, clip, vae)


NODES = [ShapeFirstDemoCheckpoint, ShapeFirstTinyCheckpoint]
