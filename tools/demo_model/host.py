"""The host for the demo model's scripts: found or set up as the tests do, on the CPU unless
CUDA is present, with ComfyUI's own ``nodes`` importable (the report runs the pack's nodes)."""
import sys

import torch

from .. import registry_host
from ..pack_loader import REPO


def import_host():
    comfyui = registry_host.find_or_set_up_comfyui(REPO)
    sys.path.insert(0, str(comfyui))
    import comfy.cli_args
    if not torch.cuda.is_available():
        comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401
    import utils.install_util  # noqa: F401  (before `nodes`, as in main.py)
    import nodes  # noqa: F401
