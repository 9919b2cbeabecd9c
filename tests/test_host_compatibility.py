"""What the pack needs from the host, checked in the host that runs the tests (see
docs/host_compatibility.md): the APIs it calls exist, the samplers the cutoff knows by name
are still there under those names, and latents of several parts (a NestedTensor, sampled
packed flat; in ComfyUI 0.3.75, not 0.3.64) are handled by the frequency nodes. Tiny models, CPU."""
import importlib

import pytest
import torch

from test_frequency_nodes import CUTOFF, node, run_forward, smooth_latent
from test_frequency_nodes import freq, model  # noqa: F401  (fixtures)

pytestmark = pytest.mark.host

# (module, dotted attribute) for every host API the pack's node modules call.
HOST_APIS = [
    ("comfy.samplers", "calc_cond_batch"),
    ("comfy.samplers", "calculate_sigmas"),
    ("comfy.samplers", "CFGGuider.set_conds"),
    ("comfy.samplers", "CFGGuider.set_cfg"),
    ("comfy.samplers", "CFGGuider.predict_noise"),
    ("comfy.samplers", "KSampler.SAMPLERS"),
    ("comfy.samplers", "KSampler.SCHEDULERS"),
    ("comfy.sample", "sample"),
    ("comfy.sample", "prepare_noise"),
    ("comfy.sample", "fix_empty_latent_channels"),
    ("comfy.model_patcher", "ModelPatcher.clone"),
    ("comfy.model_patcher", "ModelPatcher.get_model_object"),
    ("comfy.model_patcher", "ModelPatcher.set_model_sampler_calc_cond_batch_function"),
    ("comfy.model_patcher", "ModelPatcher.set_model_sampler_post_cfg_function"),
    ("comfy.model_patcher", "ModelPatcher.add_wrapper_with_key"),
    ("comfy.model_patcher", "ModelPatcher.remove_wrappers_with_key"),
    ("comfy.patcher_extension", "WrappersMP.SAMPLER_SAMPLE"),
    ("comfy.model_management", "get_torch_device"),
    ("comfy.model_management", "intermediate_device"),
    ("comfy.model_management", "unet_offload_device"),
    ("comfy.model_management", "throw_exception_if_processing_interrupted"),
    ("comfy.utils", "ProgressBar"),
    ("comfy.utils", "PROGRESS_BAR_ENABLED"),
    ("comfy.sd", "CLIP.tokenize"),
    ("comfy.sd", "CLIP.encode_from_tokens_scheduled"),
    ("comfy.sd1_clip", "SD1ClipModel"),
    ("comfy.sd1_clip", "SDTokenizer"),
    ("comfy.sdxl_clip", "SDXLClipModel"),
    ("comfy.text_encoders.sd2_clip", "SD2ClipModel"),
    ("comfy.text_encoders.sd3_clip", "SD3ClipModel"),
    ("comfy.text_encoders.flux", "FluxClipModel"),
    ("comfy_api.latest", "ComfyExtension"),
    ("comfy_api.latest", "io.ComfyNode"),
    ("comfy_api.latest", "io.Schema"),
    ("comfy_api.latest", "io.NodeOutput"),
    ("comfy_api.latest", "io.Hidden.unique_id"),
    ("comfy_api.latest", "ui.PreviewText"),
    ("comfy_api.latest", "ui.PreviewImage"),
    ("comfy_api.torch_helpers", "set_torch_compile_wrapper"),
    ("latent_preview", "prepare_callback"),
    ("server", "PromptServer.send_sync"),
    ("server", "PromptServer.send_progress_text"),
]


@pytest.mark.parametrize("module, name", HOST_APIS, ids=[f"{m}.{n}" for m, n in HOST_APIS])
def test_the_host_has_the_api(host, module, name):
    obj = importlib.import_module(module)
    for part in name.split("."):
        assert hasattr(obj, part), f"{module}.{name} is missing from this host: see docs/host_compatibility.md"
        obj = getattr(obj, part)


# ---------------------------------------------------------------- sampler names

@pytest.fixture(scope="module")
def cutoff(pack):
    return pack["nodes.guidance_cutoff.patch"]


@pytest.fixture(scope="module")
def schedule(pack):
    return pack["nodes.guidance_cutoff.schedule"]


def test_every_sampler_the_cutoff_names_is_still_the_hosts(schedule):
    """The cutoff skips its device reads for samplers it knows by module and function name;
    a renamed one would silently take the slower path."""
    import comfy.k_diffusion.sampling
    for name in sorted(schedule.ONE_EVALUATION_PER_STEP | set(schedule.SCHEDULE_LOOKAHEAD)):
        assert callable(getattr(comfy.k_diffusion.sampling, name, None)), f"{name} is gone from this host"


def test_every_host_sampler_is_classified_by_the_cutoff(cutoff, schedule):
    """Every sampler the KSampler offers runs a function from a module the cutoff knows, or
    one of the two it treats as off the schedule (dpm_fast, dpm_adaptive)."""
    import comfy.samplers
    off_schedule = set()
    for name in comfy.samplers.KSampler.SAMPLERS:
        sampler = comfy.samplers.sampler_object(name)
        function = sampler.sampler_function
        assert function.__module__ in schedule.SCHEDULE_SAMPLER_MODULES, (name, function.__module__)
        if not cutoff.traits_of(sampler, None).walks_schedule:
            off_schedule.add(function.__name__)
    assert off_schedule == schedule.OFF_SCHEDULE_SAMPLERS


# ---------------------------------------------------------------- multi-part latents

@pytest.fixture(scope="module")
def nested(host):
    """The host's NestedTensor class (in 0.3.75 and the newest source; 0.3.64 has none)."""
    try:
        return importlib.import_module("comfy.nested_tensor").NestedTensor
    except ImportError:
        pytest.skip("this host has no multi-part latents (no comfy.nested_tensor; ComfyUI 0.3.75 has it)")


@pytest.fixture(scope="module")
def rec(pack):
    return pack["nodes.frequency.recording"]


def video_and_audio(seed=0, batch=2):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 8, 8, generator=generator), torch.randn(batch, 4, 2, 6, generator=generator)


def test_the_trace_recorder_follows_the_first_part_of_a_packed_latent(rec, model, nested):
    """The sampler works on the parts packed flat (the host's own pack_latents, as
    CFGGuider.sample does): the recorded numbers are those of the video alone."""
    import comfy.utils
    video, audio = video_and_audio()
    video_x0, audio_x0 = video_and_audio(seed=1)
    packed_x, shapes = comfy.utils.pack_latents([video, audio])
    packed_x0, _ = comfy.utils.pack_latents([video_x0, audio_x0])
    assert packed_x.ndim == 3 and packed_x.shape[1] == 1  # what the recorder is handed

    sigmas = [3.0, 1.5, 0.0]
    traced, reference = (rec.TraceRecorder(model, CUTOFF, 2, latent_part_shapes=s) for s in (shapes, None))
    traced.start_run(sigmas)
    reference.start_run(sigmas)
    traced.record(0, packed_x0, packed_x)
    reference.record(0, video_x0, video)
    assert traced.points == reference.points
    assert torch.equal(traced.strip_x0[0], video_x0)
    sigma = torch.full((2,), 1.5)
    assert torch.equal(traced.guidance(packed_x0, packed_x, packed_x, sigma),
                       reference.guidance(video_x0, video, video, sigma))

    # newer hosts hand the host's own callbacks the nested view: that is followed too
    traced.record(1, nested([video_x0, audio_x0]), nested([video, audio]))
    reference.record(1, video_x0, video)
    assert traced.points[1] == reference.points[1]


def test_the_split_names_a_multi_part_latent_and_the_fix(freq, nested):
    video, audio = video_and_audio()
    with pytest.raises(ValueError, match="several latents.*Separate AV Latent"):
        node(freq.ShapeFirstFrequencySplit).execute({"samples": nested([video, audio])}, CUTOFF)


def test_the_forward_process_follows_the_first_part(freq, model, nested):
    video = smooth_latent()["samples"]
    _, audio = video_and_audio(batch=1)
    _, of_parts = run_forward(freq, model, steps=4, latent={"samples": nested([video, audio])})
    _, of_video = run_forward(freq, model, steps=4, latent={"samples": video})
    assert of_parts["points"] == of_video["points"] and of_parts["latent_shape"] == list(video.shape)


def test_the_trace_names_a_first_part_without_spatial_axes(freq, model, encode_prompts, nested):
    positive, negative = encode_prompts(2, "a lighthouse")
    latent = {"samples": nested([torch.zeros(1, 4), torch.zeros(1, 4, 2, 6)])}
    with pytest.raises(ValueError, match=r"latent_image \(its first part\)"):
        node(freq.ShapeFirstFrequencyTrace).execute(
            model, positive, negative, latent, 0, 2, 5.0, "euler", "normal", 1.0, CUTOFF, 2)
