"""The pack in the newest ComfyUI frontend (comfyui-frontend-package 1.58.1, served by the host
with ``--front-end-root``), in headless Chromium driven by Selenium.

Proves: every workflow the template browser lists for the pack opens (a UI workflow, all its
node types known, a thumbnail served beside it); the starter template (the demo model, no
download) loads and runs from the frontend; the frequency chart is drawn in the classic canvas
and again with Nodes 2.0 on (setting ``Comfy.VueNodes.Enabled``, where DOM widgets move into
Vue nodes), live during sampling.

The frontend is installed once, from the registry, into a folder of its own outside the
repository (``$SHAPEFIRST_FRONTEND_DIR``, default ``~/.cache/shapefirst/frontend-1.58.1``).
Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package; skipped with
one line when they (or the frontend, where it cannot be installed) are missing.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from shapefirst.tools.headless import PACK_FOLDER_NAME
from test_browser_chart import (BOTH_BRANCHES_RGB, CHROMEDRIVER, CHROMIUM, ONE_BRANCH_RGB, RUN_TIMEOUT, TRACE_TYPE,
                                browser_session, color_runs, screenshot_dir, wait_for, webdriver)

FRONTEND_VERSION = "1.58.1"
FRONTEND_DIR = Path(os.environ.get("SHAPEFIRST_FRONTEND_DIR")
                    or Path.home() / ".cache" / "shapefirst" / f"frontend-{FRONTEND_VERSION}")
STATIC = FRONTEND_DIR / "comfyui_frontend_package" / "static"
STARTER = "shapefirst_starter_demo_model"
STEPS, GUIDED = 20, 10  # the starter's trace: 20 steps, text dropped after step 10

_missing = [name for name, found in (("chromium", CHROMIUM), ("chromedriver (Debian package chromium-driver)",
                                                                CHROMEDRIVER), ("selenium (pip)", webdriver))
            if not found]
pytestmark = [
    pytest.mark.host,
    pytest.mark.skipif(bool(_missing), reason=f"browser test skipped: {', '.join(_missing)} not installed "
                                              "(apt-get install chromium chromium-driver; pip install -r tests/requirements.txt)"),
]


def install_frontend():
    """The frontend package in a folder of its own (not the test environment's site-packages:
    the host's own frontend stays what the host pins)."""
    if (STATIC / "index.html").is_file():
        return STATIC
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--target", str(FRONTEND_DIR), f"comfyui-frontend-package=={FRONTEND_VERSION}"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not (STATIC / "index.html").is_file():
        pytest.skip(f"frontend {FRONTEND_VERSION} not installed into {FRONTEND_DIR}: {done.stderr.strip()[-300:]}")
    return STATIC


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    static = install_frontend()
    for driver, server in browser_session(tmp_path_factory, {"Comfy.VueNodes.Enabled": False},
                                          ["--front-end-root", str(static)], f"frontend {FRONTEND_VERSION}"):
        version = driver.execute_script("return window.__COMFYUI_FRONTEND_VERSION__ ?? null;")
        assert version in (None, FRONTEND_VERSION), f"the page runs frontend {version}"
        yield driver, server


def test_the_frontend_is_the_newest_one(session):
    driver, server = session
    html = driver.execute_script("return document.documentElement.outerHTML;")
    served = (STATIC / "index.html").read_text()
    scripts = [part.split('"')[0] for part in served.split('src="')[1:]]
    assert scripts and all(src in html for src in scripts), "the page is not the 1.58.1 frontend's index.html"


def test_every_listed_template_opens(session):
    """What the template browser lists for the pack (GET /workflow_templates): each opens as a
    graph with every node type known and has its thumbnail."""
    driver, server = session
    listed = server.get("/workflow_templates").get(PACK_FOLDER_NAME, [])
    expected = sorted(p.stem for p in (REPO / "example_workflows").glob("*.json"))
    assert sorted(listed) == expected, "the template list differs from example_workflows/*.json"
    results = driver.execute_async_script("""
        const [pack, names, done] = arguments;
        const app = window.comfyAPI.app.app;
        (async () => {
            const out = {};
            for (const name of names) {
                const base = `/api/workflow_templates/${pack}/${encodeURIComponent(name)}`;
                const response = await fetch(`${base}.json`);
                const workflow = response.ok ? await response.json() : null;
                const thumbnail = await fetch(`${base}.jpg`);
                const entry = { json: response.ok, thumbnail: thumbnail.ok
                                && (thumbnail.headers.get("content-type") ?? "").startsWith("image/") };
                if (workflow && Array.isArray(workflow.nodes)) {
                    await app.loadGraphData(workflow, true, true, name);
                    const graph = app.rootGraph ?? app.graph;
                    entry.expected = workflow.nodes.length;
                    entry.loaded = graph._nodes.length;
                    entry.unknown = graph._nodes.map((n) => n.type)
                        .filter((t) => !window.LiteGraph.registered_node_types[t]);
                    entry.links = workflow.links.length;
                    entry.loadedLinks = graph.links.size ?? Object.keys(graph.links).length;
                }
                out[name] = entry;
            }
            done(out);
        })().catch((e) => done({ error: String(e) }));
    """, PACK_FOLDER_NAME, listed)
    assert "error" not in results, results
    for name, entry in results.items():
        assert entry["json"] and entry["thumbnail"], (name, entry)
        assert "expected" in entry, f"{name}: not a UI workflow (the frontend cannot open it)"
        assert entry["loaded"] == entry["expected"] and entry["loadedLinks"] == entry["links"], (name, entry)
        assert entry["unknown"] == [], (name, entry)


def load_starter(driver):
    """The starter as the template browser serves it, one picture per prompt (the graph as
    shipped otherwise), every seed fixed; returns the trace node's id."""
    return driver.execute_async_script("""
        const [pack, name, type, done] = arguments;
        const app = window.comfyAPI.app.app;
        const api = window.comfyAPI.api.api;
        (async () => {
            const workflow = await (await fetch(`/api/workflow_templates/${pack}/${name}.json`)).json();
            await app.loadGraphData(workflow, true, true, name);
            const graph = app.rootGraph ?? app.graph;
            for (const n of graph._nodes) {
                for (const w of n.widgets ?? []) {
                    if (w.name === "control_after_generate") w.value = "fixed";
                    if (n.type === "EmptyLatentImage" && w.name === "batch_size") w.value = 1;
                }
            }
            const node = graph._nodes.find((n) => n.type === type);
            app.canvas.ds.scale = 1;
            app.canvas.ds.offset = [40 - node.pos[0], 60 - node.pos[1]];
            app.canvas.setDirty(true, true);
            if (!window.__shapefirstListening) {
                api.addEventListener("shapefirst.frequency.step", () => { window.__shapefirstLive += 1; });
                window.__shapefirstListening = true;
            }
            done({ node: node.id, types: graph._nodes.map((n) => n.type) });
        })().catch((e) => done({ error: String(e) }));
    """, PACK_FOLDER_NAME, STARTER, TRACE_TYPE)


def queue_and_wait(driver, server, node_id):
    driver.execute_script("""
        const app = window.comfyAPI.app.app;
        const chart = (app.rootGraph ?? app.graph).getNodeById(arguments[0]).shapefirstChart;
        chart.clear();
        window.__shapefirstLive = 0;
        app.queuePrompt(0, 1);
    """, node_id)
    try:
        return wait_for(lambda: driver.execute_script("""
            const app = window.comfyAPI.app.app;
            const chart = (app.rootGraph ?? app.graph).getNodeById(arguments[0])?.shapefirstChart;
            if (!chart || chart.element.dataset.state !== "done") return null;
            return { points: Number(chart.canvas.dataset.points), both: Number(chart.canvas.dataset.bothBranches),
                     one: Number(chart.canvas.dataset.oneBranch), live: window.__shapefirstLive,
                     width: chart.element.offsetWidth, height: chart.element.offsetHeight,
                     attached: chart.element.isConnected };
        """, node_id), 2 * RUN_TIMEOUT, "the trace node's chart to finish (state 'done')")
    except AssertionError as error:
        raise AssertionError(f"{error}\nserver log:\n{server.log_tail()}") from None


def chart_screenshot(driver, node_id, path):
    canvas = driver.execute_script(
        "const app = window.comfyAPI.app.app;"
        "return (app.rootGraph ?? app.graph).getNodeById(arguments[0]).shapefirstChart.canvas;", node_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
    canvas.screenshot(str(path))
    chart = Image.open(path)
    pixels = np.asarray(chart.convert("RGB")).reshape(-1, 3)
    assert chart.width > 200 and chart.height > 150, f"chart too small to read: {chart.size}"
    assert len(np.unique(pixels, axis=0)) > 50 and pixels.std() > 10, f"the chart canvas is blank: {path}"
    return chart


def finished_runs(server, count):
    """The host's history once ``count`` prompts have finished (the chart may be done before
    the other output nodes are)."""
    def finished():
        history = server.get("/history")
        done = [entry for entry in history.values() if entry.get("status", {}).get("completed") is not None]
        return done if len(done) >= count else None
    return wait_for(finished, 2 * RUN_TIMEOUT, f"{count} finished prompt(s) in the host's history")


def test_the_starter_runs_and_the_chart_is_drawn_in_both_node_renderers(session, tmp_path):
    driver, server = session
    folder = screenshot_dir(tmp_path)
    loaded = load_starter(driver)
    assert "error" not in loaded, loaded
    assert "ShapeFirstDemoCheckpoint" in loaded["types"] and "CheckpointLoaderSimple" not in loaded["types"]

    # Classic canvas: the starter runs as shipped, live chart events, the chart drawn.
    result = queue_and_wait(driver, server, loaded["node"])
    assert (result["points"], result["live"]) == (STEPS, STEPS), result
    assert (result["both"], result["one"]) == (GUIDED, STEPS - GUIDED), result
    (entry,) = finished_runs(server, 1)
    assert entry["status"]["status_str"] == "success"
    saved = [len(out.get("images", [])) for out in entry["outputs"].values()
             if any(i.get("type") == "output" for i in out.get("images", []))]
    assert saved == [3, 3, 3], f"three Save Image nodes (full CFG, cutoff, keep cond), three prompts each: {saved}"
    driver.save_screenshot(str(folder / "new_frontend_classic_page.png"))
    chart = chart_screenshot(driver, loaded["node"], folder / "new_frontend_classic_chart.png")
    assert color_runs(chart, BOTH_BRANCHES_RGB) == GUIDED and color_runs(chart, ONE_BRANCH_RGB) == STEPS - GUIDED

    # Nodes 2.0: the DOM widget moves into the Vue node; a new seed on the trace runs it live again.
    driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const app = window.comfyAPI.app.app;
        app.extensionManager.setting.set("Comfy.VueNodes.Enabled", true).then(() => done(true), (e) => done(String(e)));
    """)
    wait_for(lambda: driver.execute_script("return document.querySelectorAll('[data-node-id]').length > 0;"),
             60, "the Vue nodes (Nodes 2.0) to render")
    driver.execute_script("""
        const app = window.comfyAPI.app.app;
        const node = (app.rootGraph ?? app.graph).getNodeById(arguments[0]);
        node.widgets.find((w) => w.name === "seed").value = 43;
    """, loaded["node"])
    vue = queue_and_wait(driver, server, loaded["node"])
    assert vue["attached"] and vue["width"] > 200 and vue["height"] > 150, vue
    assert (vue["points"], vue["live"]) == (STEPS, STEPS), vue
    assert driver.execute_script(
        "return !!arguments[0] && !!document.querySelector(`[data-node-id='${arguments[0]}'] .shapefirst-frequency-chart`);",
        loaded["node"]), "the chart is not inside the trace's Vue node"
    assert driver.execute_script("return window.comfyAPI.app.app.extensionManager.setting.get('Comfy.VueNodes.Enabled');")
    driver.save_screenshot(str(folder / "new_frontend_vue_page.png"))
    chart = chart_screenshot(driver, loaded["node"], folder / "new_frontend_vue_chart.png")
    assert color_runs(chart, BOTH_BRANCHES_RGB) == GUIDED and color_runs(chart, ONE_BRANCH_RGB) == STEPS - GUIDED
