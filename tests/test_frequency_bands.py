"""Frequency bands, the payload format and its PIL chart (no host needed)."""
import json
import math

import numpy as np
import pytest
import torch

from shapefirst.nodes.frequency import bands as fb
from shapefirst.nodes.frequency import chart as fp
from shapefirst.nodes.frequency import report as fr

SHAPES = [(2, 4, 16, 16), (1, 16, 13, 20), (1, 4, 3, 8, 8)]  # SD latents, odd 16-channel, video
CUTOFFS = [0.0, 0.1, fb.DEFAULT_CUTOFF, 0.7, 1.0, fb.MAX_CUTOFF]


def numpy_low_pass(x, cutoff):
    """Reference: full complex FFT, radius from numpy's own frequency grid, no torch."""
    h, w = x.shape[-2:]
    fy = np.fft.fftfreq(h)[:, None] / 0.5
    fx = np.fft.fftfreq(w)[None, :] / 0.5
    mask = np.sqrt(fy ** 2 + fx ** 2) <= cutoff + 1e-6
    return np.real(np.fft.ifft2(np.fft.fft2(x) * mask))


def checkerboard(h, w):
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return torch.tensor((-1.0) ** (ii + jj), dtype=torch.float32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_low_plus_high_recomposes_the_input(shape, cutoff):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3 + 0.5
    low, high = fb.split(x, cutoff)
    assert low.shape == high.shape == x.shape
    assert torch.allclose(low + high, x, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cutoff", [0.1, 0.25, 0.7])
def test_split_matches_a_numpy_fft(shape, cutoff):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    low, _ = fb.split(x, cutoff)
    np.testing.assert_allclose(low.numpy(), numpy_low_pass(x.numpy().astype(np.float64), cutoff), atol=1e-5)


@pytest.mark.parametrize("cutoff", [0.0, 0.25, 1.0])
def test_constant_latent_is_all_low(cutoff):
    x = torch.tensor([0.5, -1.0, 2.0, 0.0]).reshape(1, 4, 1, 1).expand(2, 4, 16, 12).contiguous()
    low, high = fb.split(x, cutoff)
    assert torch.allclose(low, x, atol=1e-6)
    assert high.abs().max() < 1e-6
    low_rms, high_rms = fb.band_rms(x, cutoff)
    assert torch.allclose(low_rms, fb.rms(x)) and torch.all(high_rms < 1e-6)


@pytest.mark.parametrize("cutoff", [0.0, 0.25, 1.0, 1.4])
def test_checkerboard_is_all_high(cutoff):
    x = checkerboard(16, 16).expand(1, 4, 16, 16).contiguous()
    low, high = fb.split(x, cutoff)
    assert low.abs().max() < 1e-6
    assert torch.allclose(high, x, atol=1e-6)


def test_above_the_corner_everything_is_low():
    x = checkerboard(8, 8)[None, None]
    low, high = fb.split(x, fb.MAX_CUTOFF)
    assert torch.allclose(low, x, atol=1e-6) and high.abs().max() < 1e-6


@pytest.mark.parametrize("size", [32, 64, 128])
def test_the_cutoff_is_relative_to_nyquist_so_sizes_compare(size):
    # A wave at half the Nyquist frequency: low for a cutoff above 0.5 at every size, high below.
    j = torch.arange(size, dtype=torch.float32)
    wave = torch.cos(math.pi * 0.5 * j).expand(1, 1, size, size).contiguous()
    assert fb.band_rms(wave, 0.55)[1] < 1e-4 * fb.rms(wave)
    assert fb.band_rms(wave, 0.45)[0] < 1e-4 * fb.rms(wave)


def test_band_norms_add_up_in_energy():
    x = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    low, high = fb.band_rms(x, 0.3)
    assert torch.allclose(low ** 2 + high ** 2, fb.rms(x) ** 2, rtol=1e-5)
    summary = fb.band_summary(x, 0.3)
    assert torch.allclose(summary, torch.stack([low.mean(), high.mean(), (low / high).mean()]))


def test_white_noise_ratio_follows_the_band_area():
    x = torch.randn(8, 4, 64, 64, generator=torch.Generator().manual_seed(3))
    low, high = fb.band_rms(x, 0.25)
    area = math.pi * 0.25 ** 2 / 4  # share of the spectrum inside the radius
    assert fb.ratio(low, high).mean().item() == pytest.approx(math.sqrt(area / (1 - area)), rel=0.05)


def test_ratio_of_a_zero_high_band_is_finite():
    assert math.isfinite(fb.ratio(torch.tensor([1.0]), torch.tensor([0.0])).item())


@pytest.mark.parametrize("cutoff, fragment", [(-0.1, "cutoff_radius"), (2.0, "cutoff_radius"),
                                              (float("nan"), "cutoff_radius"), (True, "cutoff_radius")])
def test_bad_cutoffs_are_named(cutoff, fragment):
    with pytest.raises(ValueError, match=fragment):
        fb.split(torch.zeros(1, 4, 8, 8), cutoff)


def test_a_tensor_without_spatial_axes_is_refused_with_its_shape():
    with pytest.raises(ValueError, match=r"spatial axes.*\[4, 8\]"):
        fb.split(torch.zeros(4, 8), 0.25)


def test_split_leaves_its_input_alone():
    x = torch.randn(1, 4, 8, 8)
    before = x.clone()
    fb.split(x, 0.25)
    assert torch.equal(x, before)


# ---------------------------------------------------------------- payload and chart

def trace_payload(steps=10, guided=4):
    points = [fr.trace_point(k, 14.0 / k, (1.0 + k, 2.0, 0.5 + k), (3.0, 1.0, 3.0), 0.1 * (guided - k) if k <= guided else 0.0,
                             fr.BOTH_BRANCHES if k <= guided else fr.ONE_BRANCH) for k in range(1, steps + 1)]
    return fr.payload(fr.KIND_TRACE, "test trace", points, 0.25, steps, fr.cutoff_marker(guided, steps, "uncond", 2.0))


def test_payload_is_strict_json_without_nan():
    data = trace_payload()
    data["points"][0]["xt_low"] = fr.clean(float("nan"))
    text = fr.to_json(data)
    assert json.loads(text)["points"][0]["xt_low"] is None
    assert json.loads(text)["cutoff"] == {"after_step": 4, "keep": "uncond", "sigma": 2.0,
                                          "label": "text dropped after step 4"}


def test_no_cutoff_marker_when_the_text_was_kept():
    assert fr.cutoff_marker(10, 10, "uncond", None) is None
    assert fr.cutoff_marker(None, 10, "uncond", None) is None
    assert fr.cutoff_marker(3, 10, "cond", 1.0)["label"] == "only the cond branch after step 3"


def test_guidance_start_marker_and_both_dashed_lines():
    assert fr.guidance_start_marker(0, 10, "cond", None) is None
    assert fr.guidance_start_marker(10, 10, "cond", 0.0) is None  # the window never reached: nothing to mark
    start = fr.guidance_start_marker(2, 10, "cond", 9.0)
    assert start == {"after_step": 2, "keep": "cond", "sigma": 9.0, "label": "full CFG after step 2"}
    data = trace_payload()
    assert data["guidance_start"] is None and fr.markers(data) == [data["cutoff"]]
    data["guidance_start"] = start
    assert [m["after_step"] for m in fr.markers(data)] == [2, 4]
    one = fp.render_chart(trace_payload())
    two = fp.render_chart(data)
    assert one.size == two.size and one.tobytes() != two.tobytes()  # the second dashed line is drawn


def test_panels_name_every_point_key():
    data = trace_payload()
    keys = {series["key"] for panel in data["panels"] for series in panel["series"]}
    assert keys <= set(data["points"][0])
    with pytest.raises(ValueError, match="kind"):
        fr.panels("sideways")


def strip_ticks(image, rgb):
    """Separate marks of colour ``rgb`` on the best row (as the browser test counts them)."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    match = np.all(np.abs(pixels - np.array(rgb)) <= 10, axis=2)
    padded = np.pad(match, ((0, 0), (1, 0)))
    return int(max(np.count_nonzero(row[1:] & ~row[:-1]) for row in padded))


@pytest.mark.parametrize("steps, guided", [(10, 4), (50, 25)])
def test_chart_draws_one_strip_tick_per_step_coloured_by_branches(steps, guided):
    image = fp.render_chart(trace_payload(steps, guided))
    assert image.mode == "RGB" and image.width == fp.WIDTH
    assert strip_ticks(image, fp.STRIP_COLORS[fr.BOTH_BRANCHES]) == guided
    assert strip_ticks(image, fp.STRIP_COLORS[fr.ONE_BRANCH]) == steps - guided
    colors = {tuple(c) for c in np.asarray(image).reshape(-1, 3)[::7]}
    assert fp._CUTOFF in colors, "the cutoff line is drawn"
    assert fp._rgb(fr.panels(fr.KIND_TRACE)[3]["series"][0]["color"]) in colors, "the guidance curve is drawn"


def test_chart_of_a_forward_process_has_two_panels_and_grey_ticks():
    points = [fr.forward_point(k, 1.0 - k / 10, 1000 - 100 * k, (1.0, 1.0 / k, float(k))) for k in range(1, 11)]
    image = fp.render_chart(fr.payload(fr.KIND_FORWARD, "forward", points, 0.25, 10))
    assert strip_ticks(image, fp.STRIP_COLORS[None]) == 10
    assert image.height < fp.render_chart(trace_payload()).height


def test_chart_survives_empty_and_missing_values():
    data = trace_payload(3, 3)
    for point in data["points"]:
        point["guidance"] = None
    assert fp.render_chart(data).size[0] == fp.WIDTH
    assert fp.render_chart(fr.payload(fr.KIND_TRACE, "empty", [], 0.25, 0)).size[0] == fp.WIDTH


def test_tick_labels_tell_close_values_apart():
    labels = fp.format_ticks([0.2388, 0.2391, 0.2393, 0.2396])
    assert len(set(labels)) == 4
    ticks = fp.nice_ticks(0.03, 14.6)
    assert ticks[0] <= 0.03 and ticks[-1] >= 14.6 and len(ticks) <= 8


def test_strip_steps_spread_from_first_to_last():
    assert fp.strip_steps(20, 6) == [0, 4, 8, 11, 15, 19]
    assert fp.strip_steps(4, 6) == [0, 1, 2, 3]
    assert fp.strip_steps(4, 1) == [3]
    assert fp.strip_steps(0, 3) == []


def test_strip_grid_has_a_cell_per_component_and_step():
    tile = np.full((16, 16, 3), 200, dtype=np.uint8)
    image = fp.compose_strip([[tile] * 3] * 2, ["a", "b", "c"], ["x", "y"], cell=40)
    assert image.size == (110 + 3 * 40, 22 + 2 * 40)
