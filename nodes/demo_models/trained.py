"""The trained ShapeFirst demo model: host classes at a small size, weights from ``weights/``.

An SD1.x-family UNet (``comfy.supported_models.SD15``), the SD1 CLIP text model
(``comfy.sd1_clip``: causal, the real tokenizer, 77-token chunks) and an AutoencoderKL
(8x downscale, 4 latent channels), all a few channels wide, trained from scratch on the
pictures of ``shapes_data`` by ``tools/demo_model/train.py``. The builders here are the ones
training uses, so the trained weights and the loaded model have the same shapes.

The CLIP token embedding is stored for the tokens the captions use only (49408 rows would
be most of the files); the other rows are restored as zeros at load.
"""
import json
from pathlib import Path

import torch

import comfy.latent_formats
import comfy.ldm.models.autoencoder
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.sd1_clip
import comfy.supported_models
import comfy.supported_models_base
import comfy.utils

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
UNET_FILE, CLIP_FILE, VAE_FILE = "unet.safetensors", "clip.safetensors", "vae.safetensors"
WEIGHT_FILES = (UNET_FILE, CLIP_FILE, VAE_FILE)
# Key of the CLIP file that lists which token ids its embedding rows belong to.
TOKEN_IDS_KEY = "token_ids"
TOKEN_EMBEDDING_KEY = "transformer.text_model.embeddings.token_embedding.weight"
VOCAB_SIZE = 49408

CLIP_WIDTH = 128
CLIP_CONFIG = {
    "hidden_size": CLIP_WIDTH, "intermediate_size": 4 * CLIP_WIDTH, "num_attention_heads": 4,
    "num_hidden_layers": 3, "projection_dim": CLIP_WIDTH,
}
UNET_CONFIG = {
    "use_checkpoint": False, "image_size": 8, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "in_channels": 4, "model_channels": 64, "num_res_blocks": [1, 1],
    "channel_mult": [1, 2], "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1, "num_head_channels": 32, "use_temporal_attention": False,
    "use_temporal_resblock": False, "context_dim": CLIP_WIDTH, "adm_in_channels": None,
    "use_linear_in_transformer": True,
}
VAE_CONFIG = {"params": {"embed_dim": 4, "ddconfig": {
    "double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
    "ch_mult": [1, 2, 2, 4], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}}
# Metadata key of the UNet file: the latent scale factor measured on the training pictures.
SCALE_FACTOR_KEY = "latent_scale_factor"


class DemoWeightsError(RuntimeError):
    """A weight file of the demo model is missing or unreadable."""


def model_config(scale_factor=0.18215):
    """The SD15 model config at the demo's size, with the latent scale factor of its VAE."""
    config = comfy.supported_models.SD15(dict(UNET_CONFIG))
    # The family's defaults (8 heads of 40 channels) assume full-size channels: keep ours.
    config.unet_config.update(UNET_CONFIG)
    config.unet_config.pop("num_heads", None)
    config.unet_config["num_heads"] = -1
    config.latent_format = comfy.latent_formats.SD15(scale_factor=scale_factor)
    config.set_inference_dtype(torch.float32, None)
    return config


def build_unet_model(scale_factor=0.18215, device=None):
    """The host's SD15 BaseModel (model_sampling, latent format, UNet) at the demo's size, float32."""
    model = model_config(scale_factor).get_model({}, device=device)
    model.diffusion_model.to(torch.float32)
    return model


def _clip_model(device="cpu", dtype=None, model_options={}):
    return comfy.sd1_clip.SD1ClipModel(device=device, dtype=dtype, model_options=model_options)


def build_clip():
    """A host CLIP object (real SD1 tokenizer, the demo's small causal text model), float32."""
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, _clip_model)
    return comfy.sd.CLIP(target=target, model_options={"clip_l_model_config": dict(CLIP_CONFIG),
                                                        "dtype": torch.float32})


def build_autoencoder():
    """The bare AutoencoderKL network (what training optimises; the VAE wrapper comes at load)."""
    return comfy.ldm.models.autoencoder.AutoencoderKL(**VAE_CONFIG["params"])


def _read(name, weights_dir):
    path = Path(weights_dir) / name
    fix = ("restore it with `git checkout -- nodes/demo_models/weights`, or rebuild the weights with "
           "`python tools/demo_model/train.py`")
    if not path.is_file():
        raise DemoWeightsError(f"ShapeFirst demo model: weight file {path} is missing; {fix}")
    try:
        return comfy.utils.load_torch_file(str(path), safe_load=True, return_metadata=True)
    except Exception as error:  # the host's message for a broken file is its first line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DemoWeightsError(f"ShapeFirst demo model: weight file {path} is unreadable ({first}); {fix}") from None


def _check_keys(name, weights_dir, missing, unexpected):
    if missing or unexpected:
        raise DemoWeightsError(
            f"ShapeFirst demo model: weight file {Path(weights_dir) / name} does not fit the model "
            f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}); restore it with "
            "`git checkout -- nodes/demo_models/weights` or rebuild it with `python tools/demo_model/train.py`")


def full_token_embedding(rows, token_ids, dtype=torch.float32):
    """The [VOCAB_SIZE, width] embedding with ``rows`` at ``token_ids`` and zeros elsewhere."""
    table = torch.zeros((VOCAB_SIZE, rows.shape[1]), dtype=dtype)
    table[token_ids.long()] = rows.to(dtype)
    return table


def load_unet(weights_dir=WEIGHTS_DIR):
    sd, metadata = _read(UNET_FILE, weights_dir)
    scale_factor = float((metadata or {}).get(SCALE_FACTOR_KEY, 0) or 0)
    if scale_factor <= 0:
        raise DemoWeightsError(f"ShapeFirst demo model: weight file {Path(weights_dir) / UNET_FILE} has no "
                               f"{SCALE_FACTOR_KEY} metadata; rebuild it with `python tools/demo_model/train.py`")
    model = build_unet_model(scale_factor, device=comfy.model_management.unet_offload_device())
    missing, unexpected = model.diffusion_model.load_state_dict(
        {k: v.to(torch.float32) for k, v in sd.items()}, strict=False)
    _check_keys(UNET_FILE, weights_dir, missing, unexpected)
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def load_clip(weights_dir=WEIGHTS_DIR):
    sd, _ = _read(CLIP_FILE, weights_dir)
    if TOKEN_IDS_KEY not in sd or TOKEN_EMBEDDING_KEY not in sd:
        _check_keys(CLIP_FILE, weights_dir, [k for k in (TOKEN_IDS_KEY, TOKEN_EMBEDDING_KEY) if k not in sd], [])
    sd = dict(sd)
    sd[TOKEN_EMBEDDING_KEY] = full_token_embedding(sd.pop(TOKEN_EMBEDDING_KEY), sd.pop(TOKEN_IDS_KEY))
    clip = build_clip()
    missing, unexpected = clip.cond_stage_model.clip_l.load_state_dict(
        {k: v.to(torch.float32) for k, v in sd.items()}, strict=False)
    _check_keys(CLIP_FILE, weights_dir, [k for k in missing if "position_ids" not in k], unexpected)
    return clip


def load_vae(weights_dir=WEIGHTS_DIR):
    sd, _ = _read(VAE_FILE, weights_dir)
    autoencoder = build_autoencoder()
    missing, unexpected = autoencoder.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=False)
    _check_keys(VAE_FILE, weights_dir, missing, unexpected)
    # Through the host's VAE class, so encode/decode, tiling and devices are the real ones.
    return comfy.sd.VAE(sd=autoencoder.state_dict(), config=VAE_CONFIG, dtype=torch.float32)


def load_model_card(weights_dir=WEIGHTS_DIR):
    """The training record (``model_card.json``) beside the weights, or {} without one."""
    path = Path(weights_dir) / "model_card.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_demo_checkpoint(weights_dir=WEIGHTS_DIR):
    """(ModelPatcher, CLIP, VAE) of the trained demo model; DemoWeightsError names a bad file."""
    return load_unet(weights_dir), load_clip(weights_dir), load_vae(weights_dir)
