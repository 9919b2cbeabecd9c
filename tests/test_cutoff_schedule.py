"""Schedule math of the guidance cutoff (no host needed)."""
import math

import pytest

from shapefirst.nodes.guidance_cutoff import schedule as cs

# A 10-step schedule, strictly decreasing, ending in 0 like the host's.
SCHEDULE = [14.6, 9.0, 6.0, 4.0, 2.5, 1.5, 0.9, 0.5, 0.25, 0.1, 0.0]


def settings(**kw):
    return cs.CutoffSettings(**kw)


def test_guided_steps_mode_cuts_at_that_step_sigma():
    s = settings(cutoff_mode=cs.MODE_STEPS, guided_steps=4)
    assert cs.fixed_guided_steps(s, SCHEDULE) == 4
    assert cs.cutoff_sigma_for(s, SCHEDULE) == SCHEDULE[4]
    assert cs.paper_a(10, 4) == 6


@pytest.mark.parametrize("steps", [10, 11, 500])
def test_cutoff_at_or_past_last_step_is_none(steps):
    assert cs.cutoff_sigma_for(settings(guided_steps=steps), SCHEDULE) is None


def test_zero_guided_steps_drops_from_the_first_evaluation():
    assert cs.cutoff_sigma_for(settings(guided_steps=0), SCHEDULE) == SCHEDULE[0]


@pytest.mark.parametrize("fraction,total,expected", [(0.5, 20, 10), (0.5, 25, 13), (0.3, 10, 3), (0.0, 7, 0), (1.0, 7, 7), (0.74, 10, 7)])
def test_fraction_rounds_half_up(fraction, total, expected):
    assert cs.steps_for_fraction(total, fraction) == expected


def test_fraction_mode_uses_the_run_length():
    s = settings(cutoff_mode=cs.MODE_FRACTION, guided_fraction=0.3)
    assert cs.cutoff_sigma_for(s, SCHEDULE) == SCHEDULE[3]
    assert cs.cutoff_sigma_for(settings(cutoff_mode=cs.MODE_FRACTION, guided_fraction=1.0), SCHEDULE) is None


def test_sigma_mode_counts_steps_that_start_above_it():
    s = settings(cutoff_mode=cs.MODE_SIGMA, cutoff_sigma=2.0)
    assert cs.guided_steps_below(SCHEDULE, 2.0) == 5
    assert cs.cutoff_sigma_for(s, SCHEDULE) == 2.0
    # exactly on a schedule sigma: that step already runs without text
    assert cs.guided_steps_below(SCHEDULE, 4.0) == 3
    # below the last step's sigma: nothing to drop
    assert cs.cutoff_sigma_for(settings(cutoff_mode=cs.MODE_SIGMA, cutoff_sigma=0.05), SCHEDULE) is None
    # above the first sigma: text dropped everywhere
    assert cs.guided_steps_below(SCHEDULE, 20.0) == 0


def test_adaptive_bounds():
    s = settings(cutoff_mode=cs.MODE_ADAPTIVE, adaptive_min_steps=2, adaptive_max_steps=7)
    assert cs.adaptive_floor_sigma(s, SCHEDULE) == SCHEDULE[1]  # the last minimum step's measurement decides
    assert cs.adaptive_floor_sigma(settings(cutoff_mode=cs.MODE_ADAPTIVE, adaptive_min_steps=0), SCHEDULE) is None
    assert cs.cutoff_sigma_for(s, SCHEDULE) == SCHEDULE[7]
    assert cs.cutoff_sigma_for(settings(cutoff_mode=cs.MODE_ADAPTIVE, adaptive_max_steps=99), SCHEDULE) is None


def test_sigma_floor_index_bounds_the_evaluation():
    # before any callback: only the first step's sigma is known to be the floor
    assert cs.sigma_floor_index(-1) == 0
    # after reporting step 3: the next evaluation is step 3's corrector or step 4, at >= sigma[4]
    assert cs.sigma_floor_index(3) == 4
    # heunpp2's step k evaluates down to sigma[k + 2]: after step 3 was reported, its third
    # evaluation may be at sigma[5], so sigma[4] is no bound
    assert cs.sigma_floor_index(3, lookahead=2) == 5
    assert cs.sigma_floor_index(-1, lookahead=2) == 1


def test_saved_share():
    assert cs.saved_share(10, 10) == 0.25
    assert cs.saved_share(0, 0) == 0.0
    assert cs.saved_share(0, 5) == 0.5


@pytest.mark.parametrize("kw,needle", [
    ({"guided_steps": -1}, "guided_steps"),
    ({"guided_steps": 2.5}, "guided_steps"),
    ({"guided_fraction": 1.5}, "guided_fraction"),
    ({"guided_fraction": math.nan}, "guided_fraction"),
    ({"cutoff_sigma": math.inf}, "cutoff_sigma"),
    ({"cutoff_sigma": -0.1}, "cutoff_sigma"),
    ({"cutoff_mode": "later"}, "cutoff_mode"),
    ({"keep": "both"}, "keep"),
    ({"adaptive_threshold": math.nan}, "adaptive_threshold"),
    ({"adaptive_min_steps": 9, "adaptive_max_steps": 3}, "adaptive_min_steps"),
])
def test_bad_settings_name_the_input(kw, needle):
    with pytest.raises(ValueError, match=needle):
        cs.CutoffSettings(**kw)


def test_kept_branch_index_matches_host_order():
    assert settings(keep="cond").kept_branch == 0
    assert settings(keep="uncond").kept_branch == 1


def test_inputs_are_the_settings_fields_and_build_them():
    # each later input comes after the earlier ones: saved UI workflows fill widgets by position
    assert cs.INPUT_NAMES == ("cutoff_mode", "guided_steps", "guided_fraction", "cutoff_sigma", "keep",
                              "adaptive_threshold", "adaptive_min_steps", "adaptive_max_steps",
                              "guidance_start_step", "guidance_start_fraction", "guidance_start_sigma",
                              "keep_before_start", "auto_threshold")
    assert cs.INPUT_NAMES[-len(cs.AUTOMATIC_INPUT_NAMES):] == cs.AUTOMATIC_INPUT_NAMES
    assert cs.INPUT_NAMES[-len(cs.START_INPUT_NAMES) - 1:-1] == cs.START_INPUT_NAMES
    made = cs.settings_from_inputs({"model": object(), "cutoff_mode": cs.MODE_SIGMA, "cutoff_sigma": 2.5})
    assert (made.cutoff_mode, made.cutoff_sigma, made.guided_steps) == (cs.MODE_SIGMA, 2.5, 10)
    with pytest.raises(ValueError, match="guided_fraction must be between 0 and 1"):
        cs.settings_from_inputs({"guided_fraction": 1.5})


def test_sampler_traits_from_the_sampler_function():
    k = cs.K_DIFFUSION
    assert cs.sampler_traits(k, "sample_euler") == cs.SamplerTraits(True, 1, True)
    assert cs.sampler_traits(k, "sample_euler", churn=0.5) == cs.SamplerTraits(True, 1, False)
    assert cs.sampler_traits(k, "sample_euler", stock_guider=False).one_evaluation_per_step is False
    assert cs.sampler_traits(k, "sample_heun") == cs.SamplerTraits(True, 1, False)
    assert cs.sampler_traits(k, "sample_heunpp2").lookahead == 2
    assert cs.sampler_traits(k, "dpm_fast_function").walks_schedule is False
    assert cs.sampler_traits("comfy.extra_samplers.uni_pc", "sample_unipc") == cs.SamplerTraits(True, 1, False)
    assert cs.sampler_traits("someone_elses.sampling", "sample_euler") == cs.SamplerTraits()


def test_next_sigma_and_the_decision():
    one = cs.SamplerTraits(True, 1, True)
    walks = cs.SamplerTraits(True, 1, False)
    assert cs.next_sigma(one, SCHEDULE, 3, 2) == cs.NextSigma(exact=SCHEDULE[3])
    assert cs.next_sigma(walks, SCHEDULE, 3, 2) == cs.NextSigma(floor=SCHEDULE[3])
    assert cs.next_sigma(walks, SCHEDULE, 3, 0) == cs.NextSigma(floor=SCHEDULE[1])
    assert cs.next_sigma(walks, SCHEDULE, 100, 100) == cs.NextSigma()  # past the schedule: nothing known
    assert cs.next_sigma(cs.SamplerTraits(), SCHEDULE, 0, -1) == cs.NextSigma()
    # a cache skipped two whole evaluations (LazyCache): the callback still says which step is next
    assert cs.next_sigma(one, SCHEDULE, 3, 4) == cs.NextSigma(exact=SCHEDULE[5])
    assert cs.next_sigma(walks, SCHEDULE, 3, 4) == cs.NextSigma(floor=SCHEDULE[5])
    # no callback came: the count of evaluations still places a one-evaluation-per-step sampler
    assert cs.next_sigma(one, SCHEDULE, 3, -1) == cs.NextSigma(exact=SCHEDULE[3])
    cut = SCHEDULE[4]
    assert cs.decide(cut, cs.NextSigma(exact=SCHEDULE[3])) == cs.TEXT
    assert cs.decide(cut, cs.NextSigma(exact=cut)) == cs.NO_TEXT  # at the cutoff sigma: no text
    assert cs.decide(cut, cs.NextSigma(floor=SCHEDULE[3])) == cs.TEXT
    assert cs.decide(cut, cs.NextSigma(floor=cut)) == cs.READ
    assert cs.decide(cut, cs.NextSigma()) == cs.READ
    assert cs.decide(None, cs.NextSigma()) == cs.TEXT
    assert cs.decide(None, cs.NextSigma(), dropped=True) == cs.NO_TEXT


# ---------------------------------------------------------------- the guidance start (window)

def test_no_guidance_start_by_default_in_every_mode():
    for mode in cs.MODES:
        s = settings(cutoff_mode=mode)
        assert not s.has_start and cs.start_sigma_for(s, SCHEDULE) is None
        assert cs.steps_before_start(s, SCHEDULE) == 0 and s.keep_before_start == "cond"


@pytest.mark.parametrize("kw,before,start_sigma", [
    (dict(guidance_start_step=3, guided_steps=8), 3, SCHEDULE[3]),
    (dict(guidance_start_step=3, guided_steps=500), 3, SCHEDULE[3]),
    (dict(guidance_start_step=30, guided_steps=50), 10, SCHEDULE[10]),  # past the run: every step before
    (dict(cutoff_mode=cs.MODE_FRACTION, guidance_start_fraction=0.25, guided_fraction=0.8), 3, SCHEDULE[3]),
    (dict(cutoff_mode=cs.MODE_SIGMA, guidance_start_sigma=5.0, cutoff_sigma=0.3), 3, 5.0),
    (dict(cutoff_mode=cs.MODE_SIGMA, guidance_start_sigma=6.0, cutoff_sigma=0.3), 2, 6.0),  # on a step's sigma
    (dict(cutoff_mode=cs.MODE_ADAPTIVE, guidance_start_step=2, adaptive_min_steps=4), 2, SCHEDULE[2]),
])
def test_guidance_start_in_the_cutoffs_unit(kw, before, start_sigma):
    s = settings(**kw)
    assert s.has_start
    assert cs.steps_before_start(s, SCHEDULE) == before
    assert cs.start_sigma_for(s, SCHEDULE) == start_sigma


def test_the_window_decision_at_both_ends():
    start, cut = SCHEDULE[3], SCHEDULE[7]
    window = dict(start_sigma=start)
    assert cs.decide(cut, cs.NextSigma(exact=SCHEDULE[2]), **window) == cs.BEFORE_START
    assert cs.decide(cut, cs.NextSigma(exact=start), **window) == cs.TEXT  # at the start sigma: guided
    assert cs.decide(cut, cs.NextSigma(exact=cut), **window) == cs.NO_TEXT
    assert cs.decide(cut, cs.NextSigma(floor=SCHEDULE[2]), **window) == cs.BEFORE_START  # no read needed
    assert cs.decide(cut, cs.NextSigma(floor=start), **window) == cs.READ  # may be at the start or below
    assert cs.decide(cut, cs.NextSigma(), **window) == cs.READ
    # one-way: once the window started, only the cut decides (a churned sigma above the start stays guided)
    assert cs.decide(cut, cs.NextSigma(exact=SCHEDULE[0]), started=True, **window) == cs.TEXT
    assert cs.decide(cut, cs.NextSigma(floor=SCHEDULE[4]), started=True, **window) == cs.TEXT
    assert cs.decide(cut, cs.NextSigma(exact=SCHEDULE[0]), dropped=True, **window) == cs.NO_TEXT
    # an empty window (start at the cut): straight from before the start to no text
    assert cs.decide(cut, cs.NextSigma(exact=cut), start_sigma=cut) == cs.NO_TEXT
    assert cs.at_or_below(None, cs.NextSigma(exact=0.0)) is False


@pytest.mark.parametrize("kw,needle", [
    (dict(guidance_start_step=4, guided_steps=4), r"guidance_start_step \(4\) must be below guided_steps \(4\).*Lower"),
    (dict(guidance_start_step=9, guided_steps=4), "guidance_start_step .* must be below guided_steps"),
    (dict(guidance_start_step=-1), "guidance_start_step must be a whole number >= 0"),
    (dict(guidance_start_step=1.5), "guidance_start_step must be a whole number"),
    (dict(guidance_start_step=float("nan")), "guidance_start_step must be a whole number"),
    (dict(cutoff_mode=cs.MODE_FRACTION, guidance_start_fraction=0.6, guided_fraction=0.5),
     "guidance_start_fraction .* must be below guided_fraction"),
    (dict(guidance_start_fraction=1.5), "guidance_start_fraction must be between 0 and 1"),
    (dict(guidance_start_fraction=float("nan")), "guidance_start_fraction must be between 0 and 1"),
    (dict(cutoff_mode=cs.MODE_SIGMA, guidance_start_sigma=0.5, cutoff_sigma=1.0),
     r"guidance_start_sigma \(0.5\) must be above cutoff_sigma \(1\).*set guidance_start_sigma to 0"),
    (dict(guidance_start_sigma=float("nan")), "guidance_start_sigma must be a noise level >= 0"),
    (dict(guidance_start_sigma=float("inf")), "guidance_start_sigma must be a noise level >= 0"),
    (dict(guidance_start_sigma=-2.0), "guidance_start_sigma must be a noise level >= 0"),
    (dict(cutoff_mode=cs.MODE_ADAPTIVE, guidance_start_step=3, adaptive_min_steps=3),
     "guidance_start_step .* must be below adaptive_min_steps .*measures the guidance in full-CFG steps"),
    (dict(keep_before_start="both"), "keep_before_start must be 'cond'"),
])
def test_bad_guidance_start_names_the_input_and_the_fix(kw, needle):
    with pytest.raises(ValueError, match=needle):
        cs.CutoffSettings(**kw)


def test_a_start_of_another_mode_is_not_checked_against_this_cutoff():
    # (like guided_steps in the sigma mode: the other modes' inputs are not used)
    assert not settings(cutoff_mode=cs.MODE_SIGMA, guidance_start_step=50, guided_steps=4).has_start
