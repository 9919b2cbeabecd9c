"""The cutoff in real graphs: a negative prompt, the empty prompt, and every guidance and cache node
of the host stacked with it, in both orders, keeping either branch. Tiny random-weight SD1.5-shaped
model, CPU. What the UNet really ran is recorded through the host's own wrappers; the summary must
say what ran and name what changes (docs/works_with.md uses the same sentences)."""
import re
from pathlib import Path

import pytest
import torch

from conftest import exact_round_trip_sd15

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parents[1]
STEPS, GUIDED, CFG = 8, 4, 6.0


@pytest.fixture(scope="module")
def cutoff(pack):
    return pack["nodes.guidance_cutoff.patch"]


@pytest.fixture(scope="module")
def cs(pack):
    return pack["nodes.guidance_cutoff.schedule"]


@pytest.fixture(scope="module")
def nb(pack):
    return pack["nodes.guidance_cutoff.neighbours"]


@pytest.fixture(scope="module")
def model(tiny):
    return exact_round_trip_sd15(tiny)


@pytest.fixture(scope="module")
def prompts(tiny):
    """(positive, negative, empty) as CLIPTextEncode makes them: a real negative prompt."""
    import nodes
    clip = tiny.tiny_clip("sd15", seed=1)
    encode = nodes.CLIPTextEncode()
    return tuple(encode.encode(clip, t)[0] for t in
                 ("a red cube on a wooden table", "blurry, low quality, watermark", ""))


@pytest.fixture(scope="module")
def latent():
    return torch.zeros(1, 4, 8, 8)


class UNetLog:
    """Every UNet call of a run (APPLY_MODEL wrapper: rows, branches, sigma) and the diffusion
    model forwards that really ran (innermost DIFFUSION_MODEL wrapper: after a cache's)."""

    def __init__(self):
        self.calls, self.forwards, self.callbacks = [], 0, []

    def install(self, model):
        import comfy.patcher_extension as pe
        recorded = model.clone()

        def apply_model(executor, x, t, *args, **kwargs):
            options = args[-1] if args and isinstance(args[-1], dict) else kwargs.get("transformer_options", {})
            self.calls.append((tuple(options.get("cond_or_uncond", ())), float(options["sigmas"].max())))
            return executor(x, t, *args, **kwargs)

        def forward(executor, *args, **kwargs):
            self.forwards += 1
            return executor(*args, **kwargs)

        recorded.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "test_unet_log", apply_model)
        recorded.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "test_unet_log", forward)
        return recorded

    def callback(self, step, x0, x, total_steps):
        self.callbacks.append(step)

    def branches(self):
        return sum(len(c[0]) for c in self.calls)


def ksampler(model, positive, negative, latent, log=None, sampler="euler", steps=STEPS, cfg=CFG, **kw):
    import comfy.sample
    noise = comfy.sample.prepare_noise(latent, 3) if not kw.get("disable_noise") else torch.zeros_like(latent)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, "karras", positive, negative, latent, seed=3,
                               callback=log.callback if log else None, disable_pbar=True, **kw)


def schedule_of(model, steps=STEPS):
    import comfy.samplers
    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", steps).tolist()


def apply_cutoff(cutoff, cs, model, messages, empty=None, **settings):
    patched, patch = cutoff.apply_cutoff(model, cs.CutoffSettings(guided_steps=GUIDED, **settings),
                                         lambda message, run: messages.append(message), empty)
    return patched, patch


# ---------------------------------------------------------------- the negative and the empty prompt

@pytest.mark.parametrize("n", [2, 5])
def test_keep_uncond_with_the_empty_prompt_is_the_papers_unconditional(cutoff, cs, model, prompts, latent, n):
    """With empty_conditioning the late steps evaluate the empty prompt, not the negative: equal, bit
    for bit, to the host's two-stage run (full CFG with the negative to step n, then the empty
    prompt alone at cfg 1)."""
    positive, negative, empty = prompts
    messages = []
    patched, patch = cutoff.apply_cutoff(model, cs.CutoffSettings(guided_steps=n), lambda m, r: messages.append(m),
                                         empty)
    out = ksampler(patched, positive, negative, latent)
    first = ksampler(model, positive, negative, latent, start_step=0, last_step=n, force_full_denoise=False)
    second = ksampler(model, empty, empty, first, cfg=1.0, disable_noise=True, start_step=n, last_step=STEPS,
                      force_full_denoise=True)
    assert torch.equal(out, second)
    with_negative = ksampler(cutoff.apply_cutoff(model, cs.CutoffSettings(guided_steps=n))[0], positive, negative,
                             latent)
    assert not torch.equal(out, with_negative)
    assert "keeping uncond (the empty prompt)" in messages[-1] and "runs alone" not in messages[-1]


def test_without_the_empty_prompt_plan_and_summary_say_the_negative_runs_alone(pack, cutoff, cs, model, prompts,
                                                                               latent):
    positive, negative, empty = prompts
    node = pack["nodes.guidance_cutoff.nodes"].ShapeFirstGuidanceCutoff
    inputs = dict(cutoff_mode="guided steps", guided_steps=GUIDED)
    plan = node.execute(model, **inputs).ui.as_dict()["text"][0]
    assert "negative prompt runs alone" in plan and "empty_conditioning" in plan
    connected = node.execute(model, empty_conditioning=empty, **inputs).ui.as_dict()["text"][0]
    assert "runs alone" not in connected
    on_purpose = node.execute(model, **dict(inputs, keep="negative")).ui.as_dict()["text"][0]
    assert "runs alone" not in on_purpose and "negative prompt" in on_purpose
    messages = []
    patched, _ = apply_cutoff(cutoff, cs, model, messages)
    today = ksampler(patched, positive, negative, latent)
    assert "keeping uncond (the negative prompt)" in messages[-1] and "negative prompt runs alone" in messages[-1]
    # keep 'negative' is today's behaviour as an explicit choice, even with the empty prompt connected
    explicit, _ = apply_cutoff(cutoff, cs, model, messages, empty, keep="negative")
    assert torch.equal(ksampler(explicit, positive, negative, latent), today)
    assert "keeping negative" in messages[-1] and "runs alone" not in messages[-1]


def test_the_guider_takes_the_empty_prompt_too(pack, model, prompts, latent):
    from comfy_extras.nodes_custom_sampler import BasicScheduler, KSamplerSelect, RandomNoise, SamplerCustomAdvanced
    positive, negative, empty = prompts
    guider_node = pack["nodes.guidance_cutoff.nodes"].ShapeFirstCutoffGuider
    inputs = dict(cutoff_mode="guided steps", guided_steps=GUIDED)
    (sigmas,) = BasicScheduler().get_sigmas(model, "karras", STEPS, 1.0)
    (sampler,) = KSamplerSelect().get_sampler("euler")
    (noise,) = RandomNoise().get_noise(3)

    def run(**extra):
        guider = guider_node.execute(model, positive, negative, CFG, **inputs, **extra).result[0]
        return SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, {"samples": latent})[0]["samples"]
    with_empty, plain = run(empty_conditioning=empty), run()
    assert not torch.equal(with_empty, plain)
    # the same as the model patch with the empty prompt, through the host's CFGGuider
    import comfy.samplers
    patched = pack["nodes.guidance_cutoff.nodes"].ShapeFirstGuidanceCutoff.execute(
        model, empty_conditioning=empty, **inputs).result[0]
    guider = comfy.samplers.CFGGuider(patched)
    guider.set_conds(positive, negative)
    guider.set_cfg(CFG)
    assert torch.equal(SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, {"samples": latent})[0]["samples"],
                       with_empty)


# ---------------------------------------------------------------- LazyCache: the cut lands at its sigma

@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "heun"])
def test_lazycache_skips_and_the_cut_lands_at_its_sigma(cutoff, cs, model, prompts, latent, sampler):
    from comfy_extras.nodes_easycache import LazyCacheNode
    positive, negative, _ = prompts
    steps = 12
    cut = schedule_of(model, steps)[6]
    cached = LazyCacheNode.execute(model, reuse_threshold=0.1, start_percent=0.0, end_percent=1.0,
                                   verbose=False).result[0]
    messages = []
    patched, patch = cutoff.apply_cutoff(cached, cs.CutoffSettings(guided_steps=6),
                                         lambda m, r: messages.append(m))
    log = UNetLog()
    ksampler(log.install(patched), positive, negative, latent, log, sampler=sampler, steps=steps)
    run = patch.last_run
    assert run.cache_skips.get("LazyCache", 0) > 0, messages[-1]  # the cache did skip evaluations
    assert len(log.callbacks) == steps
    check_the_cut_is_where_it_ran(cs, run, log, cut, schedule_of(model, steps), messages[-1])
    assert f"LazyCache skipped {run.cache_skips['LazyCache']} of the {steps} steps" in messages[-1]


def check_the_cut_is_where_it_ran(cs, run, log, cut, schedule, summary):
    """Both branches run at every evaluated sigma above the cutoff sigma (in one call, or in two where a
    neighbour splits them), no call carries both at or below it; the summary's step and sigma are those
    of the first one-branch evaluation that really ran."""
    above = {s for _, s in log.calls if s > cut}
    assert above and all({0, 1} <= {i for b, t in log.calls if t == s for i in b} for s in above)
    assert not any(len(b) == 2 for b, s in log.calls if s <= cut)
    after = [s for _, s in log.calls if s <= cut]
    if not after:  # a cache skipped every evaluation from the cut on
        assert run.drop_sigma is None and "no evaluation ran at or below the cutoff's sigma" in summary
        return
    assert run.drop_sigma == pytest.approx(max(after))
    step = cs.guided_steps_below(schedule, run.drop_sigma)
    assert f"after step {step} of {len(schedule) - 1}" in summary and f"from sigma {run.drop_sigma:.4g}" in summary


# ---------------------------------------------------------------- the stacking matrix

def _neighbour(name, model, prompts):
    """The host node ``name`` applied to ``model`` as the executor calls it: (model, guider or None)."""
    import comfy.samplers
    from comfy_extras import (nodes_apg, nodes_cfg, nodes_easycache, nodes_mahiro, nodes_model_advanced,
                              nodes_pag, nodes_perpneg, nodes_sag, nodes_slg, nodes_tcfg, nodes_custom_sampler)
    positive, negative, empty = prompts
    if name == "EasyCache":
        return nodes_easycache.EasyCacheNode.execute(model, reuse_threshold=0.2, start_percent=0.0, end_percent=1.0,
                                                     verbose=False).result[0], None
    if name == "LazyCache":
        return nodes_easycache.LazyCacheNode.execute(model, reuse_threshold=0.1, start_percent=0.0, end_percent=1.0,
                                                     verbose=False).result[0], None
    if name == "PerpNeg":
        return nodes_perpneg.PerpNeg.execute(model, empty, 1.0).result[0], None
    if name == "PAG":
        return nodes_pag.PerturbedAttentionGuidance.execute(model, 3.0).result[0], None
    if name == "SAG":
        return nodes_sag.SelfAttentionGuidance.execute(model, 0.5, 2.0).result[0], None
    if name == "SkipLayerGuidanceDiT":
        return nodes_slg.SkipLayerGuidanceDiT.execute(model, 3.0, 0.0, 1.0, "1", "1", 0.0).result[0], None
    if name == "SkipLayerGuidanceDiTSimple":
        return nodes_slg.SkipLayerGuidanceDiTSimple.execute(model, 0.0, 1.0, "1", "1").result[0], None
    if name == "APG":
        return nodes_apg.APG.execute(model, 1.0, 0.0, -0.75).result[0], None
    if name == "APG momentum 0":
        return nodes_apg.APG.execute(model, 1.0, 0.0, 0.0).result[0], None
    if name == "CFGZeroStar":
        return nodes_cfg.CFGZeroStar.execute(model).result[0], None
    if name == "CFGNorm":
        return nodes_cfg.CFGNorm.execute(model, 1.0).result[0], None
    if name == "TCFG":
        return nodes_tcfg.TCFG.execute(model).result[0], None
    if name == "Mahiro":
        return nodes_mahiro.Mahiro.execute(model).result[0], None
    if name == "RescaleCFG":
        return nodes_model_advanced.RescaleCFG().patch(model, 0.7)[0], None
    if name == "ModelSamplingDiscrete":
        return nodes_model_advanced.ModelSamplingDiscrete().patch(model, "eps", False)[0], None
    if name == "PerpNegGuider":
        return model, lambda m: nodes_perpneg.PerpNegGuider.execute(m, positive, negative, empty, CFG, 1.0).result[0]
    if name == "DualCFGGuider":
        return model, lambda m: nodes_custom_sampler.DualCFGGuider.execute(
            m, positive, negative, empty, CFG, 2.0, "regular").result[0]
    if name == "CFGGuider":
        def cfg_guider(m):
            g = comfy.samplers.CFGGuider(m)
            g.set_conds(positive, negative)
            g.set_cfg(CFG)
            return g
        return model, cfg_guider
    if name == "BasicGuider":
        return model, lambda m: nodes_custom_sampler.BasicGuider.execute(m, positive).result[0]
    raise AssertionError(name)


MODEL_NEIGHBOURS = ["EasyCache", "LazyCache", "PerpNeg", "PAG", "SAG", "SkipLayerGuidanceDiT",
                    "SkipLayerGuidanceDiTSimple", "APG", "APG momentum 0", "CFGZeroStar", "CFGNorm", "TCFG", "Mahiro",
                    "RescaleCFG", "ModelSamplingDiscrete"]
GUIDERS = ["PerpNegGuider", "DualCFGGuider", "CFGGuider", "BasicGuider"]
# Neighbours that evaluate the model themselves beside the cutoff's branches, after the cut too.
EXTRA_PASS = {"PerpNeg", "PAG", "SAG", "SkipLayerGuidanceDiT"}


def _sample_with(model, guider_factory, prompts, latent, log):
    positive, negative, _ = prompts
    if guider_factory is None:
        return ksampler(model, positive, negative, latent, log)
    from comfy_extras.nodes_custom_sampler import BasicScheduler, KSamplerSelect, RandomNoise, SamplerCustomAdvanced
    (sigmas,) = BasicScheduler().get_sigmas(model, "karras", STEPS, 1.0)
    (sampler,) = KSamplerSelect().get_sampler("euler")
    (noise,) = RandomNoise().get_noise(3)
    guider = guider_factory(model)
    return SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, {"samples": latent})[0]["samples"]


@pytest.mark.parametrize("keep", ["uncond", "cond"])
@pytest.mark.parametrize("order", ["neighbour first", "cutoff first"])
@pytest.mark.parametrize("name", MODEL_NEIGHBOURS + GUIDERS)
def test_stacked_with_the_hosts_nodes(cutoff, cs, nb, model, prompts, latent, name, order, keep):
    messages = []
    empty = prompts[2] if keep == "uncond" else None
    if order == "neighbour first":
        stacked, guider = _neighbour(name, model, prompts)
        stacked, patch = apply_cutoff(cutoff, cs, stacked, messages, empty, keep=keep)
    else:
        stacked, patch = apply_cutoff(cutoff, cs, model, messages, empty, keep=keep)
        stacked, guider = _neighbour(name, stacked, prompts)
    log = UNetLog()
    recorded = log.install(stacked)
    if name == "PerpNeg" and keep != "cond":
        with pytest.raises(ValueError, match="PerpNeg") as refused:
            _sample_with(recorded, guider, prompts, latent, log)
        assert "keep 'cond'" in str(refused.value)  # the message names the fix
        return
    out = _sample_with(recorded, guider, prompts, latent, log)
    assert torch.isfinite(out).all()
    summary = messages[-1]
    run = patch.last_run
    schedule = schedule_of(model)
    cut = schedule[GUIDED]
    if name in ("PerpNegGuider", "DualCFGGuider"):
        # the guider computes its own batch: every call carries its three conds, nothing is cut
        assert all(len(b) == 3 for b, _ in log.calls) and len(log.calls) == STEPS
        assert "not applied" in summary and name in summary and "at or past" not in summary
        assert run.branch_evaluations == 3 * STEPS
        return
    if name == "SkipLayerGuidanceDiTSimple" and order == "cutoff first":
        # it takes ComfyUI's one calc_cond_batch slot from the cutoff: said, with the fix
        assert "not applied: SkipLayerGuidanceDiTSimple" in summary and "Apply Guidance Cutoff after" in summary
        assert run.single_evaluations == 0 and all(len(b) == 1 for b, _ in log.calls)
        return
    if name == "BasicGuider":  # cfg 1 by construction: one branch throughout, the documented no-op
        assert "no-op" in summary and all(b == (0,) for b, _ in log.calls)
        return
    check_the_cut_is_where_it_ran(cs, run, log, cut, schedule, summary)
    # the evaluations counted are the ones that ran, the neighbour's own passes named
    assert run.branch_evaluations == log.branches()
    if name in EXTRA_PASS:
        extra = run.branch_evaluations - 2 * run.full_evaluations - run.single_evaluations
        assert extra > 0 and any(len(b) == 1 for b, s in log.calls if s > cut)  # its own pass, before the cut
        assert re.search(rf"Besides these, {extra} branch evaluations ran for [^.]*{re.escape(name)}", summary)
    else:
        assert "Besides these" not in summary
    # the neighbour's own signature is still there
    if name == "EasyCache" and keep == "uncond":
        assert log.forwards < len(log.calls) and run.cache_skips["EasyCache"] > 0
    if name == "EasyCache" and keep == "cond":
        assert nb.EASYCACHE_LOST_BRANCH in summary
    if name == "LazyCache":
        assert run.cache_skips["LazyCache"] > 0 and len(log.callbacks) == STEPS
    if name == "SkipLayerGuidanceDiTSimple" and order == "neighbour first":
        # its own signature: the two branches in separate calls while the text is used
        assert not any(len(b) == 2 for b, _ in log.calls)
    # every neighbour whose behaviour changes is named with its sentence, the one the README's table has
    found = {n.name: n for n in run.neighbours}
    for neighbour in found.values():
        note = nb.after_cut_note(neighbour, keep)
        if note:
            assert note in summary
            assert note in WORKS_WITH, f"docs/works_with.md lacks: {note}"


WORKS_WITH = (REPO / "docs" / "works_with.md").read_text() if (REPO / "docs" / "works_with.md").is_file() else ""


def test_every_sentence_the_summary_can_say_is_in_the_works_with_page(cs, nb):
    notes = {nb.after_cut_note(nb.Neighbour(name), keep) for name in
             (nb.PERPNEG, nb.PAG, nb.SAG, nb.SLG, nb.SLG_SIMPLE, nb.APG, nb.EASYCACHE, nb.LAZYCACHE, nb.TORCH_COMPILE)
             for keep in cs.KEEP_CHOICES} - {None}
    notes |= {nb.EASYCACHE_LOST_BRANCH}
    missing = [n for n in notes if n not in WORKS_WITH]
    assert not missing, missing


def test_easycache_before_a_guidance_start_is_refused_and_after_it_runs(cutoff, cs, model, prompts, latent):
    """Before a guidance start one branch runs, so EasyCache would cache only that one and fail inside
    the host where both start (a KeyError in its apply_cache_diff): refused, naming it and the fix.
    Started after the guidance start, EasyCache runs beside the window."""
    from comfy_extras.nodes_easycache import EasyCacheNode
    positive, negative, _ = prompts
    early = EasyCacheNode.execute(model, reuse_threshold=3.0, start_percent=0.0, end_percent=1.0,
                                  verbose=False).result[0]
    messages = []
    patched, _ = apply_cutoff(cutoff, cs, early, messages, guidance_start_step=2)
    with pytest.raises(ValueError, match="EasyCache with a guidance start") as refused:
        ksampler(patched, positive, negative, latent)
    assert "LazyCache" in str(refused.value) and "start_percent" in str(refused.value)
    late = EasyCacheNode.execute(model, reuse_threshold=3.0, start_percent=0.9, end_percent=1.0,
                                 verbose=False).result[0]
    patched, _ = apply_cutoff(cutoff, cs, late, messages, guidance_start_step=2)
    assert torch.isfinite(ksampler(patched, positive, negative, latent)).all()
    assert "text unguided for steps 0–1" in messages[-1]
