"""ShapeFirst: ComfyUI nodes after "Towards Understanding the Working Mechanism of
Text-to-Image Diffusion Model" (Yi et al., NeurIPS 2024).

Importing the pack only defines nodes: no installs, downloads or patches of the host.
"""
from .nodes import comfy_entrypoint

WEB_DIRECTORY = "./js"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
