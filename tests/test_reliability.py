"""Reliability in the real host: a seeded fuzz matrix of samplers, schedules, cutoff
settings and other patches, negative prompts and the host's caches; 100 runs without leaks or
leaking state; interrupted runs;
the README's bad-input table. Tiny random-weight models, CPU.

Replay one fuzz case: ``SHAPEFIRST_FUZZ_SEED=<seed> python -m pytest tests/test_reliability.py
-k <case id>`` (the id and seed are in every failure message). Long run:
``python -m pytest tests/test_reliability.py -m slow`` (500 more cases;
``SHAPEFIRST_FUZZ_CASES=N`` sets how many the default run draws).
"""
import math
import os
import traceback
from dataclasses import dataclass

import pytest
import torch

from shapefirst.nodes.guidance_cutoff import settled
from shapefirst.tools import fuzz_matrix as fm
from shapefirst.tools import headless, model_families

pytestmark = pytest.mark.host

FUZZ_SEED = int(os.environ.get("SHAPEFIRST_FUZZ_SEED", fm.DEFAULT_SEED))
CI_CASES = int(os.environ.get("SHAPEFIRST_FUZZ_CASES", 50))
LONG_CASES = 500
SIZE = 8  # latent side (64x64 pixels): a tiny UNet call takes milliseconds on a CPU


def _pack_module(dotted):
    """A module fixture for one of the pack's modules, as the host loaded it."""
    @pytest.fixture(scope="module")
    def fixture(pack):
        return pack[dotted]
    return fixture


cutoff = _pack_module("nodes.guidance_cutoff.patch")
cs = _pack_module("nodes.guidance_cutoff.schedule")
cutoff_nodes = _pack_module("nodes.guidance_cutoff.nodes")
freq = _pack_module("nodes.frequency.nodes")
eos = _pack_module("nodes.eos_tokens.nodes")


@pytest.fixture(scope="module")
def models(tiny):
    unets = {arch: tiny.tiny_model(arch, seed=3) for arch in fm.UNET_ARCHITECTURES}
    return {**unets, **{family: tiny.tiny_family_model(family, seed=3) for family in fm.FAMILY_ARCHITECTURES}}


@pytest.fixture(scope="module")
def clips(tiny):
    return {arch: tiny.tiny_clip(arch, seed=3) for arch in fm.UNET_ARCHITECTURES}


@pytest.fixture(scope="module")
def conds(clips, tiny):
    """Encoded prompts for the UNets; random embeddings of each family's shapes for the DiTs."""
    import nodes
    encode = nodes.CLIPTextEncode()
    families = {family: tiny.family_inputs(family, seed=3)[:2] for family in fm.FAMILY_ARCHITECTURES}
    return {**{arch: (encode.encode(clip, "a red cube on a wooden table")[0], encode.encode(clip, "")[0])
               for arch, clip in clips.items()}, **families}


@pytest.fixture(scope="module")
def negatives(clips, tiny):
    """A negative prompt's conditioning per drawn text (``fm.NEGATIVE_PROMPTS``): encoded for the
    UNets; for the DiTs another random embedding of the family's shapes per text."""
    import nodes
    encode = nodes.CLIPTextEncode()
    out = {}
    for i, text in enumerate(fm.NEGATIVE_PROMPTS):
        out.update({(arch, text): encode.encode(clip, text)[0] for arch, clip in clips.items()})
        out.update({(family, text): tiny.family_inputs(family, seed=11 + i)[0] for family in fm.FAMILY_ARCHITECTURES})
    return out


def random_latent(case):
    """[batch, 4, 8, 8] for the UNets; a DiT or video family's own empty-latent shape (8x8, or
    2 frames of 6x8; Qwen-Image one frame)."""
    shape = (case.batch, 4, SIZE, SIZE)
    if case.architecture in fm.FAMILY_ARCHITECTURES:
        shape = model_families.empty_latent(case.architecture, True, case.batch).shape
    return torch.randn(shape, generator=torch.Generator().manual_seed(case.noise_seed)) * 0.5


def tiny_controlnet(tiny, model, seed=4):
    """A ControlNet of the model's own shape (the host's cldm class, a few channels wide,
    seeded random weights, zero convolutions not zero so it does change the UNet)."""
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.model_management
    import comfy.ops
    config = dict(model.model.model_config.unet_config)
    config.pop("out_channels", None)
    config.update(hint_channels=3, dtype=torch.float32, device=comfy.model_management.unet_offload_device(),
                  operations=comfy.ops.disable_weight_init)
    control_model = comfy.cldm.cldm.ControlNet(**config)
    tiny.randomize(control_model, seed)
    return comfy.controlnet.ControlNet(control_model, load_device=comfy.model_management.get_torch_device())


@pytest.fixture(scope="module")
def controlnets(tiny, models):
    return {arch: tiny_controlnet(tiny, models[arch]) if arch in fm.UNET_ARCHITECTURES else None
            for arch in models}


# ---------------------------------------------------------------- recording

class Evaluation:
    """One model evaluation (one call of ComfyUI's calc_cond_batch slot)."""

    def __init__(self, sigma, branches):
        self.sigma = sigma
        self.branches = branches  # (cond asked for, uncond asked for)
        self.calls = []  # UNet calls made for it: (batch, cond_or_uncond, spatial shape)
        self.extra = []  # UNet calls other patches made outside the slot after it (PAG, SAG, SLG)
        self.forwards = 0  # of self.calls, those the diffusion model really ran (EasyCache skips some)
        self.extra_forwards = 0  # the same of self.extra
        self.relative = None  # max over the batch of ||eps_c - eps_u|| / ||eps_u|| when both ran
        self.predictions = None  # (cond, uncond) x0 predictions when both ran (the automatic mode's measure)
        self.uncond_text = None  # the unconditional branch's text embedding as the slot got it

    @property
    def full(self):
        return all(self.branches)


class Recorder:
    """Logs evaluations, UNet calls and sampler callbacks of a run, in the order they happen.

    Installed beneath the cutoff (the cutoff chains it like any earlier slot function) and
    after the other patches, through the host's own slots: calc_cond_batch and the UNet
    function wrapper. Adds no computation of its own to the run.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self.events = []  # Evaluation or ("callback", step, x0, x)
        self.predictions = []  # per evaluation the sampler asked for: (sigma, whether it reached the slot)
        self.schedule = None
        self.in_slot = False
        self.current = None

    @property
    def evaluations(self):
        return [e for e in self.events if isinstance(e, Evaluation)]

    @property
    def callbacks(self):
        return [e for e in self.events if not isinstance(e, Evaluation)]

    @property
    def skipped_predictions(self):
        """Evaluations a cache (LazyCache) answered without the slot: the sampler asked, no UNet ran."""
        return sum(not ran for _, ran in self.predictions)

    @property
    def skipped_forwards(self):
        """UNet calls whose diffusion model did not run (EasyCache answered from its cache)."""
        return sum(len(e.calls) + len(e.extra) - e.forwards - e.extra_forwards for e in self.evaluations)

    def install(self, model):
        import comfy.patcher_extension
        import comfy.samplers
        recorded = model.clone()
        previous = recorded.model_options.get("sampler_calc_cond_batch_function")

        def slot(args):
            conds = args["conds"]
            if self.schedule is None:
                self.schedule = args["model_options"]["transformer_options"]["sample_sigmas"].tolist()
            evaluation = Evaluation(float(args["sigma"].max()), tuple(c is not None for c in conds))
            evaluation.uncond_text = text_embedding(conds[1])
            self.events.append(evaluation)
            self.current, self.in_slot = evaluation, True
            try:
                if previous is not None:
                    out = previous(args)
                else:
                    out = comfy.samplers.calc_cond_batch(args["model"], conds, args["input"], args["sigma"],
                                                         args["model_options"])
            finally:
                self.in_slot = False
            if evaluation.full:
                x = args["input"]
                dims = tuple(range(1, x.ndim))
                # eps = (x - x0) / sigma, so the sigma cancels in the ratio (README: adaptive mode)
                norm = torch.linalg.vector_norm
                ratio = norm((out[0] - out[1]).float(), dim=dims) / norm((x - out[1]).float(), dim=dims)
                evaluation.relative = float(ratio.max())
                evaluation.predictions = (out[0].detach().clone(), out[1].detach().clone())
            return out

        def unet(apply_model, args):
            call = (args["input"].shape[0], tuple(args["cond_or_uncond"]), tuple(args["input"].shape[2:]))
            (self.current.calls if self.in_slot else self.current.extra).append(call)
            return apply_model(args["input"], args["timestep"], **args["c"])

        def predict_noise(executor, x, timestep, *args, **kwargs):
            before = len(self.events)
            try:
                return executor(x, timestep, *args, **kwargs)
            finally:
                ran = any(isinstance(e, Evaluation) for e in self.events[before:])
                self.predictions.append((float(timestep.max()), ran))

        def forward(executor, *args, **kwargs):
            if self.in_slot:
                self.current.forwards += 1
            else:
                self.current.extra_forwards += 1
            return executor(*args, **kwargs)

        recorded.set_model_sampler_calc_cond_batch_function(slot)
        recorded.set_model_unet_function_wrapper(unet)
        wrappers = comfy.patcher_extension.WrappersMP
        # outermost around the evaluation (before LazyCache's), innermost around the diffusion
        # model (after EasyCache's): what the sampler asked for, and what the model really ran
        recorded.wrappers[wrappers.PREDICT_NOISE] = {"fuzz_recorder": [predict_noise],
                                                    **recorded.wrappers.get(wrappers.PREDICT_NOISE, {})}
        recorded.add_wrapper_with_key(wrappers.DIFFUSION_MODEL, "fuzz_recorder", forward)
        return recorded

    def callback(self, step, x0, x, total_steps):
        self.events.append(("callback", step, x0.clone(), x.clone()))


def text_embedding(prepared):
    """The text embedding of a branch's first conditioning as the host prepared it, or None."""
    crossattn = prepared[0].get("model_conds", {}).get("c_crossattn") if prepared else None
    return getattr(crossattn, "cond", None)


def sample(model, positive, negative, latent, *, steps, cfg, sampler, scheduler, denoise=1.0, seed=0, callback=None):
    """comfy.sample.sample as the KSampler node calls it."""
    import comfy.sample
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                               denoise=denoise, callback=callback, disable_pbar=True, seed=seed)


# ---------------------------------------------------------------- the host's other patches

def apply_patches(case, model, positive, negative, control_net):
    """The case's patches through the host nodes' own methods, as the executor calls them;
    its cache node last."""
    import nodes
    from comfy_extras import (nodes_apg, nodes_cfg, nodes_easycache, nodes_freelunch, nodes_mahiro,
                              nodes_model_advanced, nodes_pag, nodes_sag, nodes_slg, nodes_tcfg)
    for name, p in sorted(case.patches.items()):
        if name == "pag":
            model = nodes_pag.PerturbedAttentionGuidance.execute(model, p["scale"]).result[0]
        elif name == "sag":
            model = nodes_sag.SelfAttentionGuidance.execute(model, p["scale"], p["blur_sigma"]).result[0]
        elif name == "slg":
            model = nodes_slg.SkipLayerGuidanceDiT.execute(
                model, p["scale"], p["start_percent"], p["end_percent"], "7, 8, 9", "7, 8, 9",
                p["rescaling_scale"]).result[0]
        elif name == "slg_simple":
            model = nodes_slg.SkipLayerGuidanceDiTSimple.execute(
                model, p["start_percent"], p["end_percent"], "7, 8, 9", "7, 8, 9").result[0]
        elif name == "apg":
            model = nodes_apg.APG.execute(model, p["eta"], p["norm_threshold"], p["momentum"]).result[0]
        elif name == "cfg_zero_star":
            model = nodes_cfg.CFGZeroStar.execute(model).result[0]
        elif name == "freeu":
            model = nodes_freelunch.FreeU().patch(model, p["b1"], p["b2"], p["s1"], p["s2"])[0]
        elif name == "controlnet":
            hint = torch.rand(1, SIZE * 8, SIZE * 8, 3, generator=torch.Generator().manual_seed(case.noise_seed))
            pos, neg = nodes.ControlNetApplyAdvanced().apply_controlnet(
                positive, negative, control_net, hint, p["strength"], p["start_percent"], p["end_percent"])
            # "positive": attached to the prompt only, the case users report as breaking guidance tools
            positive, negative = (pos, negative) if p["target"] == "positive" else (pos, neg)
        elif name == "area":
            (area,) = nodes.ConditioningSetArea().append(positive, p["width"], p["height"], p["x"], p["y"],
                                                         p["strength"])
            (positive,) = nodes.ConditioningCombine().combine(positive, area)
        elif name == "rescale_cfg":
            model = nodes_model_advanced.RescaleCFG().patch(model, p["multiplier"])[0]
        elif name == "mahiro":
            model = nodes_mahiro.Mahiro.execute(model).result[0]
        elif name == "tcfg":
            model = nodes_tcfg.TCFG.execute(model).result[0]
        elif name == "cfg_norm":
            model = nodes_cfg.CFGNorm.execute(model, p["strength"]).result[0]
        else:
            raise AssertionError(f"no host node for the drawn patch {name!r}")
    if case.cache:
        node = {"LazyCache": nodes_easycache.LazyCacheNode, "EasyCache": nodes_easycache.EasyCacheNode}
        inputs = {k: v for k, v in case.cache.items() if k != "node"}
        model = node[case.cache["node"]].execute(model, verbose=False, **inputs).result[0]
    return model, positive, negative


# ---------------------------------------------------------------- the fuzz matrix

def resolve_settings(cs, case, schedule):
    """The case's cutoff inputs as CutoffSettings; a sigma given as ("at", k) becomes the
    schedule's k-th sigma exactly (the "at or below" edge)."""
    values = {**case.cutoff, **case.start}
    for name in ("cutoff_sigma", "guidance_start_sigma"):
        if isinstance(values.get(name), tuple) and values[name][0] == "at":
            values[name] = schedule[min(values[name][1], len(schedule) - 1)]
    if isinstance(values.get("guidance_start_sigma"), tuple):  # ("above", f): f times the cutoff sigma
        values["guidance_start_sigma"] = values["cutoff_sigma"] * values["guidance_start_sigma"][1]
    if values.get("guidance_start_sigma", 0) and values["guidance_start_sigma"] <= values["cutoff_sigma"]:
        values.pop("guidance_start_sigma")  # (a schedule that repeats a sigma: no start above the cutoff there)
    return cs.CutoffSettings(cutoff_mode=case.mode, keep=case.keep, **values)


def expected_guided(cs, settings, schedule, evaluations, cfg=None):
    """Per evaluation, whether it should run both branches (README, "Which evaluations are
    guided"), and whether an adaptive decision was too close to call; none before the guidance start.
    ``cfg``: the sampler's cfg (the automatic mode measures with it)."""
    sigmas = [e.sigma for e in evaluations]
    before = fm.before_start(sigmas, cs.start_sigma_for(settings, schedule))
    if settings.cutoff_mode == cs.MODE_AUTOMATIC:
        # every guided evaluation may decide (no minimum): the rule of the adaptive mode on the shape measure
        keep_cond = settings.keep == cs.KEEP_COND
        measured = [None if e.predictions is None else float(settled.batch_effect(*e.predictions, cfg, keep_cond))
                    for e in evaluations]
        guided, ambiguous = fm.adaptive_branches(measured, sigmas, math.inf, None, settings.auto_threshold)
        return [g and not b for g, b in zip(guided, before)], ambiguous
    if settings.cutoff_mode == cs.MODE_ADAPTIVE:
        latest = cs.cutoff_sigma_for(settings, schedule)
        floor = cs.adaptive_floor_sigma(settings, schedule)
        guided, ambiguous = fm.adaptive_branches([e.relative for e in evaluations], sigmas, floor, latest,
                                                 settings.adaptive_threshold)
        return [g and not b for g, b in zip(guided, before)], ambiguous
    cut = cs.cutoff_sigma_for(settings, schedule)
    guided, dropped = [], False
    for sigma, early in zip(sigmas, before):
        dropped = dropped or (cut is not None and sigma <= cut)
        guided.append(not dropped and not early)
    return guided, False


def sag_area_failure(case, error):
    """True when ``error`` is stock ComfyUI's own failure (v0.3.64, no ShapeFirst node) on SAG
    with an area conditioning. SAG keeps the attention of an evaluation's last UNet call only
    (its TODO on chunked batches): with an area that is the area crop's, and create_blur_map
    factors its token count by the whole latent's aspect ratio; when no factor fits (fewer
    than 4 tokens always, 32 for a 512x256 area on a 1024x1024 SD1.5 image) it fails with
    this TypeError at the first evaluation."""
    if not ("sag" in case.patches and "area" in case.patches and isinstance(error, TypeError)):
        return False
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return frame.name == "create_blur_map" and frame.filename.endswith("nodes_sag.py")


@dataclass
class StockRun:
    """A case run without the cutoff, and what it takes to run it again with it."""
    model: object
    positive: list
    negative: list
    latent: torch.Tensor
    run: dict
    recorder: "Recorder"
    output: torch.Tensor = None
    error: Exception = None
    evaluations: list = None
    callbacks: list = None
    schedule: list = None
    predictions: list = None

    def sample(self, model):
        return sample(model, self.positive, self.negative, self.latent, **self.run)


def run_stock(case, models, conds, negatives, controlnets):
    """The case as ComfyUI runs it without ShapeFirst, recorded (SAG's own area failure kept)."""
    positive, negative = conds[case.architecture]
    if case.negative:
        negative = negatives[case.architecture, case.negative]
    model, positive, negative = apply_patches(case, models[case.architecture], positive, negative,
                                              controlnets[case.architecture])
    recorder = Recorder()
    latent = random_latent(case)
    run = dict(steps=case.steps, cfg=case.cfg, sampler=case.sampler, scheduler=case.scheduler, denoise=case.denoise,
               seed=case.noise_seed, callback=recorder.callback)
    stock = StockRun(recorder.install(model), positive, negative, latent, run, recorder)
    try:
        stock.output = stock.sample(stock.model)
    except TypeError as error:
        if not sag_area_failure(case, error):
            raise
        stock.error = error
    stock.evaluations, stock.callbacks, stock.schedule = recorder.evaluations, recorder.callbacks, recorder.schedule
    stock.predictions = recorder.predictions
    recorder.reset()
    return stock


def refused_or_failing_as_stock(case, cs, settings, stock, patched_model, patch):
    """Checks the runs that must not sample: refused up front, or failing as stock does.
    True when the case was one of them."""
    where, schedule = case.describe(), stock.schedule
    cut = cs.cutoff_sigma_for(settings, schedule)
    no_guided_step = (cut is not None and cut >= schedule[0]) or (
        case.mode == cs.MODE_ADAPTIVE and case.cutoff["adaptive_min_steps"] == 0)
    start = cs.start_sigma_for(settings, schedule)
    if "sag" in case.patches and start is not None and schedule[0] > start and settings.keep_before_start == "cond":
        # the same for keep_before_start=cond: the first evaluations never run the unconditional branch
        with pytest.raises(ValueError, match="keep_before_start 'cond' with a guidance start"):
            stock.sample(patched_model)
        return True
    if "sag" in case.patches and case.keep == "cond" and no_guided_step and (start is None or schedule[0] <= start):
        # SAG reads the unconditional branch, which keep=cond without a guided step never runs:
        # refused up front (README) instead of SAG failing deep inside ComfyUI
        with pytest.raises(ValueError, match="keep 'cond' with no guided step"):
            stock.sample(patched_model)
        return True
    easycache = (case.cache or {}).get("node") == "EasyCache"
    if easycache and start is not None and schedule[0] > start and patched_model.get_model_object(
            "model_sampling").percent_to_sigma(case.cache["start_percent"]) > start:
        # EasyCache active before the start would cache only the branch that runs there and fail inside
        # the host where both start: refused up front, naming it
        with pytest.raises(ValueError, match="EasyCache with a guidance start"):
            stock.sample(patched_model)
        return True
    if stock.error is not None:
        # the host fails without ShapeFirst: the cutoff must neither hide nor change that
        with pytest.raises(TypeError) as raised:
            stock.sample(patched_model)
        assert sag_area_failure(case, raised.value) and str(raised.value) == str(stock.error), where
        assert len(stock.recorder.evaluations) == len(stock.evaluations), f"{where}: failed at another evaluation"
        assert "the run stopped early" in patch.last_run.summary(), where
        return True
    return False


def same_as_stock_until(evals):
    """How many of the first evaluations a run shares with stock when its evaluations may
    depend on the latent (LazyCache skips from what it measured): up to the first one-branch
    evaluation, the run is stock's; its output is the first that differs."""
    return next((i + 1 for i, e in enumerate(evals) if not e.full), len(evals))


def check_evaluations(case, cs, settings, stock, evals, summary):
    """Which evaluations ran both branches, and that each ran exactly the UNet calls it should."""
    where, schedule, stock_evals = case.describe(), stock.schedule, stock.evaluations
    walks = case.sampler not in fm.OFF_SCHEDULE_SAMPLERS
    guided, ambiguous = expected_guided(cs, settings, schedule, evals, case.cfg)
    before = fm.before_start([e.sigma for e in evals], cs.start_sigma_for(settings, schedule))
    # the evaluations compared with stock's, one by one: all of them, but with LazyCache only
    # those before it can decide differently (it skips evaluations from the latent it measured)
    aligned = same_as_stock_until(evals) if case.cache.get("node") == "LazyCache" else len(evals)
    if walks:
        # these samplers evaluate at sigmas fixed by the schedule, whatever the latent
        assert [e.sigma for e in evals[:aligned]] == [e.sigma for e in stock_evals[:aligned]], \
            f"{where}: evaluation sigmas differ"
        if aligned == len(evals):
            assert len(evals) == len(stock_evals), f"{where}: evaluation sigmas differ"
    if not ambiguous:
        got = [e.full for e in evals]
        sigmas = [e.sigma for e in evals]
        assert got == guided, (f"{where}: guided evaluations {got}, expected {guided} "
                               f"(sigmas {sigmas}, schedule {schedule}; {summary})")
    for i, evaluation in enumerate(evals):
        walks_with_stock = walks and i < aligned
        if evaluation.full:
            if walks_with_stock:
                assert evaluation.calls == stock_evals[i].calls, f"{where}: evaluation {i}: UNet calls differ"
        else:
            kept = settings.branch_before_start if before[i] else settings.kept_branch
            assert evaluation.branches == tuple(b == kept for b in (0, 1)), f"{where}: evaluation {i}"
            assert all(set(branches) == {kept} for _, branches, _ in evaluation.calls), \
                f"{where}: evaluation {i} ran {evaluation.calls}, only branch {kept} expected"
            if walks_with_stock:
                # the same calls as stock, each with half the rows: only the kept branch's
                assert sorted(evaluation.calls) == fm.restrict_calls(stock_evals[i].calls, kept), \
                    f"{where}: evaluation {i}: {evaluation.calls} vs stock {stock_evals[i].calls}"
        if walks_with_stock:
            # patches that call the UNet themselves (PAG, SAG, SLG) still do, after the cutoff too
            assert evaluation.extra == stock_evals[i].extra, f"{where}: evaluation {i}: other patches' calls differ"


def check_unconditional(case, cs, settings, schedule, evals, empty, negative):
    """Which text the unconditional branch ran: the graph's negative prompt while both branches
    run; alone, the empty prompt where its keep is 'uncond' (after the cut; before the guidance
    start: keep_before_start) and the cutoff was given it, else the negative ('negative': on purpose)."""
    where = case.describe()
    before = fm.before_start([e.sigma for e in evals], cs.start_sigma_for(settings, schedule))
    for i, evaluation in enumerate(evals):
        if evaluation.uncond_text is None:  # (the unconditional branch did not run, or has no text embedding)
            continue
        keep = (settings.keep_before_start if before[i] else settings.keep) if not evaluation.full else None
        expected = empty if case.empty and keep == cs.KEEP_UNCOND else negative
        assert torch.equal(evaluation.uncond_text, expected[0][0]), \
            f"{where}: evaluation {i} (keep {keep}) ran the {'negative' if expected is empty else 'empty'} prompt"


def check_trajectory_until_the_cut(where, recorder, stock_callbacks):
    """Every sampler callback that only full evaluations preceded carries the stock x and x0."""
    all_full, index = True, 0
    for event in recorder.events:
        if isinstance(event, Evaluation):
            all_full = all_full and event.full
            continue
        if not all_full:
            break
        _, step, x0, x = event
        _, stock_step, stock_x0, stock_x = stock_callbacks[index]
        assert step == stock_step, where
        assert torch.equal(x, stock_x) and torch.equal(x0, stock_x0), f"{where}: trajectory differs at step {step}"
        index += 1


def check_cache(case, stock, recorder, run_state=None, cache_start_sigma=None):
    """The cache's own signature beside the cutoff (the same graph without the cutoff: stock).
    Until the first one-branch evaluation the run is stock's, the cache's decisions included:
    LazyCache skips the same evaluations (the sampler asks, no slot runs), EasyCache the same
    diffusion-model forwards. After it the latent differs and so may what the cache decides
    (s20240531-c0140: LazyCache skipped 1 evaluation in stock, 2 beside the cutoff), but where
    stock skipped something the cache still does. (EasyCache is counted where the model runs its
    DIFFUSION_MODEL wrappers: SD3's MMDiT does not in 0.3.75, and EasyCache never skips there.)
    Not required where the cache lost the branch it follows at the cut (the summary says so), nor where
    the cut came before the cache started (``cache_start_sigma``: it never saw a guided step): the
    automatic mode's early cuts, s20240531-c0532 and c0379."""
    where, evals = case.describe(), recorder.evaluations
    shared = same_as_stock_until(evals)  # evaluations shared with stock, the first one-branch one included
    if case.cache["node"] == "LazyCache":
        asked = [i for i, (_, ran) in enumerate(recorder.predictions) if ran]
        until = asked[shared - 1] + 1 if shared else 0
        assert recorder.predictions[:until] == stock.predictions[:until], \
            f"{where}: LazyCache skipped {recorder.predictions[:until]}, stock {stock.predictions[:until]}"
        if shared == len(evals):
            assert recorder.predictions == stock.predictions, where
        skipped = (sum(not ran for _, ran in stock.predictions), recorder.skipped_predictions)
    else:
        full_prefix = shared - (shared and not evals[shared - 1].full)
        got = [(e.forwards, e.extra_forwards) for e in evals[:full_prefix]]
        assert got == [(e.forwards, e.extra_forwards) for e in stock.evaluations[:full_prefix]], \
            f"{where}: EasyCache ran other forwards than stock before the cut"
        if not any(e.forwards for e in stock.evaluations):
            return
        stock_skipped = sum(len(e.calls) + len(e.extra) - e.forwards - e.extra_forwards for e in stock.evaluations)
        skipped = (stock_skipped, recorder.skipped_forwards)
    if run_state is not None and (run_state.cache_lost_its_branch or (
            run_state.drop_sigma is not None and cache_start_sigma is not None
            and run_state.drop_sigma > cache_start_sigma)):
        return
    assert skipped[1] or not skipped[0], \
        f"{where}: {case.cache['node']} skipped {skipped[0]} in stock, nothing beside the cutoff"


def check_callbacks(case, run_state, recorder, stock):
    """One callback per step, numbered from 0; as many as stock's, except where the sampler sizes
    its steps from the latent (dpm_adaptive) and an evaluation differed from stock's (a dropped
    branch: the cut, or the guidance start from the first step; case s20240531-c0224)."""
    where = case.describe()
    steps = [event[1] for event in recorder.callbacks]
    assert steps == list(range(len(steps))), f"{where}: callback steps {steps}"
    if case.sampler in fm.STEP_SIZING_SAMPLERS and run_state.single_evaluations:
        assert steps, where
        return
    assert len(recorder.callbacks) == len(stock.callbacks), where


def run_case(case, models, conds, negatives, controlnets, cutoff, cs):
    """Runs the case without and with the cutoff and checks every invariant that applies."""
    where = case.describe()
    stock = run_stock(case, models, conds, negatives, controlnets)
    settings = resolve_settings(cs, case, stock.schedule)
    # the empty prompt (the fixture's stand-in for a family): the negative when that is empty
    empty = conds[case.architecture][1] if case.empty else None
    patched_model, patch = cutoff.apply_cutoff(stock.model, settings, empty_conditioning=empty)
    if refused_or_failing_as_stock(case, cs, settings, stock, patched_model, patch):
        return
    out = stock.sample(patched_model)
    recorder, stock_evals = stock.recorder, stock.evaluations
    evals = recorder.evaluations
    summary = patch.last_run.summary()

    assert torch.isfinite(stock.output).all(), f"{where}: the stock run itself is not finite"
    assert torch.isfinite(out).all(), f"{where}: non-finite output"
    assert out.shape == stock.output.shape, where

    if all(e.branches == (True, False) for e in stock_evals):
        # cfg 1 and nothing forces the unconditional branch: a documented no-op
        assert torch.equal(out, stock.output), f"{where}: cfg 1 must be a no-op"
        assert [e.branches for e in evals] == [e.branches for e in stock_evals], where
        assert "no-op" in summary, f"{where}: {summary}"
        return
    assert all(e.full for e in stock_evals), f"{where}: stock runs mixed one- and two-branch evaluations"

    check_evaluations(case, cs, settings, stock, evals, summary)
    check_unconditional(case, cs, settings, stock.schedule, evals, conds[case.architecture][1], stock.negative)
    run_state = patch.last_run
    assert run_state.full_evaluations == sum(e.full for e in evals), where
    assert run_state.single_evaluations == sum(not e.full for e in evals), where
    check_trajectory_until_the_cut(where, recorder, stock.callbacks)
    check_callbacks(case, run_state, recorder, stock)
    if case.cache:
        cache_start = patched_model.get_model_object("model_sampling").percent_to_sigma(case.cache["start_percent"])
        check_cache(case, stock, recorder, run_state, cache_start)

    if run_state.single_evaluations == 0:
        # the cutoff at or past the last step (or never reached): the stock sampler, bit for bit
        assert torch.equal(out, stock.output), f"{where}: no evaluation dropped a branch, yet the result differs"
        assert "text kept for all" in summary, f"{where}: {summary}"
    elif run_state.before_start_evaluations:
        first = "text unguided" if settings.keep_before_start == "cond" else "no text"
        assert summary.startswith(f"ShapeFirst guidance cutoff: {first} for step"), f"{where}: {summary}"
    else:
        assert "text dropped after step" in summary, f"{where}: {summary}"


def _fuzz_cases(start, count):
    return [pytest.param(case, id=case.case_id) for case in fm.draw_cases(FUZZ_SEED, start, count)]


@pytest.mark.parametrize("case", _fuzz_cases(0, CI_CASES))
def test_fuzz_matrix(case, models, conds, negatives, controlnets, cutoff, cs):
    run_case(case, models, conds, negatives, controlnets, cutoff, cs)


@pytest.mark.slow
@pytest.mark.parametrize("case", _fuzz_cases(CI_CASES, LONG_CASES))
def test_fuzz_matrix_long(case, models, conds, negatives, controlnets, cutoff, cs):
    run_case(case, models, conds, negatives, controlnets, cutoff, cs)


# ---------------------------------------------------------------- nodes, as a workflow runs them

CUTOFF_DEFAULTS = dict(cutoff_mode="guided steps", guided_steps=2, guided_fraction=0.5, cutoff_sigma=1.0,
                       keep="uncond", adaptive_threshold=0.15, adaptive_min_steps=1, adaptive_max_steps=1000)


def cutoff_node(cutoff_nodes, model, **inputs):
    """ShapeFirstGuidanceCutoff's output, and the patch in it (for its last run's record)."""
    patched = cutoff_nodes.ShapeFirstGuidanceCutoff.execute(model, **{**CUTOFF_DEFAULTS, **inputs}).result[0]
    return patched, patched.model_options["sampler_calc_cond_batch_function"].__self__


def ksampler(model, positive, negative, latent, sampler="euler", steps=4, cfg=7.0, seed=5, scheduler="karras"):
    import nodes
    return nodes.KSampler().sample(model, seed, steps, cfg, sampler, scheduler, positive, negative,
                                   {"samples": latent})[0]["samples"]


def guider_sample(cutoff_nodes, model, positive, negative, latent, sampler="euler", steps=4, cfg=7.0, seed=5,
                  **inputs):
    """ShapeFirstCutoffGuider -> SamplerCustomAdvanced, with the host's scheduler, sampler and noise nodes."""
    from comfy_extras.nodes_custom_sampler import BasicScheduler, KSamplerSelect, RandomNoise, SamplerCustomAdvanced
    guider = cutoff_nodes.ShapeFirstCutoffGuider.execute(model, positive, negative, cfg,
                                                         **{**CUTOFF_DEFAULTS, **inputs}).result[0]
    (sigmas,) = BasicScheduler().get_sigmas(model, "karras", steps, 1.0)
    (sampler_object,) = KSamplerSelect().get_sampler(sampler)
    (noise,) = RandomNoise().get_noise(seed)
    return SamplerCustomAdvanced().sample(noise, guider, sampler_object, sigmas, {"samples": latent})[0]["samples"]


def trace_node(freq, model, positive, negative, latent, sampler="euler", steps=4, cfg=7.0, seed=5):
    """ShapeFirstFrequencyTrace as the executor prepares it; returns (latent, recorded points)."""
    import json
    node = freq.ShapeFirstFrequencyTrace.PREPARE_CLASS_CLONE({"UNIQUE_ID": "9"})
    out = node.execute(model=model, positive=positive, negative=negative, latent_image={"samples": latent}, seed=seed,
                       steps=steps, cfg=cfg, sampler_name=sampler, scheduler="karras", denoise=1.0,
                       cutoff_radius=0.3, strip_columns=2)
    return out.args[0]["samples"], json.loads(out.args[3])["points"]


def options_snapshot(model):
    """What a node could leave behind on a model: its options and wrappers, as text."""
    return repr(model.model_options), repr(model.wrappers)


def seeded_latent(batch, seed=1, channels=4):
    return torch.randn(batch, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 0.5


# ---------------------------------------------------------------- leaks and state

# (how the workflow samples, sampler, steps, batch, cutoff inputs): every mode, both kept
# branches, single- and multi-evaluation samplers, the MODEL patch, the GUIDER and the trace node.
WORKFLOWS = [
    ("ksampler", "euler", 4, 1, dict(guided_steps=2)),
    ("guider", "heun", 4, 2, dict(cutoff_mode="adaptive", adaptive_threshold=0.5, adaptive_min_steps=1)),
    ("ksampler", "dpmpp_2m", 4, 1, dict(cutoff_mode="sigma", cutoff_sigma=2.0, keep="cond")),
    ("trace", "euler_ancestral", 4, 2, dict(cutoff_mode="fraction of steps", guided_fraction=0.5)),
]
RUNS, WARM_UP = 100, 12
RSS_BOUND = 64 * 2**20  # bytes; a leak of a model copy per run would exceed it many times over


def live_counts(cutoff):
    """Live objects that a leaking run would leave behind, after a full garbage collection."""
    import gc
    import warnings

    import comfy.model_management
    import comfy.model_patcher
    import comfy.samplers
    gc.collect()
    kinds = {"tensors": torch.Tensor, "model patchers": comfy.model_patcher.ModelPatcher,
             "guiders": comfy.samplers.CFGGuider, "cutoff patches": cutoff.GuidanceCutoffPatch,
             "cutoff runs": cutoff.CutoffRun}
    counts = dict.fromkeys(kinds, 0)
    with warnings.catch_warnings():  # isinstance() wakes deprecated module attributes up
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            for name, kind in kinds.items():
                if isinstance(obj, kind):
                    counts[name] += 1
    counts["loaded models"] = len(comfy.model_management.current_loaded_models)
    return counts


def rss_bytes():
    """Resident memory of this process (Linux), or None where /proc is not there."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def test_hundred_workflow_runs_hold_no_tensors_memory_or_state(models, conds, cutoff_nodes, cutoff, freq):
    model = models["sd15"]
    positive, negative = conds["sd15"]
    model_before = options_snapshot(model)
    first_results = {}

    def run_workflow(i):
        kind, sampler, steps, batch, inputs = WORKFLOWS[i % len(WORKFLOWS)]
        latent = seeded_latent(batch, seed=i % len(WORKFLOWS))
        if kind == "guider":
            return guider_sample(cutoff_nodes, model, positive, negative, latent, sampler, steps, **inputs)
        patched, _ = cutoff_node(cutoff_nodes, model, **inputs)
        if kind == "trace":
            return trace_node(freq, patched, positive, negative, latent, sampler, steps)[0]
        return ksampler(patched, positive, negative, latent, sampler, steps)

    for i in range(RUNS):
        if i == WARM_UP:
            counts_before, rss_before = live_counts(cutoff), rss_bytes()
        out = run_workflow(i)
        # no state carried from one run into the next: every repeat is bit-identical
        expected = first_results.setdefault(i % len(WORKFLOWS), out)
        assert torch.equal(out, expected), f"run {i} ({WORKFLOWS[i % len(WORKFLOWS)]}) differs from its first run"
        del out, expected
    counts_after, rss_after = live_counts(cutoff), rss_bytes()
    assert counts_after == counts_before, \
        f"live objects grew over {RUNS - WARM_UP} runs: {counts_before} -> {counts_after}"
    if rss_before is not None:
        growth = rss_after - rss_before
        assert growth < RSS_BOUND, f"resident memory grew by {growth / 2**20:.1f} MiB over {RUNS - WARM_UP} runs"
    assert options_snapshot(model) == model_before


def test_one_patched_model_in_two_samplers_behaves_like_two_fresh_ones(models, conds, cutoff_nodes):
    """One cutoff node feeding two samplers of a workflow (run one after the other, as the
    executor does), then the first again: adaptive state starts afresh each run and sampler."""
    model = models["sd15"]
    positive, negative = conds["sd15"]
    inputs = dict(cutoff_mode="adaptive", adaptive_threshold=10.0, adaptive_min_steps=2)
    wide, narrow = seeded_latent(2, seed=3), seeded_latent(1, seed=4)
    patched, patch = cutoff_node(cutoff_nodes, model, **inputs)
    first = ksampler(patched, positive, negative, wide, "euler", steps=6)
    first_run = patch.last_run
    second = ksampler(patched, positive, negative, narrow, "heun", steps=4, seed=9)
    second_run = patch.last_run
    again = ksampler(patched, positive, negative, wide, "euler", steps=6)
    fresh_first = ksampler(cutoff_node(cutoff_nodes, model, **inputs)[0], positive, negative, wide, "euler", steps=6)
    fresh_second = ksampler(cutoff_node(cutoff_nodes, model, **inputs)[0], positive, negative, narrow, "heun",
                            steps=4, seed=9)
    assert torch.equal(first, fresh_first) and torch.equal(again, fresh_first)
    assert torch.equal(second, fresh_second)
    # each run measured and dropped on its own: the minimum steps guided again, then the drop
    assert first_run.single_evaluations > 0 and second_run.single_evaluations > 0
    assert first_run.guided_steps() == patch.last_run.guided_steps() == 2  # min 2, huge threshold: exactly 2
    assert first_run.guidance_trace == patch.last_run.guidance_trace
    assert second_run.total_steps == 4 and second_run.guidance_trace != first_run.guidance_trace


# ---------------------------------------------------------------- interrupts

class Interrupter:
    """Raises the host's interrupt flag at a chosen UNet call, as the Cancel button (POST
    /interrupt) does while a run is in the middle of a step."""

    def __init__(self):
        self.at = None
        self.calls = 0

    def arm(self, at):
        self.at, self.calls = at, 0

    def install(self, model):
        import comfy.model_management
        armed = model.clone()

        def unet(apply_model, args):
            if self.at is not None and self.calls == self.at:
                comfy.model_management.interrupt_current_processing(True)
            self.calls += 1
            return apply_model(args["input"], args["timestep"], **args["c"])

        armed.set_model_unet_function_wrapper(unet)
        return armed


@pytest.fixture
def server_progress_hook():
    """The progress hook ComfyUI's server installs (main.py): every progress update of a
    sampler raises InterruptProcessingException once the interrupt flag is set."""
    import comfy.model_management
    import comfy.utils
    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(
        lambda *args, **kwargs: comfy.model_management.throw_exception_if_processing_interrupted())
    yield
    comfy.utils.set_progress_bar_global_hook(previous)
    comfy.model_management.interrupt_current_processing(False)


@pytest.mark.parametrize("at_call", [1, 7], ids=["early", "late"])
@pytest.mark.parametrize("inputs", [dict(guided_steps=3),
                                    dict(cutoff_mode="adaptive", adaptive_threshold=0.5, adaptive_min_steps=1)],
                         ids=["fixed", "adaptive"])
def test_an_interrupted_cutoff_run_leaves_nothing_behind(models, conds, cutoff_nodes, server_progress_hook,
                                                         inputs, at_call):
    import comfy.model_management
    interrupter = Interrupter()
    model = interrupter.install(models["sd15"])
    positive, negative = conds["sd15"]
    latent = seeded_latent(2, seed=6)
    patched, patch = cutoff_node(cutoff_nodes, model, **inputs)
    before = options_snapshot(model), options_snapshot(patched)
    fresh = ksampler(cutoff_node(cutoff_nodes, model, **inputs)[0], positive, negative, latent, "heun", steps=6)

    interrupter.arm(at_call)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        ksampler(patched, positive, negative, latent, "heun", steps=6)
    interrupter.arm(None)
    assert not comfy.model_management.processing_interrupted()
    assert "stopped early" in patch.last_run.summary()
    # the flag is checked at the next progress update: at most one step (two heun evaluations) later
    assert patch.last_run.evaluations <= at_call + 2

    assert torch.equal(ksampler(patched, positive, negative, latent, "heun", steps=6), fresh)
    assert (options_snapshot(model), options_snapshot(patched)) == before


def test_an_interrupted_frequency_trace_leaves_nothing_behind(models, conds, cutoff_nodes, freq):
    """The trace node checks the interrupt itself at every step (no server hook needed)."""
    import comfy.model_management
    interrupter = Interrupter()
    model = interrupter.install(models["sd15"])
    positive, negative = conds["sd15"]
    latent = seeded_latent(1, seed=7)
    patched, _ = cutoff_node(cutoff_nodes, model, guided_steps=2)
    before = options_snapshot(patched)
    fresh_latent, fresh_points = trace_node(freq, cutoff_node(cutoff_nodes, model, guided_steps=2)[0], positive,
                                            negative, latent, steps=5)
    interrupter.arm(3)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        trace_node(freq, patched, positive, negative, latent, steps=5)
    interrupter.arm(None)
    again_latent, again_points = trace_node(freq, patched, positive, negative, latent, steps=5)
    assert torch.equal(again_latent, fresh_latent) and again_points == fresh_points
    assert options_snapshot(patched) == before


def _tiny_cutoff_workflow(steps, filename_prefix, adaptive_threshold=0.15):
    """Tiny checkpoint -> prompts -> Guidance Cutoff -> KSampler -> SaveLatent, API format."""
    return {
        "1": {"class_type": "ShapeFirstTinyCheckpoint", "inputs": {"architecture": "sd15", "seed": 0}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red cube", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "ShapeFirstGuidanceCutoff", "inputs": {
            "model": ["1", 0], **CUTOFF_DEFAULTS, "adaptive_threshold": adaptive_threshold}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "seed": 3, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "karras",
            "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["5", 0], "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": filename_prefix}},
    }


def _saved_latent(server, entry):
    import safetensors.torch
    (saved,) = entry["outputs"]["7"]["latents"]
    path = os.path.join(server.base_dir, "output", saved["subfolder"], saved["filename"])
    return safetensors.torch.load_file(path)["latent_tensor"]


def _post_interrupt(server):
    """POST /interrupt, as the frontend's Cancel button does (its answer has no body)."""
    import urllib.request
    request = urllib.request.Request(server.url + "/interrupt", data=b"{}",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def test_interrupt_through_the_server_leaves_nothing_behind(server):
    import time
    fresh = _saved_latent(server, server.run(_tiny_cutoff_workflow(6, "reliability_fresh"))[0])
    # a run long enough to be caught in the middle; POST /interrupt as the Cancel button does
    prompt_id = server.queue(_tiny_cutoff_workflow(10000, "reliability_interrupted"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        entry = server.get(f"/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            break
        if "/10000" in server.log_text():  # the sampler's progress bar: it is sampling now
            _post_interrupt(server)
        time.sleep(0.5)
    assert entry is not None, "the long run was neither interrupted nor finished"
    assert entry["status"]["status_str"] == "error"
    assert any(message[0] == "execution_interrupted" for message in entry["status"]["messages"])
    assert "the run stopped early (interrupted or failed)" in server.log_text()
    # the same workflow again (a changed unused input makes ComfyUI run it instead of reusing
    # its cache): bit-identical to the run before the interrupt
    entry, _ = server.run(_tiny_cutoff_workflow(6, "reliability_after", adaptive_threshold=0.2))
    assert torch.equal(_saved_latent(server, entry), fresh)


# ---------------------------------------------------------------- the README's bad-input table

NAN, INF = float("nan"), float("inf")
BAD_CUTOFF_INPUTS = [
    ("guided_steps", -1), ("guided_steps", 2.5), ("guided_fraction", 1.5), ("guided_fraction", -0.1),
    ("guided_fraction", NAN), ("cutoff_sigma", NAN), ("cutoff_sigma", -1.0), ("cutoff_sigma", INF),
    ("adaptive_threshold", NAN), ("adaptive_threshold", -0.5), ("adaptive_min_steps", -1),
    ("adaptive_max_steps", NAN), ("adaptive_min_steps", 2000), ("cutoff_mode", "halfway"), ("keep", "both"),
]


@pytest.mark.parametrize("name, value", BAD_CUTOFF_INPUTS, ids=[f"{n}={v}" for n, v in BAD_CUTOFF_INPUTS])
def test_bad_cutoff_input_is_refused_naming_it(cutoff_nodes, models, name, value):
    bad = {**CUTOFF_DEFAULTS, name: value}
    for node_class in (cutoff_nodes.ShapeFirstGuidanceCutoff, cutoff_nodes.ShapeFirstCutoffGuider):
        message = node_class.validate_inputs(**bad)  # what the executor asks before running anything
        assert isinstance(message, str) and name in message, message
    model = models["sd15"]
    before = options_snapshot(model)
    with pytest.raises(ValueError, match=name):  # and if validation is bypassed, the node still refuses
        cutoff_nodes.ShapeFirstGuidanceCutoff.execute(model, **bad)
    assert options_snapshot(model) == before


def test_bad_cutoff_input_through_the_server_names_it(server):
    prompt = _tiny_cutoff_workflow(4, "reliability_nan")
    prompt["4"]["inputs"]["guided_fraction"] = NAN  # json.dumps writes NaN, ComfyUI's parser reads it
    with pytest.raises(headless.WorkflowError, match="guided_fraction"):
        server.run(prompt)


def test_cfg_one_is_a_documented_noop(models, conds, reporting_cutoff, cutoff_nodes):
    model = models["sd15"]
    positive, negative = conds["sd15"]
    latent = seeded_latent(2)
    patched, _, messages = reporting_cutoff(model, guided_steps=1)
    out = ksampler(patched, positive, negative, latent, cfg=1.0)
    assert torch.equal(out, ksampler(model, positive, negative, latent, cfg=1.0))
    assert messages and "no-op, cfg is 1" in messages[-1]
    plan = cutoff_nodes.ShapeFirstCutoffGuider.execute(model, positive, negative, 1.0, **CUTOFF_DEFAULTS)
    assert "no second branch to drop" in plan.ui.as_dict()["text"][0]


def test_missing_negative_is_named(models, conds, cutoff_nodes):
    model = models["sd15"]
    positive, negative = conds["sd15"]
    latent = seeded_latent(1)
    for missing in (None, []):
        with pytest.raises(ValueError, match="negative is missing or empty"):
            cutoff_nodes.ShapeFirstCutoffGuider.execute(model, positive, missing, 7.0, **CUTOFF_DEFAULTS)
    patched, _ = cutoff_node(cutoff_nodes, model)
    before = options_snapshot(patched), [entry[0].clone() for entry in positive]
    # an empty conditioning list: stock ComfyUI would evaluate the unconditional branch as zeros
    with pytest.raises(ValueError, match="'negative'"):
        ksampler(patched, positive, [], latent)
    # at cfg 1 the negative is not used at all: the documented no-op, as stock
    assert torch.equal(ksampler(patched, positive, [], latent, cfg=1.0), ksampler(model, positive, [], latent, cfg=1.0))
    assert options_snapshot(patched) == before[0]
    assert all(torch.equal(entry[0], kept) for entry, kept in zip(positive, before[1]))


def test_missing_negative_through_the_server_is_named(server):
    prompt = _tiny_cutoff_workflow(4, "reliability_no_negative")
    del prompt["6"]["inputs"]["negative"]
    with pytest.raises(headless.WorkflowError, match="Required input is missing.*negative"):  # ComfyUI's own check
        server.run(prompt)


@pytest.fixture(scope="module")
def tiny_flux(tiny):
    """A Flux-dev-shaped model (guidance embedding, 16-channel latents, flow schedule) from the
    host's classes, 32 wide with one block of each kind; conditioning of Flux's shapes."""
    model = tiny.tiny_flux_model(seed=6)
    generator = torch.Generator().manual_seed(6)

    def conditioning(scale):
        return [[torch.randn(1, 8, 4096, generator=generator) * scale,
                 {"pooled_output": torch.randn(1, 768, generator=generator) * scale, "guidance": 3.5}]]
    return model, conditioning(1.0), conditioning(0.0)


def test_guidance_distilled_model_at_cfg_one_is_the_named_noop(tiny_flux, reporting_cutoff):
    model, positive, negative = tiny_flux
    latent = seeded_latent(1, channels=16)
    patched, patch, messages = reporting_cutoff(model, guided_steps=1)
    out = ksampler(patched, positive, negative, latent, cfg=1.0, scheduler="simple")
    assert torch.equal(out, ksampler(model, positive, negative, latent, cfg=1.0, scheduler="simple"))
    assert "guidance-distilled and sampled at cfg 1" in messages[-1]
    # above cfg 1 ComfyUI runs both branches, and the cutoff drops one as usual
    ksampler(patched, positive, negative, latent, cfg=3.0, scheduler="simple")
    assert "text dropped after step 1 of 4" in messages[-1] and patch.last_run.single_evaluations == 3


def eos_split(eos, clip, text, replacement="zeros"):
    return eos.ShapeFirstEOSSplit.execute(clip, text, replacement, "[EOS] and the padding after it", "keep", 0).args


def eos_swap(eos, clip, token_text, eos_text):
    return eos.ShapeFirstEOSSwap.execute(clip, token_text, eos_text, "[EOS] and the padding after it",
                                         "from the [EOS] prompt").args[0]


def map_roles(token_map):
    """The role column of the token map's row lines ("    2-76 (75x)       padding  <|endoftext|>")."""
    import re
    return re.findall(r"^ {4}\d+(?:-\d+ \(\d+x\))?\s+(SOS|prompt|EOS|padding) ", token_map, re.M)


def clip_state(clip):
    weights = {k: v.clone() for k, v in clip.cond_stage_model.state_dict().items()}
    return clip.layer_idx, dict(clip.tokenizer_options), weights


def assert_same_clip_state(before, after):
    assert before[:2] == after[:2]
    assert before[2].keys() == after[2].keys() and all(torch.equal(before[2][k], after[2][k]) for k in before[2])


def test_t5_only_and_non_clip_text_encoders_in_the_eos_nodes(eos, tiny):
    """SD3's text encoder loaded with T5 alone works (its rows are all T5), and so does
    PixArt's / Chroma's T5 (T5 rows, no pooled vector); a missing text encoder is named. (A
    family the [EOS] tools do not know is named too: tests/test_eos_nodes.py, the LLM encoders
    in tests/test_model_families.py.)"""
    import comfy.sd
    import comfy.supported_models_base
    import comfy.text_encoders.pixart_t5
    import comfy.text_encoders.sd3_clip
    import nodes
    t5 = {"t5xxl_model_config": {"d_model": 24, "d_kv": 8, "num_heads": 2, "d_ff": 32, "num_layers": 2},
          "dtype": torch.float32}
    target = comfy.supported_models_base.ClipTarget
    sd3_t5 = comfy.sd.CLIP(target=target(comfy.text_encoders.sd3_clip.SD3Tokenizer,
                                         comfy.text_encoders.sd3_clip.sd3_clip(clip_l=False, clip_g=False)),
                           model_options=t5)
    pixart = comfy.sd.CLIP(target=target(comfy.text_encoders.pixart_t5.PixArtTokenizer,
                                         comfy.text_encoders.pixart_t5.pixart_te()), model_options=t5)
    for clip in (sd3_t5, pixart):
        tiny.randomize(clip.cond_stage_model, 7)

    before = clip_state(sd3_t5)
    full, eos_only, prompt_only, token_map = eos_split(eos, sd3_t5, "a red cube")
    assert torch.equal(full[0][0], nodes.CLIPTextEncode().encode(sd3_t5, "a red cube")[0][0][0])
    assert "T5-XXL" in token_map and not torch.equal(eos_only[0][0], full[0][0])
    assert_same_clip_state(before, clip_state(sd3_t5))

    before = clip_state(pixart)
    full, eos_only, prompt_only, token_map = eos_split(eos, pixart, "a red cube")
    assert torch.equal(full[0][0], nodes.CLIPTextEncode().encode(pixart, "a red cube")[0][0][0])
    assert "T5-XXL" in token_map and not torch.equal(eos_only[0][0], full[0][0])
    swapped = eos_swap(eos, pixart, "a red cube", "a blue sphere")
    assert swapped[0][0].shape[-1] == full[0][0].shape[-1]
    assert_same_clip_state(before, clip_state(pixart))
    with pytest.raises(ValueError, match="'clip' input is None"):
        eos_split(eos, None, "a red cube")


def test_empty_prompt_in_the_eos_nodes(eos, clips):
    """No prompt tokens: 'EOS only' is the whole conditioning (nothing to replace)."""
    import nodes
    clip = clips["sd15"]
    before = clip_state(clip)
    stock = nodes.CLIPTextEncode().encode(clip, "")[0][0][0]
    full, eos_only, prompt_only, token_map = eos_split(eos, clip, "")
    assert torch.equal(full[0][0], stock) and torch.equal(eos_only[0][0], stock)
    assert map_roles(token_map) == ["SOS", "EOS", "padding"]
    assert not torch.equal(prompt_only[0][0], stock)  # its [EOS] rows are zeros
    assert eos_swap(eos, clip, "", "a red cube")[0][0].shape == stock.shape
    assert_same_clip_state(before, clip_state(clip))


def test_thousand_token_prompt_in_the_eos_nodes_and_the_cutoff(eos, clips, models, conds, cutoff_nodes):
    import nodes
    clip = clips["sd15"]
    text = "cat " * 1000  # 1000 tokens: 14 chunks of 77 rows, each with its own [EOS]
    stock = nodes.CLIPTextEncode().encode(clip, text)[0]
    full, eos_only, _, token_map = eos_split(eos, clip, text)
    assert full[0][0].shape == (1, 14 * 77, 32) and torch.equal(full[0][0], stock[0][0])
    roles = map_roles(token_map)
    assert roles.count("SOS") == roles.count("EOS") == 14 and roles.count("prompt") == 1000
    assert eos_swap(eos, clip, "a red cube", text)[0][0].shape == (1, 14 * 77, 32)  # padded to the longer
    # sampled with the cutoff: 14 chunks against a one-chunk negative, no crash; at the last step, stock
    latent = seeded_latent(1)
    patched, patch = cutoff_node(cutoff_nodes, models["sd15"], guided_steps=4)
    assert torch.equal(ksampler(patched, stock, conds["sd15"][1], latent),
                       ksampler(models["sd15"], stock, conds["sd15"][1], latent))
    cut, _ = cutoff_node(cutoff_nodes, models["sd15"], guided_steps=2)
    assert torch.isfinite(ksampler(cut, stock, conds["sd15"][1], latent)).all()


def test_16_channel_latents_in_the_frequency_nodes(freq, models, conds):
    """Split takes any channel count; trace and forward name the latent that does not fit the
    model; an empty 16-channel latent is made the model's own, as KSampler does."""
    model = models["sd15"]
    positive, negative = conds["sd15"]
    samples = seeded_latent(1, channels=16)
    before = samples.clone()
    low, high = freq.ShapeFirstFrequencySplit.execute({"samples": samples}, 0.3).args
    assert low["samples"].shape == samples.shape
    assert torch.allclose(low["samples"] + high["samples"], samples, atol=1e-5)
    with pytest.raises(ValueError, match="latent_image has 16 channels"):
        trace_node(freq, model, positive, negative, samples)
    forward = freq.ShapeFirstForwardFrequency.PREPARE_CLASS_CLONE({"UNIQUE_ID": "9"})
    with pytest.raises(ValueError, match="latent has 16 channels"):
        forward.execute(model=model, steps=4, scheduler="karras", seed=0, cutoff_radius=0.3,
                        latent={"samples": samples})
    assert torch.equal(samples, before)
    empty = torch.zeros(1, 16, SIZE, SIZE)
    traced, _ = trace_node(freq, model, positive, negative, empty)
    assert traced.shape == (1, 4, SIZE, SIZE) and torch.equal(traced, ksampler(model, positive, negative, empty))


def test_a_patch_that_takes_the_cutoffs_slot_afterwards_is_named(models, conds, cutoff, cs, reporting_cutoff):
    """ComfyUI's calc_cond_batch slot holds one function: a node applied after the cutoff that
    fills it (SkipLayerGuidanceDiTSimple) switches the cutoff off; the summary says so."""
    from comfy_extras import nodes_slg
    model = models["sd15"]
    positive, negative = conds["sd15"]
    latent = seeded_latent(1)
    patched, patch, messages = reporting_cutoff(model, guided_steps=1)
    after = nodes_slg.SkipLayerGuidanceDiTSimple.execute(patched, 0.0, 1.0, "7", "7").result[0]
    ksampler(after, positive, negative, latent)
    assert "not applied: SkipLayerGuidanceDiTSimple" in messages[-1] and patch.last_run.single_evaluations == 0
    # in the other order the cutoff chains it and works
    before = nodes_slg.SkipLayerGuidanceDiTSimple.execute(model, 0.0, 1.0, "7", "7").result[0]
    patched, patch = cutoff.apply_cutoff(before, cs.CutoffSettings(guided_steps=1))
    ksampler(patched, positive, negative, latent)
    assert patch.last_run.single_evaluations == 3


def test_sag_with_keep_cond_and_no_guided_step_is_refused_naming_it(models, conds, cutoff, cs):
    """Self-Attention Guidance reads the unconditional branch's attention; keep=cond from the
    first step never runs that branch (SAG would fail on None inside ComfyUI)."""
    from comfy_extras import nodes_sag
    model = nodes_sag.SelfAttentionGuidance.execute(models["sd15"], 0.5, 2.0).result[0]
    positive, negative = conds["sd15"]
    latent = seeded_latent(1)
    patched, _ = cutoff.apply_cutoff(model, cs.CutoffSettings(guided_steps=0, keep="cond"))
    with pytest.raises(ValueError, match="keep 'cond' with no guided step"):
        ksampler(patched, positive, negative, latent)
    for settings in (cs.CutoffSettings(guided_steps=1, keep="cond"), cs.CutoffSettings(guided_steps=0)):
        patched, patch = cutoff.apply_cutoff(model, settings)
        assert torch.isfinite(ksampler(patched, positive, negative, latent)).all()
        assert patch.last_run.single_evaluations == 4 - settings.guided_steps
