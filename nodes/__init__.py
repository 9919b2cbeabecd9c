"""The pack's V3 extension: every feature module lists its node classes in ``NODES``."""
from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from . import compile_model, eos_tokens, evaluation, frequency, guidance_cutoff, image_compare, testing

FEATURE_MODULES = (guidance_cutoff, frequency, eos_tokens, image_compare, evaluation, compile_model, testing)


class ShapeFirstExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [node for module in FEATURE_MODULES for node in module.NODES]


async def comfy_entrypoint() -> ShapeFirstExtension:
    return ShapeFirstExtension()
