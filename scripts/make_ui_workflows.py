#!/usr/bin/env python3
"""Regenerate the UI-format example workflows from their API-format twins.

    python scripts/make_ui_workflows.py [--comfyui PATH]

For every ``example_workflows/NAME.api.json`` this writes ``NAME.json`` (what the ComfyUI
frontend loads as a template), with widget values ordered by the node definitions a
running ComfyUI reports on /object_info. Keeps the two formats from drifting apart.
"""
import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this script's own imports; the pack itself never edits sys.path

from shapefirst_core import headless, workflow_graph as wg  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", help="path of your ComfyUI folder")
    args = parser.parse_args(argv)
    comfyui = Path(args.comfyui) if args.comfyui else headless.find_comfyui(REPO)
    if comfyui is None:
        raise SystemExit(f"ComfyUI not found: pass --comfyui or {headless.HOST_HINT}.")
    with headless.HostServer(comfyui, REPO) as server:
        object_info = server.get("/object_info")
    for api_path in sorted((REPO / "example_workflows").glob("*.api.json")):
        ui_path = api_path.with_name(api_path.name.replace(".api.json", ".json"))
        ui = wg.api_to_ui(headless.load_workflow(api_path), object_info)
        ui_path.write_text(json.dumps(ui, indent=2) + "\n")
        print(f"wrote {ui_path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
