"""The fuzz matrix's drawing and oracles (no host needed)."""
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
    assert {p for c in cases for p in c.patches} == set(fm.PATCHES)
    assert {c.batch for c in cases} == {1, 2, 3} and {c.keep for c in cases} == set(fm.KEEPS)
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
    assert all(set(c.patches) <= set(fm.FAMILY_PATCHES) and c.sampler in fm.FAMILY_SAMPLERS for c in families)
    more = [c for c in fm.draw_cases(fm.DEFAULT_SEED, 550, 1000) if c.architecture in fm.FAMILY_ARCHITECTURES]
    assert {c.sampler for c in families + more} == set(fm.FAMILY_SAMPLERS)
    assert {p for c in families for p in c.patches} == set(fm.FAMILY_PATCHES)
    assert 0.2 < len(families) / len(cases) < 0.4
    # the families are drawn last: a UNet case keeps the combination its id always had
    assert "sag" in fm.draw_case(fm.DEFAULT_SEED, 40).patches and fm.draw_case(fm.DEFAULT_SEED, 40).architecture == "sdxl"


def test_guidance_starts_are_drawn_before_the_cutoff():
    cases = fm.draw_cases(fm.DEFAULT_SEED, 0, 550)
    started = [c for c in cases if c.start]
    assert {c.mode for c in started} == set(fm.MODES)
    assert {c.start["keep_before_start"] for c in started} == set(fm.KEEPS)
    for c in started:
        if "guidance_start_step" in c.start:
            end = c.cutoff["guided_steps" if c.mode == "guided steps" else "adaptive_min_steps"]
            assert 0 <= c.start["guidance_start_step"] < end
        if "guidance_start_fraction" in c.start:
            assert 0.0 <= c.start["guidance_start_fraction"] < c.cutoff["guided_fraction"]
    assert any(c.start.get("guidance_start_step", 0) > 0 for c in started)
    assert any(isinstance(c.start.get("guidance_start_sigma"), tuple) for c in started)
    # drawn last: the other fields of a case are those of the same case id without starts
    assert len(cases) - len(started) > 100


def test_before_start_is_one_way():
    assert fm.before_start([10.0, 6.0, 3.0, 7.0, 1.0], 6.0) == [True, False, False, False, False]
    assert fm.before_start([10.0, 6.0], None) == [False, False]
    assert fm.before_start([10.0, 9.0], 0.0) == [True, True]
