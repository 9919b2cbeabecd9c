"""adaptive_min_steps = k: the first k steps always use the text, and the guidance measured in
the last of them may already end it, so with every measurement under the threshold exactly k
steps use the text (k = 0: none). Checked on the UNet calls themselves, against the summary
and the frequency trace's marker."""
import pytest

from test_frequency_nodes import empty_latent, node, run_trace
from test_frequency_nodes import freq  # noqa: F401  (fixture)
from test_guidance_cutoff import STEPS, SCHEDULER, apply, record_unet, sample
from test_guidance_cutoff import conds, cutoff, latent, model, schedule_math  # noqa: F401  (fixtures)

pytestmark = pytest.mark.host

HUGE = 10.0  # every measured ||eps_c - eps_u|| / ||eps_u|| is below it


def _schedule(model):
    import comfy.samplers
    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), SCHEDULER, STEPS).tolist()


def _adaptive(cutoff, schedule_math, model, k, threshold=HUGE, maximum=1000):
    messages = []
    patched, patch = cutoff.apply_cutoff(model, schedule_math.CutoffSettings(
        cutoff_mode="adaptive", adaptive_threshold=threshold, adaptive_min_steps=k, adaptive_max_steps=maximum),
        lambda message, run: messages.append(message))
    return patched, patch, messages


@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_euler_uses_the_text_for_exactly_the_minimum_steps(cutoff, schedule_math, model, conds, latent, k):
    patched, patch, messages = _adaptive(cutoff, schedule_math, model, k)
    recorded, calls = record_unet(patched)
    sample(recorded, conds, latent, "euler")
    batches = [batch for batch, _, _ in calls]
    assert batches == [2 * latent.shape[0]] * k + [latent.shape[0]] * (STEPS - k)
    assert patch.last_run.guided_steps() == k
    assert f"text dropped after step {k} of {STEPS}" in messages[-1]
    assert len(patch.last_run.guidance_trace) == (1 if k else 0)  # one measurement decided; none for k = 0


@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_heun_drops_the_text_where_its_last_minimum_step_was_measured(cutoff, schedule_math, model, conds,
                                                                      latent, k):
    """heun evaluates at schedule[i] and then at schedule[i + 1] (its corrector): the measurement
    at step k - 1's first evaluation drops the text from that step's corrector on."""
    patched, patch, messages = _adaptive(cutoff, schedule_math, model, k)
    recorded, calls = record_unet(patched)
    sample(recorded, conds, latent, "heun")
    schedule = _schedule(model)
    guided = [batch == 2 * latent.shape[0] for batch, _, _ in calls]
    expected = [k > 0 and sigma >= schedule[k - 1] * (1 - 1e-6) for _, _, sigma in calls]
    assert guided == expected and sum(guided) == max(2 * k - 1, 0)
    assert patch.last_run.guided_steps() == k
    assert f"text dropped after step {k} of {STEPS}" in messages[-1]


@pytest.mark.parametrize("k", [1, 3])
def test_minimum_equal_to_maximum_guides_exactly_that_many(cutoff, schedule_math, model, conds, latent, k):
    patched, patch, _ = _adaptive(cutoff, schedule_math, model, k, threshold=0.0, maximum=k)
    recorded, calls = record_unet(patched)
    sample(recorded, conds, latent, "euler")
    assert [batch for batch, _, _ in calls] == [2 * latent.shape[0]] * k + [latent.shape[0]] * (STEPS - k)
    assert patch.last_run.guided_steps() == k


@pytest.mark.parametrize("k", [0, 2])
def test_the_frequency_trace_marks_the_same_step(freq, pack, model, conds, k):  # noqa: F811
    cutoff_node = pack["nodes.guidance_cutoff.nodes"].ShapeFirstGuidanceCutoff
    patched = node(cutoff_node).execute(model, cutoff_mode="adaptive", guided_steps=10, guided_fraction=0.5,
                                        cutoff_sigma=1.0, keep="uncond", adaptive_threshold=HUGE,
                                        adaptive_min_steps=k, adaptive_max_steps=1000).args[0]
    _, _, _, data, _ = run_trace(freq, patched, conds, empty_latent())
    steps = len(data["points"])
    assert [p["branches"] for p in data["points"]] == [2] * k + [1] * (steps - k)
    assert data["cutoff"]["after_step"] == k


@pytest.mark.parametrize("k", [0, 2])
def test_the_cutoff_guider_counts_the_minimum_the_same_way(pack, model, conds, latent, k):
    """The Cutoff Guider (SamplerCustomAdvanced) with the same inputs: exactly k guided steps."""
    from comfy_extras.nodes_custom_sampler import BasicScheduler, KSamplerSelect, RandomNoise, SamplerCustomAdvanced
    nodes_module = pack["nodes.guidance_cutoff.nodes"]
    recorded, calls = record_unet(model)
    guider = nodes_module.ShapeFirstCutoffGuider.execute(
        recorded, conds[0], conds[1], 7.5, cutoff_mode="adaptive", guided_steps=3, guided_fraction=0.5,
        cutoff_sigma=1.0, keep="uncond", adaptive_threshold=HUGE, adaptive_min_steps=k, adaptive_max_steps=1000)
    (sigmas,) = BasicScheduler().get_sigmas(model, SCHEDULER, STEPS, 1.0)
    (sampler,) = KSamplerSelect().get_sampler("euler")
    (noise,) = RandomNoise().get_noise(3)
    SamplerCustomAdvanced().sample(noise, guider.result[0], sampler, sigmas, {"samples": latent})
    assert [batch for batch, _, _ in calls] == [2 * latent.shape[0]] * k + [latent.shape[0]] * (STEPS - k)
