"""The pack in a running ComfyUI: loaded by the host's own loader at start-up, node
definitions as the frontend gets them, workflows through the real executor, and the
README's headless demo command."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HOST, REPO
from shapefirst.tools import headless, workflow_graph as wg

pytestmark = pytest.mark.host

SHAPEFIRST_PREFIX = "ShapeFirst"


def test_comfyui_quick_ci_start_imports_the_pack_cleanly(host):
    code, log = headless.HostServer(HOST, REPO).quick_import_check()
    assert code == 0, log[-3000:]
    pack_lines = [line for line in log.splitlines() if line.rstrip().endswith(headless.PACK_FOLDER_NAME)]
    assert pack_lines and not any("IMPORT FAILED" in line for line in pack_lines), log[-3000:]


def test_every_node_is_documented(server):
    info = server.get("/object_info")
    ours = {name: d for name, d in info.items() if name.startswith(SHAPEFIRST_PREFIX)}
    assert {"ShapeFirstGuidanceCutoff", "ShapeFirstCutoffGuider", "ShapeFirstTinyCheckpoint"} <= set(ours)
    for name, definition in ours.items():
        assert definition["category"].startswith("shapefirst/"), name
        assert len(definition["description"]) > 40, name
        for section in ("required", "optional"):
            for input_name, spec in definition["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
        tooltips = definition.get("output_tooltips", [])
        assert len(tooltips) == len(definition["output"]) and all(tooltips), f"{name} outputs lack tooltips"


def test_every_node_has_a_help_page(server):
    """The frontend's node documentation panel reads WEB_DIRECTORY/docs/<NodeId>.md: each of our
    nodes has a short page there, served by the host, and each picture it shows is there too."""
    import re
    import urllib.request

    ours = sorted(name for name in server.get("/object_info") if name.startswith(SHAPEFIRST_PREFIX))
    docs = REPO / "js" / "docs"
    assert ours and sorted(p.stem for p in docs.glob("*.md")) == ours
    for name in ours:
        url = f"{server.url}/extensions/{headless.PACK_FOLDER_NAME}/docs/{name}.md"
        with urllib.request.urlopen(url, timeout=30) as response:
            page = response.read().decode()
        assert page == (docs / f"{name}.md").read_text()
        assert page.startswith("# ") and 8 <= len(page.splitlines()) <= 80, f"{name}.md: a short page"
        for picture in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page):
            path = docs / picture
            assert path.is_file() and path.stat().st_size < 150_000, f"{name}.md shows {picture}"
            with urllib.request.urlopen(f"{server.url}/extensions/{headless.PACK_FOLDER_NAME}/docs/{picture}",
                                        timeout=30) as response:
                assert response.status == 200


def _cutoff_prompt(guided_steps):
    prompt = wg.use_tiny_checkpoint(headless.load_workflow(REPO / "example_workflows" / "api" / "sd15_cutoff_vs_full_cfg.json"))
    prompt = wg.set_inputs(prompt, "EmptyLatentImage", width=64, height=64, batch_size=2)
    prompt = wg.set_inputs(prompt, "KSampler", steps=6)
    prompt = wg.set_inputs(prompt, "ShapeFirstGuidanceCutoff", cutoff_mode="guided steps", guided_steps=guided_steps)
    return prompt


def test_the_example_runs_through_the_executor_and_reports_the_cutoff(server):
    entry, _ = server.run(_cutoff_prompt(guided_steps=2))
    saved = [img for out in entry["outputs"].values() for img in out.get("images", [])]
    assert len(saved) == 4  # two samplers, batch of two
    assert "text dropped after step 2 of 6" in server.log_text()
    # 6 evaluations of two branches each; the 4 after the cutoff ran one
    assert "4 of 12 UNet branch evaluations saved" in server.log_text()


def test_bad_input_is_refused_with_a_message_naming_it(server):
    prompt = _cutoff_prompt(guided_steps=2)
    prompt = wg.set_inputs(prompt, "ShapeFirstGuidanceCutoff", adaptive_min_steps=9, adaptive_max_steps=3)
    # only the branch through the cutoff: with another valid output ComfyUI would run that one
    sampler = wg.feeds(prompt, wg_node(prompt, "ShapeFirstGuidanceCutoff"), "KSampler")[0]
    prompt = wg.latent_only(prompt, sampler, "refused")
    with pytest.raises(headless.WorkflowError, match="adaptive_min_steps"):
        server.run(prompt)


def wg_node(prompt, class_type):
    (node_id,) = headless.nodes_of_type(prompt, class_type)
    return node_id


def test_guider_with_sampler_custom_advanced(server):
    prompt = {
        "1": {"class_type": "ShapeFirstTinyCheckpoint", "inputs": {"architecture": "sdxl", "seed": 0}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "ShapeFirstCutoffGuider", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "cfg": 7.5,
            "cutoff_mode": "sigma", "guided_steps": 10, "guided_fraction": 0.5, "cutoff_sigma": 2.0, "keep": "cond",
            "adaptive_threshold": 0.15, "adaptive_min_steps": 3, "adaptive_max_steps": 1000}},
        "5": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "heun"}},
        "6": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras", "steps": 5, "denoise": 1.0}},
        "7": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
        "8": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "9": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["7", 0], "guider": ["4", 0], "sampler": ["5", 0], "sigmas": ["6", 0], "latent_image": ["8", 0]}},
        "10": {"class_type": "SaveLatent", "inputs": {"samples": ["9", 0], "filename_prefix": "guider"}},
    }
    entry, _ = server.run(prompt)
    assert entry["status"]["status_str"] == "success"
    assert "keeping cond" in server.log_text()
    ui_text = json.dumps(entry["outputs"].get("4", {}))
    assert "text while sigma > 2" in ui_text


def _run_demo(out_dir, *extra):
    done = subprocess.run([sys.executable, str(REPO / "tools" / "shapefirst_demo.py"), "--comfyui", str(HOST),
                           "--size", "64", "--steps", "4", "--repeats", "1", "--output-dir", str(out_dir), *extra],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done, json.loads((out_dir / "report.json").read_text())


def test_readme_demo_command_runs(host, tmp_path):
    """The README's first command, shrunk (4 steps, two pictures per prompt): the starter on the
    trained demo model, CPU: full CFG, the cutoff and keep cond timed, a labelled grid with one row
    per variant, one sentence per row; then another workflow into the same folder: its images are
    labelled, the first run's (and its grid) are gone."""
    from PIL import Image

    out_dir = tmp_path / "demo"
    done, report = _run_demo(out_dir, "--batch-size", "2")
    assert report["workflow"] == "shapefirst_starter_demo_model"
    assert any("text dropped after step 2 of 4" in line for line in report["cutoff"])
    assert set(report["all_seconds"]) == {"full CFG", "cutoff", "keep cond"}
    assert all(len(times) == 1 for times in report["all_seconds"].values()) and report["median_seconds"]["full CFG"] > 0
    labels = [i["label"] for i in report["images"]]
    assert len(labels) == 3 * 3 * 2 and "cutoff: red circle 2" in labels and "keep cond: green cross 1" in labels
    assert all(Path(i["file"]).exists() for i in report["images"])
    assert {"L1", "PSNR", "SSIM"} <= set(report["cutoff_vs_full_cfg"]) and report["cutoff_vs_full_cfg"]["pairs"] == 6
    assert report["keep_cond_vs_full_cfg"]["pairs"] == 6
    with Image.open(report["grid"]) as grid:
        assert grid.width > 6 * 128 and grid.height > 3 * 128  # three rows of six pictures, labelled
    assert len(report["rows"]) == 3 and report["rows"][1].startswith("cutoff, keep uncond: ")
    assert all(" of 6 pictures have the asked kind, colour, size, position and background; " in row
               for row in report["rows"])
    assert "time saved" in done.stdout and "the ShapeFirst demo model" in done.stdout
    assert all(row in done.stdout for row in report["rows"])
    first_images = [Path(i["file"]) for i in report["images"]] + [Path(report["grid"])]

    done, report = _run_demo(out_dir, "--workflow", "eos_only_vs_prompt_only")
    labels = [i["label"] for i in report["images"]]
    assert labels == ["full", "EOS only (empty)", "prompt only (empty)", "EOS only (zeros)", "prompt only (zeros)"]
    assert not any(p.exists() for p in first_images)
    assert sorted(p.name for p in out_dir.glob("*.png")) == sorted(Path(i["file"]).name for i in report["images"])
    markdown = (out_dir / "report.md").read_text()
    assert "eos_only_vs_prompt_only-eos_only_zeros.png: EOS only (zeros)" in markdown
