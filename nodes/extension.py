"""The pack's V3 extension: each feature's nodes register on their own, so a host that lacks
what one feature needs (an optional ``comfy.text_encoders`` module, say) loses that feature's
nodes with one log line, not the whole pack."""
import importlib
import logging

from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

FEATURES = ("guidance_cutoff", "frequency", "eos_tokens", "evaluation", "performance", "demo_models")

# Modules that must import nothing of ComfyUI (checked by tests/test_packaging.py).
HOST_FREE_MODULES = (
    "nodes/__init__.py", "nodes/validation.py", "nodes/guidance_cutoff/__init__.py", "nodes/guidance_cutoff/schedule.py",
    "nodes/guidance_cutoff/settled.py",
    "nodes/eos_tokens/__init__.py", "nodes/eos_tokens/roles.py",
    "nodes/frequency/__init__.py", "nodes/frequency/bands.py", "nodes/frequency/report.py",
    "nodes/frequency/chart.py",
    "nodes/evaluation/__init__.py", "nodes/evaluation/metrics.py", "nodes/evaluation/paper_table.py",
    "nodes/performance/__init__.py", "nodes/demo_models/__init__.py",
    "nodes/demo_models/shapes_data.py", "nodes/demo_models/scorer.py",
)

log = logging.getLogger("ShapeFirst")


def feature_nodes(features=FEATURES):
    """Every node class of the features that import, and one log line for each that does not."""
    found = []
    for feature in features:
        try:
            module = importlib.import_module(f".{feature}.nodes", __package__)
        except ImportError as error:
            log.warning("ShapeFirst: the %s nodes are disabled on this ComfyUI: %s", feature, error)
            continue
        found.extend(module.NODES)
    return found


class ShapeFirstExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return feature_nodes()
