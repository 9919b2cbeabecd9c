"""The frequency chart in a real browser: the host server on the CPU with the pack, headless
Chromium driven by Selenium, the shipped example workflow queued through the frontend.

Proves: the example loads and converts to its API twin, the chart fills in live (one event
per step, addressed to this browser's client id), the finished chart is drawn (screenshot:
not blank, one strip tick per step, coloured by the branches the step ran), values show on
hover, and a cache hit draws it again without sampling.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package; skipped
with one line when they are missing. Set SHAPEFIRST_SCREENSHOT_DIR to keep the screenshots.
"""
import asyncio
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import HOST, REPO
from shapefirst.tools.headless import HostServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
except ImportError:
    webdriver = None

WORKFLOW = REPO / "example_workflows" / "frequency_trace_paper_setting.json"
API_WORKFLOW = REPO / "example_workflows" / "api" / "frequency_trace_paper_setting.json"
TRACE_TYPE = "ShapeFirstFrequencyTrace"
EXTENSION = "shapefirst.FrequencyChart"  # js/frequency_chart.js, under the pack's lower-case namespace
# The strip tick colours of js/frequency_chart.js (both branches / one branch).
BOTH_BRANCHES_RGB = (255, 200, 0)
ONE_BRANCH_RGB = (0, 200, 230)
STARTUP_TIMEOUT = 240  # generous: a loaded 2-core machine imports torch and the host slowly
RUN_TIMEOUT = 600  # generous: on a shared 2-core machine the 50-step trace has taken over 2 minutes

_missing = [name for name, found in (("chromium", CHROMIUM), ("chromedriver (Debian package chromium-driver)",
                                                                CHROMEDRIVER), ("selenium (pip)", webdriver))
            if not found]
pytestmark = [
    pytest.mark.host,
    pytest.mark.skipif(bool(_missing), reason=f"browser test skipped: {', '.join(_missing)} not installed "
                                              "(apt-get install chromium chromium-driver; pip install -r tests/requirements.txt)"),
]


def wait_for(condition, timeout, what, poll=0.25):
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


class Eavesdropper(threading.Thread):
    """A second client on the server's websocket. It hears broadcasts (queue status) but
    must not hear the chart events meant for the browser that queued the prompt."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url.replace("http://", "ws://") + "/ws?clientId=shapefirst-eavesdropper"
        self.events = []
        self.connected = threading.Event()
        self.done = threading.Event()

    def run(self):
        asyncio.run(self.listen())

    async def listen(self):
        import aiohttp  # a ComfyUI requirement
        async with aiohttp.ClientSession() as client, client.ws_connect(self.url) as ws:
            self.connected.set()
            while not self.done.is_set():
                try:
                    message = await ws.receive(timeout=0.2)
                except asyncio.TimeoutError:
                    continue
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.events.append(json.loads(message.data)["type"])
                elif message.type != aiohttp.WSMsgType.BINARY:
                    break

    def stop(self):
        self.done.set()
        self.join(timeout=10)
        return self.events


def start_browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--force-device-scale-factor=1", "--window-size=1600,1100",
                     f"--user-data-dir={profile}"):
        options.add_argument(argument)
    # Both paths given: Selenium uses the Debian binaries and downloads nothing.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def browser_session(tmp_path_factory, settings=None, extra_args=(), frontend="the frontend"):
    """(driver, server): the host serving the pack, a fresh user with ``settings`` and Chromium on
    the page, once the frontend has loaded the ShapeFirst extension (a generator for fixtures)."""
    user = tmp_path_factory.mktemp("comfy_user")
    (user / "default").mkdir()
    # A fresh user would get the template browser on top of the graph.
    (user / "default" / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True,
                                                                       **(settings or {})}))
    extra = ["--user-directory", str(user), "--database-url", "sqlite:///:memory:", *extra_args]
    with HostServer(HOST, REPO, extra_args=extra, startup_timeout=STARTUP_TIMEOUT) as server:
        driver = start_browser(tmp_path_factory.mktemp("chromium_profile"))
        try:
            driver.set_script_timeout(RUN_TIMEOUT)
            driver.get(server.url)
            wait_for(lambda: driver.execute_script(
                "const app = window.comfyAPI?.app?.app;"
                "return !!((app?.rootGraph ?? app?.graph) && window.LiteGraph?.registered_node_types?.[arguments[0]]"
                " && app.extensions?.some((e) => e.name === arguments[1]));", TRACE_TYPE, EXTENSION),
                STARTUP_TIMEOUT, f"{frontend} and the ShapeFirst extension")
            yield driver, server
        finally:
            driver.quit()


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    yield from browser_session(tmp_path_factory)


def screenshot_dir(tmp_path):
    wanted = os.environ.get("SHAPEFIRST_SCREENSHOT_DIR")
    folder = Path(wanted) if wanted else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def load_workflow(driver):
    """Loads the example in the frontend, puts the trace node at zoom 1 in view, and counts
    the live step events this client receives."""
    return driver.execute_async_script("""
        const [workflow, type, done] = arguments;
        const app = window.comfyAPI.app.app;
        const api = window.comfyAPI.api.api;
        (async () => {
            await app.loadGraphData(workflow);
            const graph = app.rootGraph ?? app.graph;  // app.graph: deprecated, older frontends only
            const node = graph._nodes.find((n) => n.type === type);
            app.canvas.ds.scale = 1;
            app.canvas.ds.offset = [40 - node.pos[0], 60 - node.pos[1]];
            app.canvas.setDirty(true, true);
            window.__shapefirstLive = 0;
            if (!window.__shapefirstListening) {
                api.addEventListener("shapefirst.frequency.step", () => { window.__shapefirstLive += 1; });
                window.__shapefirstListening = true;
            }
            const prompt = await app.graphToPrompt();  // the template as authored, for its twin
            // The test's host has no checkpoint: the tiny random model takes Load Checkpoint's
            // place, wired to the same inputs (as a user would swap a loader), ...
            const loader = graph._nodes.find((n) => n.type === "CheckpointLoaderSimple");
            const tiny = window.LiteGraph.createNode("ShapeFirstTinyCheckpoint");
            tiny.pos = [...loader.pos];
            graph.add(tiny);
            const linkOf = (id) => (graph.links.get ? graph.links.get(id) : graph.links[id]);
            loader.outputs.forEach((output, slot) => {
                for (const id of [...(output.links ?? [])]) {
                    const link = linkOf(id);
                    tiny.connect(slot, graph.getNodeById(link.target_id), link.target_slot);
                }
            });
            graph.remove(loader);
            // and at 128 px, which the tiny model samples on a CPU in seconds (512 px: minutes)
            const empty = graph._nodes.find((n) => n.type === "EmptyLatentImage");
            for (const w of empty.widgets) if (w.name === "width" || w.name === "height") w.value = 128;
            // Queue the same prompt twice (the cache-hit check): no seed may change in between.
            for (const n of graph._nodes) {
                for (const w of n.widgets ?? []) if (w.name === "control_after_generate") w.value = "fixed";
            }
            app.canvas.setDirty(true, true);
            const swapped = (await app.graphToPrompt()).output;
            done({ node: node.id, output: prompt.output, swapped });
        })().catch((e) => done({ error: String(e) }));
    """, json.loads(WORKFLOW.read_text()), TRACE_TYPE)


def queue_and_wait(driver, node_id, server):
    """Queues the graph as the Queue button does and waits for the chart; on a timeout the
    server's log says why (a refused prompt, an error in a node)."""
    try:
        return _queue_and_wait(driver, node_id)
    except AssertionError as error:
        raise AssertionError(f"{error}\nserver log:\n{server.log_tail()}") from None


def _queue_and_wait(driver, node_id):
    driver.execute_script("""
        const app = window.comfyAPI.app.app;
        const chart = (app.rootGraph ?? app.graph).getNodeById(arguments[0]).shapefirstChart;
        chart.clear();
        window.__shapefirstLive = 0;
        app.queuePrompt(0, 1);
    """, node_id)
    return wait_for(lambda: driver.execute_script("""
        const chart = ((app) => app.rootGraph ?? app.graph)(window.comfyAPI.app.app).getNodeById(arguments[0]).shapefirstChart;
        if (chart.element.dataset.state !== "done") return null;
        return { points: Number(chart.canvas.dataset.points), both: Number(chart.canvas.dataset.bothBranches),
                 one: Number(chart.canvas.dataset.oneBranch), live: window.__shapefirstLive,
                 cutoff: chart.data.cutoff, total: chart.data.total_steps };
    """, node_id), RUN_TIMEOUT, "the trace node to finish (its chart in state 'done')")


def color_runs(image, rgb, tolerance=40):
    """The most separate marks of colour ``rgb`` found on any one row of ``image``."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    match = np.all(np.abs(pixels - np.array(rgb)) <= tolerance, axis=2)
    best = 0
    for row in match:
        padded = np.concatenate([[False], row, [False]])
        best = max(best, int(np.count_nonzero(padded[1:] & ~padded[:-1])))
    return best


def expected_steps():
    """Steps and guided steps of the example, read from its API twin."""
    api = json.loads(API_WORKFLOW.read_text())
    trace = next(node for node in api.values() if node["class_type"] == TRACE_TYPE)
    cutoff = next(node for node in api.values() if node["class_type"] == "ShapeFirstGuidanceCutoff")
    steps = trace["inputs"]["steps"]
    return steps, round(cutoff["inputs"]["guided_fraction"] * steps)


def test_example_runs_in_the_browser_and_the_chart_is_drawn(session, tmp_path):
    driver, server = session
    loaded = load_workflow(driver)
    assert "error" not in loaded, loaded
    assert loaded["output"] == json.loads(API_WORKFLOW.read_text()), \
        "the UI example and its API twin (example_workflows/api/) disagree: regenerate the UI file (tools/make_ui_workflows.py)"
    loaders = {node["class_type"] for node in loaded["swapped"].values()} & {"CheckpointLoaderSimple",
                                                                              "ShapeFirstTinyCheckpoint"}
    assert loaders == {"ShapeFirstTinyCheckpoint"}, loaders
    sizes = [(n["inputs"]["width"], n["inputs"]["height"]) for n in loaded["swapped"].values()
             if n["class_type"] == "EmptyLatentImage"]
    assert sizes == [(128, 128)], sizes
    steps, guided = expected_steps()

    other_client = Eavesdropper(server.url)
    other_client.start()
    assert other_client.connected.wait(10), "could not open a second websocket client"
    result = queue_and_wait(driver, loaded["node"], server)
    heard = other_client.stop()
    assert result["points"] == steps
    assert result["live"] == steps, "one live event per step must reach the client that queued the prompt"
    assert "status" in heard and not [e for e in heard if e.startswith("shapefirst.")], \
        f"live chart events leaked to another client: {sorted(set(heard))}"
    assert (result["both"], result["one"]) == (guided, steps - guided)
    assert result["cutoff"]["after_step"] == guided

    canvas = driver.execute_script(
        "return ((app) => app.rootGraph ?? app.graph)(window.comfyAPI.app.app).getNodeById(arguments[0]).shapefirstChart.canvas;", loaded["node"])
    folder = screenshot_dir(tmp_path)
    driver.save_screenshot(str(folder / "frequency_trace_page.png"))
    chart_png = folder / "frequency_trace_chart.png"
    canvas.screenshot(str(chart_png))
    chart = Image.open(chart_png)
    pixels = np.asarray(chart.convert("RGB")).reshape(-1, 3)
    assert chart.width > 300 and chart.height > 250, f"chart too small to read: {chart.size}"
    assert len(np.unique(pixels, axis=0)) > 50 and pixels.std() > 10, "the chart canvas is blank"
    assert color_runs(chart, BOTH_BRANCHES_RGB) == guided, f"screenshot {chart_png}: guided-step ticks"
    assert color_runs(chart, ONE_BRANCH_RGB) == steps - guided, f"screenshot {chart_png}: one-branch ticks"

    # Values on hover: the tooltip names a step and the recorded numbers.
    ActionChains(driver).move_to_element_with_offset(canvas, 0, 0).perform()
    tooltip = driver.find_element(By.CSS_SELECTOR, ".shapefirst-frequency-tooltip")
    wait_for(tooltip.is_displayed, 5, "the hover tooltip")
    assert f"of {steps}" in tooltip.text and "x_t low" in tooltip.text and "guidance" in tooltip.text

    # Same prompt again: the host answers from its cache and re-sends the UI output.
    again = queue_and_wait(driver, loaded["node"], server)
    assert again["live"] == 0, "a cache hit must not sample again"
    assert again["points"] == steps and again["both"] == guided
