"""Edits of API-format workflows (the JSON ``/prompt`` takes): pure dict transforms.

Every function returns a new prompt and leaves its argument as it was.
"""
import copy

CHECKPOINT_LOADERS = ("CheckpointLoaderSimple",)
TINY_CHECKPOINT = "ShapeFirstTinyCheckpoint"


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


def use_tiny_checkpoint(prompt, architecture="sd15", seed=0):
    """Replace checkpoint loaders by the tiny random checkpoint (same MODEL, CLIP, VAE slots)."""
    out = copy.deepcopy(prompt)
    for node in out.values():
        if node["class_type"] in CHECKPOINT_LOADERS:
            node["class_type"] = TINY_CHECKPOINT
            node["inputs"] = {"architecture": architecture, "seed": seed}
            node.setdefault("_meta", {})["title"] = "Tiny Random Checkpoint (no checkpoint given)"
    return out


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


def feeds(prompt, source_id, target_class):
    """Ids of nodes of ``target_class`` that take an input straight from ``source_id``."""
    return [node_id for node_id, node in prompt.items() if node["class_type"] == target_class
            and any(_is_link(v) and str(v[0]) == str(source_id) for v in node["inputs"].values())]


def latent_only(prompt, sampler_id, filename_prefix):
    """What ``sampler_id`` needs, ending in a SaveLatent: times sampling without decoding."""
    out = subgraph(prompt, [sampler_id])
    save_id = str(max(int(k) for k in prompt) + 1)
    out[save_id] = {"class_type": "SaveLatent",
                    "inputs": {"samples": [str(sampler_id), 0], "filename_prefix": filename_prefix}}
    return out
