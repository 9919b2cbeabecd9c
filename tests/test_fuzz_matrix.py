"""The fuzz matrix's drawing and oracles (no host needed)."""
from dataclasses import replace

from shapefirst.nodes.guidance_cutoff import schedule as cs
from shapefirst.tools import fuzz_matrix as fm


def test_a_case_depends_only_on_seed_and_index():
    assert fm.draw_case(7, 12) == fm.draw_case(7, 12)
    assert fm.draw_cases(7, 0, 20)[12] == fm.draw_cases(7, 10, 5)[2]  # the CI run and a long run share cases
    assert fm.draw_case(7, 12) != fm.draw_case(8, 12)
    assert fm.draw_case(7, 12).case_id == "s7-c0012"
    assert "SHAPEFIRST_FUZZ_SEED=7 case 12" in fm.draw_case(7, 12).describe()


def test_the_long_run_covers_every_choice():
    cases = fm.draw_cases(fm.DEFAULT_SEED, 0, 550)
    assert {c.sampler for c in cases} == set(fm.SAMPLERS)
    assert {c.scheduler for c in cases} == set(fm.SCHEDULERS)
    assert {c.mode for c in cases} == set(fm.MODES)
    assert {c.architecture for c in cases} == set(fm.ARCHITECTURES)
    assert {p for c in cases for p in c.patches} == set(fm.PATCHES + fm.GUIDANCE_PATCHES)
    assert {c.batch for c in cases} == {1, 2, 3} and {c.keep for c in cases} == set(cs.KEEP_CHOICES)
    assert any(c.cfg == 1.0 for c in cases) and any(c.denoise < 1.0 for c in cases)


def test_cutoff_edges_are_drawn():
    cases = fm.draw_cases(fm.DEFAULT_SEED, 0, 550)
    steps = [(c.cutoff["guided_steps"], c.steps) for c in cases if c.mode == "guided steps"]
    assert any(n == 0 for n, _ in steps) and any(n == s for n, s in steps) and any(n > s for n, s in steps)
    sigmas = [c.cutoff["cutoff_sigma"] for c in cases if c.mode == "sigma"]
    assert 0.0 in sigmas and any(isinstance(s, tuple) for s in sigmas)
    fractions = {c.cutoff["guided_fraction"] for c in cases if c.mode == "fraction of steps"}
    assert {0.0, 1.0} <= fractions
    for c in cases:
        if c.mode == "adaptive":
            assert 0 <= c.cutoff["adaptive_min_steps"] <= c.cutoff["adaptive_max_steps"]


def test_areas_fit_the_image_and_the_tiny_unet():
    areas = [c.patches["area"] for c in fm.draw_cases(fm.DEFAULT_SEED, 0, 550) if "area" in c.patches]
    assert all(a["x"] + a["width"] <= 64 and a["y"] + a["height"] <= 64 for a in areas)
    # no 2x2-latent crop (see _patch_inputs), but narrow ones still are drawn
    assert not any(a["width"] <= 16 and a["height"] <= 16 for a in areas)
    assert any(16 in (a["width"], a["height"]) for a in areas)


def test_restrict_calls_keeps_the_branch_rows_per_call():
    calls = [(4, (0, 1), (8, 8)), (2, (0,), (4, 4)), (6, (1, 0, 1), (8, 8))]
    assert fm.restrict_calls(calls, 1) == sorted([(2, (1,), (8, 8)), (4, (1, 1), (8, 8))])
    assert fm.restrict_calls(calls, 0) == sorted([(2, (0,), (8, 8)), (2, (0,), (4, 4)), (2, (0,), (8, 8))])


def test_adaptive_branches_follow_the_readme_rule():
    sigmas = [10.0, 6.0, 3.0, 1.0, 0.5]
    # never before the minimum (floor 6.0): the small value at 10.0 does not count
    guided, ambiguous = fm.adaptive_branches([0.1, 0.9, 0.1, 0.5, 0.5], sigmas, 6.0, None, 0.2)
    assert guided == [True, True, True, False, False] and not ambiguous
    # at the latest at the maximum's sigma
    guided, _ = fm.adaptive_branches([0.9, 0.9, 0.9, None, None], sigmas, 6.0, 1.0, 0.2)
    assert guided == [True, True, True, False, False]
    # never below the threshold, no maximum: guided throughout
    assert fm.adaptive_branches([0.9] * 5, sigmas, 10.0, None, 0.2) == ([True] * 5, False)
    # a value within rounding of the threshold is flagged
    assert fm.adaptive_branches([0.2 + 1e-7] * 5, sigmas, 10.0, None, 0.2)[1]


def test_families_are_drawn_with_the_patches_that_apply_to_them():
    cases = fm.draw_cases(fm.DEFAULT_SEED, 0, 550)
    families = [c for c in cases if c.architecture in fm.FAMILY_ARCHITECTURES]
    assert {c.architecture for c in families} == set(fm.FAMILY_ARCHITECTURES)
    applies = set(fm.FAMILY_PATCHES + fm.GUIDANCE_PATCHES)
    assert all(set(c.patches) <= applies and c.sampler in fm.FAMILY_SAMPLERS for c in families)
    more = [c for c in fm.draw_cases(fm.DEFAULT_SEED, 550, 1000) if c.architecture in fm.FAMILY_ARCHITECTURES]
    assert {c.sampler for c in families + more} == set(fm.FAMILY_SAMPLERS)
    assert {p for c in families for p in c.patches} == applies
    assert 0.2 < len(families) / len(cases) < 0.4
    # the families are drawn last: a UNet case keeps the combination its id always had
    assert "sag" in fm.draw_case(fm.DEFAULT_SEED, 40).patches and fm.draw_case(fm.DEFAULT_SEED, 40).architecture == "sdxl"


def test_guidance_starts_are_drawn_before_the_cutoff():
    cases = fm.draw_cases(fm.DEFAULT_SEED, 0, 550)
    started = [c for c in cases if c.start]
    assert {c.mode for c in started} == set(fm.MODES)
    assert {c.start["keep_before_start"] for c in started} == set(fm.KEEPS)
    for c in started:
        if "guidance_start_step" in c.start and c.mode != cs.MODE_AUTOMATIC:  # (automatic: no fixed end)
            end = c.cutoff["guided_steps" if c.mode == "guided steps" else "adaptive_min_steps"]
            assert 0 <= c.start["guidance_start_step"] < end
        if "guidance_start_fraction" in c.start:
            assert 0.0 <= c.start["guidance_start_fraction"] < c.cutoff["guided_fraction"]
    assert any(c.start.get("guidance_start_step", 0) > 0 for c in started)
    assert any(isinstance(c.start.get("guidance_start_sigma"), tuple) for c in started)
    # drawn last: the other fields of a case are those of the same case id without starts
    assert len(cases) - len(started) > 100


def test_the_automatic_mode_is_drawn_late_with_its_thresholds():
    cases = fm.draw_cases(fm.DEFAULT_SEED, 0, 550)
    automatic = [c for c in cases if c.mode == cs.MODE_AUTOMATIC]
    assert automatic and all(set(c.cutoff) == {"auto_threshold"} for c in automatic)
    thresholds = {c.cutoff["auto_threshold"] for c in automatic}
    assert {0.0, cs.CutoffSettings().auto_threshold} <= thresholds and len(thresholds) > 3
    assert any(c.start for c in automatic) and any(c.mode == cs.MODE_AUTOMATIC for c in cases[:50])


def test_before_start_is_one_way():
    assert fm.before_start([10.0, 6.0, 3.0, 7.0, 1.0], 6.0) == [True, False, False, False, False]
    assert fm.before_start([10.0, 6.0], None) == [False, False]
    assert fm.before_start([10.0, 9.0], 0.0) == [True, True]


def _without_late_draws(monkeypatch, start, count):
    monkeypatch.setattr(fm, "_late_draws", lambda rng, case: case)
    return fm.draw_cases(fm.DEFAULT_SEED, start, count)


def test_the_late_draws_keep_every_earlier_field_of_a_case_id(monkeypatch):
    cases = fm.draw_cases(fm.DEFAULT_SEED, 0, 550)
    before = _without_late_draws(monkeypatch, 0, 550)
    for case, earlier in zip(cases, before):
        # the patches drawn before stay; at most one guidance patch is added
        added = set(case.patches) - set(earlier.patches)
        assert {n: case.patches[n] for n in earlier.patches} == earlier.patches
        assert len(added) <= 1 and added <= set(fm.GUIDANCE_PATCHES)
        # a later keep only ever replaces "uncond" (the same branch without an empty prompt)
        assert case.keep == earlier.keep or (earlier.keep == "uncond" and case.keep not in fm.KEEPS)
        # a later mode only ever replaces "adaptive" (with its own inputs)
        assert case.mode == earlier.mode or (earlier.mode == cs.MODE_ADAPTIVE and case.mode not in fm.EARLY_MODES)
        assert replace(case, negative="", cache={}, patches=earlier.patches, keep=earlier.keep, empty=False,
                       mode=earlier.mode, cutoff=earlier.cutoff) == earlier
    assert sum(c != e for c, e in zip(cases, before)) > 200


def test_the_failing_long_run_case_keeps_its_combination(monkeypatch):
    """s20240531-c0224 as the long run reported it (the dpm_adaptive callback count)."""
    (earlier,) = _without_late_draws(monkeypatch, 224, 1)
    assert (earlier.architecture, earlier.sampler, earlier.scheduler, earlier.steps, earlier.denoise) == \
        ("sd15", "dpm_adaptive", "normal", 4, 0.69)
    assert (earlier.cfg, earlier.mode, earlier.cutoff, earlier.keep, earlier.noise_seed) == \
        (7.5, "guided steps", {"guided_steps": 4}, "uncond", 1389071126)
    assert earlier.start == {"guidance_start_step": 1, "keep_before_start": "uncond"}
    assert earlier.patches == {"slg_simple": {"start_percent": 0.17, "end_percent": 0.26}}
    assert "dpm_adaptive" in fm.STEP_SIZING_SAMPLERS and "dpm_fast" not in fm.STEP_SIZING_SAMPLERS


def test_negative_prompts_are_drawn():
    cases = fm.draw_cases(fm.DEFAULT_SEED, 0, 550)
    negatives = [c for c in cases if c.negative]
    assert {c.negative for c in negatives} == set(fm.NEGATIVE_PROMPTS)
    assert 0.2 < len(negatives) / len(cases) < 0.4
    # with every keep, on the UNets and the families, in the CI run's first 50 too
    assert {c.keep for c in negatives} == set(cs.KEEP_CHOICES)
    assert {c.architecture in fm.FAMILY_ARCHITECTURES for c in negatives} == {True, False}
    assert any(c.negative for c in cases[:50])
    assert f"negative={negatives[0].negative!r}" in negatives[0].describe()


def test_caches_are_drawn_in_reach_of_the_cut():
    cases = fm.draw_cases(fm.DEFAULT_SEED, 0, 550)
    cached = [c for c in cases if c.cache]
    assert {c.cache["node"] for c in cached} == set(fm.CACHES)
    assert 0.15 < len(cached) / len(cases) < 0.35
    for node in fm.CACHES:
        mine = [c for c in cached if c.cache["node"] == node]
        assert {c.keep for c in mine} >= {"uncond", "cond"}
        # samplers that evaluate once per step (LazyCache delayed their cut), several per step, off-schedule
        samplers = {c.sampler for c in mine}
        assert samplers & {"euler", "euler_ancestral", "dpmpp_2m", "lms", "ipndm", "deis", "ddim", "uni_pc"}
        assert samplers & {"heun", "heunpp2", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde"}
        assert any(c.start for c in mine) and any(c.architecture in fm.FAMILY_ARCHITECTURES for c in mine)
        assert {c.mode for c in mine} == set(fm.MODES)
    assert any(c.cache["node"] == "LazyCache" and c.sampler in fm.OFF_SCHEDULE_SAMPLERS for c in cached)
    for c in cached:
        inputs = c.cache
        assert set(inputs) == {"node", "reuse_threshold", "start_percent", "end_percent"}
        assert 0.0 <= inputs["reuse_threshold"] <= 3.0
        assert 0.0 <= inputs["start_percent"] <= inputs["end_percent"] <= 1.0
    # the node's defaults are among them, and the CI run's first 50 hold both caches
    assert any(c.cache["reuse_threshold"] == 0.2 and c.cache["start_percent"] == 0.15 for c in cached)
    assert {c.cache["node"] for c in cases[:50] if c.cache} == set(fm.CACHES)
    assert "cache={'node': " in cached[0].describe()


def test_guidance_patches_are_drawn_with_their_inputs():
    cases = fm.draw_cases(fm.DEFAULT_SEED, 0, 550)
    drawn = [c for c in cases if set(c.patches) & set(fm.GUIDANCE_PATCHES)]
    assert 0.2 < len(drawn) / len(cases) < 0.4
    assert {p for c in cases[:50] for p in c.patches} & set(fm.GUIDANCE_PATCHES)
    for c in drawn:
        if "rescale_cfg" in c.patches:
            assert 0.0 <= c.patches["rescale_cfg"]["multiplier"] <= 1.0
        if "cfg_norm" in c.patches:
            assert 0.0 < c.patches["cfg_norm"]["strength"] <= 1.5
    assert "perpneg" not in fm.GUIDANCE_PATCHES  # (keep 'uncond' without the empty prompt: refused)


def test_the_empty_prompt_is_given_to_the_cutoff_with_and_without_a_negative_prompt():
    cases = fm.draw_cases(fm.DEFAULT_SEED, 0, 550)
    given = [c for c in cases if c.empty]
    assert 0.3 < len(given) / len(cases) < 0.5
    assert {(bool(c.negative), c.keep) for c in given} == {(n, k) for n in (True, False) for k in cs.KEEP_CHOICES}
    assert any(c.start.get("keep_before_start") == "uncond" for c in given)
    assert any(c.empty and c.negative and c.keep == "uncond" for c in cases[:50])
    assert "empty_conditioning=True" in given[0].describe()
