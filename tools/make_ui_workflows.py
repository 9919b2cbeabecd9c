#!/usr/bin/env python3
"""Regenerate the UI-format example workflows and their thumbnails from the API-format twins.

    python tools/make_ui_workflows.py [--comfyui PATH] [--graph-only] [NAME ...]

For every ``example_workflows/api/NAME.json`` (the API format ``/prompt`` takes, kept out of
the template list) this writes ``example_workflows/NAME.json`` (what the ComfyUI frontend
lists and loads as a template), with widget values ordered by the node definitions a running
ComfyUI reports on /object_info, and ``NAME.jpg``, the template browser's thumbnail.

The thumbnail is the workflow's real output where it runs on the pack's demo model (SD1.x
checkpoint loaders swapped for the ShapeFirst Demo Checkpoint and prompts for its captions,
as tools/shapefirst_demo.py does; run here on the CPU): its pictures, labelled by the node
that made them, or the Frequency Trace's chart. Workflows for models the demo model cannot
stand in for (SDXL, Wan, Chroma) get a drawing of their graph that says so. ``--graph-only``
draws every thumbnail as a graph (no sampling).
"""
import argparse
import json
import re
from pathlib import Path

import pack_loader  # beside this script (Python puts a script's folder first on sys.path)

pack_loader.load_pack()
REPO = pack_loader.REPO

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

import shapefirst_demo as demo  # noqa: E402  (beside this script)
from shapefirst.tools import headless, workflow_graph as wg  # noqa: E402

THUMBNAIL_SIZE = (512, 384)
OURS, STOCK, LINK, BACKGROUND, TEXT, NOTE = "#e0763a", "#4a5568", "#8fa3bf", "#1e2229", "#f0f0f0", "#f6c177"
TRACE = "ShapeFirstFrequencyTrace"
# Templates laid out by hand in the frontend (the chart node's size, notes): only their thumbnail
# is made here; tests/test_example_workflows.py checks that they still match their API twin.
HAND_LAID = {"frequency_trace_paper_setting"}
PAPER_TABLE = "ShapeFirstPaperTable"
# Written into each thumbnail (JPEG comment): what it shows (tests/test_example_workflows.py reads it).
OUTPUT_COMMENT = "ShapeFirst thumbnail: the workflow's output on the ShapeFirst demo model"
GRAPH_COMMENT = "ShapeFirst thumbnail: a drawing of the workflow's graph"


def _title(name):
    return "ShapeFirst: " + name.replace("_", " ")


def graph_thumbnail(ui, title, note=None):
    """The graph scaled into the picture, titled; ShapeFirst nodes in orange; ``note`` (why
    there is no picture) in a band at the foot."""
    image = Image.new("RGB", THUMBNAIL_SIZE, BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    small = ImageFont.load_default(size=10)
    draw.text((14, 10), title, fill=TEXT, font=font)
    boxes = {n["id"]: (n["pos"][0], n["pos"][1], n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
             for n in ui["nodes"]}
    left, top = min(b[0] for b in boxes.values()), min(b[1] for b in boxes.values())
    right, bottom = max(b[2] for b in boxes.values()), max(b[3] for b in boxes.values())
    foot = 46 if note else 10
    area = (14, 36, THUMBNAIL_SIZE[0] - 14, THUMBNAIL_SIZE[1] - foot)
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
    if note:
        draw.rectangle([0, THUMBNAIL_SIZE[1] - 40, THUMBNAIL_SIZE[0], THUMBNAIL_SIZE[1]], fill="#2b2f38")
        for k, line in enumerate(demo._wrap(note, 70)[:2]):
            draw.text((14, THUMBNAIL_SIZE[1] - 36 + 16 * k), line, fill=NOTE, font=ImageFont.load_default(size=12))
    return image


def fit(picture, title, subtitle):
    """``picture`` scaled into the thumbnail under a title line and a subtitle line."""
    image = Image.new("RGB", THUMBNAIL_SIZE, BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((14, 8), title, fill=TEXT, font=ImageFont.load_default(size=13))
    draw.text((14, 26), subtitle, fill=NOTE, font=ImageFont.load_default(size=12))
    box = (THUMBNAIL_SIZE[0] - 16, THUMBNAIL_SIZE[1] - 48)
    scale = min(box[0] / picture.width, box[1] / picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    resized = picture.convert("RGB").resize(size, Image.LANCZOS)
    image.paste(resized, ((THUMBNAIL_SIZE[0] - size[0]) // 2, 42 + (box[1] - size[1]) // 2))
    return image


def why_not_on_the_demo_model(prompt):
    """None where the workflow runs on the demo model, else what it needs instead."""
    loaders = [node for node in prompt.values() if node["class_type"] in ("UNETLoader", "CheckpointLoaderSimple")]
    for node in loaders:
        name = str(node["inputs"].get("unet_name") or node["inputs"].get("ckpt_name", ""))
        if node["class_type"] == "UNETLoader":
            family = "Wan" if "wan" in name.lower() else "Chroma" if "chroma" in name.lower() else "this"
            return f"Needs a {family} model ({name}); the demo model is SD1.x only, so this is a drawing of the graph."
        if "xl" in name.lower():
            return f"Needs an SDXL checkpoint ({name}); the demo model is SD1.x only, so this is a drawing of the graph."
    return None


def output_files(prompt, entry, base_dir):
    """{node id: [picture paths]} of every node that showed or saved pictures."""
    found = {}
    for node_id, output in entry.get("outputs", {}).items():
        for image in output.get("images", []):
            folder = Path(base_dir) / ("output" if image.get("type") == "output" else "temp")
            found.setdefault(node_id, []).append(folder / image.get("subfolder", "") / image["filename"])
    return found


def _fractions(text):
    return [float(part) for part in re.split(r"[,\s]+", text.strip()) if part]


def picture_rows(prompt, files):
    """[(row label, [(column label, path)])] of a workflow's pictures: a Frequency Trace's
    chart alone; a Paper Table's pictures one row per prompt; else each saved picture in one
    row, labelled by the node that made it."""
    traces = headless.nodes_of_type(prompt, TRACE)
    if traces:
        plots = [node_id for node_id, node in prompt.items() if node["class_type"] == "PreviewImage"
                 and node["inputs"]["images"] == [traces[0], 1]]
        if plots and plots[0] in files:
            return "chart", files[plots[0]][0]
    tables = headless.nodes_of_type(prompt, PAPER_TABLE)
    if tables:
        table = prompt[tables[0]]["inputs"]
        heads = ["full CFG"] + [f"text-free {round(100 * f)} %" for f in _fractions(table["text_free_fractions"])]
        saved = next(paths for node_id, paths in files.items() if prompt[node_id]["class_type"] == "SaveImage")
        captions = [line for line in table["prompts"].split("\n") if line.strip()]
        return "grid", [(demo.short_caption(text).replace(", ", ",\n"),
                         [(head, path) for head, path in zip(heads, saved[k * len(heads):])])
                        for k, text in enumerate(captions)]
    cells = []
    for node_id in sorted(files, key=int):
        if prompt[node_id]["class_type"] != "SaveImage":
            continue
        for (source, label), path in zip(wg.label_images(prompt, node_id, len(files[node_id])), files[node_id]):
            cells.append((label, path))
    return "grid", [("", cells[:8])]


def grid_picture(rows, label_width):
    """demo.make_grid with cells sized so the grid fills the thumbnail without much scaling."""
    columns, count = max(len(cells) for _, cells in rows), len(rows)
    cell = int(min(256, (THUMBNAIL_SIZE[0] - 16 - label_width) / columns - 4,
                   (THUMBNAIL_SIZE[1] - 48 - 40) / count - 4))
    return demo.make_grid(rows, cell=max(cell, 48), label_width=label_width)


def output_thumbnail(name, prompt, entry, base_dir, variants=None):
    title, subtitle = _title(name), "its output on the ShapeFirst demo model (64 px, CPU)"
    files = output_files(prompt, entry, base_dir)
    if variants:  # the starter: one row per variant, one picture per prompt
        rows = demo.grid_rows(prompt, variants, [
            {"file": str(path), "source": source}
            for node_id, paths in files.items() if prompt[node_id]["class_type"] == "SaveImage"
            for (source, _), path in zip(wg.label_images(prompt, node_id, len(paths)), paths)], per_prompt=1)
        return fit(grid_picture([(label.split("\n")[0].replace(", ", ",\n"), cells) for label, cells in rows],
                                label_width=130), title, subtitle)
    kind, content = picture_rows(prompt, files)
    if kind == "chart":
        with Image.open(content) as chart:
            return fit(chart.copy(), title, "Frequency Trace chart, on the ShapeFirst demo model (64 px, CPU)")
    rows = [(label, cells) for label, cells in content if cells]
    label_width = 130 if any(label for label, _ in rows) else 4
    return fit(grid_picture(rows, label_width), title, subtitle)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", help="path of your ComfyUI folder")
    parser.add_argument("--graph-only", action="store_true", help="draw every thumbnail as a graph (no sampling)")
    parser.add_argument("names", nargs="*", help="example names (default: every example_workflows/api/NAME.json)")
    args = parser.parse_args(argv)
    comfyui = Path(args.comfyui) if args.comfyui else headless.find_comfyui(REPO)
    if comfyui is None:
        raise SystemExit(f"ComfyUI not found: pass --comfyui or {headless.HOST_HINT}.")
    names = args.names or wg.example_names()
    unknown = sorted(set(names) - set(wg.example_names()))
    if unknown:
        raise SystemExit(f"no example_workflows/api/NAME.json for {', '.join(unknown)}")
    with headless.HostServer(comfyui, REPO) as server:
        object_info = server.get("/object_info")
        for name in names:
            api = headless.load_workflow(wg.api_path(name))
            if name in HAND_LAID:
                ui = json.loads(wg.ui_path(name).read_text())
            else:
                ui = wg.api_to_ui(api, object_info)
                wg.ui_path(name).write_text(json.dumps(ui, indent=2) + "\n")
            thumbnail = wg.ui_path(name).with_suffix(".jpg")
            reason = why_not_on_the_demo_model(api)
            if args.graph_only or reason:
                graph_thumbnail(ui, _title(name), reason).save(thumbnail, quality=88, comment=GRAPH_COMMENT.encode())
                print(f"wrote {wg.ui_path(name).relative_to(REPO)} and its thumbnail (graph)")
                continue
            # (repeats: the Paper Table's timed runs; its pictures come from the first)
            prompt = wg.set_everywhere(wg.use_demo_checkpoint(api), repeats=1)
            entry, seconds = server.run(prompt, timeout=3600)
            variants = demo.find_samplers(prompt) if name == demo.STARTER else None
            output_thumbnail(name, prompt, entry, server.base_dir, variants).save(thumbnail, quality=88,
                                                                                  comment=OUTPUT_COMMENT.encode())
            print(f"wrote {wg.ui_path(name).relative_to(REPO)} and its thumbnail (its output, {seconds:.0f} s)")


if __name__ == "__main__":
    main()
