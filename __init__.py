"""ShapeFirst: ComfyUI nodes after "Towards Understanding the Working Mechanism of
Text-to-Image Diffusion Model" (Yi et al., NeurIPS 2024).

Importing the pack only defines the entry point: no installs, downloads or patches of the
host, and nothing of ComfyUI is imported until ComfyUI asks for the nodes (so the pack's
host-free modules import anywhere, e.g. in tests without ComfyUI).
"""
WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    """ComfyUI's V3 entry point: the extension that lists every feature's nodes."""
    from .nodes.extension import ShapeFirstExtension
    return ShapeFirstExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
