"""The frequency nodes in the real host: split, trace (bit-identical to KSampler, numbers
checked against a numpy computation, cutoff marked), forward process (EPS and flow,
latent scaling), 16-channel latents, clear errors, inputs left alone. Tiny models, CPU."""
import copy
import json

import numpy as np
import pytest
import torch

from shapefirst.nodes.frequency import report as fr
from test_frequency_bands import numpy_low_pass

pytestmark = pytest.mark.host

STEPS = 4
CFG = 6.0
CUTOFF = 0.3
SIZE = 8  # latent side: 64x64 pixels, seconds on a CPU


@pytest.fixture(scope="module")
def freq(pack):
    return pack["nodes.frequency.nodes"]


@pytest.fixture(scope="module")
def model(tiny):
    return tiny.tiny_model("sd15", seed=2)


@pytest.fixture(scope="module")
def vae(tiny):
    return tiny.tiny_vae(seed=2)


@pytest.fixture(scope="module")
def conds(encode_prompts):
    return encode_prompts(2, "a lighthouse on a cliff")


@pytest.fixture(scope="module")
def flow16(tiny):
    """A tiny 16-channel flow-matching model (SD3's latent format and schedule, CONST
    parameterization): the UNet body is SD1.5-shaped, which is all the frequency nodes care about."""
    return tiny.tiny_flow_model(seed=5)


def node(cls, unique_id="7"):
    """The node class as the host's executor prepares it (hidden inputs set)."""
    return cls.PREPARE_CLASS_CLONE({"UNIQUE_ID": unique_id})


def empty_latent(batch=1, channels=4):
    return {"samples": torch.zeros(batch, channels, SIZE, SIZE)}


def run_trace(freq, model, conds, latent, sampler="euler", scheduler="normal", cfg=CFG, steps=STEPS, vae=None,
              seed=11, columns=3):
    out = node(freq.ShapeFirstFrequencyTrace).execute(
        model, conds[0], conds[1], latent, seed, steps, cfg, sampler, scheduler, 1.0, CUTOFF, columns, vae=vae)
    latent_out, plot, strip, text = out.args
    return latent_out, plot, strip, json.loads(text), out.ui


def ksampler(model, conds, latent, sampler="euler", scheduler="normal", cfg=CFG, steps=STEPS, seed=11):
    import nodes
    return nodes.KSampler().sample(model, seed, steps, cfg, sampler, scheduler, conds[0], conds[1], latent)[0]


def options_snapshot(model):
    return copy.deepcopy(model.model_options), {k: copy.copy(v) for k, v in model.wrappers.items()}


def rms(array):
    return np.sqrt(np.mean(array.reshape(array.shape[0], -1) ** 2, axis=1))


# ---------------------------------------------------------------- split

def test_split_node_recomposes_and_leaves_the_latent_alone(freq):
    samples = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    latent = {"samples": samples, "batch_index": [3, 4]}
    before = samples.clone()
    low, high = node(freq.ShapeFirstFrequencySplit).execute(latent, CUTOFF).args
    assert torch.allclose(low["samples"] + high["samples"], samples, atol=1e-5)
    assert low["batch_index"] == [3, 4] and low["samples"].dtype == torch.float32
    assert torch.equal(latent["samples"], before) and set(latent) == {"samples", "batch_index"}


def test_split_node_handles_16_channel_latents(freq):
    samples = torch.randn(1, 16, 12, 20, generator=torch.Generator().manual_seed(1))
    low, high = node(freq.ShapeFirstFrequencySplit).execute({"samples": samples}, CUTOFF).args
    assert low["samples"].shape == (1, 16, 12, 20)
    np.testing.assert_allclose(low["samples"].numpy(), numpy_low_pass(samples.numpy().astype(np.float64), CUTOFF),
                               atol=1e-5)


def test_split_node_names_a_bad_cutoff(freq):
    with pytest.raises(ValueError, match="cutoff_radius"):
        node(freq.ShapeFirstFrequencySplit).execute(empty_latent(), 3.0)


# ---------------------------------------------------------------- trace

@pytest.fixture(scope="module")
def euler_run(freq, model, conds, vae):
    """One traced euler run (batch of 2, strip decoded) shared by the tests below, with
    snapshots of what it received."""
    latent = empty_latent(batch=2)
    positive = copy.deepcopy(conds[0])
    before = options_snapshot(model)
    result = run_trace(freq, model, conds, latent, vae=vae, columns=3)
    untouched = (options_snapshot(model) == before,
                 torch.count_nonzero(latent["samples"]) == 0 and set(latent) == {"samples"},
                 all(torch.equal(a[0], b[0]) and a[1].keys() == b[1].keys() for a, b in zip(conds[0], positive)))
    return result + (untouched,)


def test_trace_leaves_model_latent_and_conditioning_alone(euler_run):
    options, latent, conditioning = euler_run[-1]
    assert options, "the input model's options and wrappers must not change (the trace patches a clone)"
    assert latent and conditioning


def test_trace_samples_bit_identically_to_ksampler(model, conds, euler_run):
    assert torch.equal(euler_run[0]["samples"], ksampler(model, conds, empty_latent(batch=2))["samples"])


# heun evaluates the model twice per step, euler_ancestral adds fresh noise in each step.
@pytest.mark.parametrize("sampler, scheduler", [("heun", "simple"), ("euler_ancestral", "karras")])
def test_trace_is_bit_identical_with_other_samplers(freq, model, conds, sampler, scheduler):
    traced, _, _, data, _ = run_trace(freq, model, conds, empty_latent(), sampler, scheduler)
    assert torch.equal(traced["samples"], ksampler(model, conds, empty_latent(), sampler, scheduler)["samples"])
    assert len(data["points"]) == STEPS and all(p["guidance"] > 0 for p in data["points"])


def test_trace_with_the_guidance_cutoff_is_still_bit_identical_and_marks_the_drop(freq, model, conds, pack):
    cutoff_node = pack["nodes.guidance_cutoff.nodes"].ShapeFirstGuidanceCutoff
    patched = node(cutoff_node).execute(model, cutoff_mode="fraction of steps", guided_steps=10, guided_fraction=0.5,
                                        cutoff_sigma=1.0, keep="uncond", adaptive_threshold=0.15,
                                        adaptive_min_steps=3, adaptive_max_steps=1000).args[0]
    latent_out, _, _, data, _ = run_trace(freq, patched, conds, empty_latent())
    assert torch.equal(latent_out["samples"], ksampler(patched, conds, empty_latent())["samples"])
    guided = STEPS // 2
    assert data["cutoff"]["after_step"] == guided and data["cutoff"]["keep"] == "uncond"
    assert [p["branches"] for p in data["points"]] == [2] * guided + [1] * (STEPS - guided)
    assert all(p["guidance"] > 0 for p in data["points"][:guided])
    assert all(p["guidance"] == 0 for p in data["points"][guided:]), "no text guidance once the text is dropped"


def test_trace_numbers_match_a_direct_numpy_computation(model, conds, euler_run):
    """x_t, x0 and eps_c - eps_u captured straight from the sampler, bands by numpy FFT."""
    import comfy.sample
    import comfy.samplers
    latent = empty_latent(batch=2)
    data = euler_run[3]

    captured, evaluations = [], []
    probe = model.clone()

    def post_cfg(args):
        evaluations.append((args["cond_denoised"].numpy().copy(), args["uncond_denoised"].numpy().copy(),
                            float(args["sigma"][0])))
        return args["denoised"]
    probe.set_model_sampler_post_cfg_function(post_cfg)
    noise = comfy.sample.prepare_noise(latent["samples"], 11)
    comfy.sample.sample(probe, noise, STEPS, CFG, "euler", "normal", conds[0], conds[1], latent["samples"],
                        callback=lambda step, x0, x, total: captured.append((x0.numpy().copy(), x.numpy().copy())),
                        disable_pbar=True, seed=11)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", STEPS).tolist()

    assert [p["step"] for p in data["points"]] == list(range(1, STEPS + 1))
    assert data["sigmas"] == pytest.approx(sigmas)
    for point, (x0, x), (cond, uncond, sigma), expected_sigma in zip(data["points"], captured, evaluations, sigmas):
        assert sigma == pytest.approx(expected_sigma) and point["sigma"] == pytest.approx(expected_sigma)
        xt = x / np.sqrt(sigma ** 2 + 1.0)  # EPS: what the UNet sees, the paper's x_t
        for prefix, value in (("xt", xt), ("x0", x0)):
            low = numpy_low_pass(value.astype(np.float64), CUTOFF)
            low_rms, high_rms = rms(low), rms(value - low)
            assert point[f"{prefix}_low"] == pytest.approx(low_rms.mean(), rel=1e-4)
            assert point[f"{prefix}_high"] == pytest.approx(high_rms.mean(), rel=1e-4)
            assert point[f"{prefix}_ratio"] == pytest.approx((low_rms / high_rms).mean(), rel=1e-4)
        assert point["guidance"] == pytest.approx(rms((uncond - cond) / sigma).mean(), rel=1e-4)


def test_trace_outputs_plot_strip_json_and_ui(freq, euler_run):
    _, plot, strip, data, ui, _ = euler_run
    assert plot.ndim == 4 and plot.shape[0] == 1 and plot.shape[-1] == 3
    assert 0.0 <= plot.min() and plot.max() <= 1.0 and plot.std() > 0.05
    # Three rows (x0, low, high) of three decoded steps under a label row.
    assert strip.shape[1] == 22 + 3 * 128 and strip.shape[2] == 110 + 3 * 128
    assert ui == {fr.UI_KEY: [data]}
    assert data["kind"] == "trace" and data["parameterization"] == "EPS" and data["cutoff"] is None
    assert len(data["points"]) == data["total_steps"] == STEPS


def test_trace_at_cfg_one_without_vae(freq, model, conds):
    traced, _, strip, data, _ = run_trace(freq, model, conds, empty_latent(), cfg=1.0)
    assert torch.equal(traced["samples"], ksampler(model, conds, empty_latent(), cfg=1.0)["samples"])
    assert all(p["guidance"] is None and p["branches"] == 1 for p in data["points"]), "no guidance to measure"
    assert data["cutoff"] is None
    assert strip.shape[0] == 1 and strip.std() > 0.01  # the "connect a VAE" message, not an empty tensor


def test_trace_refuses_a_latent_of_another_model(freq, model, conds):
    wrong = {"samples": torch.randn(1, 16, SIZE, SIZE)}
    with pytest.raises(ValueError, match=r"latent_image has 16 channels.*4-channel"):
        run_trace(freq, model, conds, wrong)


def test_trace_on_a_16_channel_flow_model(freq, flow16, conds):
    latent_out, _, _, data, _ = run_trace(freq, flow16, conds, empty_latent(channels=16))
    assert latent_out["samples"].shape == (1, 16, SIZE, SIZE)
    assert torch.equal(latent_out["samples"], ksampler(flow16, conds, empty_latent(channels=16))["samples"])
    assert data["parameterization"] == "CONST" and len(data["points"]) == STEPS
    assert data["sigmas"][0] == pytest.approx(1.0) and data["sigmas"][-1] == 0.0
    assert all(p["guidance"] is not None and p["guidance"] > 0 for p in data["points"])


# ---------------------------------------------------------------- forward process

def smooth_latent(channels=4):
    """Mostly low-frequency content, like a real picture's latent."""
    y, x = torch.meshgrid(torch.linspace(0, 1, SIZE), torch.linspace(0, 1, SIZE), indexing="ij")
    base = torch.stack([torch.sin(3 * x + c) + torch.cos(2 * y - c) for c in range(channels)])
    return {"samples": base[None] + 0.05 * torch.randn(1, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(4))}


def run_forward(freq, model, steps=10, scheduler="normal", seed=3, **inputs):
    plot, text = node(freq.ShapeFirstForwardFrequency).execute(model, steps, scheduler, seed, CUTOFF, **inputs).args
    return plot, json.loads(text)


def direct_forward(model, latent, steps, scheduler, seed, mix):
    """Points computed by hand: scale the latent, noise it as ``mix`` says, numpy bands."""
    import comfy.samplers
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).tolist()
    noise = torch.randn(latent.shape, generator=torch.manual_seed(seed)).numpy().astype(np.float64)
    rows = []
    for sigma in sigmas:
        xt = mix(latent.numpy().astype(np.float64), noise, sigma)
        low = numpy_low_pass(xt, CUTOFF)
        rows.append((sigma, rms(low).mean(), rms(xt - low).mean()))
    return rows


def test_forward_eps_model_uses_vp_noising_and_latent_scale(freq, model):
    latent = smooth_latent()
    _, data = run_forward(freq, model, latent=latent)
    scale = model.get_model_object("latent_format").scale_factor
    expected = direct_forward(model, latent["samples"], 10, "normal", 3,
                              lambda x0, n, s: (x0 * scale + s * n) / np.sqrt(1 + s * s))
    assert data["parameterization"] == "EPS" and len(data["points"]) == 11
    for point, (sigma, low, high) in zip(data["points"], expected):
        assert point["sigma"] == pytest.approx(sigma)
        assert (point["xt_low"], point["xt_high"]) == (pytest.approx(low, rel=1e-4), pytest.approx(high, rel=1e-4))
    ratios = [p["xt_ratio"] for p in data["points"]]
    assert ratios[-1] > 5 * ratios[0], "the clean latent is low-frequency; noise brings the high band up"


def test_forward_flow_model_uses_its_own_noising_and_shifted_scale(freq, flow16):
    latent = smooth_latent(16)
    _, data = run_forward(freq, flow16, scheduler="simple", latent=latent)
    fmt = flow16.get_model_object("latent_format")
    expected = direct_forward(flow16, latent["samples"], 10, "simple", 3,
                              lambda x0, n, s: (1 - s) * (x0 - fmt.shift_factor) * fmt.scale_factor + s * n)
    assert data["parameterization"] == "CONST"
    assert data["points"][0]["sigma"] == pytest.approx(1.0)
    for point, (_, low, high) in zip(data["points"], expected):
        assert (point["xt_low"], point["xt_high"]) == (pytest.approx(low, rel=1e-4), pytest.approx(high, rel=1e-4))


def test_forward_encodes_an_image_with_the_vae(freq, model, vae):
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(6))
    _, data = run_forward(freq, model, steps=4, image=image, vae=vae)
    _, direct = run_forward(freq, model, steps=4, latent={"samples": vae.encode(image)})
    assert [p["xt_low"] for p in data["points"]] == pytest.approx([p["xt_low"] for p in direct["points"]])


@pytest.mark.parametrize("inputs, message", [
    ({}, "Give a latent or an image"),
    ({"image": torch.zeros(1, 64, 64, 3)}, "image needs a vae"),
    ({"latent": {"samples": torch.zeros(1, 4, SIZE, SIZE)}}, "all zeros"),
    ({"latent": {"samples": torch.ones(1, 16, SIZE, SIZE)}}, "latent has 16 channels"),
])
def test_forward_errors_name_the_input_and_the_fix(freq, model, inputs, message):
    with pytest.raises(ValueError, match=message):
        run_forward(freq, model, **inputs)


# ---------------------------------------------------------------- schema

def test_every_node_and_socket_is_documented(freq):
    for cls in freq.NODES:
        schema = cls.define_schema()
        assert schema.node_id.startswith("ShapeFirst") and schema.category == "shapefirst/frequency"
        assert len(schema.description) > 80, schema.node_id
        for item in schema.inputs + schema.outputs:
            assert item.tooltip, f"{schema.node_id}.{item.id} has no tooltip"
