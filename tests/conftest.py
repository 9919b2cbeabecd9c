"""Test setup: find the ComfyUI host, load the pack through the host's own loader.

Tests marked ``host`` need ComfyUI; without it they are skipped with one line that says
how to enable them. Pure-logic modules (``shapefirst_core``) are loaded by file path, so
those tests run anywhere, and the repository root is never put on ``sys.path`` (our
``nodes`` package would shadow the host's ``nodes`` module).
"""
import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "ShapeFirst"



def _load_core():
    """Import ``shapefirst_core`` (no host needed) as a top-level package, by path."""
    if "shapefirst_core" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "shapefirst_core", REPO / "shapefirst_core" / "__init__.py",
        submodule_search_locations=[str(REPO / "shapefirst_core")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["shapefirst_core"] = module
    spec.loader.exec_module(module)


_load_core()


from shapefirst_core.headless import HOST_HINT, find_comfyui  # noqa: E402

HOST = find_comfyui(REPO)


def pytest_report_header(config):
    if HOST is None:
        return f"ComfyUI host: NOT FOUND, host tests skipped: {HOST_HINT} to run them"
    return f"ComfyUI host: {HOST}"


def pytest_collection_modifyitems(config, items):
    if HOST is not None:
        return
    skip = pytest.mark.skip(reason=f"ComfyUI host not found: {HOST_HINT} to run them")
    for item in items:
        if "host" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if HOST is None:
        terminalreporter.write_line(f"host tests skipped: ComfyUI not found; {HOST_HINT} to run them")


@pytest.fixture(scope="session")
def host():
    """Import the host on CPU (once) and return its folder."""
    if HOST is None:
        pytest.skip(f"ComfyUI host not found: {HOST_HINT} to run them")
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
    link = custom_nodes / PACK_NAME
    link.symlink_to(REPO, target_is_directory=True)
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False))
    assert asyncio.run(nodes.load_custom_node(str(link))), "the host failed to load the pack"
    return PackHandle(sys.modules[str(link).replace(".", "_x_")])


class PackHandle:
    """Access to the loaded pack's submodules by their dotted path inside the pack."""

    def __init__(self, module):
        self.module = module

    def __getitem__(self, dotted):
        return importlib.import_module(f"{self.module.__name__}.{dotted}")


@pytest.fixture(scope="session")
def tiny(pack):
    """The tiny random-weight model builders (host classes)."""
    return pack["nodes.tiny_models"]


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
    cutoff, schedule = pack["nodes.cutoff_patch"], pack["shapefirst_core.cutoff_schedule"]

    def apply(model, **settings):
        messages = []
        patched, patch = cutoff.apply_cutoff(model, schedule.CutoffSettings(**settings),
                                             lambda message, run: messages.append(message))
        return patched, patch, messages
    return apply


@pytest.fixture(scope="session")
def server(host):
    """A running ComfyUI (CPU, loopback, this pack as its only custom node) for the whole session."""
    from shapefirst_core import headless
    with headless.HostServer(HOST, REPO) as running:
        yield running
