"""Tiny random-weight models built from ComfyUI's own classes, for the Tiny Random Checkpoint.

They have the real architecture (UNet, CLIP text model with the real tokenizer, AutoencoderKL)
at a few channels wide, so a whole graph samples on a CPU in seconds. Weights are seeded
random values: images are noise, but every code path of the host is the real one. The
builders of other families that only the tests use are in ``tools/tiny_test_models.py``.
"""
import torch

import comfy.ldm.models.autoencoder
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.sd1_clip
import comfy.sdxl_clip
import comfy.supported_models
import comfy.supported_models_base

ARCHITECTURES = ("sd15", "sdxl")

# Text encoder widths: small, but with the real tokenizer and 77-token chunks.
_CLIP_WIDTH = 32
CLIP_CONFIG = {
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


def model_config(architecture):
    unet_config = dict(_UNET_CONFIGS[architecture])
    if architecture == "sd15":
        config = comfy.supported_models.SD15(unet_config)
    else:
        config = comfy.supported_models.SDXL(unet_config)
    # The family's defaults (head width 64) assume full-size channels: keep the tiny ones.
    config.unet_config.update(unet_config)
    config.set_inference_dtype(torch.float32, None)
    return config


def wrap_in_patcher(model, seed):
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
    config = model_config(architecture)
    return wrap_in_patcher(config.get_model({}, device=comfy.model_management.unet_offload_device()), seed)


def _sd15_clip_model(device="cpu", dtype=None, model_options={}):
    return comfy.sd1_clip.SD1ClipModel(device=device, dtype=dtype, model_options=model_options)


def tiny_clip(architecture="sd15", seed=0):
    """A CLIP object with the host's real tokenizer(s) and tiny random text encoder(s)."""
    _check_architecture(architecture)
    if architecture == "sd15":
        target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, _sd15_clip_model)
        options = {"clip_l_model_config": dict(CLIP_CONFIG)}
    else:
        target = comfy.supported_models_base.ClipTarget(comfy.sdxl_clip.SDXLTokenizer, comfy.sdxl_clip.SDXLClipModel)
        options = {"clip_l_model_config": dict(CLIP_CONFIG), "clip_g_model_config": dict(CLIP_CONFIG)}
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
