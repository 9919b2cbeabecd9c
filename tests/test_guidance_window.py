"""The guidance start (limited-interval guidance) in the real host: one branch before the
guided window, full CFG inside it, one branch after the cutoff. UNet calls per sampler, bit
identity without a start, the stock three-stage run it stands for, bad input, SAG. Tiny
random-weight models, CPU; the helpers and fixtures are the cutoff tests' own."""
import pytest
import torch

from test_guidance_cutoff import (  # noqa: F401  (fixtures are used by name)
    CFG, MULTI_EVAL, ONE_EVALUATION_PER_STEP, SINGLE_EVAL, STEPS, apply, conds, cutoff, latent, model, record_unet,
    sample, schedule_math, sigmas_of_evaluations)

pytestmark = pytest.mark.host

START, END = 2, 5  # steps 0-1 one branch, 2-4 full CFG, 5-7 one branch (of STEPS = 8)


def stock_sigmas_and_calls(model, conds, latent, sampler, **extra):
    """The stock run's UNet calls (batch, branches, sigma) and the schedule it sampled."""
    recorded, calls = record_unet(model)
    schedules = []
    recorded.set_model_sampler_pre_cfg_function(lambda a: schedules.append(
        a["model_options"]["transformer_options"]["sample_sigmas"].tolist()) or a["conds_out"])
    sample(recorded, conds, latent, sampler, **extra)
    return recorded, calls, schedules[0]


def expected_window_calls(stock_calls, batch, start_sigma, cut_sigma, before=(0,), after=(1,)):
    """The README's rule: above the start sigma the branch before the start, down to the cut
    both (one call at twice the batch), at or below the cut the kept one; one-way at both ends."""
    expected, started, dropped = [], False, False
    for _, _, sigma in stock_calls:
        started = started or sigma <= start_sigma
        dropped = dropped or sigma <= cut_sigma
        if not started:
            expected.append((batch, before))
        elif not dropped:
            expected.append((2 * batch, (0, 1)))
        else:
            expected.append((batch, after))
    return expected


WINDOW_CASES = [(s, {}) for s in SINGLE_EVAL + MULTI_EVAL + ["heunpp2", "dpm_fast"]] + [
    ("euler", {"denoise": 0.6}),
    ("heun", {"denoise": 0.6}),
    ("euler", {"start_step": 1, "last_step": 7, "force_full_denoise": True}),
]


WINDOW_CASES = [(s, e, "cond") for s, e in WINDOW_CASES] + [("euler", {}, "uncond"), ("heun", {}, "uncond"),
                                                                ("dpmpp_sde", {}, "uncond")]


@pytest.mark.parametrize("sampler,extra,before", WINDOW_CASES,
                         ids=[f"{s}-{'-'.join(map(str, e.values())) or 'plain'}-{b}" for s, e, b in WINDOW_CASES])
def test_unet_calls_one_branch_then_both_then_the_kept_one(cutoff, schedule_math, model, conds, latent,
                                                           sampler, extra, before):
    """Batch 1 with cond (or uncond) before the start, batch 2 in the window, batch 1 with
    uncond after the cutoff; each evaluation placed by the sigma it really runs at."""
    recorded, calls, schedule = stock_sigmas_and_calls(model, conds, latent, sampler, **extra)
    stock_calls = list(calls)
    calls.clear()
    patched, patch = apply(cutoff, schedule_math, recorded, guided_steps=END, guidance_start_step=START,
                           keep_before_start=before)
    out, _ = sample(patched, conds, latent, sampler, **extra)
    b = latent.shape[0]
    expected = expected_window_calls(stock_calls, b, schedule[START], schedule[END],
                                     before=(0,) if before == "cond" else (1,))
    got = [(batch, tuple(sorted(branches))) for batch, branches, _ in calls]
    assert got == expected
    assert got[0] == (b, (0,) if before == "cond" else (1,)) and (2 * b, (0, 1)) in got and got[-1] == (b, (1,))
    run = patch.last_run
    assert run.before_start_evaluations == next(i for i, e in enumerate(expected) if e[0] == 2 * b)
    assert run.single_evaluations == sum(1 for e in expected if e[0] == b)
    assert torch.isfinite(out).all()
    if sampler != "dpm_fast":
        assert run.steps_before_start() == START and run.guided_steps() == END
        # the sigma is read only around the two ends, never for the one-evaluation-per-step samplers
        assert run.sigma_reads <= (0 if sampler in ONE_EVALUATION_PER_STEP else 4)


NO_START_CASES = [  # (sampler, the start's inputs at their "no start" values); every mode, both kinds of sampler
    ("euler", dict(guidance_start_step=0)),
    ("heun", dict(guidance_start_step=0, keep_before_start="uncond")),
    ("dpmpp_2m", dict(cutoff_mode="fraction of steps", guided_fraction=0.5, guidance_start_fraction=0.0)),
    ("uni_pc", dict(cutoff_mode="sigma", cutoff_sigma=1.0, guidance_start_sigma=0.0)),
    ("euler_cfg_pp", dict(cutoff_mode="sigma", cutoff_sigma=1.0, guidance_start_sigma=9999.0)),
    ("dpmpp_2s_ancestral", dict(cutoff_mode="adaptive", adaptive_min_steps=2, guidance_start_step=0)),
]


@pytest.mark.parametrize("sampler,start", NO_START_CASES, ids=[s for s, _ in NO_START_CASES])
def test_no_guidance_start_is_the_cutoff_bit_for_bit(cutoff, schedule_math, model, conds, latent, sampler, start):
    """Start 0 (or a start sigma above the whole schedule): today's cutoff, same UNet calls."""
    settings = {k: v for k, v in start.items() if not k.startswith(("guidance_start", "keep_before"))}
    settings.setdefault("guided_steps", END)
    reference_model, reference_calls = record_unet(model)
    reference, reference_patch = apply(cutoff, schedule_math, reference_model, **settings)
    expected, _ = sample(reference, conds, latent, sampler)
    windowed_model, calls = record_unet(model)
    windowed, patch = apply(cutoff, schedule_math, windowed_model, **{**settings, **start})
    out, _ = sample(windowed, conds, latent, sampler)
    assert torch.equal(out, expected)
    assert calls == reference_calls
    assert patch.last_run.before_start_evaluations == 0
    assert patch.last_run.summary() == reference_patch.last_run.summary()


def test_euler_window_equals_the_hosts_three_stage_run(cutoff, schedule_math, model, conds, latent):
    """The method written with stock KSamplerAdvanced stages: cfg 1 (the host then evaluates
    the conditional branch alone) to the start, full CFG to the cutoff, then cfg 0 (the host's
    CFG gives exactly the unconditional prediction: uncond + (cond - uncond) * 0)."""
    patched, patch = apply(cutoff, schedule_math, model, guided_steps=END, guidance_start_step=START)
    out, _ = sample(patched, conds, latent)
    first, _ = sample(model, conds, latent, cfg=1.0, start_step=0, last_step=START, force_full_denoise=False)
    second, _ = sample(model, conds, first, disable_noise=True, start_step=START, last_step=END,
                       force_full_denoise=False)
    third, _ = sample(model, conds, second, cfg=0.0, disable_noise=True, start_step=END, last_step=STEPS,
                      force_full_denoise=True)
    # cfg 0 evaluates both branches in one call at twice the batch, the cutoff the uncond alone
    assert torch.allclose(out, third, rtol=1e-5, atol=1e-5)
    # with the negative alone at cfg 1 (one branch, as the cutoff runs it) the stages agree bit for bit
    third_single, _ = sample(model, conds, second, cfg=1.0, positive=conds[1], negative=conds[1], disable_noise=True,
                             start_step=END, last_step=STEPS, force_full_denoise=True)
    assert torch.equal(out, third_single)
    assert patch.last_run.summary().startswith(
        "ShapeFirst guidance cutoff: text unguided for steps 0–1, full CFG for steps 2–4, text dropped after "
        "step 5 of 8; 5 of 16 UNet branch evaluations saved (31.2 %).")


def test_the_summary_and_the_plan_name_the_window(pack, cutoff, schedule_math, model, conds, latent):
    nodes_module = pack["nodes.guidance_cutoff.nodes"]
    inputs = dict(guided_steps=12, guidance_start_step=3)
    plan = nodes_module.ShapeFirstGuidanceCutoff.execute(model, **inputs).ui.as_dict()["text"][0]
    assert plan.startswith("text unguided for steps 0–2, full CFG for steps 3–11, text dropped after step 12")
    patched, patch = apply(cutoff, schedule_math, model, **inputs)
    sample(patched, conds, latent, steps=20)
    assert patch.last_run.summary().startswith(
        "ShapeFirst guidance cutoff: text unguided for steps 0–2, full CFG for steps 3–11, text dropped after step "
        "12 of 20; 11 of 40 UNet branch evaluations saved (27.5 %).")
    # no cutoff in the run, and a start past the run's steps
    patched, patch = apply(cutoff, schedule_math, model, guided_steps=50, guidance_start_step=3)
    sample(patched, conds, latent)
    assert "text unguided for steps 0–2, full CFG for steps 3–7 of 8; 3 of 16" in patch.last_run.summary()
    patched, patch = apply(cutoff, schedule_math, model, guided_steps=50, guidance_start_step=20,
                           keep_before_start="uncond")
    sample(patched, conds, latent)
    assert "no text for steps 0–7 of 8; 8 of 16" in patch.last_run.summary()
    assert "the window was never reached" in patch.last_run.summary()
    sigma_plan = nodes_module.ShapeFirstGuidanceCutoff.execute(
        model, cutoff_mode="sigma", cutoff_sigma=0.28, guidance_start_sigma=5.42).ui.as_dict()["text"][0]
    assert sigma_plan.startswith("text unguided while sigma > 5.42, full CFG for sigma in (0.28, 5.42]")


def test_keep_before_start_uncond_equals_cfg_one_on_the_negative(cutoff, schedule_math, model, conds, latent):
    """Before the start 'uncond' runs the negative prompt alone; then full CFG, no cutoff."""
    patched, _ = apply(cutoff, schedule_math, model, guided_steps=STEPS, guidance_start_step=3,
                       keep_before_start="uncond")
    out, _ = sample(patched, conds, latent)
    first, _ = sample(model, conds, latent, cfg=1.0, positive=conds[1], negative=conds[1], start_step=0, last_step=3,
                      force_full_denoise=False)
    second, _ = sample(model, conds, first, disable_noise=True, start_step=3, last_step=STEPS, force_full_denoise=True)
    assert torch.equal(out, second)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_the_sigma_mode_window_is_the_interval(cutoff, schedule_math, model, conds, latent, sampler):
    """Mode 'sigma': full CFG exactly for the evaluations with sigma in (cutoff_sigma, guidance_start_sigma]."""
    logged, stock_sigmas = sigmas_of_evaluations(model)
    sample(logged, conds, latent, sampler)
    sigmas = stock_sigmas[:]
    low, high = sorted(sigmas)[len(sigmas) // 4], sorted(sigmas)[3 * len(sigmas) // 4]  # both are evaluated sigmas
    recorded, calls = record_unet(model)
    patched, patch = apply(cutoff, schedule_math, recorded, cutoff_mode="sigma", cutoff_sigma=low,
                           guidance_start_sigma=high)
    sample(patched, conds, latent, sampler)
    assert [batch == 4 for batch, _, _ in calls] == [low < s <= high for s in sigmas]


def test_sag_with_cond_before_the_start_is_refused_naming_it(cutoff, schedule_math, model, conds, latent):
    """Self-Attention Guidance reads the unconditional branch's attention, which 'cond' before
    the start never computes: refused before the first step; 'uncond' before the start runs."""
    from comfy_extras.nodes_sag import SelfAttentionGuidance
    sag = SelfAttentionGuidance.execute(model, 0.5, 2.0).result[0]
    patched, _ = apply(cutoff, schedule_math, sag, guided_steps=5, guidance_start_step=2)
    with pytest.raises(ValueError, match="keep_before_start 'cond' with a guidance start.*Set keep_before_start"):
        sample(patched, conds, latent)
    recorded, calls = record_unet(sag)
    patched, patch = apply(cutoff, schedule_math, recorded, guided_steps=5, guidance_start_step=2,
                           keep_before_start="uncond")
    out, _ = sample(patched, conds, latent)
    assert torch.isfinite(out).all()
    assert patch.last_run.before_start_evaluations == 2 and patch.last_run.single_evaluations == 5
    # SAG's own extra UNet call (uncond, on the blurred latent) follows each evaluation
    assert [batch for batch, _, _ in calls] == [2, 2] * 2 + [4, 2] * 3 + [2, 2] * 3


def test_the_host_validation_refuses_bad_window_inputs_naming_them(pack):
    nodes_module = pack["nodes.guidance_cutoff.nodes"]
    base = dict(cutoff_mode="guided steps", guided_steps=4)
    cases = [
        (dict(guidance_start_step=4), "guidance_start_step (4) must be below guided_steps (4): full CFG runs between "
         "the two. Lower guidance_start_step (0: full CFG from the first step) or raise guided_steps."),
        (dict(guidance_start_step=-2), "guidance_start_step must be a whole number >= 0"),
        (dict(guidance_start_fraction=float("nan")), "guidance_start_fraction must be between 0 and 1"),
        (dict(cutoff_mode="sigma", cutoff_sigma=2.0, guidance_start_sigma=1.0),
         "guidance_start_sigma (1) must be above cutoff_sigma (2)"),
        (dict(guidance_start_sigma=float("nan")), "guidance_start_sigma must be a noise level >= 0"),
        (dict(keep_before_start="none"), "keep_before_start must be 'cond'"),
    ]
    for node in (nodes_module.ShapeFirstGuidanceCutoff, nodes_module.ShapeFirstCutoffGuider):
        for bad, needle in cases:
            message = node.validate_inputs(**{**base, **bad})
            assert isinstance(message, str) and needle in message, (bad, message)
        assert node.validate_inputs(**base, guidance_start_step=3) is True
        assert node.validate_inputs(**base) is True  # a workflow saved before the inputs existed


def test_the_new_inputs_are_optional_and_last(pack):
    """Saved UI workflows fill widgets by position and API prompts may lack the inputs: both
    keep working (defaults: no start)."""
    nodes_module = pack["nodes.guidance_cutoff.nodes"]
    for node in (nodes_module.ShapeFirstGuidanceCutoff, nodes_module.ShapeFirstCutoffGuider):
        info = node.GET_SCHEMA().get_v1_info(node)
        optional = info.input.get("optional", {})
        # (empty_conditioning, added after them, is a link, not a widget: widget positions are unchanged;
        # the automatic mode's threshold came after it, last)
        assert list(optional) == ["guidance_start_step", "guidance_start_fraction", "guidance_start_sigma",
                                  "keep_before_start", "empty_conditioning", "auto_threshold"]
        assert list(info.input_order["required"])[-8:] == ["cutoff_mode", "guided_steps", "guided_fraction",
                                                           "cutoff_sigma", "keep", "adaptive_threshold",
                                                           "adaptive_min_steps", "adaptive_max_steps"]


def test_the_frequency_trace_marks_both_ends(pack, model, conds):
    """Frequency Trace on a model with a window: one branch, then both, then one; two markers."""
    import json
    freq = pack["nodes.frequency.nodes"]
    cutoff_node = pack["nodes.guidance_cutoff.nodes"].ShapeFirstGuidanceCutoff
    patched = cutoff_node.execute(model, guided_steps=END, guidance_start_step=START).args[0]
    trace = freq.ShapeFirstFrequencyTrace.PREPARE_CLASS_CLONE({"UNIQUE_ID": "7"})
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    out = trace.execute(patched, conds[0], conds[1], latent, 3, STEPS, CFG, "euler", "karras", 1.0, 0.25, 3)
    data = json.loads(out.args[3])
    assert [p["branches"] for p in data["points"]] == [1] * START + [2] * (END - START) + [1] * (STEPS - END)
    assert data["guidance_start"]["after_step"] == START and data["guidance_start"]["keep"] == "cond"
    assert data["guidance_start"]["label"] == f"full CFG after step {START}"
    assert data["cutoff"]["after_step"] == END
    report = pack["nodes.frequency.report"]
    assert [m["after_step"] for m in report.markers(data)] == [START, END]
    # without a start: no start marker, the payload as before
    plain = cutoff_node.execute(model, guided_steps=END).args[0]
    data = json.loads(trace.execute(plain, conds[0], conds[1], latent, 3, STEPS, CFG, "euler", "karras", 1.0,
                                    0.25, 3).args[3])
    assert data["guidance_start"] is None and data["cutoff"]["after_step"] == END
