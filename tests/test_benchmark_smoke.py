"""The GPU benchmark's script runs end to end on the CPU with tiny models (no timing checks)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import pack_loader

pytestmark = pytest.mark.host

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "cutoff_benchmark.py"
STEPS = 4
REPEATS = 2


@pytest.fixture(scope="module")
def results(host, tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmark")
    command = [sys.executable, str(SCRIPT), "--comfyui", str(host), "--device", "cpu", "--tiny",
               "--models", "sd15,sdxl", "--batches", "1", "--steps", str(STEPS), "--regimes", "eager",
               "--a-values", "0.5", "--repeats", str(REPEATS), "--timeline", "--out", str(out / "r.json"), "--md", str(out / "r.md")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads((out / "r.json").read_text()), (out / "r.md").read_text(), out


def test_every_cell_has_the_numbers_and_they_are_consistent(results):
    data, _, _ = results
    cells = data["cells"]
    assert {(c["model"], c["keep"]) for c in cells} == {(m, k) for m in ("sd15", "sdxl") for k in ("uncond", "cond")}
    for c in cells:
        for key in ("full_s", "one_s", "cutoff_s", "ideal_s", "cutoff_over_ideal", "unet_ms_b", "unet_ms_2b"):
            assert math.isfinite(c[key]) and c[key] > 0, (key, c)
        # a = 0.5 of 4 steps: 2 steps with text (both branches), 2 with one branch
        assert (c["a_steps"], c["full_evaluations"], c["single_evaluations"]) == (2, 2, 2)
        assert c["sigma_reads"] <= 2  # the cutoff reads the sigma around the cutoff, not every step
        assert min(c["full_s"], c["one_s"]) <= c["ideal_s"] <= max(c["full_s"], c["one_s"])
        assert math.isclose(c["cutoff_over_ideal"], c["cutoff_s"] / c["ideal_s"])
        low, high = c["cutoff_over_ideal_90"]  # bootstrap interval around it
        assert 0 < low <= c["cutoff_over_ideal"] <= high
        assert math.isclose(c["saved_pct"], 100 * (1 - c["cutoff_s"] / c["full_s"]))


def test_groups_record_every_run_and_the_environment(results):
    data, _, _ = results
    assert data["environment"]["tiny_models"] is True and data["environment"]["comfyui"]
    assert len(data["groups"]) == 2
    for group in data["groups"]:
        assert group["outputs_finite"]
        assert set(group["runs_s"]) == {"full", "one", "cutoff a=0.5 keep=uncond", "cutoff a=0.5 keep=cond"}
        assert all(len(runs) == REPEATS for runs in group["runs_s"].values())


def test_timeline_shows_each_unet_call(results):
    """--timeline: per UNet call its time and the time before it, for full, one and a=0.5."""
    data, _, _ = results
    for group in data["groups"]:
        timeline = group["timeline"]
        assert timeline["full"]["batches"] == [2] * STEPS and timeline["one"]["batches"] == [1] * STEPS
        cut = timeline["cutoff a=0.5 keep=uncond"]
        assert cut["batches"] == [2, 2, 1, 1] and cut["gap_at_batch_change_ms"] >= 0
        for part in timeline.values():
            assert len(part["unet_call_ms"]) == STEPS and len(part["gap_ms"]) == STEPS - 1
            # structure only: how the times compare is the benchmark's business, not a test's
            assert all(math.isfinite(ms) and ms > 0 for ms in part["unet_call_ms"] + [part["unet_ms"]])
            assert all(math.isfinite(ms) and ms >= 0 for ms in part["gap_ms"])


def test_markdown_table_and_merge(results):
    data, markdown, out = results
    assert "| cutoff/ideal |" in markdown
    assert markdown.count("| sd15@64 |") == 2 and markdown.count("| sdxl@64 |") == 2
    merged = out / "merged.json"
    subprocess.run([sys.executable, str(SCRIPT), "--merge", str(out / "r.json"), str(out / "r.json"),
                    "--note", "merged twice", "--out", str(merged)], check=True, timeout=60)
    merged_data = json.loads(merged.read_text())
    assert len(merged_data["cells"]) == 2 * len(data["cells"])
    assert merged_data["notes"][-1] == "merged twice"


# ---------------------------------------------------------------- today's families (SD3, Flux, Wan)

FAMILY_SIZES = {"sd3.5-large": 64, "sd3-medium": 64, "flux-dev-cfg": 64, "wan2.1-1.3b": "64x48x5"}
FAMILY_STEPS = 2  # one step with text, one without: both batch shapes, little CPU time


@pytest.fixture(scope="module")
def family_results(host, tmp_path_factory):
    """The DiT and video families' code paths at a tiny size: one process, one repeat."""
    out = tmp_path_factory.mktemp("families")
    groups = ",".join(f"{name}:1:{FAMILY_STEPS}:eager:1" for name in FAMILY_SIZES)
    command = [sys.executable, str(SCRIPT), "--comfyui", str(host), "--device", "cpu", "--tiny", "--groups", groups,
               "--a-values", "0.5", "--no-sync-check", "--out", str(out / "f.json"), "--md", str(out / "f.md")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads((out / "f.json").read_text()), (out / "f.md").read_text()


def test_families_sample_with_the_cutoff_in_every_cell(family_results):
    data, markdown = family_results
    assert data["errors"] == []
    cells = data["cells"]
    assert {(c["model"], c["keep"]) for c in cells} == {(m, k) for m in FAMILY_SIZES for k in ("uncond", "cond")}
    for c in cells:
        assert c["size"] == FAMILY_SIZES[c["model"]] and c["dtype"] == "float32"
        assert (c["a_steps"], c["full_evaluations"], c["single_evaluations"]) == (1, 1, 1), c
        for key in ("cutoff_over_ideal", "saved_pct", "unet_ms_b", "unet_ms_2b"):
            assert math.isfinite(c[key]), (key, c)
        assert f"| {c['model']}@{c['size']} | float32 |" in markdown
    for group in data["groups"]:
        assert group["outputs_finite"], group["model"]
        assert all(len(runs) == 1 for runs in group["runs_s"].values())


def test_results_record_the_machine(family_results):
    data, markdown = family_results
    env = data["environment"]
    assert env["machine"]["runtime"] in ("gVisor", "Firecracker", "other") and env["machine"]["kernel"]
    assert env["kernel_launch_us"] > 0
    assert "kernel launch" in markdown


def load_model_families():
    return pack_loader.pack_module("tools.model_families")


@pytest.mark.parametrize("name, published_billions", [
    ("sd3.5-large", 8.1), ("sd3-medium", 2.0), ("flux-dev-cfg", 11.9), ("wan2.1-1.3b", 1.4),
    ("wan2.2-5b", 5.0), ("chroma", 8.9), ("hunyuan-video", 12.8), ("lumina2", 2.6), ("qwen-image", 20.4)])
def test_full_size_configs_have_the_published_sizes(host, name, published_billions):
    """The full-size builders are the released models' shapes (counted on the meta device)."""
    families = load_model_families()
    assert math.isclose(families.parameter_count(name) / 1e9, published_billions, rel_tol=0.03)
    assert families.parameter_count(name, tiny=True) < 5e7
