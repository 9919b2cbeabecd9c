"""Every example workflow: the template list (the top of example_workflows/) holds only UI
workflows, each loads against the real node definitions, matches its API-format twin in
example_workflows/api/, has a thumbnail, and the twin runs headless on tiny models; the
starter runs on the demo model as it ships."""
import copy
import json

import pytest
from PIL import Image

from conftest import REPO
from shapefirst.tools import headless, workflow_graph as wg

pytestmark = pytest.mark.host

EXAMPLES = REPO / "example_workflows"
API_TWINS = sorted((EXAMPLES / "api").glob("*.json"))
UI_FILES = sorted(EXAMPLES.glob("*.json"))  # what the template browser lists


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


def test_the_template_list_holds_only_loadable_workflows():
    """Every *.json at the top of example_workflows/ is a UI workflow (the frontend opens it as a
    template), with an API twin in api/ and a thumbnail; every twin has its template."""
    assert len(UI_FILES) >= 6
    for ui in UI_FILES:
        workflow = json.loads(ui.read_text())
        assert isinstance(workflow.get("nodes"), list) and workflow["nodes"] and "links" in workflow, \
            f"{ui.name} is not a UI workflow: the template browser would list it and fail to open it"
        assert (EXAMPLES / "api" / ui.name).exists(), f"{ui.name} has no API twin in example_workflows/api/"
        thumbnail = ui.with_suffix(".jpg")
        assert thumbnail.exists(), f"{ui.name} has no thumbnail"
        with Image.open(thumbnail) as image:
            assert image.format == "JPEG" and min(image.size) >= 128
    assert sorted(p.name for p in API_TWINS) == sorted(p.name for p in UI_FILES)
    assert not list(EXAMPLES.glob("*.api.json"))
    assert sorted(wg.example_names()) == sorted(p.stem for p in UI_FILES)


def test_thumbnails_show_pictures_where_the_demo_model_runs():
    """tools/make_ui_workflows.py makes each thumbnail from the workflow's output on the demo model
    where it runs there, and says so in the JPEG; the examples the demo model cannot run (SDXL,
    Wan, Chroma) get a drawing of their graph."""
    for ui in UI_FILES:
        with Image.open(ui.with_suffix(".jpg")) as image:
            comment = image.info.get("comment", b"").decode()
        family = ui.stem.startswith(("sdxl", "wan", "chroma"))
        expected = "a drawing of the workflow's graph" if family else "output on the ShapeFirst demo model"
        assert expected in comment, f"{ui.name}: thumbnail says {comment!r}"


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
    ui = json.loads((EXAMPLES / path.name).read_text())
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


STARTER = "shapefirst_starter_demo_model"


def test_the_starter_runs_on_the_demo_model_as_it_ships(server):
    """No checkpoint to download: the starter runs as written, on the CPU, through the real
    executor; it shows full CFG, the cutoff (keep uncond) and keep cond for each prompt, the
    plan on both Guidance Cutoff nodes, a summary per cutoff run, and the frequency trace."""
    prompt = headless.load_workflow(wg.api_path(STARTER))
    prompt = wg.set_everywhere(prompt, batch_size=1)  # the pictures per prompt do not change the graph
    # A value the 'fraction of steps' mode does not read: the session's server may have run the starter
    # already (the tiny-model test), and a cached node would not show its plan again.
    prompt = wg.set_inputs(prompt, "ShapeFirstGuidanceCutoff", cutoff_sigma=0.987654)
    assert {n["class_type"] for n in prompt.values()} >= {wg.DEMO_CHECKPOINT, "ShapeFirstGuidanceCutoff",
                                                           "ShapeFirstFrequencyTrace"}
    assert not [n for n in prompt.values() if n["class_type"] in wg.CHECKPOINT_LOADERS + ("UNETLoader",)]
    keeps = sorted(n["inputs"]["keep"] for n in prompt.values() if n["class_type"] == "ShapeFirstGuidanceCutoff")
    assert keeps == ["cond", "uncond"]
    texts = {n["inputs"]["text"] for n in prompt.values() if n["class_type"] == "CLIPTextEncode"} - {""}
    assert len(texts) >= 3 and texts <= set(wg.shapes_data.DEMO_PROMPTS)

    log_before = len(server.log_text())
    entry, _ = server.run(prompt)
    assert entry["status"]["status_str"] == "success"
    outputs = entry["outputs"]
    saves = {prompt[i]["_meta"]["title"]: out["images"] for i, out in outputs.items()
             if prompt[i]["class_type"] == "SaveImage"}
    assert sorted(saves) == ["Save (cutoff)", "Save (full CFG)", "Save (keep cond)"]
    assert all(len(images) == len(texts) for images in saves.values())  # one picture per prompt
    plans = [outputs[i]["text"][0] for i, n in prompt.items() if n["class_type"] == "ShapeFirstGuidanceCutoff"]
    assert len(plans) == 2 and all("50%" in plan for plan in plans) and plans[0] != plans[1]
    # the empty negative is connected as the paper's unconditional: no warning about the negative prompt
    assert not any("runs alone" in plan for plan in plans), plans
    trace = next(i for i, n in prompt.items() if n["class_type"] == "ShapeFirstFrequencyTrace")
    chart = outputs[trace]["shapefirst_frequency"][0]
    assert len(chart["points"]) == 20 and chart["cutoff"]["after_step"] == 10
    summaries = [line for line in server.log_text()[log_before:].splitlines() if "ShapeFirst guidance cutoff:" in line]
    # one summary per cutoff sampler (2 x the prompts), and the trace's run through the cutoff
    assert len(summaries) >= 2 * len(texts) + 1, summaries
