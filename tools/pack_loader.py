"""The one way tests, scripts and the benchmark import the pack: as the package ``shapefirst``.

The repository is a ComfyUI custom node folder, not an installed package, and its ``nodes``
folder would shadow ComfyUI's own ``nodes`` module if the repository root were put on
``sys.path``. So the root is registered as ``shapefirst`` by file path instead; after
``load_pack()``, ``import shapefirst.tools.headless`` or
``from shapefirst.nodes.guidance_cutoff import schedule`` work as for any package. Importing
the package imports nothing of ComfyUI (see the pack's ``__init__.py``).

Scripts in ``tools/`` run with this folder first on ``sys.path`` (Python puts a script's own
folder there), so they start with ``import pack_loader; pack_loader.load_pack()``.
"""
import importlib
import importlib.util
import sys
from pathlib import Path

PACKAGE = "shapefirst"
REPO = Path(__file__).resolve().parents[1]


def load_pack():
    """The pack as the package ``shapefirst`` (registered once; later calls return it)."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    spec = importlib.util.spec_from_file_location(PACKAGE, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    return module


def pack_module(dotted):
    """A module of the pack by its path inside it, e.g. ``pack_module("tools.headless")``."""
    load_pack()
    return importlib.import_module(f"{PACKAGE}.{dotted}")


def rebind_submodules():
    """Re-attach loaded submodules to the package after ComfyUI's loader re-ran the pack's
    ``__init__.py`` under the same name (it makes a new module object; the submodules already
    imported stay in ``sys.modules`` and are reused, so each module exists once)."""
    package = sys.modules[PACKAGE]
    for name, module in list(sys.modules.items()):
        if name.startswith(PACKAGE + ".") and name.count(".") == 1 and module is not None:
            setattr(package, name.split(".", 1)[1], module)
