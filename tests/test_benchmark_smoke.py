"""The GPU benchmark's script runs end to end on the CPU with tiny models (no timing checks)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

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
