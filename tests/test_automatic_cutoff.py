"""The automatic mode, 'automatic (shape settled)' (issue 23): the text goes once it no longer
changes the shape of the predicted picture (``nodes/guidance_cutoff/settled.py``).

Host-free: the measure against a direct computation, the refusal of bad thresholds, the old
'adaptive' rule unchanged. In the real host (CPU): stock bit for bit before the cut and the fixed
cut at the same step after it, one read per measured evaluation, the summary naming the step and
the value, a later cut for a prompt whose guidance stays large, the adherence the report's frontier
measured on the demo model, and a single cut on every DiT/video family."""
import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from shapefirst.nodes.frequency import bands
from shapefirst.nodes.guidance_cutoff import schedule as cs
from shapefirst.nodes.guidance_cutoff import settled
from test_demo_model import demo, report  # noqa: F401  (fixtures: the demo model, the report module)
from test_guidance_cutoff import conds, latent, model  # noqa: F401  (fixtures: the tiny SD1.5)

REPO = Path(__file__).resolve().parents[1]
AUTOMATIC = "automatic (shape settled)"
# A fresh batch of DEMO_PROMPTS may score this much below the frontier's automatic row (two pictures).
DEMO_PROMPTS = 16
ADHERENCE_MARGIN = 2 / DEMO_PROMPTS


# ---------------------------------------------------------------- host-free

def test_the_shape_effect_is_the_low_band_change_the_cut_makes_relative_to_full_cfg():
    generator = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(3, 4, 8, 8, generator=generator), torch.randn(3, 4, 8, 8, generator=generator)
    for cfg, keep_cond in ((5.0, False), (5.0, True), (1.5, False)):
        got = settled.shape_effect(cond, uncond, cfg, keep_cond)
        guided = uncond + cfg * (cond - uncond)
        kept = cond if keep_cond else uncond
        for i in range(3):
            low_change, _ = bands.split(guided[i:i + 1] - kept[i:i + 1])
            low_guided, _ = bands.split(guided[i:i + 1])
            assert math.isclose(float(got[i]), float(low_change.norm() / low_guided.norm()), rel_tol=1e-4)
        assert float(settled.batch_effect(cond, uncond, cfg, keep_cond)) == float(got.max())


def test_the_shape_effect_is_the_same_for_video_latents_and_zero_without_text():
    video = torch.randn(2, 16, 3, 8, 8)
    assert settled.shape_effect(video + 0.1, video, 4.0).shape == (2,)
    assert float(settled.batch_effect(video, video, 4.0)) == 0.0  # no text, nothing to keep: settled at once


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.1, settled.MAX_THRESHOLD + 1, "0.3", True, None])
def test_a_bad_threshold_is_refused_naming_the_input(value):
    message = cs.check_inputs({"cutoff_mode": AUTOMATIC, "auto_threshold": value})
    assert message and message.startswith("auto_threshold must be a number between 0 and"), message
    with pytest.raises(ValueError, match="auto_threshold"):
        cs.CutoffSettings(cutoff_mode=AUTOMATIC, auto_threshold=value)


def test_the_ratio_rule_keeps_its_name_inputs_and_defaults():
    """Saved workflows with 'adaptive' run as before: same mode name, inputs, defaults; the new input
    comes after every other one and is not used by the other modes."""
    defaults = cs.CutoffSettings()
    assert cs.MODE_ADAPTIVE == "adaptive" and cs.MODES[:4] == ("guided steps", "fraction of steps", "sigma", "adaptive")
    assert (defaults.adaptive_threshold, defaults.adaptive_min_steps, defaults.adaptive_max_steps) == (0.15, 3, 1000)
    assert cs.MODES[-1] == AUTOMATIC and cs.INPUT_NAMES[-1] == "auto_threshold"
    assert defaults.auto_threshold == settled.DEFAULT_THRESHOLD


def test_the_automatic_mode_has_no_fixed_end_and_takes_a_guidance_start_in_steps():
    schedule = [14.6, 8.0, 4.0, 2.0, 1.0, 0.0]
    s = cs.CutoffSettings(cutoff_mode=AUTOMATIC, guidance_start_step=2)
    assert cs.cutoff_sigma_for(s, schedule) is None
    assert cs.steps_before_start(s, schedule) == 2 and cs.start_sigma_for(s, schedule) == 4.0


# ---------------------------------------------------------------- the real host: tiny SD1.5

@pytest.fixture(scope="module")
def host_bits(pack):
    return pack["nodes.guidance_cutoff.patch"], pack["nodes.guidance_cutoff.nodes"]


def _tiny():
    from test_guidance_cutoff import STEPS, record_unet, sample
    return STEPS, record_unet, sample


def _automatic(host_bits, base, threshold, **settings):
    cutoff, _ = host_bits
    messages = []
    patched, patch = cutoff.apply_cutoff(base, cs.CutoffSettings(cutoff_mode=AUTOMATIC, auto_threshold=threshold,
                                                                  **settings),
                                         lambda message, run: messages.append(message))
    return patched, patch, messages


def _threshold_cutting_midway(trace):
    """A threshold between the measured values and the index of the first measurement below it."""
    values = [value for _, value in trace]
    threshold = sorted(values)[len(values) // 2] + 1e-6
    return threshold, next(i for i, v in enumerate(values) if v < threshold)


@pytest.mark.host
@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m"])
def test_stock_before_the_cut_and_the_fixed_cut_at_the_same_step(host_bits, model, conds, latent, sampler):  # noqa: F811  (fixtures)
    """Threshold 0 never cuts: stock bit for bit, every step measured. A threshold between the
    measured values cuts after the first measurement below it, and the run then equals the fixed
    cut at that step (which equals stock before it: tests/test_guidance_cutoff.py)."""
    steps, record_unet, sample = _tiny()
    cutoff, _ = host_bits
    stock, stock_log = sample(model, conds, latent, sampler)
    never, patch, messages = _automatic(host_bits, model, 0.0)
    out, _ = sample(never, conds, latent, sampler)
    assert torch.equal(out, stock) and patch.last_run.single_evaluations == 0
    assert "never fell below auto_threshold 0" in messages[-1]
    full_trace = patch.last_run.shape_trace
    threshold, first_below = _threshold_cutting_midway(full_trace)
    cut, patch, _ = _automatic(host_bits, model, threshold)
    recorded, calls = record_unet(cut)
    out, cut_log = sample(recorded, conds, latent, sampler)
    run = patch.last_run
    assert run.shape_trace == full_trace[:first_below + 1] and run.adaptive_cut is not None
    guided = run.guided_steps()
    for (step, x0, x), (_, stock_x0, stock_x) in zip(cut_log[:guided - 1], stock_log[:guided - 1]):
        assert torch.equal(x, stock_x) and torch.equal(x0, stock_x0), f"differs from stock at step {step}"
    branches = [batch // latent.shape[0] for batch, _, _ in calls]
    assert branches == sorted(branches, reverse=True) and branches[-1] == 1, "both branches, then one, never back"
    if sampler != "heun":  # (heun drops the text from the measured step's corrector on: no fixed cut does that)
        fixed, _ = cutoff.apply_cutoff(model, cs.CutoffSettings(guided_steps=guided))
        assert torch.equal(out, sample(fixed, conds, latent, sampler)[0])
    assert guided < steps


@pytest.mark.host
def test_one_read_per_measured_evaluation_and_the_summary_names_step_and_value(host_bits, model, conds, latent):  # noqa: F811  (fixtures)
    steps, _, sample = _tiny()
    probe, patch, _ = _automatic(host_bits, model, 0.0)
    sample(probe, conds, latent)
    threshold, k = _threshold_cutting_midway(patch.last_run.shape_trace)
    patched, patch, messages = _automatic(host_bits, model, threshold)
    sample(patched, conds, latent)
    run = patch.last_run
    assert len(run.shape_trace) == k + 1 and run.sigma_reads == k + 1  # euler: the sigma is known, one value read
    sigma, value = run.shape_trace[-1]
    assert sigma == run.schedule[k] and f"text dropped after step {k + 1} of {steps}" in messages[-1]
    assert f"in step {k + 1} (sigma {sigma:.4g})" in messages[-1] and f"{value:.3g} at most over the batch" in messages[-1]
    assert "the shape had settled" in messages[-1]


@pytest.mark.host
def test_the_nodes_refuse_a_bad_threshold_and_show_the_plan(host_bits, model, conds):  # noqa: F811  (fixtures)
    _, nodes_module = host_bits
    inputs = dict(cutoff_mode=AUTOMATIC, guided_steps=10, guided_fraction=0.5, cutoff_sigma=1.0, keep="uncond",
                  adaptive_threshold=0.15, adaptive_min_steps=3, adaptive_max_steps=1000)
    for node in (nodes_module.ShapeFirstGuidanceCutoff, nodes_module.ShapeFirstCutoffGuider):
        assert node.validate_inputs(**inputs, auto_threshold=-1.0).startswith("auto_threshold must be")
        assert node.validate_inputs(**inputs) is True  # a workflow saved before the input existed
        info = node.GET_SCHEMA().get_v1_info(node)
        assert list(info.input.get("optional", {}))[-1] == "auto_threshold"
    out = nodes_module.ShapeFirstGuidanceCutoff.execute(model, **inputs, auto_threshold=0.3)
    assert "until its effect on the shape of the predicted picture (low band of x0) is below 0.3" in (
        out.ui.as_dict()["text"][0])


# ---------------------------------------------------------------- the demo model

def _frontier_row(label):
    frontier = json.loads((REPO / "docs" / "demo_model" / "report.json").read_text())["frontier"]
    return frontier, next(r for r in frontier["rows"] if r["configuration"] == label)


def _prompts(report_module, clip, seed, count):
    import nodes
    from shapefirst.nodes.demo_models import shapes_data
    rng = np.random.default_rng(seed)
    truth = [shapes_data.random_attributes(rng) for _ in range(count)]
    encode = nodes.CLIPTextEncode()
    positive = report_module.stack([encode.encode(clip, shapes_data.canonical_caption(a))[0] for a in truth])
    negative = report_module.stack([encode.encode(clip, "")[0] for _ in truth])
    return truth, positive, negative


@pytest.mark.host
def test_on_the_demo_model_the_defaults_keep_the_adherence_the_frontier_measured(report, demo):  # noqa: F811  (fixtures)
    """Fresh prompts at the report's setting with the automatic mode at its defaults: every shape
    attribute at least the frontier's automatic row minus two pictures, and some UNet work saved."""
    from shapefirst.nodes.demo_models import scorer
    frontier, row = _frontier_row("automatic (shape settled), defaults")
    unet, clip, vae = demo
    setting = dataclasses.replace(report.Setting(), prompts=DEMO_PROMPTS, seed=909)
    assert (frontier["steps"], frontier["cfg"]) == (setting.steps, setting.cfg)
    truth, positive, negative = _prompts(report, clip, setting.seed, DEMO_PROMPTS)
    images, measured = report.frontier_run(unet, vae, positive, negative, setting, {"cutoff_mode": AUTOMATIC})
    scored = scorer.AttributeScorer().adherence(images.numpy(), truth)
    for name in report.SHAPE_ATTRIBUTES:
        assert scored[name] >= row["adherence"][name] - ADHERENCE_MARGIN - 1e-9, (name, scored, row["adherence"])
    assert 0 < measured["unet_work_saved"] and "the shape had settled" in measured["summary"]


@pytest.mark.host
def test_the_frontier_alone_merges_into_the_report(report, demo, tmp_path):  # noqa: F811  (fixtures)
    """`report.py --frontier-only` on a reduced setting: every configuration, at its defaults, in its own
    section of a copy of the committed report; the other sections stay."""
    shutil.copy(REPO / "docs" / "demo_model" / "report.json", tmp_path / "report.json")
    unet, clip, vae = demo
    merged = report.merge_frontier(unet, clip, vae, report.QUICK, tmp_path, prompts_given=True)
    rows = {r["configuration"]: r for r in merged["frontier"]["rows"]}
    assert list(rows) == [label for label, _ in report.frontier_configurations()]
    # euler, 4 steps: text for half of them saves a quarter of the UNet rows; full CFG nothing
    assert rows["full CFG"]["unet_work_saved"] == 0 and rows["full CFG"]["guided_steps"] == report.QUICK.steps
    half = next(r for label, r in rows.items() if label.startswith("fixed, a = 0.5") and label.endswith("uncond"))
    assert half["unet_work_saved"] == pytest.approx(0.25) and half["guided_steps"] == 2
    assert [r["configuration"] for r in merged["frontier"]["negative_prompt"]][0] == "full CFG"
    text = (tmp_path / "report.md").read_text()
    assert "## 4. The frontier" in text and "## 1. Acceleration" in text and (tmp_path / "frontier.png").is_file()
    assert merged["frontier"]["pictures"] == report.QUICK.prompts and "machine" in merged["frontier"]


def _automatic_cut(report_module, unet, positive, negative, indices, seed):
    """The automatic mode at its defaults on the prompts ``indices`` of the conditionings, each image
    with the noise of its index (the latent's batch_index, as the host's Latent From Batch gives it):
    (steps with text, the measured values)."""
    import nodes
    from shapefirst.nodes.demo_models import shapes_data
    setting = report_module.Setting()
    pick = lambda c: [[c[0][0][indices], c[0][1]]]  # noqa: E731
    size = shapes_data.IMAGE_SIZE // 8
    empty = {"samples": torch.zeros(len(indices), 4, size, size), "batch_index": list(indices)}
    patched = report_module.guidance_cutoff_model(unet, {"cutoff_mode": AUTOMATIC})
    patch = report_module.cutoff_patch(patched)
    with torch.inference_mode():
        nodes.KSampler().sample(patched, seed, setting.steps, setting.cfg, "euler", "normal", pick(positive),
                                pick(negative), empty, denoise=1.0)
    return patch.last_run.guided_steps(), [v for _, v in patch.last_run.shape_trace]


@pytest.mark.host
def test_a_prompt_whose_guidance_stays_large_keeps_the_text_longer(report, demo):  # noqa: F811  (fixtures)
    """Each of a few prompts alone: the cut moves with the prompt, the prompt cut last still measured
    above the threshold where the first was cut, and the two in one batch (each with its own noise)
    are cut where the later one is: the text goes when every image is ready."""
    unet, clip, _ = demo
    seed = 515
    _, positive, negative = _prompts(report, clip, seed, 6)
    runs = sorted((*_automatic_cut(report, unet, positive, negative, [i], seed), i) for i in range(6))
    (early, early_trace, first), (late, late_trace, last) = runs[0], runs[-1]
    assert early < late, [r[0] for r in runs]
    threshold = cs.CutoffSettings().auto_threshold
    assert early_trace[-1] < threshold <= late_trace[early - 1]  # measured at the same step: only one had settled
    together, trace = _automatic_cut(report, unet, positive, negative, [first, last], seed)
    assert together == late and len(trace) == late
    # (the batch's value is the larger of the two; equal to a batch of one up to float rounding)
    assert trace[:early] == pytest.approx([max(a, b) for a, b in zip(late_trace, early_trace)], rel=1e-4)


# ---------------------------------------------------------------- DiT and video families

@pytest.mark.host
def test_on_every_family_it_cuts_once_and_says_where_and_why(tiny, reporting_cutoff):
    """Tiny random-weight models of each family (their guidance is noise): with a threshold above the
    first measurement the text goes after the first step, once, and the summary says where and why."""
    from test_model_families import FAMILIES, STEPS, Calls, sample
    for family in FAMILIES:
        unet = tiny.tiny_family_model(family, seed=1)
        positive, negative, start = tiny.family_inputs(family, batch=1, seed=2)
        calls = Calls()
        patched, patch, messages = reporting_cutoff(calls.install(unet), cutoff_mode=AUTOMATIC,
                                                    auto_threshold=settled.MAX_THRESHOLD)
        out = sample(patched, positive, negative, start, calls)
        batch = start.shape[0]
        assert torch.isfinite(out).all() and patch.last_run.shape_trace[0][1] < settled.MAX_THRESHOLD, family
        assert calls.calls == [(2 * batch, (0, 1))] + [(batch, (1,))] * (STEPS - 1), family
        assert len(messages) == 1 and f"text dropped after step 1 of {STEPS}" in messages[0], (family, messages)
        assert "automatic: in step 1" in messages[0] and "the shape had settled" in messages[0], family
