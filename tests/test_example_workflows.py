"""Every example workflow: the UI file loads against the real node definitions, matches its
API-format twin, has a thumbnail, and the twin runs headless on tiny models."""
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


@pytest.mark.parametrize("path", API_TWINS, ids=[p.stem for p in API_TWINS])
def test_api_twin_runs_headless_on_tiny_models(path, server):
    prompt = wg.shrink_for_test(headless.load_workflow(path))
    entry, _ = server.run(prompt)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"], f"{path.name} produced no output"
