"""Edits of API-format workflows (the JSON ``/prompt`` takes): pure dict transforms.

Every function returns a new prompt and leaves its argument as it was.
"""
import copy
from pathlib import Path

from ..nodes.demo_models import shapes_data

# The template browser lists every *.json at the top of example_workflows/ (UI format, a
# same-name .jpg as its thumbnail); each one's API-format twin (what /prompt takes) lives in
# example_workflows/api/ under the same name, out of the template list.
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "example_workflows"
API_DIR = EXAMPLES_DIR / "api"


def example_names():
    """Names of the examples: one per API twin in example_workflows/api/."""
    return sorted(path.stem for path in API_DIR.glob("*.json"))


def api_path(name):
    """The API-format twin of the example ``name`` (``example_workflows/api/NAME.json``)."""
    return API_DIR / f"{name}.json"


def ui_path(name):
    """The UI-format template of the example ``name`` (``example_workflows/NAME.json``)."""
    return EXAMPLES_DIR / f"{name}.json"

CHECKPOINT_LOADERS = ("CheckpointLoaderSimple",)
TINY_CHECKPOINT = "ShapeFirstTinyCheckpoint"
DEMO_CHECKPOINT = "ShapeFirstDemoCheckpoint"
# Widgets that hold a prompt a user wrote: (node type, input), texts one per line.
PROMPT_WIDGETS = (("CLIPTextEncode", "text"), ("PrimitiveStringMultiline", "value"),
                  ("PrimitiveString", "value"), ("ShapeFirstPaperTable", "prompts"))


def upstream(prompt, node_ids):
    """The given nodes and every node they draw inputs from."""
    seen, stack = set(), [str(n) for n in node_ids]
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        if node_id not in prompt:
            raise KeyError(f"node {node_id} is not in the workflow")
        seen.add(node_id)
        for value in prompt[node_id]["inputs"].values():
            if _is_link(value):
                stack.append(str(value[0]))
    return seen


def _is_link(value):
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def subgraph(prompt, output_ids):
    """Only what the given output nodes need."""
    keep = upstream(prompt, output_ids)
    return {k: copy.deepcopy(v) for k, v in prompt.items() if k in keep}


def use_tiny_checkpoint(prompt, seed=0):
    """Replace checkpoint loaders by the tiny random checkpoint (same MODEL, CLIP, VAE slots);
    SDXL checkpoints (an "xl" in the file name) by its SDXL-shaped variant."""
    out = copy.deepcopy(prompt)
    for node in out.values():
        if node["class_type"] in CHECKPOINT_LOADERS:
            name = str(node["inputs"].get("ckpt_name", "")).lower()
            node["class_type"] = TINY_CHECKPOINT
            node["inputs"] = {"architecture": "sdxl" if "xl" in name else "sd15", "seed": seed}
            node.setdefault("_meta", {})["title"] = "Tiny Random Checkpoint (no checkpoint given)"
    return out


def _is_sdxl_loader(node):
    if node["class_type"] in CHECKPOINT_LOADERS:
        return "xl" in str(node["inputs"].get("ckpt_name", "")).lower()
    return node["class_type"] == TINY_CHECKPOINT and node["inputs"].get("architecture") == "sdxl"


def use_demo_checkpoint(prompt):
    """The trained demo model instead of SD1.x checkpoint loaders and SD1.5-shaped tiny
    checkpoints, at its picture size (64 px), with each distinct prompt text replaced by a
    demo caption (``shapes_data.DEMO_PROMPTS``, in order of appearance; empty texts stay
    empty): the model knows only its captions' words. A workflow with an SDXL loader is
    returned on the tiny SDXL-shaped model instead (the demo model is SD1.x only). A workflow
    already on the demo model (and no other loader) is returned as it is, prompts and all."""
    if any(_is_sdxl_loader(n) for n in prompt.values()):
        return use_tiny_checkpoint(prompt)
    if not any(n["class_type"] in CHECKPOINT_LOADERS + (TINY_CHECKPOINT,) for n in prompt.values()):
        return copy.deepcopy(prompt)
    out = copy.deepcopy(prompt)
    replaced = {}

    def demo_text(text):
        if not text.strip():
            return text
        if text not in replaced:
            replaced[text] = shapes_data.DEMO_PROMPTS[len(replaced) % len(shapes_data.DEMO_PROMPTS)]
        return replaced[text]

    for node in out.values():
        if node["class_type"] in CHECKPOINT_LOADERS + (TINY_CHECKPOINT,):
            node["class_type"] = DEMO_CHECKPOINT
            node["inputs"] = {}
            node.setdefault("_meta", {})["title"] = "ShapeFirst Demo Checkpoint (no checkpoint given)"
        for class_type, name in PROMPT_WIDGETS:
            value = node["inputs"].get(name)
            if node["class_type"] == class_type and isinstance(value, str):
                node["inputs"][name] = "\n".join(demo_text(line) for line in value.split("\n"))
    return set_everywhere(out, width=shapes_data.IMAGE_SIZE, height=shapes_data.IMAGE_SIZE)


def use_checkpoint(prompt, ckpt_name):
    out = copy.deepcopy(prompt)
    for node in out.values():
        if node["class_type"] in CHECKPOINT_LOADERS:
            node["inputs"]["ckpt_name"] = ckpt_name
    return out


def set_inputs(prompt, class_type, **values):
    """Set widget values on every node of a type that has those inputs."""
    out = copy.deepcopy(prompt)
    for node in out.values():
        if node["class_type"] == class_type:
            for name, value in values.items():
                if name in node["inputs"]:
                    node["inputs"][name] = value
    return out


def set_everywhere(prompt, **values):
    """Set widget values on every node, of any type, that has those inputs."""
    out = copy.deepcopy(prompt)
    for node in out.values():
        for name, value in values.items():
            if name in node["inputs"] and not _is_link(node["inputs"][name]):
                node["inputs"][name] = value
    return out


def feeds(prompt, source_id, target_class):
    """Ids of nodes of ``target_class`` that take an input straight from ``source_id``."""
    return [node_id for node_id, node in prompt.items() if node["class_type"] == target_class
            and any(_is_link(v) and str(v[0]) == str(source_id) for v in node["inputs"].values())]


def latent_only(prompt, sampler_ids, filename_prefix):
    """What the sampler(s) need, each ending in a SaveLatent: times sampling without decoding.
    ``sampler_ids``: one id or a list of them."""
    ids = [str(sampler_ids)] if isinstance(sampler_ids, (str, int)) else [str(i) for i in sampler_ids]
    out = subgraph(prompt, ids)
    next_id = max(int(k) for k in prompt) + 1
    for offset, sampler_id in enumerate(ids):
        out[str(next_id + offset)] = {"class_type": "SaveLatent",
                                      "inputs": {"samples": [sampler_id, 0], "filename_prefix": filename_prefix}}
    return out


IMAGE_PASS_THROUGH = ("SaveImage", "PreviewImage", "VAEDecode", "VAEDecodeTiled", "ImageScale", "ImageScaleBy")
IMAGE_INPUTS = ("images", "samples", "image")
BATCHES = {"ImageBatch": ("image1", "image2"), "LatentBatch": ("samples1", "samples2")}  # first input's first


def image_sources(prompt, node_id):
    """(node id, title) of the nodes whose images reach ``node_id``'s images, in the batch order
    ComfyUI gives them (ImageBatch and LatentBatch put their first input's images first). Decoders and savers
    are looked through, so a sampler titled "full" labels the images its VAEDecode makes."""
    node = prompt[str(node_id)]
    for batch_type, names in BATCHES.items():
        if node["class_type"] == batch_type:
            return [source for name in names if _is_link(node["inputs"].get(name))
                    for source in image_sources(prompt, node["inputs"][name][0])]
    if node["class_type"] in IMAGE_PASS_THROUGH:
        for name in IMAGE_INPUTS:
            if _is_link(node["inputs"].get(name)):
                return image_sources(prompt, node["inputs"][name][0])
    return [(str(node_id), node.get("_meta", {}).get("title") or node["class_type"])]


def label_images(prompt, save_id, count):
    """One (source node id, label) per image that ``save_id`` saved: each source's images in
    turn, numbered when a source gave several; ("", "image N") when the count does not split."""
    sources = image_sources(prompt, save_id)
    per_source, rest = divmod(count, len(sources)) if sources else (0, count)
    if rest or not per_source:
        return [("", f"image {i + 1}") for i in range(count)]
    return [(node, title if per_source == 1 else f"{title} {k + 1}") for node, title in sources
            for k in range(per_source)]


# --- API format -> the frontend's UI (litegraph) format -----------------------------------

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def is_widget(spec):
    """Whether an input definition from /object_info is a widget (value) rather than a socket."""
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


SEED_NAMES = ("seed", "noise_seed")


def extra_widget_values(name, spec):
    """Values the frontend stores after some widgets: 'control after generate' follows INT
    widgets that ask for it, and those named like a seed unless they opt out."""
    options = spec[1] if len(spec) > 1 else {}
    extra = []
    control = options.get("control_after_generate")
    if control or (control is None and spec[0] == "INT" and name in SEED_NAMES):
        extra.append("fixed")
    if options.get("image_upload"):
        extra.append("image")
    return extra


def ordered_inputs(definition):
    """(name, spec) of a node's inputs in the order the frontend lays them out."""
    order = definition.get("input_order")
    inputs = {**definition["input"].get("required", {}), **definition["input"].get("optional", {})}
    names = (order.get("required", []) + order.get("optional", [])) if order else list(inputs)
    return [(name, inputs[name]) for name in names]


def _depths(prompt):
    depth = {}

    def visit(node_id):
        if node_id not in depth:
            depth[node_id] = 0
            parents = [str(v[0]) for v in prompt[node_id]["inputs"].values() if _is_link(v)]
            depth[node_id] = 1 + max((visit(p) for p in parents), default=-1)
        return depth[node_id]

    for node_id in prompt:
        visit(node_id)
    return depth


def api_to_ui(prompt, object_info, extra_info=None):
    """A UI-format workflow (what the frontend saves and loads) equivalent to ``prompt``.

    Widget values follow each node's input order from ``object_info``; links keep the
    API's sources. Nodes are laid out in columns by their distance from the inputs.
    """
    depths = _depths(prompt)
    ids = {node_id: int(node_id) for node_id in prompt}
    links, ui_nodes, outgoing = [], [], {}
    rows = {}
    for order, node_id in enumerate(sorted(prompt, key=lambda k: (depths[k], int(k)))):
        node = prompt[node_id]
        definition = object_info[node["class_type"]]
        inputs, widgets = [], []
        for name, spec in ordered_inputs(definition):
            value = node["inputs"].get(name)
            if _is_link(value):
                link_id = len(links) + 1
                source, slot = str(value[0]), value[1]
                source_type = object_info[prompt[source]["class_type"]]["output"][slot]
                links.append([link_id, ids[source], slot, ids[node_id], len(inputs), source_type])
                outgoing.setdefault((source, slot), []).append(link_id)
                entry = {"name": name, "type": source_type, "link": link_id}
                if is_widget(spec):
                    entry["widget"] = {"name": name}
                    widgets.append(spec[1].get("default") if len(spec) > 1 else None)
                    widgets += extra_widget_values(name, spec)
                inputs.append(entry)
            elif is_widget(spec):
                widgets.append(value if name in node["inputs"] else (spec[1].get("default") if len(spec) > 1 else None))
                widgets += extra_widget_values(name, spec)
        column = depths[node_id]
        height = 46 + 22 * (len(inputs) + len(widgets))
        top = rows.get(column, 40)
        rows[column] = top + height + 60  # stack each column by the real node heights
        ui_node = {
            "id": ids[node_id], "type": node["class_type"], "pos": [40 + 380 * column, top],
            "size": [340, height], "flags": {}, "order": order, "mode": 0,
            "inputs": inputs, "outputs": [], "properties": {"Node name for S&R": node["class_type"]},
            "widgets_values": widgets,
        }
        title = node.get("_meta", {}).get("title")
        if title:
            ui_node["title"] = title
        ui_nodes.append(ui_node)
    for ui_node, node_id in zip(ui_nodes, sorted(prompt, key=lambda k: (depths[k], int(k)))):
        definition = object_info[prompt[node_id]["class_type"]]
        for slot, (kind, name) in enumerate(zip(definition["output"], definition["output_name"])):
            ui_node["outputs"].append({"name": name, "type": kind, "links": outgoing.get((node_id, slot), []),
                                       "slot_index": slot})
    return {
        "last_node_id": max(ids.values()), "last_link_id": len(links), "nodes": ui_nodes, "links": links,
        "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}, **(extra_info or {})},
        "version": 0.4,
    }


def shrink_for_test(prompt, size=64, steps=4):
    """Small and short, with tiny random checkpoints: runs any example in seconds on a CPU.

    SDXL checkpoints (an "xl" in the file name) become the SDXL-shaped tiny model.
    """
    out = set_everywhere(use_tiny_checkpoint(prompt), width=size, height=size, repeats=1, batch_size=1)
    for node in out.values():
        if isinstance(node["inputs"].get("steps"), int):
            node["inputs"]["steps"] = min(node["inputs"]["steps"], steps)
    return out
