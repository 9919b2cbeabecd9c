"""Test-only ComfyUI nodes: the tiny random-weight models of today's families as loaders.

The example workflows of DiT and video models load real checkpoints (UNETLoader,
CLIPLoader); the tests' headless server loads this folder beside the pack, and the tests
swap those loaders for these nodes (``tests/test_example_workflows.py``), so the rest of each
workflow runs unchanged on the CPU. Not part of the pack: nothing installs it.
"""
import importlib
import importlib.util
from pathlib import Path

_PACK_LOADER = Path(__file__).resolve().parents[2] / "tools" / "pack_loader.py"
CATEGORY = "testing/shapefirst"


def _tiny():
    """tools/tiny_test_models, through the pack's one import route (package 'shapefirst')."""
    spec = importlib.util.spec_from_file_location("shapefirst_pack_loader", _PACK_LOADER)
    pack_loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack_loader)
    return pack_loader.pack_module("tools.tiny_test_models")


class TinyFamilyDiffusionModel:
    DESCRIPTION = "A tiny random-weight diffusion model of the family (host classes), for tests."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": (list(_tiny().FAMILIES), {"tooltip": "The model family."}),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1,
                                              "tooltip": "Seed of the random weights."})}}

    def load(self, family, seed):
        return (_tiny().tiny_family_model(family, seed=seed),)


class TinyFamilyTextEncoder:
    DESCRIPTION = "A tiny random text encoder with the family's real tokenizer (host classes), for tests."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"family": (list(_tiny().TEXT_ENCODER_FAMILIES), {"tooltip": "The encoder family."})}}

    def load(self, family):
        return (_tiny().tiny_text_encoder(family, seed=0),)


NODE_CLASS_MAPPINGS = {"TinyFamilyDiffusionModel": TinyFamilyDiffusionModel,
                       "TinyFamilyTextEncoder": TinyFamilyTextEncoder}
