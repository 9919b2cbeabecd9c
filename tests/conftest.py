"""Test setup: find the ComfyUI host, load the pack through the host's own loader.

The tests import the pack one way, as the package ``shapefirst`` (``tools/pack_loader.py``):
host-free modules (``shapefirst.nodes.guidance_cutoff.schedule``, ``shapefirst.tools.headless``…)
import anywhere; host modules through the ``pack`` fixture, once ComfyUI is importable.

Tests marked ``host`` need ComfyUI. It is found through $COMFYUI_PATH, the ComfyUI the pack
sits in, or an importable ``comfy``; failing those, the registry ComfyUI is set up in a
cache folder (``tools/registry_host.py``; ``SHAPEFIRST_HOST_SETUP=0`` turns that off).
Without any host they are skipped with one line that says how to enable them, except in CI
(``CI=true``) or with ``SHAPEFIRST_REQUIRE_HOST=1``: there a missing host stops the run and
a skipped host test counts as a failure. The repository root is never put on ``sys.path``
(our ``nodes`` package would shadow the host's ``nodes`` module).
"""
import asyncio
import contextlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "ShapeFirst"


def _bootstrap_pack_loader():
    spec = importlib.util.spec_from_file_location("pack_loader", REPO / "tools" / "pack_loader.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pack_loader = _bootstrap_pack_loader()
pack_loader.load_pack()

from shapefirst.tools import registry_host  # noqa: E402

REQUIRE_HOST = (os.environ.get("CI", "").lower() in ("1", "true", "yes")
                or os.environ.get("SHAPEFIRST_REQUIRE_HOST") == "1")
HOST = None
HOST_PROBLEM = None


def _find_or_set_up_host(config):
    """The host's folder, or None with the reason in HOST_PROBLEM."""
    global HOST_PROBLEM
    capture = config.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():  # a set-up's progress lines must show
            return registry_host.find_or_set_up_comfyui(REPO, log=lambda line: print(line, flush=True))
    except RuntimeError as error:
        HOST_PROBLEM = str(error)
        return None


def pytest_configure(config):
    global HOST
    HOST = _find_or_set_up_host(config)
    if HOST is None and REQUIRE_HOST:
        raise pytest.UsageError(f"CI needs the host: {HOST_PROBLEM}")


def pytest_report_header(config):
    if HOST is None:
        return f"ComfyUI host: NOT FOUND, host tests skipped: {HOST_PROBLEM}"
    version = (HOST / "comfyui_version.py")
    version = version.read_text().split("=")[-1].strip().strip('"') if version.is_file() else "unknown version"
    return f"ComfyUI host: {HOST} ({version})" + ("; host tests must not skip" if REQUIRE_HOST else "")


def pytest_collection_modifyitems(config, items):
    if HOST is not None:
        return
    skip = pytest.mark.skip(reason=HOST_PROBLEM)
    for item in items:
        if "host" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped host test fails: a green run must have exercised the host."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_HOST and report.skipped and "host" in item.keywords:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"host test skipped in CI (skips of host tests fail there): {reason}"


def pytest_terminal_summary(terminalreporter):
    if HOST is None:
        terminalreporter.write_line(f"host tests skipped: {HOST_PROBLEM}")


@pytest.fixture(scope="session")
def host():
    """Import the host on CPU (once) and return its folder."""
    if HOST is None:
        pytest.skip(HOST_PROBLEM)
    if str(HOST) in sys.path:
        sys.path.remove(str(HOST))
    sys.path.insert(0, str(HOST))  # the host's top-level modules (nodes, utils, server) must win
    import comfy.cli_args
    comfy.cli_args.args.cpu = True  # tests are deterministic CPU runs, whatever GPU is present
    import comfy.model_management  # noqa: F401  (reads the flag at import)
    # As in main.py: the host's `utils` package is imported before `nodes`, which puts
    # comfy/ on sys.path and would otherwise shadow it with comfy/utils.py.
    import utils.install_util  # noqa: F401
    import server  # noqa: F401
    return HOST


@pytest.fixture(scope="session")
def pack(host, tmp_path_factory):
    """The pack, loaded by the host's own loader (``nodes.load_custom_node``), with the
    host's built-in extra nodes, as ComfyUI does at start-up."""
    import nodes
    custom_nodes = tmp_path_factory.mktemp("custom_nodes")
    (custom_nodes / pack_loader.PACKAGE).symlink_to(REPO, target_is_directory=True)
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False))
    # ComfyUI names a folder's module after the path it is given: given the bare folder name
    # from inside custom_nodes/, the pack loads under the name the tests already import it by,
    # so each of its modules exists once.
    with contextlib.chdir(custom_nodes):
        assert asyncio.run(nodes.load_custom_node(pack_loader.PACKAGE)), "the host failed to load the pack"
    pack_loader.rebind_submodules()
    return PackHandle()


class PackHandle:
    """Access to the loaded pack's submodules by their dotted path inside the pack."""

    def __getitem__(self, dotted):
        return pack_loader.pack_module(dotted)


@pytest.fixture(scope="session")
def tiny(pack):
    """The tiny random-weight model builders of every family (host classes)."""
    return pack["tools.tiny_test_models"]


def exact_round_trip_sd15(tiny, seed=1):
    """The tiny SD1.5-shaped model with a power-of-two latent scale. The host's two-stage
    reference passes the latent through process_out/process_in between its samplers; 0.125
    makes that round trip exact, so comparisons isolate the cutoff (SD1.5's 0.18215 would add
    1-ulp differences)."""
    m = tiny.tiny_model("sd15", seed=seed)
    m.model.latent_format.scale_factor = 0.125
    return m


@pytest.fixture(scope="session")
def encode_prompts(tiny):
    """(positive, negative) conditioning from a tiny SD1.5-shaped CLIP with the host's real
    tokenizer, as CLIPTextEncode makes it."""
    def encode(seed, prompt, negative=""):
        import nodes
        clip = tiny.tiny_clip("sd15", seed=seed)
        encoder = nodes.CLIPTextEncode()
        return encoder.encode(clip, prompt)[0], encoder.encode(clip, negative)[0]
    return encode


@pytest.fixture(scope="session")
def reporting_cutoff(pack):
    """apply_cutoff with the run summaries collected: (patched model, patch, messages)."""
    cutoff, schedule = pack["nodes.guidance_cutoff.patch"], pack["nodes.guidance_cutoff.schedule"]

    def apply(model, **settings):
        messages = []
        patched, patch = cutoff.apply_cutoff(model, schedule.CutoffSettings(**settings),
                                             lambda message, run: messages.append(message))
        return patched, patch, messages
    return apply


TINY_FAMILY_NODES = "tiny_family_nodes"  # tests/tiny_family_nodes: the tiny models of every family as loaders


@pytest.fixture(scope="session")
def server(host):
    """A running ComfyUI (CPU, loopback) for the whole session: this pack and the tests' tiny
    loaders of the DiT and video families (``tests/tiny_family_nodes``) as its custom nodes."""
    from shapefirst.tools import headless
    extra = {TINY_FAMILY_NODES: REPO / "tests" / TINY_FAMILY_NODES}
    with headless.HostServer(HOST, REPO, extra_custom_nodes=extra) as running:
        yield running
