#!/usr/bin/env python3
"""Regenerate the UI-format example workflows from their API-format twins.

    python tools/make_ui_workflows.py [--comfyui PATH]

For every ``example_workflows/NAME.api.json`` this writes ``NAME.json`` (what the ComfyUI
frontend loads as a template), with widget values ordered by the node definitions a
running ComfyUI reports on /object_info, and ``NAME.jpg``, the template browser's
thumbnail: a drawing of the graph with ShapeFirst's nodes highlighted. Keeps the formats
from drifting apart.
"""
import argparse
import json
import sys
from pathlib import Path

import pack_loader  # beside this script (Python puts a script's folder first on sys.path)

pack_loader.load_pack()
REPO = pack_loader.REPO

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from shapefirst.tools import headless, workflow_graph as wg  # noqa: E402

THUMBNAIL_SIZE = (512, 320)
OURS, STOCK, LINK, BACKGROUND, TEXT = "#e0763a", "#4a5568", "#8fa3bf", "#1e2229", "#f0f0f0"


def thumbnail(ui, title):
    """The graph scaled into the picture, titled; ShapeFirst nodes in orange."""
    image = Image.new("RGB", THUMBNAIL_SIZE, BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=10)
    draw.text((14, 10), title, fill=TEXT, font=font)
    boxes = {n["id"]: (n["pos"][0], n["pos"][1], n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in ui["nodes"]}
    left, top = min(b[0] for b in boxes.values()), min(b[1] for b in boxes.values())
    right, bottom = max(b[2] for b in boxes.values()), max(b[3] for b in boxes.values())
    area = (14, 36, THUMBNAIL_SIZE[0] - 14, THUMBNAIL_SIZE[1] - 10)
    scale = min((area[2] - area[0]) / (right - left), (area[3] - area[1]) / (bottom - top))

    def place(x, y):
        return area[0] + (x - left) * scale, area[1] + (y - top) * scale

    for link in ui["links"]:
        a, b = boxes[link[1]], boxes[link[3]]
        draw.line([place(a[2], (a[1] + a[3]) / 2), place(b[0], (b[1] + b[3]) / 2)], fill=LINK, width=2)
    for node in ui["nodes"]:
        x0, y0 = place(*boxes[node["id"]][:2])
        x1, y1 = place(*boxes[node["id"]][2:])
        ours = node["type"].startswith("ShapeFirst")
        draw.rounded_rectangle([x0, y0, x1, y1], radius=4, fill=OURS if ours else STOCK)
        label = node.get("title") or node["type"]
        draw.text((x0 + 3, y0 + 2), label[: max(4, int((x1 - x0) / 6))], fill=TEXT, font=small)
    return image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", help="path of your ComfyUI folder")
    parser.add_argument("names", nargs="*", help="example names (default: every NAME.api.json)")
    args = parser.parse_args(argv)
    comfyui = Path(args.comfyui) if args.comfyui else headless.find_comfyui(REPO)
    if comfyui is None:
        raise SystemExit(f"ComfyUI not found: pass --comfyui or {headless.HOST_HINT}.")
    with headless.HostServer(comfyui, REPO) as server:
        object_info = server.get("/object_info")
    api_paths = sorted((REPO / "example_workflows").glob("*.api.json"))
    if args.names:
        api_paths = [p for p in api_paths if p.name.replace(".api.json", "") in args.names]
    for api_path in api_paths:
        ui_path = api_path.with_name(api_path.name.replace(".api.json", ".json"))
        ui = wg.api_to_ui(headless.load_workflow(api_path), object_info)
        ui_path.write_text(json.dumps(ui, indent=2) + "\n")
        title = api_path.name.replace(".api.json", "").replace("_", " ")
        thumbnail(ui, f"ShapeFirst: {title}").save(ui_path.with_suffix(".jpg"), quality=90)
        print(f"wrote {ui_path.relative_to(REPO)} and its thumbnail")


if __name__ == "__main__":
    main()
