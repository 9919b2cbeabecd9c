"""Today's model families at full size with random weights, for the cutoff benchmark.

SD3.5-large and SD3-medium (MMDiT) at 1024², a Flux-dev-shaped 12 B model sampled with real
CFG (cfg > 1: both branches every guided step, as for Chroma or a de-distilled Flux) at 1024²,
and Wan 2.1 text-to-video 1.3B at 832x480, 33 frames. Each is built from the host's own classes
(``comfy.supported_models``, ``comfy.model_base``) with the configuration the host detects from
the released checkpoint (``comfy/model_detection.py``), placed the way the host's checkpoint
loader places a model (``unet_inital_load_device``, then ``load_models_gpu``) and filled with
seeded random weights on the device it was built on: speed does not depend on the values, and
filling 12 B weights on the CPU would take longer than the benchmark.

The conditioning has the shapes the family's text encoders give a short prompt (SD3: CLIP-L/G
77 rows + T5 77 rows; Flux: T5 padded to 256; Wan: umT5 padded to 512). ``tiny=True`` gives
the same families a few channels wide for CPU smoke tests: the same code path, not the speed.

Nothing of ComfyUI is imported at module level: the benchmark puts the host on sys.path first.
"""
import logging
import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Family:
    label: str
    config_class: str  # in comfy.supported_models
    unet_config: dict
    dtype: str  # torch dtype name, the precision these checkpoints are run in
    width: int  # pixels
    height: int
    frames: int  # 0 for an image model
    text_rows: int
    text_width: int
    pooled_width: int  # 0: no pooled text vector
    extra_conditioning: dict = field(default_factory=dict)
    checkpoint_buffers: tuple = ()  # buffers the checkpoint fills (the host allocates them empty)
    tiny_overrides: dict = field(default_factory=dict)  # a few channels wide, same layout
    latent_channels: int = 16
    # the tiny size's text width where it differs (Chroma: the tiny T5 of tools/tiny_test_models.py,
    # as a 4096-wide one would need a 4096-wide table for T5's 32 128 tokens)
    tiny_text_width: int = 0
    downscale: int = 8  # pixels per latent cell (Wan 2.2's VAE: 16)
    # Keys of the unet config that newer hosts' model classes take and older ones do not know
    # (HunyuanVideo 1.5's `use_cond_type_embedding` and `vision_in_dim`, after ComfyUI 0.3.64):
    # passed only where the host's class that receives the config (`params_class`,
    # "module:Class") has a field or parameter of that name. The values given here are what a host
    # without the key does anyway, so the model is the same either way.
    host_optional_keys: tuple = ()
    params_class: str = ""
    # the conditioning carries the text encoder's `attention_mask` (all ones: no padding), as
    # Lumina 2's Gemma-2 encoder returns it; 0.3.64's Lumina 2 model takes its `num_tokens` from it
    attention_mask: bool = False


_MMDIT_COMMON = {"in_channels": 16, "patch_size": 2, "out_channels": 16, "input_size": None, "adm_in_channels": 2048,
                 "num_patches": 36864, "pos_embed_max_size": 192, "pos_embed_scaling_factor": None,
                 "x_block_self_attn_layers": []}


def _mmdit(depth, **extra):
    # hidden width is 64 * depth in every MMDiT checkpoint; the T5/CLIP rows come in 4096 wide
    embedder = {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 64 * depth}}
    return dict(_MMDIT_COMMON, depth=depth, context_embedder_config=embedder, **extra)


_TINY_MMDIT = dict(depth=2, num_patches=64, pos_embed_max_size=8,
                   context_embedder_config={"target": "torch.nn.Linear",
                                            "params": {"in_features": 4096, "out_features": 128}})

FAMILIES = {
    "sd3.5-large": Family(
        "SD3.5-large-shaped (8.1 B)", "SD3", _mmdit(38, qk_norm="rms"), "bfloat16", 1024, 1024, 0,
        text_rows=154, text_width=4096, pooled_width=2048, checkpoint_buffers=("pos_embed",),
        tiny_overrides=_TINY_MMDIT),
    "sd3-medium": Family(
        "SD3-medium (2.0 B)", "SD3", _mmdit(24), "float16", 1024, 1024, 0,
        text_rows=154, text_width=4096, pooled_width=2048, checkpoint_buffers=("pos_embed",),
        tiny_overrides=_TINY_MMDIT),
    "flux-dev-cfg": Family(
        "Flux-dev-shaped (11.9 B), real CFG", "Flux",
        {"image_model": "flux", "in_channels": 16, "patch_size": 2, "out_channels": 16, "vec_in_dim": 768,
         "context_in_dim": 4096, "hidden_size": 3072, "mlp_ratio": 4.0, "num_heads": 24, "depth": 19,
         "depth_single_blocks": 38, "axes_dim": [16, 56, 56], "theta": 10000, "qkv_bias": True,
         "guidance_embed": True},
        "bfloat16", 1024, 1024, 0, text_rows=256, text_width=4096, pooled_width=768,
        extra_conditioning={"guidance": 3.5},
        tiny_overrides={"hidden_size": 32, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
                        "axes_dim": [4, 6, 6], "mlp_ratio": 2.0}),
    "wan2.1-1.3b": Family(
        "Wan 2.1 T2V 1.3B (1.4 B)", "WAN21_T2V",
        {"image_model": "wan2.1", "model_type": "t2v", "dim": 1536, "out_dim": 16, "num_heads": 12, "ffn_dim": 8960,
         "num_layers": 30, "patch_size": (1, 2, 2), "freq_dim": 256, "window_size": (-1, -1), "qk_norm": True,
         "cross_attn_norm": True, "eps": 1e-6, "in_dim": 16},
        "bfloat16", 832, 480, 33, text_rows=512, text_width=4096, pooled_width=0,
        tiny_overrides={"dim": 64, "num_heads": 2, "ffn_dim": 64, "num_layers": 1}),
    # The families below are in the CPU tests at their tiny size (tools/tiny_test_models.py);
    # their full-size configs are what the host detects from the released checkpoints.
    "wan2.2-5b": Family(
        "Wan 2.2 TI2V 5B (48-channel latents)", "WAN22_T2V",
        {"image_model": "wan2.1", "model_type": "t2v", "dim": 3072, "out_dim": 48, "num_heads": 24, "ffn_dim": 14336,
         "num_layers": 30, "patch_size": (1, 2, 2), "freq_dim": 256, "window_size": (-1, -1), "qk_norm": True,
         "cross_attn_norm": True, "eps": 1e-6, "in_dim": 48},
        "bfloat16", 1280, 704, 33, text_rows=512, text_width=4096, pooled_width=0,
        latent_channels=48, downscale=16,
        tiny_overrides={"dim": 64, "num_heads": 2, "ffn_dim": 64, "num_layers": 1}),
    "chroma": Family(
        "Chroma (8.9 B), real CFG", "Chroma",
        {"image_model": "chroma", "in_channels": 64, "out_channels": 64, "context_in_dim": 4096, "hidden_size": 3072,
         "mlp_ratio": 4.0, "num_heads": 24, "depth": 19, "depth_single_blocks": 38, "axes_dim": [16, 56, 56],
         "theta": 10000, "patch_size": 2, "qkv_bias": True, "in_dim": 64, "out_dim": 3072, "hidden_dim": 5120,
         "n_layers": 5},
        "bfloat16", 1024, 1024, 0, text_rows=512, text_width=4096, pooled_width=0,
        extra_conditioning={"pooled_output": None},  # as its T5-only encoder gives it
        tiny_text_width=24,
        tiny_overrides={"hidden_size": 32, "num_heads": 2, "depth": 1, "depth_single_blocks": 1, "context_in_dim": 24,
                        "axes_dim": [4, 6, 6], "mlp_ratio": 2.0, "out_dim": 32, "hidden_dim": 32, "n_layers": 1}),
    "hunyuan-video": Family(
        "HunyuanVideo T2V (12.8 B)", "HunyuanVideo",
        {"image_model": "hunyuan_video", "in_channels": 16, "out_channels": 16, "patch_size": [1, 2, 2],
         "vec_in_dim": 768, "axes_dim": [16, 56, 56], "meanflow": False, "context_in_dim": 4096, "hidden_size": 3072,
         "mlp_ratio": 4.0, "num_heads": 24, "depth": 20, "depth_single_blocks": 40, "theta": 256, "qkv_bias": True,
         "byt5": False, "guidance_embed": True, "use_cond_type_embedding": False, "vision_in_dim": None},
        "bfloat16", 848, 480, 33, text_rows=256, text_width=4096, pooled_width=768,
        extra_conditioning={"guidance": 6.0},
        host_optional_keys=("use_cond_type_embedding", "vision_in_dim"),
        params_class="comfy.ldm.hunyuan_video.model:HunyuanVideoParams",
        tiny_overrides={"hidden_size": 32, "num_heads": 2, "depth": 1, "depth_single_blocks": 1,
                        "axes_dim": [4, 6, 6], "mlp_ratio": 2.0}),
    "lumina2": Family(
        "Lumina Image 2.0 (2.6 B)", "Lumina2",
        {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 2304, "cap_feat_dim": 2304,
         "n_layers": 26, "qk_norm": True, "n_heads": 24, "n_kv_heads": 8, "axes_dims": [32, 32, 32],
         "axes_lens": [300, 512, 512]},
        # `rope_theta` and `ffn_dim_multiplier` are left to the host's NextDiT defaults, which are
        # the released Lumina 2's in both hosts: 0.3.75 detects 10000.0 and 4.0 (of `dim`), its
        # defaults; 0.3.64 detects neither: its rope is fixed at 10000.0 and its feed-forward starts
        # from 4 * `dim` with no multiplier, the same width (there 4.0 would make an 8.3 B model)
        "bfloat16", 1024, 1024, 0, text_rows=256, text_width=2304, pooled_width=0,
        attention_mask=True,
        tiny_overrides={"dim": 32, "n_layers": 1, "n_refiner_layers": 1, "n_heads": 2, "n_kv_heads": 1,
                        "axes_dims": [4, 6, 6], "multiple_of": 16}),
    "qwen-image": Family(
        "Qwen-Image (20.4 B)", "QwenImage",
        {"image_model": "qwen_image", "in_channels": 64, "num_layers": 60},
        "bfloat16", 1328, 1328, 0, text_rows=256, text_width=3584, pooled_width=0,
        tiny_overrides={"num_layers": 1, "attention_head_dim": 16, "num_attention_heads": 2,
                        "axes_dims_rope": (4, 6, 6)}),
}
# tiny sizes: 64 px images, 5 frames of 64x48 (2 latent frames of 8x6); the same latent sizes
# for a VAE that downscales 16 times (Wan 2.2's): 128 px, 128x96
_TINY_PIXELS = {"width": 64, "height": 64, "video_height": 48, "frames": 5, "text_rows": 8}


def is_family(name):
    return name in FAMILIES


def _geometry(name, tiny):
    """(width, height, frames) in pixels and frames (0 for images)."""
    family = FAMILIES[name]
    if not tiny:
        return family.width, family.height, family.frames
    scale = family.downscale // 8
    if family.frames:
        return _TINY_PIXELS["width"] * scale, _TINY_PIXELS["video_height"] * scale, _TINY_PIXELS["frames"]
    return _TINY_PIXELS["width"] * scale, _TINY_PIXELS["height"] * scale, 0


def size_label(name, tiny):
    """What the results call the size: '1024' for a square image, 'WxHxframes' for video."""
    width, height, frames = _geometry(name, tiny)
    if frames:
        return f"{width}x{height}x{frames}"
    return width if width == height else f"{width}x{height}"


def dtype_name(name, tiny):
    return "float32" if tiny else FAMILIES[name].dtype


def unet_config(name, tiny):
    """The family's unet config as written here (every key, whatever the host knows)."""
    family = FAMILIES[name]
    return dict(family.unet_config, **(family.tiny_overrides if tiny else {}))


def host_parameter_names(params_class):
    """The field names of the host class "module:Class" that receives a unet config: a
    dataclass's fields, else its constructor's keyword parameters. Needs the host importable."""
    import dataclasses
    import importlib
    import inspect
    module, _, name = params_class.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    return set(inspect.signature(cls).parameters)


def host_unet_config(name, tiny):
    """The unet config this host's classes take: `unet_config` less the family's
    `host_optional_keys` that the host's `params_class` does not have."""
    family = FAMILIES[name]
    config = unet_config(name, tiny)
    if family.host_optional_keys:
        known = host_parameter_names(family.params_class)
        for key in family.host_optional_keys:
            if key not in known:
                config.pop(key, None)
    return config


# ---------------------------------------------------------------- weights

def fan_in_std(shape):
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
    return 1.0 / math.sqrt(max(fan_in, 1))


def fill_random(module, seed, buffers=()):
    """Seeded weights in place, on the device the model lives on: norm scales at identity,
    biases zero, other weights (and the named buffers a checkpoint would fill) N(0, 1/fan_in)
    so activations stay finite in half precision."""
    import torch
    with torch.no_grad():
        first = next(module.parameters())
        generator = torch.Generator(device=first.device).manual_seed(seed)
        tensors = dict(module.named_parameters())
        tensors.update((name, b) for name, b in module.named_buffers() if name.rsplit(".", 1)[-1] in buffers)
        for name, param in sorted(tensors.items(), key=lambda kv: kv[0]):
            leaf = name.rsplit(".", 1)[-1]
            is_norm = "norm" in name.lower() or ".ln_" in name
            if is_norm and leaf in ("weight", "scale"):
                param.fill_(1.0)
            elif leaf == "bias":
                param.zero_()
            else:
                param.normal_(0.0, fan_in_std(param.shape), generator=generator)


# ---------------------------------------------------------------- model

def model_config(name, tiny):
    """The host's model config object of the family, with its inference dtype set."""
    import torch
    import comfy.supported_models
    config = getattr(comfy.supported_models, FAMILIES[name].config_class)(host_unet_config(name, tiny))
    config.set_inference_dtype(getattr(torch, dtype_name(name, tiny)), None)
    return config


def parameter_count(name, tiny=False):
    """Parameters of the family's diffusion model, counted on the meta device (no memory)."""
    import torch
    model = model_config(name, tiny).get_model({}, device=torch.device("meta"))
    return sum(p.numel() for p in model.diffusion_model.parameters())


def build(name, tiny=False, seed=0):
    """The family's diffusion model with random weights in a ModelPatcher, loaded to the
    host's device through its model management, as ``comfy.sd.load_checkpoint_guess_config``
    loads a checkpoint (built directly on the GPU where it fits)."""
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher
    dtype = getattr(torch, dtype_name(name, tiny))
    parameters = parameter_count(name, tiny)
    initial_device = mm.unet_inital_load_device(parameters, dtype)
    logging.getLogger(__name__).info("%s: %.2f B parameters in %s, built on %s", name, parameters / 1e9,
                                     dtype_name(name, tiny), initial_device)
    model = model_config(name, tiny).get_model({}, device=initial_device)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    mm.load_models_gpu([patcher], force_full_load=True)
    # after loading: filled on the GPU even where the host chose to build on the CPU
    fill_random(model.diffusion_model, seed, FAMILIES[name].checkpoint_buffers)
    return patcher


# ---------------------------------------------------------------- inputs

def random_inputs(name, tiny, batch, seed):
    """(positive, negative, latent, noise): random text embeddings of the family's shapes
    (pooled vector and guidance where the family takes them), the empty latent of its size
    (EmptySD3LatentImage / EmptyHunyuanLatentVideo layout) and the host's seeded noise."""
    import torch
    import comfy.sample
    family = FAMILIES[name]
    rows = _TINY_PIXELS["text_rows"] if tiny else family.text_rows
    width = family.tiny_text_width if tiny and family.tiny_text_width else family.text_width
    generator = torch.Generator().manual_seed(seed)

    def cond():
        extra = dict(family.extra_conditioning)
        if family.pooled_width:
            extra["pooled_output"] = torch.randn(1, family.pooled_width, generator=generator)
        if family.attention_mask:
            extra["attention_mask"] = torch.ones(1, rows, dtype=torch.long)
        return [[torch.randn(1, rows, width, generator=generator), extra]]

    positive, negative = cond(), cond()
    latent = empty_latent(name, tiny, batch)
    return positive, negative, latent, comfy.sample.prepare_noise(latent, seed)


def empty_latent(name, tiny, batch):
    """The family's empty latent as the sampler gets it: [B, C, H, W] for images (EmptySD3LatentImage),
    [B, C, frames, H, W] for video (EmptyHunyuanLatentVideo, Wan22ImageToVideoLatent), and one
    frame of that for an image model with video latents (Qwen-Image; KSampler adds the axis)."""
    import torch
    import comfy.supported_models
    family = FAMILIES[name]
    width, height, frames = _geometry(name, tiny)
    size = (height // family.downscale, width // family.downscale)
    if frames:
        return torch.zeros(batch, family.latent_channels, (frames - 1) // 4 + 1, *size)
    latent = torch.zeros(batch, family.latent_channels, *size)
    if getattr(comfy.supported_models, family.config_class).latent_format.latent_dimensions == 3:
        latent = latent.unsqueeze(2)  # as comfy.sample.fix_empty_latent_channels does
    return latent
