"""The guidance cutoff in the real host: exact equalities with stock sampling, UNet calls,
hooks, options left alone, nodes. Tiny random-weight models, CPU."""
import copy
import math

import pytest
import torch

from conftest import exact_round_trip_sd15

pytestmark = pytest.mark.host

STEPS = 8
CFG = 7.0
SCHEDULER = "karras"
SINGLE_EVAL = ["euler", "euler_ancestral", "lms", "dpmpp_2m", "ddim", "uni_pc", "lcm"]
MULTI_EVAL = ["heun", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "euler_cfg_pp"]


@pytest.fixture(scope="module")
def cutoff(pack):
    return pack["nodes.guidance_cutoff.patch"]


@pytest.fixture(scope="module")
def schedule_math(pack):
    return pack["nodes.guidance_cutoff.schedule"]


@pytest.fixture(scope="module")
def model(tiny):
    return exact_round_trip_sd15(tiny)


@pytest.fixture(scope="module")
def conds(encode_prompts):
    return encode_prompts(1, "a red cube on a wooden table")


@pytest.fixture(scope="module")
def latent():
    return torch.zeros(2, 4, 8, 8)


def record_unet(model):
    """A clone whose UNet calls are logged (batch, branches, sigma) via the host's own
    model_function_wrapper, then run unchanged."""
    calls = []

    def wrapper(apply_model, args):
        calls.append((args["input"].shape[0], tuple(args["cond_or_uncond"]), float(args["timestep"].max())))
        return apply_model(args["input"], args["timestep"], **args["c"])

    recorded = model.clone()
    recorded.set_model_unet_function_wrapper(wrapper)
    return recorded, calls


def sample(model, conds, latent, sampler="euler", cfg=CFG, steps=STEPS, scheduler=SCHEDULER, seed=3, **kw):
    """comfy.sample.sample as the KSampler nodes call it; returns (latent, callback log)."""
    import comfy.sample
    positive, negative = kw.pop("positive", conds[0]), kw.pop("negative", conds[1])
    log = []

    def callback(step, x0, x, total_steps):
        log.append((step, x0.clone(), x.clone()))

    noise = torch.zeros_like(latent) if kw.get("disable_noise") else comfy.sample.prepare_noise(latent, seed)
    out = comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                              callback=callback, disable_pbar=True, seed=seed, **kw)
    return out, log


def apply(cutoff, schedule_math, model, **settings):
    return cutoff.apply_cutoff(model, schedule_math.CutoffSettings(**settings))


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "uni_pc", "dpmpp_2s_ancestral"])
@pytest.mark.parametrize("spec", [dict(guided_steps=STEPS), dict(guided_steps=STEPS + 7),
                                  dict(cutoff_mode="fraction of steps", guided_fraction=1.0),
                                  dict(cutoff_mode="sigma", cutoff_sigma=0.0)])
def test_cutoff_at_or_past_last_step_is_bit_identical_noop(cutoff, schedule_math, model, conds, latent, sampler, spec):
    stock, _ = sample(model, conds, latent, sampler)
    patched, patch = apply(cutoff, schedule_math, model, **spec)
    out, _ = sample(patched, conds, latent, sampler)
    assert torch.equal(out, stock)
    assert patch.last_run.single_evaluations == 0
    assert "text kept for all" in patch.last_run.summary()


@pytest.mark.parametrize("sampler", SINGLE_EVAL + MULTI_EVAL)
def test_trajectory_before_the_cutoff_is_the_stock_one(cutoff, schedule_math, model, conds, latent, sampler):
    n = 4
    _, stock = sample(model, conds, latent, sampler)
    patched, _ = apply(cutoff, schedule_math, model, guided_steps=n)
    _, cut = sample(patched, conds, latent, sampler)
    assert len(stock) == len(cut) == STEPS
    for (i, x0_a, x_a), (_, x0_b, x_b) in zip(stock[:n], cut[:n]):
        assert torch.equal(x_a, x_b), f"x differs at step {i}"
        assert torch.equal(x0_a, x0_b), f"predicted x0 differs at step {i}"
    # no evaluation of step n-1 lands at or below sigma_n (uni_pc reports x after it
    # already evaluated the next point, so its x_n includes the first single-branch call)
    if sampler in SINGLE_EVAL and sampler != "uni_pc":
        assert torch.equal(stock[n][2], cut[n][2])
    # and the cutoff did change what comes after
    assert not torch.equal(stock[-1][1], cut[-1][1])


@pytest.mark.parametrize("n", [0, 3, 5])
def test_euler_keep_uncond_equals_the_hosts_two_stage_run(cutoff, schedule_math, model, conds, latent, n):
    """The paper's method written with stock nodes: KSamplerAdvanced (full CFG) to step n,
    then the negative prompt alone at cfg 1 for the rest."""
    patched, _ = apply(cutoff, schedule_math, model, guided_steps=n)
    out, _ = sample(patched, conds, latent)
    first = latent
    if n > 0:
        first, _ = sample(model, conds, latent, start_step=0, last_step=n, force_full_denoise=False)
    second, _ = sample(model, conds, first, cfg=1.0, positive=conds[1], negative=conds[1],
                       disable_noise=n > 0, start_step=n, last_step=STEPS, force_full_denoise=True)
    assert torch.equal(out, second)


def test_keep_cond_from_the_start_equals_cfg_one(cutoff, schedule_math, model, conds, latent):
    patched, _ = apply(cutoff, schedule_math, model, guided_steps=0, keep="cond")
    out, _ = sample(patched, conds, latent)
    reference, _ = sample(model, conds, latent, cfg=1.0)
    assert torch.equal(out, reference)


CALL_CASES = [(s, {}) for s in SINGLE_EVAL + MULTI_EVAL + ["dpm_fast", "dpm_adaptive"]] + [
    ("euler", {"denoise": 0.6}),
    ("heun", {"denoise": 0.6}),
    ("heunpp2", {}),  # its step k evaluates down to sigma[k + 2]: step n-2 already reaches the cut
    ("euler", {"start_step": 2, "last_step": 7, "force_full_denoise": True}),
    ("dpmpp_2m", {"start_step": 3}),
]


@pytest.mark.parametrize("keep", ["uncond", "cond"])
@pytest.mark.parametrize("sampler,extra", CALL_CASES, ids=[f"{s}-{'-'.join(map(str, e.values())) or 'plain'}" for s, e in CALL_CASES])
def test_unet_calls_follow_the_schedule(cutoff, schedule_math, model, conds, latent, sampler, extra, keep):
    """Every evaluation above the cutoff sigma runs both branches in one batch; from the first
    one at or below it, only the kept branch runs, at half the batch, under its own label."""
    recorded, calls = record_unet(model)
    sigmas_seen = []
    recorded.set_model_sampler_pre_cfg_function(lambda a: sigmas_seen.append(
        a["model_options"]["transformer_options"]["sample_sigmas"].tolist()) or a["conds_out"])
    stock, _ = sample(recorded, conds, latent, sampler, **extra)
    stock_calls, schedule = list(calls), sigmas_seen[0]
    calls.clear()
    n = 3
    patched, patch = apply(cutoff, schedule_math, recorded, guided_steps=n, keep=keep)
    sample(patched, conds, latent, sampler, **extra)

    b = latent.shape[0]
    kept = (1,) if keep == "uncond" else (0,)
    cut = schedule[n]
    first_single = next(i for i, (_, _, s) in enumerate(stock_calls) if s <= cut)
    expected = [(2 * b, (0, 1)) for _ in stock_calls[:first_single]] + [(b, kept) for _ in stock_calls[first_single:]]
    got = [(batch, tuple(sorted(branches))) for batch, branches, _ in calls]
    assert got == expected
    run = patch.last_run
    assert run.single_evaluations == len(stock_calls) - first_single
    # (uni_pc replaces the final 0 of the schedule in place once it starts)
    assert run.schedule[:-1] == schedule[:-1]
    if sampler not in ("dpm_fast", "dpm_adaptive"):
        # the sigma is read from the device only around the cutoff, not at every step
        assert run.sigma_reads <= (0 if sampler in ONE_EVALUATION_PER_STEP else 2)
        assert run.guided_steps() == n


# The host's samplers that evaluate once per step at the step's sigma ("ddim" is euler).
ONE_EVALUATION_PER_STEP = ["euler", "euler_ancestral", "lms", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
                           "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "lcm", "ipndm", "ipndm_v", "deis", "ddim"]


def sigmas_of_evaluations(model):
    """A clone that logs the sigma of every model evaluation (as the sampler passed it)."""
    seen = []
    logged = model.clone()
    logged.set_model_sampler_pre_cfg_function(lambda a: seen.append(float(a["sigma"].max())) or a["conds_out"])
    return logged, seen


@pytest.mark.parametrize("sampler", ONE_EVALUATION_PER_STEP)
def test_one_evaluation_per_step_samplers_are_cut_without_reading_the_device(
        cutoff, schedule_math, model, conds, latent, sampler):
    """For these samplers evaluation k runs at schedule[k] exactly, so the cutoff decides by
    counting and never synchronises with the device; the cut is where reading would put it."""
    logged, stock_sigmas = sigmas_of_evaluations(model)
    sample(logged, conds, latent, sampler)
    stock_sigmas = stock_sigmas[:]  # the patched clone below logs into the same list
    n = 3
    patched, patch = apply(cutoff, schedule_math, logged, guided_steps=n)
    recorded, calls = record_unet(patched)
    sample(recorded, conds, latent, sampler)
    run = patch.last_run
    assert stock_sigmas == run.schedule[:len(stock_sigmas)] and len(stock_sigmas) == STEPS
    assert run.sigma_reads == 0 and run.traits.one_evaluation_per_step
    assert [batch for batch, _, _ in calls] == [4] * n + [2] * (STEPS - n)
    assert run.drop_sigma == run.schedule[n]


def test_euler_with_churn_reads_the_sigma_it_really_evaluates(cutoff, schedule_math, model, conds, latent):
    """Churn raises euler's evaluated sigma above the step's: the count is not trusted then."""
    import comfy.sample
    import comfy.samplers
    churned = comfy.samplers.ksampler("euler", {"s_churn": 2.0, "s_tmin": 0.0, "s_tmax": float("inf")})
    patched, patch = apply(cutoff, schedule_math, model, guided_steps=3)
    logged, seen = sigmas_of_evaluations(patched)
    schedule = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), SCHEDULER, STEPS).tolist()
    noise = comfy.sample.prepare_noise(latent, 3)
    comfy.sample.sample_custom(logged, noise, CFG, churned, torch.tensor(schedule), conds[0], conds[1], latent,
                               disable_pbar=True, seed=3)
    run = patch.last_run
    assert not run.traits.one_evaluation_per_step and run.sigma_reads >= 1
    assert run.single_evaluations == sum(1 for s in seen if s <= schedule[3])
    assert seen[3] > schedule[3]  # churned: counting would have been wrong here


def test_an_existing_calc_cond_batch_hook_is_chained(cutoff, schedule_math, model, conds, latent):
    import comfy.samplers
    seen = []

    def earlier_hook(args):
        seen.append([c is not None for c in args["conds"]])
        return comfy.samplers.calc_cond_batch(args["model"], args["conds"], args["input"], args["sigma"], args["model_options"])

    hooked = model.clone()
    hooked.set_model_sampler_calc_cond_batch_function(earlier_hook)
    reference, _ = sample(hooked, conds, latent)
    assert len(seen) == STEPS
    seen.clear()
    patched, _ = apply(cutoff, schedule_math, hooked, guided_steps=5)
    out, _ = sample(patched, conds, latent)
    assert seen == [[True, True]] * 5 + [[False, True]] * 3
    assert not torch.equal(out, reference)


def test_nodes_after_the_cutoff_keep_it_applied(reporting_cutoff, model, conds, latent):
    """Later nodes clone the model (ComfyUI deep-copies model_options): the cutoff still runs
    and says so, with the host's FreeU applied after it as an example."""
    from comfy_extras.nodes_freelunch import FreeU
    patched, patch, messages = reporting_cutoff(model, guided_steps=5)
    for later in (patched.clone().clone(), FreeU().patch(patched, 1.1, 1.2, 0.9, 0.2)[0]):
        recorded, calls = record_unet(later)
        sample(recorded, conds, latent)
        assert [batch for batch, _, _ in calls] == [4] * 5 + [2] * 3
        assert "text dropped after step 5 of 8" in messages[-1], messages[-1]
        assert patch.last_run.single_evaluations == 3


def _options_snapshot(model):
    return repr(model.model_options), copy.copy(model.model_options.get("transformer_options", {}))


def test_the_input_model_is_not_modified(cutoff, schedule_math, model, conds, latent):
    before = _options_snapshot(model)
    stock_before, _ = sample(model, conds, latent)
    patched, _ = apply(cutoff, schedule_math, model, guided_steps=2)
    sample(patched, conds, latent)
    assert _options_snapshot(model) == before
    assert "sampler_calc_cond_batch_function" not in model.model_options
    stock_after, _ = sample(model, conds, latent)
    assert torch.equal(stock_before, stock_after)


def test_applying_twice_replaces_instead_of_stacking(cutoff, schedule_math, model, conds, latent):
    once, _ = apply(cutoff, schedule_math, model, guided_steps=2)
    twice, patch = apply(cutoff, schedule_math, once, guided_steps=5)
    direct, _ = apply(cutoff, schedule_math, model, guided_steps=5)
    a, _ = sample(twice, conds, latent)
    b, _ = sample(direct, conds, latent)
    assert torch.equal(a, b)
    assert patch.last_run.guided_steps() == 5
    assert patch.previous_calc_cond_batch is None


def test_cfg_one_is_a_documented_noop(cutoff, schedule_math, model, conds, latent):
    patched, patch = apply(cutoff, schedule_math, model, guided_steps=2)
    out, _ = sample(patched, conds, latent, cfg=1.0)
    reference, _ = sample(model, conds, latent, cfg=1.0)
    assert torch.equal(out, reference)
    assert "no-op, cfg is 1" in patch.last_run.summary()


def test_state_is_per_run(cutoff, schedule_math, model, conds, latent):
    """One patched model used by two samplers (and twice) behaves like fresh ones."""
    patched, patch = apply(cutoff, schedule_math, model, guided_steps=3)
    first, _ = sample(patched, conds, latent, "euler")
    sample(patched, conds, latent, "heun", steps=5)
    again, _ = sample(patched, conds, latent, "euler")
    assert torch.equal(first, again)
    assert patch.last_run.total_steps == STEPS and patch.last_run.guided_steps() == 3


def test_adaptive_drops_after_the_first_batch_wide_small_guidance(cutoff, schedule_math, model, conds, latent):
    settings = dict(cutoff_mode="adaptive", adaptive_min_steps=1, adaptive_max_steps=STEPS)
    _, never = apply(cutoff, schedule_math, model, adaptive_threshold=0.0, **settings)
    sample(_, conds, latent)
    trace = never.last_run.guidance_trace
    # adaptive_min_steps 1: step 0's measurement may already decide, so every step is measured
    assert never.last_run.single_evaluations == 0 and len(trace) == STEPS
    per_eval_max = [max(values) for _, values in trace]
    threshold = sorted(per_eval_max)[len(per_eval_max) // 2] + 1e-6
    expected_drop = next(i for i, v in enumerate(per_eval_max) if v < threshold)
    patched, patch = apply(cutoff, schedule_math, model, adaptive_threshold=threshold, **settings)
    sample(patched, conds, latent)
    run = patch.last_run
    # guided: the measured ones up to and including the first below the threshold
    assert run.full_evaluations == expected_drop + 1
    assert run.single_evaluations == STEPS - run.full_evaluations
    assert run.guidance_trace == trace[:expected_drop + 1]


def test_adaptive_relative_guidance_matches_a_direct_computation(cutoff):
    x = torch.randn(2, 4, 8, 8)
    cond, uncond = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    got = cutoff.relative_guidance(cond, uncond, x)
    for i in range(2):
        expected = (cond[i] - uncond[i]).norm() / (x[i] - uncond[i]).norm()
        assert math.isclose(float(got[i]), float(expected), rel_tol=1e-5)


def test_adaptive_respects_the_maximum(cutoff, schedule_math, model, conds, latent):
    patched, patch = apply(cutoff, schedule_math, model, cutoff_mode="adaptive", adaptive_threshold=0.0,
                           adaptive_min_steps=1, adaptive_max_steps=4)
    sample(patched, conds, latent)
    assert patch.last_run.full_evaluations == 4 and patch.last_run.guided_steps() == 4


def test_nodes_patch_a_clone_and_validate_inputs(pack, model, conds, latent):
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import (BasicScheduler, KSamplerSelect, RandomNoise, SamplerCustom,
                                                   SamplerCustomAdvanced)
    nodes_module = pack["nodes.guidance_cutoff.nodes"]
    inputs = dict(cutoff_mode="guided steps", guided_steps=3, guided_fraction=0.5, cutoff_sigma=1.0, keep="uncond",
                  adaptive_threshold=0.15, adaptive_min_steps=3, adaptive_max_steps=1000)
    patched_model = nodes_module.ShapeFirstGuidanceCutoff.execute(model, **inputs).result[0]
    guider_out = nodes_module.ShapeFirstCutoffGuider.execute(model, conds[0], conds[1], CFG, **inputs)
    assert patched_model is not model and "sampler_calc_cond_batch_function" not in model.model_options
    assert "text for the first 3 steps" in guider_out.ui.as_dict()["text"][0]

    (sigmas,) = BasicScheduler().get_sigmas(model, SCHEDULER, STEPS, 1.0)
    (sampler,) = KSamplerSelect().get_sampler("euler")
    (noise,) = RandomNoise().get_noise(3)
    via_guider = SamplerCustomAdvanced().sample(noise, guider_out.result[0], sampler, sigmas, {"samples": latent})[0]
    cfg_guider = comfy.samplers.CFGGuider(patched_model)
    cfg_guider.set_conds(conds[0], conds[1])
    cfg_guider.set_cfg(CFG)
    via_model = SamplerCustomAdvanced().sample(noise, cfg_guider, sampler, sigmas, {"samples": latent})[0]
    via_custom = SamplerCustom().sample(patched_model, True, 3, CFG, conds[0], conds[1], sampler, sigmas, {"samples": latent})[0]
    stock = SamplerCustom().sample(model, True, 3, CFG, conds[0], conds[1], sampler, sigmas, {"samples": latent})[0]
    assert torch.equal(via_guider["samples"], via_model["samples"])
    assert torch.equal(via_guider["samples"], via_custom["samples"])
    assert not torch.equal(via_custom["samples"], stock["samples"])

    bad = dict(inputs, guided_fraction=float("nan"))
    message = nodes_module.ShapeFirstGuidanceCutoff.validate_inputs(**bad)
    assert isinstance(message, str) and "guided_fraction" in message
    assert nodes_module.ShapeFirstGuidanceCutoff.validate_inputs(**inputs) is True
    one = nodes_module.ShapeFirstCutoffGuider.execute(model, conds[0], conds[1], 1.0, **inputs)
    assert "no second branch" in one.ui.as_dict()["text"][0]


def test_sdxl_shaped_model_with_added_conditioning(cutoff, schedule_math, tiny):
    """SDXL's UNet takes a pooled-text + size vector (adm); each branch keeps its own."""
    import nodes
    model = tiny.tiny_model("sdxl", seed=2)
    clip = tiny.tiny_clip("sdxl", seed=2)
    encode = nodes.CLIPTextEncode()
    conds = encode.encode(clip, "a lighthouse at dusk")[0], encode.encode(clip, "blurry")[0]
    latent = torch.zeros(1, 4, 8, 8)
    recorded, calls = record_unet(model)
    stock, _ = sample(recorded, conds, latent, "dpmpp_2m")
    assert all(batch == 2 for batch, _, _ in calls)
    calls.clear()
    patched, patch = apply(cutoff, schedule_math, recorded, guided_steps=5)
    out, _ = sample(patched, conds, latent, "dpmpp_2m")
    assert [batch for batch, _, _ in calls] == [2] * 5 + [1] * 3
    assert all(branches == (1,) for _, branches, _ in calls[5:])
    assert not torch.equal(out, stock)
    noop, _ = apply(cutoff, schedule_math, recorded, guided_steps=STEPS)
    assert torch.equal(sample(noop, conds, latent, "dpmpp_2m")[0], stock)
