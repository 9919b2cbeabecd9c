"""The paper's table: parsing and layout (no host) and the node in the host."""
import json
import math

import pytest
import torch

from shapefirst.nodes.evaluation import paper_table as pt
from shapefirst.nodes.guidance_cutoff import schedule as cs


def test_parsing():
    assert pt.parse_prompts("a cat\n\n# comment\n a dog ") == ["a cat", "a dog"]
    assert pt.parse_fractions("0.3, 0.5;0.7") == [0.3, 0.5, 0.7]
    with pytest.raises(ValueError, match="prompts"):
        pt.parse_prompts("\n# nothing\n")
    for bad in ("", "half", "0.5, 1.5"):
        with pytest.raises(ValueError, match="text_free_fractions"):
            pt.parse_fractions(bad)
    # the paper's a for each fraction: the same rounding as the cutoff's fraction mode
    assert [cs.steps_for_fraction(20, f) for f in (0.3, 0.5, 0.7, 1.0)] == [6, 10, 14, 20]


def test_summary_uses_the_first_row_as_time_base():
    full, cut = pt.Row("full CFG", 0, [2.0, 2.2, 1.8], [0.0]), pt.Row("cutoff a=10", 10, [1.5, 1.6, 1.4], [0.25])
    full.add_metrics({"L1": [0.0]})
    cut.add_metrics({"L1": [0.1, 0.3]})
    rows = pt.summarize([full, cut], 20)
    assert rows[1]["median_seconds"] == 1.5 and rows[1]["time_saved_percent"] == pytest.approx(25.0)
    assert rows[1]["unet_work_saved_percent"] == pytest.approx(25.0) and rows[1]["L1"] == pytest.approx(0.2)
    assert rows[1]["guided_steps"] == 10
    table = pt.markdown(rows, ["L1", "CLIP"])
    assert "| cutoff a=10 | 10 | 1.500 | 25.0% | 25.0% | 0.2000 | — |" in table


def test_window_variants_are_checked_against_every_a():
    assert pt.check_window(0.0, "0.3, 0.9") is None  # no window variants
    assert pt.check_window(0.2, "0.3, 0.5, 0.7") is None
    message = pt.check_window(0.35, "0.3, 0.5, 0.7")
    assert "window_start_fraction (0.35) must be below 1 - a" in message and "below 0.3)" in message
    assert "window_start_fraction must be a number" in pt.check_window(float("nan"), "0.5")
    assert "window_start_fraction must be a number" in pt.check_window(1.0, "0.5")
    assert pt.window_steps(20, 0.15, 8) == 3
    with pytest.raises(ValueError, match="window_start_fraction .* is 2 of 4 steps, not below the 2 guided steps"):
        pt.window_steps(4, 0.49, 2)
    window = pt.Row("window u=3 a=8", 8, [1.0], [0.275], steps_before_start=3)
    rows = pt.summarize([pt.Row("full CFG", 0, [2.0], [0.0]), window], 20)
    assert (rows[1]["steps_before_start"], rows[1]["guided_steps"], rows[1]["a"]) == (3, 9, 8)


@pytest.mark.host
def test_node_reproduces_the_table_on_a_tiny_model(pack, tiny):
    node = pack["nodes.evaluation.nodes"].ShapeFirstPaperTable
    model, clip, vae = tiny.tiny_model("sd15", 4), tiny.tiny_clip("sd15", 4), tiny.tiny_vae(4)
    assert node.validate_inputs("a cat", "0, 0.5") is True
    assert "text_free_fractions" in node.validate_inputs("a cat", "0.5, 2")
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        out = node.execute(model, clip, vae, "a red cube\na blue sphere", "", 7, 4, 7.5, "euler", "normal", 64, 64,
                           "0, 0.5, 1", "uncond", 1, None)
    images, table, report = out.result
    assert images.shape == (2 * 4, 64, 64, 3)  # 2 prompts x (full + 3 variants)
    rows = json.loads(report)["rows"]
    assert [r["a"] for r in rows] == [0, 0, 2, 4]
    # a = 0 is the stock sampler: identical images, no work saved
    assert rows[1]["L1"] == 0.0 and rows[1]["unet_work_saved_percent"] == 0.0 and rows[1]["PSNR"] is None
    assert torch.equal(images[0], images[1]) and torch.equal(images[4], images[5])
    # a = 2 of 4: two single-branch evaluations of eight branch evaluations
    assert rows[2]["unet_work_saved_percent"] == pytest.approx(25.0) and rows[2]["L1"] > 0
    assert rows[3]["unet_work_saved_percent"] == pytest.approx(50.0)
    assert math.isfinite(rows[3]["PSNR"]) and "| cutoff a=2 | 2 |" in table
    assert out.ui["text"][0].endswith(table)


@pytest.mark.host
def test_node_runs_a_window_variant_beside_each_cutoff(pack, tiny):
    node = pack["nodes.evaluation.nodes"].ShapeFirstPaperTable
    model, clip, vae = tiny.tiny_model("sd15", 4), tiny.tiny_clip("sd15", 4), tiny.tiny_vae(4)
    assert "window_start_fraction" in node.validate_inputs("a cat", "0.5", 0.5)
    assert node.validate_inputs("a cat", "0.5", 0.25) is True
    with torch.inference_mode():
        out = node.execute(model, clip, vae, "a red cube", "", 7, 4, 7.5, "euler", "normal", 64, 64,
                           "0.5", "uncond", 1, None, window_start_fraction=0.25)
    images, table, report = out.result
    assert images.shape == (3, 64, 64, 3)  # full CFG, cutoff a=2, window u=1 a=2
    rows = json.loads(report)["rows"]
    assert [(r["variant"], r["a"], r["steps_before_start"], r["guided_steps"]) for r in rows] == [
        ("full CFG", 0, 0, 4), ("cutoff a=2", 2, 0, 2), ("window u=1 a=2", 2, 1, 1)]
    # u = 1 and a = 2 of 4 steps: three single-branch evaluations of eight
    assert rows[2]["unet_work_saved_percent"] == pytest.approx(37.5)
    assert not torch.equal(images[1], images[2]) and "| window u=1 a=2 | 2 |" in table
