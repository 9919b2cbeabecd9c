"""Every example workflow: the UI file loads against the real node definitions, matches its
API-format twin, has a thumbnail, and the twin runs headless on tiny models."""
import copy
import json

import pytest
from PIL import Image

from conftest import REPO
from shapefirst.tools import headless, workflow_graph as wg

pytestmark = pytest.mark.host

EXAMPLES = REPO / "example_workflows"
API_TWINS = sorted(EXAMPLES.glob("*.api.json"))
UI_FILES = sorted(p for p in EXAMPLES.glob("*.json") if not p.name.endswith(".api.json"))


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


def test_every_ui_workflow_has_an_api_twin_and_a_thumbnail():
    assert len(UI_FILES) >= 6
    for ui in UI_FILES:
        assert ui.with_name(ui.name.replace(".json", ".api.json")).exists(), ui.name
        thumbnail = ui.with_suffix(".jpg")
        assert thumbnail.exists(), f"{ui.name} has no thumbnail"
        with Image.open(thumbnail) as image:
            assert image.format == "JPEG" and min(image.size) >= 128


def _accepts(spec_type, link_type):
    allowed = spec_type.split(",") if isinstance(spec_type, str) else ["COMBO"]
    return "*" in allowed or link_type in allowed or link_type == "*"


@pytest.mark.parametrize("path", UI_FILES, ids=[p.stem for p in UI_FILES])
def test_ui_workflow_matches_the_node_definitions(path, object_info):
    workflow = json.loads(path.read_text())
    links = {link[0]: link for link in workflow["links"]}
    nodes = {node["id"]: node for node in workflow["nodes"]}
    for node in workflow["nodes"]:
        assert node["type"] in object_info, f"{path.name}: unknown node type {node['type']}"
        definition = object_info[node["type"]]
        expected = sum(1 + len(wg.extra_widget_values(name, spec)) for name, spec in wg.ordered_inputs(definition)
                       if wg.is_widget(spec))
        assert len(node.get("widgets_values", [])) == expected, f"{path.name}: {node['type']} widget values"
        specs = dict(wg.ordered_inputs(definition))
        for slot in node.get("inputs", []):
            if slot.get("link") is None:
                continue
            link = links[slot["link"]]
            source = nodes[link[1]]
            source_type = object_info[source["type"]]["output"][link[2]]
            assert link[5] == source_type, f"{path.name}: link {link[0]} type"
            assert _accepts(specs[slot["name"]][0], source_type), f"{path.name}: {node['type']}.{slot['name']}"


@pytest.mark.parametrize("path", API_TWINS, ids=[p.stem for p in API_TWINS])
def test_ui_workflow_is_the_api_twin(path, object_info):
    """Same nodes, widget values and links as the API file (layout aside)."""
    ui = json.loads(path.with_name(path.name.replace(".api.json", ".json")).read_text())
    expected = wg.api_to_ui(headless.load_workflow(path), object_info)

    def essence(workflow):
        return (sorted((n["id"], n["type"], json.dumps(n["widgets_values"])) for n in workflow["nodes"]),
                sorted(tuple(link[1:]) for link in workflow["links"]))

    assert essence(ui) == essence(expected)


# Diffusion models loaded by file (UNETLoader, CLIPLoader) -> the family of the tests' tiny
# loaders (tests/tiny_family_nodes) and a weight seed; Wan 2.2 A14B's experts are Wan 2.1-shaped.
TINY_DIFFUSION_MODELS = {"wan2.1_t2v": ("wan2.1-1.3b", 0), "wan2.2_t2v_high_noise": ("wan2.1-1.3b", 1),
                         "wan2.2_t2v_low_noise": ("wan2.1-1.3b", 2), "wan2.2_ti2v_5b": ("wan2.2-5b", 0),
                         "chroma": ("chroma", 0)}
TINY_TEXT_ENCODERS = {"wan": "wan", "chroma": "chroma"}
FAMILY_LOADERS = ("UNETLoader", "CLIPLoader")


def is_family_example(prompt):
    return any(node["class_type"] in FAMILY_LOADERS for node in prompt.values())


def use_tiny_family_models(prompt):
    """Loaders of DiT and video models by file -> the tiny models of their family; decoding
    (no tiny VAE of those families) -> Save Latent after each sampler that feeds a decoder;
    64 px, 5 frames, 4 steps."""
    out = copy.deepcopy(prompt)
    for node_id, node in out.items():
        if node["class_type"] == "UNETLoader":
            name = node["inputs"]["unet_name"].lower()
            family, seed = next(v for key, v in TINY_DIFFUSION_MODELS.items() if name.startswith(key))
            out[node_id] = {"class_type": "TinyFamilyDiffusionModel", "inputs": {"family": family, "seed": seed}}
        elif node["class_type"] == "CLIPLoader":
            family = TINY_TEXT_ENCODERS[node["inputs"]["type"]]
            out[node_id] = {"class_type": "TinyFamilyTextEncoder", "inputs": {"family": family}}
    decoded = [str(node["inputs"]["samples"][0]) for node in out.values() if node["class_type"] == "VAEDecode"]
    for sampler_id in decoded:
        out = wg.latent_only(out, sampler_id, f"shapefirst_test/{sampler_id}")
    out = wg.set_everywhere(out, width=64, height=64, length=5, batch_size=1)
    for node in out.values():
        if isinstance(node["inputs"].get("steps"), int):
            steps = node["inputs"]["steps"]
            node["inputs"]["steps"] = 4
            # KSamplerAdvanced's split and Sigma at Step's step keep their share of the shorter schedule
            for key in ("start_at_step", "end_at_step", "guided_steps"):
                if isinstance(node["inputs"].get(key), int) and node["inputs"][key] < steps:
                    node["inputs"][key] = round(node["inputs"][key] * 4 / steps)
    return out


def shrink(prompt):
    return use_tiny_family_models(prompt) if is_family_example(prompt) else wg.shrink_for_test(prompt)


@pytest.mark.parametrize("path", API_TWINS, ids=[p.stem for p in API_TWINS])
def test_api_twin_runs_headless_on_tiny_models(path, server):
    prompt = shrink(headless.load_workflow(path))
    entry, _ = server.run(prompt)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"], f"{path.name} produced no output"
