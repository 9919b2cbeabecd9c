"""Tiny random-weight models of the other families, built from ComfyUI's own classes, for tests.

The Tiny Random Checkpoint's SD1.5/SDXL builders live in the pack (``nodes/demo_models/tiny.py``);
these add a flow-matching model, a Flux-shaped one, the text encoders of every family the [EOS]
tools read, and a CLIP vision model, with the same seeded weights (``tiny.randomize``).
"""
import json
import os
import tempfile

import torch

import comfy.clip_vision
import comfy.latent_formats
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.sd1_clip
import comfy.sdxl_clip
import comfy.supported_models
import comfy.supported_models_base
import comfy.text_encoders.flux
import comfy.text_encoders.hunyuan_video
import comfy.text_encoders.lumina2
import comfy.text_encoders.pixart_t5
import comfy.text_encoders.qwen_image
import comfy.text_encoders.sd2_clip
import comfy.text_encoders.sd3_clip
import comfy.text_encoders.wan

from . import model_families
from ..nodes.demo_models.tiny import CLIP_CONFIG, model_config, randomize, wrap_in_patcher
# The tests' one entry to every tiny builder, the pack's own included.
from ..nodes.demo_models.tiny import ARCHITECTURES, tiny_clip, tiny_model, tiny_vae  # noqa: F401

def tiny_flow_model(seed=0):
    """A ModelPatcher around a tiny 16-channel flow-matching model: SD3's latent format and
    shifted schedule (shift 3), CONST (flow) parameterization, on the tiny SD1.5-shaped UNet
    with 16 input and output channels. For code that cares about the latent layout and the
    parameterization, not about the SD3 transformer."""
    config = model_config("sd15")
    config.unet_config.update(in_channels=16, out_channels=16)
    config.latent_format = comfy.latent_formats.SD3()
    config.sampling_settings = {"shift": 3.0}
    model = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.FLOW,
                                       device=comfy.model_management.unet_offload_device())
    return wrap_in_patcher(model, seed)


# Flux-dev's layout (guidance embedding, 16-channel latents, 768-wide pooled and 4096-wide
# text inputs) at 32 wide with one block of each kind.
_FLUX_CONFIG = {"image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16,
                "vec_in_dim": 768, "context_in_dim": 4096, "hidden_size": 32, "mlp_ratio": 2.0, "num_heads": 2,
                "depth": 1, "depth_single_blocks": 1, "axes_dim": [4, 6, 6], "theta": 10000, "patch_size": 2,
                "qkv_bias": True}


def tiny_flux_model(seed=0):
    """A ModelPatcher around a tiny Flux-dev-shaped model (the host's Flux classes: guidance
    embedding, 16-channel latents, flow schedule); conditioning is ``[batch, rows, 4096]`` with a
    768-wide ``pooled_output`` and a ``guidance`` value."""
    config = comfy.supported_models.Flux(dict(_FLUX_CONFIG))
    config.set_inference_dtype(torch.float32, None)
    return wrap_in_patcher(config.get_model({}, device=comfy.model_management.unet_offload_device()), seed)


# Today's DiT and video families, a few channels wide (their configs, by the same names, are in
# tools/model_families.py): the host's own model classes, sampled on the CPU in a fraction of a second.
FAMILIES = tuple(model_families.FAMILIES)
VIDEO_FAMILIES = tuple(name for name, family in model_families.FAMILIES.items() if family.frames)


def _check_family(family):
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def tiny_family_model(family, seed=0):
    """A ModelPatcher around the family's tiny model (host classes, seeded float32 weights, filled
    as the benchmark fills them: scaled by fan-in, with the buffers a checkpoint would fill)."""
    _check_family(family)
    model = model_families.model_config(family, tiny=True).get_model(
        {}, device=comfy.model_management.unet_offload_device())
    model_families.fill_random(model.diffusion_model, seed, model_families.FAMILIES[family].checkpoint_buffers)
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def family_inputs(family, batch=1, seed=0):
    """(positive, negative, empty latent): random text embeddings of the family's shapes (pooled
    vector and guidance where it takes them) and its empty latent (8x8; video: 2 frames of 6x8)."""
    _check_family(family)
    positive, negative, latent, _ = model_families.random_inputs(family, True, batch, seed)
    return positive, negative, latent


# Text encoders of every family the [EOS] tools read, for tests. Each encoder has its own
# width, so a mix-up of their rows or columns shows as a wrong shape or value.
TEXT_ENCODER_FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux", "sdxl_refiner", "wan", "chroma")
# LLM-based encoders, built at full size on the meta device (no memory, no weights): enough for
# code that looks at which encoder it was given, never for encoding.
LLM_TEXT_ENCODER_FAMILIES = ("hunyuan_video", "qwen_image", "lumina2")
_TEXT_ENCODER_CONFIGS = {
    "clip_l": dict(CLIP_CONFIG),
    "clip_h": dict(CLIP_CONFIG, hidden_size=40, projection_dim=40),
    "clip_g": dict(CLIP_CONFIG, hidden_size=48, projection_dim=48),
    "t5xxl": {"d_model": 24, "d_kv": 8, "num_heads": 2, "d_ff": 32, "num_layers": 2},
    # Wan's 4096 columns (its model's text input), cheap with the tiny tokenizer's 96 pieces
    # (tiny_sentencepiece; umT5's own are 256 384)
    "umt5xxl": {"d_model": 4096, "d_kv": 8, "num_heads": 2, "d_ff": 16, "num_layers": 1, "vocab_size": 96},
}
# SD3 stacks T5's rows under CLIP's rows zero-padded to 4096 columns, so its T5 must be that
# wide; one layer with a narrow feed-forward keeps it cheap apart from the embedding table.
_SD3_T5_CONFIG = {"d_model": 4096, "d_kv": 8, "num_heads": 2, "d_ff": 16, "num_layers": 1}


def _text_encoder_target(family):
    target = comfy.supported_models_base.ClipTarget
    return {
        "sd1": (target(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel), ("clip_l",)),
        "sd2": (target(comfy.text_encoders.sd2_clip.SD2Tokenizer, comfy.text_encoders.sd2_clip.SD2ClipModel),
                ("clip_h",)),
        "sdxl": (target(comfy.sdxl_clip.SDXLTokenizer, comfy.sdxl_clip.SDXLClipModel), ("clip_l", "clip_g")),
        "sd3": (target(comfy.text_encoders.sd3_clip.SD3Tokenizer, comfy.text_encoders.sd3_clip.sd3_clip()),
                ("clip_l", "clip_g", "t5xxl")),
        "flux": (target(comfy.text_encoders.flux.FluxTokenizer, comfy.text_encoders.flux.flux_clip()),
                 ("clip_l", "t5xxl")),
        "sdxl_refiner": (target(comfy.sdxl_clip.SDXLTokenizer, comfy.sdxl_clip.SDXLRefinerClipModel), ("clip_g",)),
        "wan": (target(comfy.text_encoders.wan.WanT5Tokenizer, comfy.text_encoders.wan.te()), ("umt5xxl",)),
        "chroma": (target(comfy.text_encoders.pixart_t5.PixArtTokenizer, comfy.text_encoders.pixart_t5.pixart_te()),
                   ("t5xxl",)),
        "hunyuan_video": (target(comfy.text_encoders.hunyuan_video.HunyuanVideoTokenizer,
                                 comfy.text_encoders.hunyuan_video.hunyuan_video_clip()), ()),
        "qwen_image": (target(comfy.text_encoders.qwen_image.QwenImageTokenizer, comfy.text_encoders.qwen_image.te()),
                       ()),
        "lumina2": (target(comfy.text_encoders.lumina2.LuminaTokenizer, comfy.text_encoders.lumina2.te()), ()),
    }[family]


_SENTENCEPIECE_TEXT = (
    "a red cube on a wooden table", "a photo of a blue sphere on green grass", "a lighthouse on a cliff at dusk",
    "an old man reading a book by the window", "two cats sleeping in the sun, detailed, photograph",
)


def tiny_sentencepiece():
    """A sentencepiece model trained on a few captions (96 pieces; <pad> 0, </s> 1, <s> 2, <unk> 3,
    T5's and Gemma's special ids): the umT5 and Gemma tokenizers read theirs from the checkpoint."""
    import io
    import sentencepiece
    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_SENTENCEPIECE_TEXT * 20), model_writer=out, vocab_size=96, model_type="unigram",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, hard_vocab_limit=False, minloglevel=2)
    return out.getvalue()


def tiny_text_encoder(family="sd1", seed=0, embedding_directory=None):
    """A CLIP object of the family's own tokenizer and text-encoder classes, tiny and random:
    CLIP-L 32 wide, CLIP-H 40, CLIP-G 48, T5-XXL 24 (4096 for SD3), umT5-XXL 4096. ``embedding_directory``
    makes ``embedding:name`` prompts load textual-inversion files from there."""
    if family in LLM_TEXT_ENCODER_FAMILIES:
        return _unloaded_text_encoder(family)
    if family not in TEXT_ENCODER_FAMILIES:
        raise ValueError(f"family must be one of {TEXT_ENCODER_FAMILIES + LLM_TEXT_ENCODER_FAMILIES}, "
                         f"got {family!r}")
    target, encoders = _text_encoder_target(family)
    options = {f"{name}_model_config": dict(_TEXT_ENCODER_CONFIGS[name]) for name in encoders}
    if family == "sd3":
        options["t5xxl_model_config"] = dict(_SD3_T5_CONFIG)
    options["dtype"] = torch.float32
    tokenizer_data = {"spiece_model": tiny_sentencepiece()} if family == "wan" else {}
    clip = comfy.sd.CLIP(target=target, embedding_directory=embedding_directory, model_options=options,
                         tokenizer_data=tokenizer_data)
    randomize(clip.cond_stage_model, seed)
    return clip


def _unloaded_text_encoder(family):
    """The family's CLIP object with its real tokenizer and its text encoder on the meta device."""
    target, _ = _text_encoder_target(family)
    cpu = torch.device("cpu")
    options = {"initial_device": torch.device("meta"), "load_device": cpu, "offload_device": cpu,
               "dtype": torch.float16}
    tokenizer_data = {"spiece_model": tiny_sentencepiece()} if family == "lumina2" else {}
    return comfy.sd.CLIP(target=target, model_options=options, tokenizer_data=tokenizer_data)


_CLIP_VISION_CONFIG = {
    "hidden_act": "quick_gelu", "hidden_size": 32, "image_size": 64, "intermediate_size": 64,
    "layer_norm_eps": 1e-05, "model_type": "clip_vision_model", "num_attention_heads": 2,
    "num_channels": 3, "num_hidden_layers": 2, "patch_size": 16, "projection_dim": 16,
}


def tiny_clip_vision(seed=0):
    """A CLIP vision model (ViT, 64 px input) a few channels wide, for image embeddings."""
    # the host's class reads its architecture from a JSON file
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(_CLIP_VISION_CONFIG, f)
    try:
        model = comfy.clip_vision.ClipVisionModel(f.name)
    finally:
        os.unlink(f.name)
    randomize(model.model, seed)
    return model
