"""Every node on today's DiT and video families, in the real host: SD3.5, Flux-shaped with real
CFG, Chroma, Wan 2.1, Wan 2.2 5B (48-channel latents), HunyuanVideo, Lumina 2 and Qwen-Image.

Tiny random-weight models of each family from the host's own classes
(``tools/tiny_test_models.py``), conditioning of each family's shapes, CPU. What is checked per
family: the cutoff's call pattern (both branches, then only the kept one) and bit-identity to
stock before the cut, for the Guidance Cutoff and the Cutoff Guider, and its equivalence to two
stock stages; guidance-distilled models at cfg 1 stay a no-op; Wan 2.2's two experts cut at one
step of the whole schedule; the frequency nodes on 5-D video and 16/48-channel latents; the
[EOS] tools on umT5 (Wan) and T5 (Chroma), and their refusal of LLM encoders.
"""
import json

import pytest
import torch

from shapefirst.tools import model_families
from test_frequency_nodes import node  # the node class as the host's executor prepares it

pytestmark = pytest.mark.host

STEPS = 4
GUIDED = 2
CFG = 4.0
CUTOFF_DEFAULTS = dict(cutoff_mode="guided steps", guided_steps=GUIDED, guided_fraction=0.5, cutoff_sigma=1.0,
                       keep="uncond", adaptive_threshold=0.15, adaptive_min_steps=1, adaptive_max_steps=1000)


@pytest.fixture(scope="module")
def models(tiny):
    return {family: tiny.tiny_family_model(family, seed=1) for family in tiny.FAMILIES}


@pytest.fixture(scope="module")
def inputs(tiny):
    return {family: tiny.family_inputs(family, batch=1, seed=2) for family in tiny.FAMILIES}


@pytest.fixture(scope="module")
def cutoff_nodes(pack):
    return pack["nodes.guidance_cutoff.nodes"]


@pytest.fixture(scope="module")
def freq(pack):
    return pack["nodes.frequency.nodes"]


# SD3-medium is SD3.5-large's class without qk-norm: one MMDiT is enough here.
FAMILIES = tuple(name for name in model_families.FAMILIES if name != "sd3-medium")


class Calls:
    """The UNet calls of a run, through the host's UNet function wrapper: (batch, branches, 0 cond
    1 uncond, in order)."""

    def __init__(self):
        self.calls, self.steps = [], []

    def install(self, model):
        recorded = model.clone()

        def unet(apply_model, args):
            self.calls.append((args["input"].shape[0], tuple(sorted(args["cond_or_uncond"]))))
            return apply_model(args["input"], args["timestep"], **args["c"])

        recorded.set_model_unet_function_wrapper(unet)
        return recorded

    def callback(self, step, x0, x, total_steps):
        self.steps.append((step, x0.clone(), x.clone()))


def sample(model, positive, negative, latent, calls, steps=STEPS, cfg=CFG, seed=3, sampler="euler",
           scheduler="simple"):
    """comfy.sample.sample as the KSampler node calls it, with the recorder's callback."""
    import comfy.sample
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                               callback=calls.callback, disable_pbar=True, seed=seed)


def cutoff_node(cutoff_nodes, model, **inputs):
    return cutoff_nodes.ShapeFirstGuidanceCutoff.execute(model, **{**CUTOFF_DEFAULTS, **inputs}).result[0]


def assert_same_start(stock, cut, steps):
    """The first ``steps`` callbacks (after full-CFG evaluations only) carry stock's x and x0."""
    assert len(cut.steps) == len(stock.steps) == STEPS
    for (step, x0, x), (_, stock_x0, stock_x) in zip(cut.steps[:steps], stock.steps[:steps]):
        assert torch.equal(x, stock_x) and torch.equal(x0, stock_x0), f"trajectory differs at step {step}"


# ---------------------------------------------------------------- Guidance Cutoff, Cutoff Guider

def guider_sample(cutoff_nodes, model, positive, negative, latent, **inputs):
    """ShapeFirstCutoffGuider -> SamplerCustomAdvanced with the host's scheduler, sampler and
    noise nodes: the same sigmas and noise as ``sample``."""
    from comfy_extras.nodes_custom_sampler import BasicScheduler, KSamplerSelect, RandomNoise, SamplerCustomAdvanced
    (sigmas,) = BasicScheduler().get_sigmas(model, "simple", STEPS, 1.0)
    (sampler,) = KSamplerSelect().get_sampler("euler")
    (noise,) = RandomNoise().get_noise(3)
    guider = cutoff_nodes.ShapeFirstCutoffGuider.execute(model, positive, negative, CFG,
                                                         **{**CUTOFF_DEFAULTS, **inputs}).result[0]
    return SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, {"samples": latent})[0]["samples"]


def expected_calls(batch, kept):
    return [(2 * batch, (0, 1))] * GUIDED + [(batch, (kept,))] * (STEPS - GUIDED)


@pytest.mark.parametrize("family", FAMILIES)
def test_cutoff_and_guider_call_pattern_and_stock_start(family, models, inputs, cutoff_nodes):
    """Both branches in one call for the guided steps, then the unconditional one alone; the
    trajectory is stock's up to the cut; the guider gives the node's result bit for bit."""
    positive, negative, latent = inputs[family]
    stock_calls, cut_calls, guider_calls = Calls(), Calls(), Calls()
    stock = sample(stock_calls.install(models[family]), positive, negative, latent, stock_calls)
    out = sample(cutoff_node(cutoff_nodes, cut_calls.install(models[family])), positive, negative, latent,
                 cut_calls)
    batch = latent.shape[0]
    assert stock_calls.calls == [(2 * batch, (0, 1))] * STEPS, "stock CFG: both branches in one call"
    assert cut_calls.calls == expected_calls(batch, 1)
    assert_same_start(stock_calls, cut_calls, GUIDED)
    assert out.shape == stock.shape == latent.shape and torch.isfinite(out).all()
    assert not torch.equal(out, stock), "the unguided steps must change the result"

    guided = guider_sample(cutoff_nodes, guider_calls.install(models[family]), positive, negative, latent)
    assert guider_calls.calls == expected_calls(batch, 1)
    assert torch.equal(guided, out)


@pytest.mark.parametrize("family", ["wan2.1-1.3b", "chroma"])
def test_keep_cond_runs_the_conditional_branch_alone(family, models, inputs, cutoff_nodes):
    positive, negative, latent = inputs[family]
    stock_calls, cut_calls = Calls(), Calls()
    sample(stock_calls.install(models[family]), positive, negative, latent, stock_calls)
    out = sample(cutoff_node(cutoff_nodes, cut_calls.install(models[family]), keep="cond"), positive, negative,
                 latent, cut_calls)
    assert cut_calls.calls == expected_calls(latent.shape[0], 0)
    assert_same_start(stock_calls, cut_calls, GUIDED)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("family", ["sd3.5-large", "wan2.1-1.3b", "qwen-image"])  # an image DiT, video, 5-D image
def test_cutoff_equals_two_stages_full_cfg_then_the_negative_alone(family, models, inputs, cutoff_nodes):
    """The paper's method in two stock KSamplerAdvanced runs (euler, which keeps no history):
    full CFG for the guided steps, then only the negative prompt (cfg 1 with it as the prompt)."""
    import nodes
    positive, negative, latent = inputs[family]
    sampler = nodes.KSamplerAdvanced()
    common = dict(noise_seed=5, steps=STEPS, sampler_name="euler", scheduler="simple")
    (cut,) = sampler.sample(cutoff_node(cutoff_nodes, models[family]), "enable", cfg=CFG, positive=positive,
                            negative=negative, latent_image={"samples": latent}, start_at_step=0, end_at_step=10000,
                            return_with_leftover_noise="disable", **common)
    (first,) = sampler.sample(models[family], "enable", cfg=CFG, positive=positive, negative=negative,
                              latent_image={"samples": latent}, start_at_step=0, end_at_step=GUIDED,
                              return_with_leftover_noise="enable", **common)
    (second,) = sampler.sample(models[family], "disable", cfg=1.0, positive=negative, negative=negative,
                               latent_image=first, start_at_step=GUIDED, end_at_step=10000,
                               return_with_leftover_noise="disable", **common)
    # equal up to rounding: between the stages the latent leaves and re-enters the model's
    # scaling (the latent format's process_out / process_in)
    torch.testing.assert_close(cut["samples"], second["samples"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["flux-dev-cfg", "hunyuan-video"])
def test_guidance_distilled_models_at_cfg_1_stay_a_no_op(family, models, inputs, reporting_cutoff):
    """Flux-dev and HunyuanVideo take their guidance as an input (the 'guidance' value) and are
    sampled at cfg 1: one branch per step already, so the cutoff has nothing to drop."""
    positive, negative, latent = inputs[family]
    assert "guidance" in positive[0][1]
    stock_calls, cut_calls = Calls(), Calls()
    stock = sample(stock_calls.install(models[family]), positive, negative, latent, stock_calls, cfg=1.0)
    patched, _, messages = reporting_cutoff(cut_calls.install(models[family]), cutoff_mode="guided steps",
                                            guided_steps=1, keep="uncond")
    out = sample(patched, positive, negative, latent, cut_calls, cfg=1.0)
    assert stock_calls.calls == cut_calls.calls == [(latent.shape[0], (0,))] * STEPS
    assert torch.equal(out, stock)
    assert len(messages) == 1 and "no-op" in messages[0]


# ---------------------------------------------------------------- Wan 2.2: two experts, one schedule

WHOLE_STEPS, SPLIT = 6, 3  # the high-noise expert takes steps 0-2, the low-noise expert steps 3-5


@pytest.fixture(scope="module")
def experts(tiny):
    """Wan 2.2 A14B's two experts are Wan 2.1-shaped (16-channel latents); shift 8 on both, as
    the host's Wan 2.2 template sets it with ModelSamplingSD3."""
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    return tuple(ModelSamplingSD3().patch(tiny.tiny_family_model("wan2.1-1.3b", seed=seed), 8.0)[0]
                 for seed in (11, 12))


def two_expert_run(experts, positive, negative, latent, wrap=lambda model: model):
    """The template's two KSamplerAdvanced: high noise for steps 0..SPLIT (leftover noise
    returned), low noise from SPLIT to the end; returns the UNet calls of both and the latent."""
    import nodes
    calls = Calls()
    high, low = (wrap(calls.install(model)) for model in experts)
    sampler = nodes.KSamplerAdvanced()
    common = dict(noise_seed=5, steps=WHOLE_STEPS, cfg=CFG, sampler_name="euler", scheduler="simple",
                  positive=positive, negative=negative)
    (middle,) = sampler.sample(high, "enable", latent_image={"samples": latent}, start_at_step=0, end_at_step=SPLIT,
                               return_with_leftover_noise="enable", **common)
    (out,) = sampler.sample(low, "disable", latent_image=middle, start_at_step=SPLIT, end_at_step=10000,
                            return_with_leftover_noise="disable", **common)
    return calls.calls, out["samples"]


@pytest.mark.parametrize("guided", [0, 2, SPLIT, 4, WHOLE_STEPS])
def test_wan22_two_experts_drop_the_text_after_step_n_of_the_whole_schedule(guided, experts, inputs,
                                                                            cutoff_nodes):
    """Sigma at Step gives the sigma of step N of the whole schedule; the cutoff in 'sigma' mode
    with it on both experts runs N guided steps in all, wherever N falls."""
    positive, negative, latent = inputs["wan2.1-1.3b"]
    sigma = cutoff_nodes.ShapeFirstStepSigma.execute(experts[0], "simple", WHOLE_STEPS, guided).result[0]
    assert isinstance(sigma, float)
    stock_calls, stock = two_expert_run(experts, positive, negative, latent)
    calls, out = two_expert_run(experts, positive, negative, latent,
                                lambda model: cutoff_node(cutoff_nodes, model, cutoff_mode="sigma", cutoff_sigma=sigma))
    batch = latent.shape[0]
    assert stock_calls == [(2 * batch, (0, 1))] * WHOLE_STEPS
    assert calls == [(2 * batch, (0, 1))] * guided + [(batch, (1,))] * (WHOLE_STEPS - guided)
    assert torch.equal(out, stock) == (guided == WHOLE_STEPS)


def test_guided_steps_count_per_sampler_run(experts, inputs, cutoff_nodes):
    """Why the sigma is needed: 'guided steps' counts the steps of each sampler's own part."""
    positive, negative, latent = inputs["wan2.1-1.3b"]
    calls, _ = two_expert_run(experts, positive, negative, latent,
                              lambda model: cutoff_node(cutoff_nodes, model, guided_steps=2))
    assert calls == ([(2, (0, 1))] * 2 + [(1, (1,))]) * 2


# ---------------------------------------------------------------- frequency nodes on video and 16/48 channels

CUTOFF = 0.3


def smooth_video(channels, frames, height=6, width=8, seed=4):
    """Mostly low-frequency frames that move a little, like a real video latent."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    base = torch.stack([torch.stack([torch.sin(3 * x + c + 0.3 * t) + torch.cos(2 * y - c) for c in range(channels)])
                        for t in range(frames)], dim=1)
    noise = torch.randn(1, channels, frames, height, width, generator=torch.Generator().manual_seed(seed))
    return base[None] + 0.05 * noise


def run_forward(freq, model, samples, steps=6, scheduler="simple", seed=3):
    plot, text = node(freq.ShapeFirstForwardFrequency).execute(model, steps, scheduler, seed, CUTOFF,
                                                               latent={"samples": samples}).args
    return plot, json.loads(text)


def direct_forward(model, samples, steps, scheduler, seed):
    """The forward process by hand: the latent format's own scaling (per-channel statistics for
    Wan), flow noising, numpy bands per frame, RMS over every axis but the batch."""
    import numpy as np
    import comfy.samplers
    from test_frequency_bands import numpy_low_pass
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).tolist()
    x0 = model.get_model_object("latent_format").process_in(samples.float()).numpy().astype(np.float64)
    noise = torch.randn(samples.shape, generator=torch.manual_seed(seed)).numpy().astype(np.float64)

    def rms(a):
        return float(np.sqrt(np.mean(a.reshape(a.shape[0], -1) ** 2, axis=1)).mean())

    rows = []
    for sigma in sigmas:
        xt = (1 - sigma) * x0 + sigma * noise
        low = numpy_low_pass(xt, CUTOFF)
        rows.append((rms(low), rms(xt - low)))
    return rows


@pytest.mark.parametrize("family, channels, frames", [("wan2.1-1.3b", 16, 3), ("wan2.2-5b", 48, 2)])
def test_forward_on_video_latents_uses_the_per_channel_statistics(family, channels, frames, models, freq):
    samples = smooth_video(channels, frames)
    _, data = run_forward(freq, models[family], samples)
    assert data["parameterization"] == "CONST" and data["latent_shape"] == list(samples.shape)
    assert f"{channels}-channel video latent, {frames} frames" in data["title"]
    expected = direct_forward(models[family], samples, 6, "simple", 3)
    for point, (low, high) in zip(data["points"], expected, strict=True):
        assert (point["xt_low"], point["xt_high"]) == (pytest.approx(low, rel=1e-4), pytest.approx(high, rel=1e-4))


@pytest.mark.parametrize("family", ["wan2.1-1.3b", "qwen-image"])
def test_forward_reads_a_4d_latent_of_a_video_latent_model_as_one_frame(family, models, freq):
    """As KSampler and the Trace Sampler read it (comfy.sample.fix_empty_latent_channels): without
    that the per-channel statistics [1, 16, 1, 1, 1] broadcast [1, 16, H, W] to [1, 16, 16, H, W]."""
    frame = smooth_video(16, 1)
    _, as_image = run_forward(freq, models[family], frame[:, :, 0])
    _, as_frame = run_forward(freq, models[family], frame)
    assert as_image["latent_shape"] == as_frame["latent_shape"] == [1, 16, 1, 6, 8]
    assert as_image["points"] == as_frame["points"]
    expected = direct_forward(models[family], frame, 6, "simple", 3)
    assert as_image["points"][0]["xt_low"] == pytest.approx(expected[0][0], rel=1e-4)


def test_split_of_a_video_latent_is_per_frame(freq):
    """The split is spatial: each frame's own spectrum; the time axis is not filtered."""
    video = smooth_video(48, 3)
    original = video.clone()
    low, high = node(freq.ShapeFirstFrequencySplit).execute({"samples": video}, CUTOFF).args
    assert torch.equal(video, original)
    assert low["samples"].shape == high["samples"].shape == video.shape
    torch.testing.assert_close(low["samples"] + high["samples"], video)
    for t in range(video.shape[2]):
        frame_low, _ = node(freq.ShapeFirstFrequencySplit).execute({"samples": video[:, :, t]}, CUTOFF).args
        torch.testing.assert_close(low["samples"][:, :, t], frame_low["samples"])


@pytest.mark.parametrize("family, named", [("wan2.2-5b", "48-channel video latent, 2 frames (bands per frame)"),
                                           ("hunyuan-video", "16-channel video latent, 2 frames (bands per frame)"),
                                           ("qwen-image", "16-channel latent, 1 frame")])
def test_trace_on_video_and_48_channel_latents_is_ksampler_bit_for_bit(family, named, models, inputs, freq):
    import nodes
    positive, negative, latent = inputs[family]
    model = models[family]
    out = node(freq.ShapeFirstFrequencyTrace).execute(model, positive, negative, {"samples": latent}, 11, 3, CFG,
                                                      "euler", "simple", 1.0, CUTOFF, 3)
    latent_out, plot, _, text = out.args
    stock = nodes.KSampler().sample(model, 11, 3, CFG, "euler", "simple", positive, negative,
                                    {"samples": latent})[0]["samples"]
    assert latent_out["samples"].shape == latent.shape
    assert torch.equal(latent_out["samples"], stock)
    data = json.loads(text)
    assert data["parameterization"] == "CONST" and len(data["points"]) == 3
    assert data["title"].endswith(named)  # the chart's title says what it shows
    assert all(p["guidance"] is not None and p["guidance"] > 0 for p in data["points"])
    assert plot.shape[0] == 1 and plot.shape[-1] == 3 and plot.std() > 0  # the chart was drawn


# ---------------------------------------------------------------- [EOS] tools per text encoder

@pytest.fixture(scope="module")
def eos(pack):
    return pack["nodes.eos_tokens.conditioning"]


@pytest.fixture(scope="module")
def tr(pack):
    return pack["nodes.eos_tokens.roles"]


@pytest.mark.parametrize("family, encoder_name, width", [("wan", "umT5-XXL", 4096), ("chroma", "T5-XXL", 24)])
def test_eos_split_and_swap_on_t5_only_encoders(family, encoder_name, width, tiny, eos, tr):
    """Wan's umT5 (padded to 512 rows) and Chroma's T5 (no padding): rows are prompt tokens then
    </s>, the [EOS], then padding; the full output is CLIPTextEncode's bit for bit."""
    from test_eos_nodes import assert_rows_replaced, blocks, split, stock, swap, t5_chunk
    clip = tiny.tiny_text_encoder(family, seed=3)
    text = "a red cube"
    (block,) = blocks(eos, clip, text)
    tokenizer = getattr(clip.tokenizer, {"wan": "clip_umt5xxl", "chroma": "clip_t5xxl"}[family]).tokenizer
    prompt_tokens = len(tokenizer(text)["input_ids"]) - 1  # minus </s>
    rows = 512 if family == "wan" else prompt_tokens + 1
    assert (block.name, block.first_row, block.columns) == (encoder_name, 0, (0, width))
    assert [[row.role for row in chunk] for chunk in block.chunks] == [t5_chunk(prompt_tokens, rows)]

    full, eos_only, prompt_only, token_map = split(tr, clip, text)
    assert torch.equal(full[0][0], stock(clip, text)[0][0]) and full[0][0].shape == (1, rows, width)
    for out, which in ((eos_only, tr.replaced_in_eos_only), (prompt_only, tr.replaced_in_prompt_only)):
        assert_rows_replaced(out[0][0], full[0][0], torch.zeros_like(full[0][0]), [block], which, tr.EOS_SCOPE_BLOCK)
    assert encoder_name in token_map

    other = "a photo of a blue sphere on green grass"
    swapped = swap(tr, clip, text, other)
    eos_row = prompt_tokens  # the token prompt's </s> takes the other prompt's </s>
    other_eos = len(tokenizer(other)["input_ids"]) - 1
    assert torch.equal(swapped[0][0][0, :eos_row], full[0][0][0, :eos_row])
    assert torch.equal(swapped[0][0][0, eos_row], stock(clip, other)[0][0][0, other_eos])


@pytest.mark.parametrize("family, named", [("hunyuan_video", "LLaVA-Llama-3 of HunyuanVideo"),
                                           ("qwen_image", "Qwen2.5-VL of Qwen-Image"),
                                           ("lumina2", "Gemma-2 of Lumina 2")])
def test_eos_tools_refuse_llm_encoders_naming_them(family, named, tiny, tr):
    from test_eos_nodes import split, swap
    clip = tiny.tiny_text_encoder(family)
    for call in (lambda: split(tr, clip, "a red cube"), lambda: swap(tr, clip, "a red cube", "a blue sphere")):
        with pytest.raises(ValueError, match=f"'clip' is the {named} .*no \\[EOS\\] token.*Supported: SD1.x"):
            call()


def test_a_linked_cutoff_sigma_is_checked_when_the_node_runs(cutoff_nodes, models):
    """Before the run ComfyUI hands a linked input (Sigma at Step -> cutoff_sigma) to the
    validation as None: nothing to check yet; a bad value that arrives is refused by name."""
    inputs = {**CUTOFF_DEFAULTS, "cutoff_mode": "sigma", "cutoff_sigma": None}
    assert cutoff_nodes.ShapeFirstGuidanceCutoff.validate_inputs(**inputs) is True
    assert "guided_fraction" in cutoff_nodes.ShapeFirstGuidanceCutoff.validate_inputs(
        **{**CUTOFF_DEFAULTS, "guided_fraction": 2.0})
    with pytest.raises(ValueError, match="cutoff_sigma must be a noise level >= 0"):
        cutoff_node(cutoff_nodes, models["wan2.1-1.3b"], cutoff_mode="sigma", cutoff_sigma=-1.0)


# ---------------------------------------------------------------- what the host has

@pytest.mark.parametrize("family", [name for name, f in model_families.FAMILIES.items() if f.host_optional_keys])
def test_builders_pass_the_keys_this_host_knows_and_only_those(host, family):
    """The config the builders hand the host: every key that this host's model class knows, and
    none it does not (ComfyUI 0.3.64's HunyuanVideo and Lumina 2 classes lack keys that 0.3.75's
    take); the model builds from it on the meta device."""
    known = model_families.host_parameter_names(model_families.FAMILIES[family].params_class)
    written = model_families.unet_config(family, tiny=False)
    passed = model_families.host_unet_config(family, tiny=False)
    for key in model_families.FAMILIES[family].host_optional_keys:
        assert (key in passed) == (key in known), key
    assert {k: v for k, v in written.items() if k in passed} == passed
    assert set(written) - set(passed) <= set(model_families.FAMILIES[family].host_optional_keys)
    assert model_families.parameter_count(family, tiny=True) > 0


def test_builders_drop_an_optional_key_that_the_host_class_lacks(host, monkeypatch):
    """The detection itself, on a stand-in for an older host's dataclass and a newer one's."""
    import dataclasses
    import sys
    import types

    @dataclasses.dataclass
    class Older:
        in_channels: int

    @dataclasses.dataclass
    class Newer:
        in_channels: int
        use_cond_type_embedding: bool

    module = types.ModuleType("shapefirst_fake_host_params")
    module.Older, module.Newer = Older, Newer
    monkeypatch.setitem(sys.modules, module.__name__, module)
    family = model_families.FAMILIES["hunyuan-video"]
    for cls, kept in (("Older", False), ("Newer", True)):
        monkeypatch.setitem(model_families.FAMILIES, "hunyuan-video",
                            dataclasses.replace(family, params_class=f"{module.__name__}:{cls}"))
        config = model_families.host_unet_config("hunyuan-video", tiny=True)
        assert ("use_cond_type_embedding" in config) == kept, cls
        assert "vision_in_dim" not in config and config["hidden_size"] == 32
    assert model_families.host_parameter_names("comfy.ldm.lumina.model:NextDiT") >= {"dim", "n_layers"}
