"""Labels of saved images: each image named after the node that made it (host-free)."""
import json

from conftest import REPO
from shapefirst.tools import workflow_graph as wg

EXAMPLES = REPO / "example_workflows"


def _example(name):
    return json.loads((EXAMPLES / "api" / f"{name}.json").read_text())


def test_a_batch_of_samplers_is_labelled_in_imagebatch_order():
    prompt = _example("eos_only_vs_prompt_only")
    save = [k for k, n in prompt.items() if n["class_type"] == "SaveImage"][0]
    assert [label for _, label in wg.label_images(prompt, save, 5)] == [
        "full", "EOS only (empty)", "prompt only (empty)", "EOS only (zeros)", "prompt only (zeros)"]


def test_several_images_per_sampler_are_numbered_and_odd_counts_fall_back():
    prompt = _example("eos_switch_experiment")
    save = [k for k, n in prompt.items() if n["class_type"] == "SaveImage"][0]
    labels = [label for _, label in wg.label_images(prompt, save, 8)]
    assert labels[:3] == ["1. prompt A 1", "1. prompt A 2", "2. prompt B 1"]
    assert [label for _, label in wg.label_images(prompt, save, 5)] == [f"image {i}" for i in range(1, 6)]


def test_an_untitled_sampler_labels_by_its_type_not_its_latent():
    prompt = {"1": {"class_type": "EmptyLatentImage", "inputs": {}},
              "2": {"class_type": "KSampler", "inputs": {"latent_image": ["1", 0]}},
              "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0]}},
              "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}}}
    assert wg.label_images(prompt, "4", 1) == [("2", "KSampler")]


def test_the_demo_model_replaces_sd1_loaders_and_prompts_but_not_sdxl():
    prompt = _example("eos_switch_experiment")
    demo = wg.use_demo_checkpoint(prompt)
    assert prompt == _example("eos_switch_experiment")  # the argument is left as it was
    types = [n["class_type"] for n in demo.values()]
    assert wg.DEMO_CHECKPOINT in types and "CheckpointLoaderSimple" not in types
    texts = [n["inputs"]["value"] for n in demo.values() if n["class_type"] == "PrimitiveStringMultiline"]
    assert texts == list(wg.shapes_data.DEMO_PROMPTS[:2])  # two different prompts stay different
    assert all(n["inputs"]["width"] == 64 for n in demo.values() if n["class_type"] == "EmptyLatentImage")
    assert [n["inputs"]["text"] for n in demo.values() if n["class_type"] == "CLIPTextEncode"
            and isinstance(n["inputs"]["text"], str)] == [""]  # the empty negative stays empty
    table = wg.use_demo_checkpoint(_example("paper_table_evaluation"))
    lines = next(n for n in table.values() if n["class_type"] == "ShapeFirstPaperTable")["inputs"]["prompts"].split("\n")
    assert lines == list(wg.shapes_data.DEMO_PROMPTS[:3])
    sdxl = wg.use_demo_checkpoint(_example("sdxl_cutoff"))
    assert wg.DEMO_CHECKPOINT not in [n["class_type"] for n in sdxl.values()]
    assert {"architecture": "sdxl", "seed": 0} in [n["inputs"] for n in sdxl.values() if n["class_type"] == wg.TINY_CHECKPOINT]


def test_the_starter_is_left_as_it_is_and_its_rows_are_labelled_through_latent_batches():
    starter = _example("shapefirst_starter_demo_model")
    assert wg.use_demo_checkpoint(starter) == starter  # already on the demo model: prompts kept
    saves = {n["_meta"]["title"]: k for k, n in starter.items() if n["class_type"] == "SaveImage"}
    labels = [label for _, label in wg.label_images(starter, saves["Save (cutoff)"], 6)]
    assert labels == ["cutoff: red circle 1", "cutoff: red circle 2", "cutoff: blue square 1",
                      "cutoff: blue square 2", "cutoff: green cross 1", "cutoff: green cross 2"]


def test_latent_only_keeps_every_sampler_given():
    starter = _example("shapefirst_starter_demo_model")
    samplers = [k for k, n in starter.items() if n["class_type"] == "KSampler"][:3]
    timed = wg.latent_only(starter, samplers, "t")
    saves = [n["inputs"]["samples"][0] for n in timed.values() if n["class_type"] == "SaveLatent"]
    assert saves == samplers
    assert not [n for n in timed.values() if n["class_type"] in ("VAEDecode", "SaveImage", "ShapeFirstFrequencyTrace")]
    assert wg.example_names()[0] == "adaptive_cutoff_guider" and wg.api_path("sdxl_cutoff").is_file()
