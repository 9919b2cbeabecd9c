"""Tiny random-weight models built from ComfyUI's own classes.

They have the real architecture (UNet, CLIP text model with the real tokenizer, AutoencoderKL)
at a few channels wide, so a whole graph samples on a CPU in seconds. Weights are seeded
random values: images are noise, but every code path of the host is the real one. Used by
the tests, the headless demo and the ``ShapeFirstTinyCheckpoint`` node.
"""
import json
import os
import tempfile

import torch

import comfy.clip_vision
import comfy.latent_formats
import comfy.ldm.models.autoencoder
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.sd1_clip
import comfy.sdxl_clip
import comfy.supported_models
import comfy.supported_models_base
import comfy.text_encoders.flux
import comfy.text_encoders.sd2_clip
import comfy.text_encoders.sd3_clip

ARCHITECTURES = ("sd15", "sdxl")

# Text encoder widths: small, but with the real tokenizer and 77-token chunks.
_CLIP_WIDTH = 32
_CLIP_CONFIG = {
    "hidden_size": _CLIP_WIDTH,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_hidden_layers": 3,
    "projection_dim": _CLIP_WIDTH,
}
# SDXL's added conditioning is the pooled text embedding plus six 256-wide size embeddings.
_SDXL_SIZE_EMBEDDING = 6 * 256

_UNET_COMMON = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "in_channels": 4, "model_channels": 32, "num_res_blocks": [1, 1],
    "channel_mult": [1, 2], "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1, "num_head_channels": 16, "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
_UNET_CONFIGS = {
    "sd15": dict(_UNET_COMMON, context_dim=_CLIP_WIDTH, adm_in_channels=None, use_linear_in_transformer=False),
    "sdxl": dict(_UNET_COMMON, context_dim=2 * _CLIP_WIDTH, num_classes="sequential",
                 adm_in_channels=_CLIP_WIDTH + _SDXL_SIZE_EMBEDDING, use_linear_in_transformer=True),
}
_VAE_CONFIG = {"params": {"embed_dim": 4, "ddconfig": {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
    "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}}


def _check_architecture(architecture):
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")


@torch.no_grad()
def randomize(module, seed):
    """Fills ``module``'s parameters in place with seeded weights: norms at identity, biases
    zero, everything else small Gaussian noise; the same seed gives the same weights.

    The host builds layers without initialising them (checkpoints overwrite them), so
    we fill every parameter ourselves, in a fixed order, to be reproducible.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, param in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        if not param.dtype.is_floating_point:
            continue
        leaf = name.rsplit(".", 1)[-1]
        is_norm = "norm" in name.lower() or "ln_" in name.lower()
        if is_norm and leaf == "weight":
            value = torch.ones(param.shape)
        elif leaf == "bias":
            value = torch.zeros(param.shape)
        else:
            value = torch.randn(param.shape, generator=generator) * 0.05
        param.copy_(value.to(param.dtype))


def _model_config(architecture):
    unet_config = dict(_UNET_CONFIGS[architecture])
    if architecture == "sd15":
        config = comfy.supported_models.SD15(unet_config)
    else:
        config = comfy.supported_models.SDXL(unet_config)
    # The family's defaults (head width 64) assume full-size channels: keep the tiny ones.
    config.unet_config.update(unet_config)
    config.set_inference_dtype(torch.float32, None)
    return config


def _patched(model, seed):
    """The model's network in float32 with seeded weights, in the host's ModelPatcher."""
    model.diffusion_model.to(torch.float32)
    randomize(model.diffusion_model, seed)
    return comfy.model_patcher.ModelPatcher(
        model,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )


def tiny_model(architecture="sd15", seed=0):
    """A ModelPatcher around a tiny UNet of the given shape (``sd15``, or ``sdxl`` with its adm input)."""
    _check_architecture(architecture)
    config = _model_config(architecture)
    return _patched(config.get_model({}, device=comfy.model_management.unet_offload_device()), seed)


def tiny_flow_model(seed=0):
    """A ModelPatcher around a tiny 16-channel flow-matching model: SD3's latent format and
    shifted schedule (shift 3), CONST (flow) parameterization, on the tiny SD1.5-shaped UNet
    with 16 input and output channels. For code that cares about the latent layout and the
    parameterization, not about the SD3 transformer."""
    config = _model_config("sd15")
    config.unet_config.update(in_channels=16, out_channels=16)
    config.latent_format = comfy.latent_formats.SD3()
    config.sampling_settings = {"shift": 3.0}
    model = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.FLOW,
                                       device=comfy.model_management.unet_offload_device())
    return _patched(model, seed)


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
    return _patched(config.get_model({}, device=comfy.model_management.unet_offload_device()), seed)


def _sd15_clip_model(device="cpu", dtype=None, model_options={}):
    return comfy.sd1_clip.SD1ClipModel(device=device, dtype=dtype, model_options=model_options)


def tiny_clip(architecture="sd15", seed=0):
    """A CLIP object with the host's real tokenizer(s) and tiny random text encoder(s)."""
    _check_architecture(architecture)
    if architecture == "sd15":
        target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, _sd15_clip_model)
        options = {"clip_l_model_config": dict(_CLIP_CONFIG)}
    else:
        target = comfy.supported_models_base.ClipTarget(comfy.sdxl_clip.SDXLTokenizer, comfy.sdxl_clip.SDXLClipModel)
        options = {"clip_l_model_config": dict(_CLIP_CONFIG), "clip_g_model_config": dict(_CLIP_CONFIG)}
    options["dtype"] = torch.float32
    clip = comfy.sd.CLIP(target=target, model_options=options)
    randomize(clip.cond_stage_model, seed)
    return clip


def tiny_vae(seed=0):
    """An AutoencoderKL with the SD latent layout (4 channels, 8x downscale), a few channels wide."""
    autoencoder = comfy.ldm.models.autoencoder.AutoencoderKL(**_VAE_CONFIG["params"])
    randomize(autoencoder, seed)
    # Through the host's VAE class, so encode/decode, tiling and devices are the real ones.
    return comfy.sd.VAE(sd=autoencoder.state_dict(), config=_VAE_CONFIG, dtype=torch.float32)


# Text encoders of every family the [EOS] tools read, for tests. Each encoder has its own
# width, so a mix-up of their rows or columns shows as a wrong shape or value.
TEXT_ENCODER_FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux", "sdxl_refiner")
_TEXT_ENCODER_CONFIGS = {
    "clip_l": dict(_CLIP_CONFIG),
    "clip_h": dict(_CLIP_CONFIG, hidden_size=40, projection_dim=40),
    "clip_g": dict(_CLIP_CONFIG, hidden_size=48, projection_dim=48),
    "t5xxl": {"d_model": 24, "d_kv": 8, "num_heads": 2, "d_ff": 32, "num_layers": 2},
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
    }[family]


def tiny_text_encoder(family="sd1", seed=0, embedding_directory=None):
    """A CLIP object of the family's own tokenizer and text-encoder classes, tiny and random:
    CLIP-L 32 wide, CLIP-H 40, CLIP-G 48, T5-XXL 24 (4096 for SD3). ``embedding_directory``
    makes ``embedding:name`` prompts load textual-inversion files from there."""
    if family not in TEXT_ENCODER_FAMILIES:
        raise ValueError(f"family must be one of {TEXT_ENCODER_FAMILIES}, got {family!r}")
    target, encoders = _text_encoder_target(family)
    options = {f"{name}_model_config": dict(_TEXT_ENCODER_CONFIGS[name]) for name in encoders}
    if family == "sd3":
        options["t5xxl_model_config"] = dict(_SD3_T5_CONFIG)
    options["dtype"] = torch.float32
    clip = comfy.sd.CLIP(target=target, embedding_directory=embedding_directory, model_options=options)
    randomize(clip.cond_stage_model, seed)
    return clip


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
