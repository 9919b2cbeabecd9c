#!/usr/bin/env python3
"""Run a ShapeFirst example workflow headless through ComfyUI and report the saving.

    python tools/shapefirst_demo.py                      # the pack's trained demo model, CPU
    python tools/shapefirst_demo.py --checkpoint v1-5-pruned-emaonly-fp16.safetensors --gpu

Starts ComfyUI (found through --comfyui, $COMFYUI_PATH, the ComfyUI this pack sits in, or
an importable `comfy`; with none of those, ComfyUI from the registry is set up once in a
cache folder, see tools/registry_host.py) on 127.0.0.1 with this pack loaded,
runs the example once to save its images, then times the full-CFG sampler and the cutoff
sampler alternately (after a warm-up of each; a sampler fed by a cutoff with a guidance start,
as in sd15_guidance_window, is timed beside them as the "window" variant) and prints where
the text was dropped, the UNet evaluations saved and the median times. Images (named after the node that made them)
and a report go to --output-dir.
"""
import argparse
import json
import re
import shutil
import statistics
import sys
from pathlib import Path

import pack_loader  # beside this script (Python puts a script's folder first on sys.path)

pack_loader.load_pack()
REPO = pack_loader.REPO

from shapefirst.nodes.guidance_cutoff import schedule as cs  # noqa: E402
from shapefirst.tools import headless, registry_host, workflow_graph as wg  # noqa: E402

DEFAULT_WORKFLOW = REPO / "example_workflows" / "sd15_cutoff_vs_full_cfg.api.json"
TINY_MODEL_SIZE = 256
SUMMARY_PATTERN = re.compile(r"ShapeFirst guidance cutoff: .*")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and each option's default."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint file name in your ComfyUI models/checkpoints "
                                        "(default: the pack's trained demo model, 64x64 px pictures of shapes, "
                                        "with the prompts replaced by its captions; SDXL workflows: a tiny "
                                        "random-weight SDXL-shaped model, images are noise)")
    p.add_argument("--comfyui", help="path of your ComfyUI folder (default: found as described above)")
    p.add_argument("--workflow", default=str(DEFAULT_WORKFLOW),
                   help="an example's name (e.g. sdxl_cutoff, paper_table_evaluation) or an API-format workflow file; "
                        "with a full-CFG KSampler beside one fed by ShapeFirstGuidanceCutoff both are timed and compared")
    p.add_argument("--steps", type=int, help="override the samplers' steps (default: the workflow's)")
    p.add_argument("--size", type=int, help="override the image width and height in pixels "
                                        "(default: the workflow's; 64 for the demo model, 256 for the tiny model)")
    p.add_argument("--batch-size", type=int, help="override the batch size (default: the workflow's)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each variant (after one warm-up each)")
    p.add_argument("--gpu", action="store_true", help="let ComfyUI use its default device instead of --cpu")
    p.add_argument("--output-dir", default="shapefirst_demo_output",
                   help="where images and the report go; images a previous run listed there are removed first")
    return p.parse_args(argv)


def has_guidance_start(node):
    """Whether a Guidance Cutoff node's inputs set a guidance start (a window) for its mode."""
    inputs = node["inputs"]
    return bool(inputs.get(cs.START_INPUT.get(inputs.get("cutoff_mode", cs.MODE_STEPS), "guidance_start_step"), 0))


def find_samplers(prompt):
    """The samplers to time: {"full CFG": id, "cutoff": id, "window": id} (the last two where
    the workflow has a sampler fed by a Guidance Cutoff without / with a guidance start), or
    None when it has no full-CFG sampler beside one of them."""
    cutoff_nodes = headless.nodes_of_type(prompt, "ShapeFirstGuidanceCutoff")
    samplers = [i for i, n in prompt.items() if n["class_type"] in ("KSampler", "KSamplerAdvanced")]
    feeder = {i: str(prompt[i]["inputs"]["model"][0]) for i in samplers}
    without = [i for i in samplers if feeder[i] not in cutoff_nodes]
    fed = [i for i in samplers if feeder[i] in cutoff_nodes]
    variants = {"cutoff": [i for i in fed if not has_guidance_start(prompt[feeder[i]])],
                "window": [i for i in fed if has_guidance_start(prompt[feeder[i]])]}
    if not without or not fed:
        return None
    return {"full CFG": without[0], **{name: ids[0] for name, ids in variants.items() if ids}}


def workflow_path(name):
    path = Path(name)
    if path.is_file():
        return path
    example = REPO / "example_workflows" / f"{name}.api.json"
    if example.is_file():
        return example
    names = sorted(p.name.replace(".api.json", "") for p in (REPO / "example_workflows").glob("*.api.json"))
    raise SystemExit(f"--workflow {name!r} is neither a file nor an example; examples: {', '.join(names)}")


def prepare(args):
    prompt = headless.load_workflow(workflow_path(args.workflow))
    prompt = wg.use_checkpoint(prompt, args.checkpoint) if args.checkpoint else wg.use_demo_checkpoint(prompt)
    if args.steps:
        prompt = wg.set_everywhere(prompt, steps=args.steps)
    on_tiny = not args.checkpoint and bool(headless.nodes_of_type(prompt, wg.TINY_CHECKPOINT))
    size = args.size or (TINY_MODEL_SIZE if on_tiny else None)
    if size:
        prompt = wg.set_everywhere(prompt, width=size, height=size)
    if args.batch_size:
        prompt = wg.set_everywhere(prompt, batch_size=args.batch_size)
    return prompt


def main(argv=None):
    args = parse_args(argv)
    if args.comfyui:
        comfyui = Path(args.comfyui)
    else:
        try:
            comfyui = registry_host.find_or_set_up_comfyui(REPO)
        except RuntimeError as error:
            raise SystemExit(f"{error}; or pass --comfyui /path/to/ComfyUI") from None
    if not (comfyui / "main.py").is_file():
        raise SystemExit(f"--comfyui {comfyui}: no ComfyUI there (no main.py); pass the folder that holds main.py")
    prompt = prepare(args)
    variants = find_samplers(prompt)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_previous_images(out_dir)
    model = model_description(args, prompt)

    with headless.HostServer(comfyui, REPO, cpu=not args.gpu, models_from=comfyui) as server:
        print(f"ComfyUI {comfyui} on {server.url} ({'default device' if args.gpu else 'CPU'}); model: {model}")
        entry, seconds = server.run(prompt)
        images = copy_images(prompt, entry, Path(server.base_dir) / "output", out_dir)
        summaries = SUMMARY_PATTERN.findall(server.log_text())
        texts = [t for out in entry.get("outputs", {}).values() for t in out.get("text", [])]
        times = {"whole workflow": [seconds]}
        if variants is not None:
            times = time_variants(server, prompt, variants, args.repeats)

    metrics = None
    if variants is not None:
        metrics = {name: compare_images(images, (sampler, variants["full CFG"]))
                   for name, sampler in variants.items() if name != "full CFG"}
    report = build_report(args, model, summaries, times, images, metrics, texts)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(report_markdown(report))
    print(report_markdown(report))


def time_variants(server, prompt, variants, repeats):
    """Median-ready wall times per variant: warmed up, interleaved, a fresh seed per round."""
    times = {name: [] for name in variants}
    for repeat in range(repeats + 1):  # repeat 0 warms every variant up
        order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
        for name in order:
            timed = wg.latent_only(prompt, variants[name], f"shapefirst_timing/{repeat}")
            # a new seed each round, so ComfyUI's cache cannot skip the sampler
            timed = wg.set_inputs(timed, "KSampler", seed=1000 + repeat)
            _, seconds = server.run(timed)
            if repeat > 0:
                times[name].append(seconds)
    return times


def model_description(args, prompt):
    if args.checkpoint:
        return args.checkpoint
    if headless.nodes_of_type(prompt, wg.DEMO_CHECKPOINT):
        texts = sorted({node["inputs"][name] for node in prompt.values() for class_type, name in wg.PROMPT_WIDGETS
                        if node["class_type"] == class_type and str(node["inputs"].get(name, "")).strip()})
        return ("the ShapeFirst demo model (trained here, 64x64 px pictures of one shape; prompts replaced by "
                f"demo captions: {'; '.join(repr(t) for t in texts)})")
    shapes = sorted({node["inputs"]["architecture"].upper().replace("SD15", "SD1.5") for node in prompt.values()
                     if node["class_type"] == wg.TINY_CHECKPOINT})
    return f"tiny random-weight {' and '.join(shapes)}-shaped model (images are noise)"


def compare_images(images, pair):
    """L1, PSNR and SSIM of the cutoff sampler's image against the full-CFG sampler's."""
    import numpy as np
    import torch
    from PIL import Image

    from shapefirst.nodes.evaluation import metrics as image_metrics

    cutoff_id, full_id = pair
    full = [i["file"] for i in images if i["source"] == full_id]
    cut = [i["file"] for i in images if i["source"] == cutoff_id]
    if len(full) != 1 or len(cut) != 1:
        return None  # a batch, or images not traceable to the two samplers: no single pair to compare

    def load(path):
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)[None]

    a, b = load(full[0]), load(cut[0])
    return {"L1": image_metrics.l1(a, b).item(), "PSNR": image_metrics.psnr(a, b).item(),
            "SSIM": image_metrics.ssim(a, b).item()}


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "image"


def copy_images(prompt, entry, server_output, out_dir):
    """Saved images copied as ``<save prefix>-<label>.png``, the label naming the node that made
    the image (e.g. the sampler titled "EOS only (zeros)"); previews are not results."""
    saved = []
    for node_id, node_output in entry.get("outputs", {}).items():
        images = [image for image in node_output.get("images", []) if image.get("type") == "output"]
        if not images or node_id not in prompt:
            continue
        prefix = _slug(Path(str(prompt[node_id]["inputs"].get("filename_prefix", node_id))).name)
        for image, (source, label) in zip(images, wg.label_images(prompt, node_id, len(images))):
            target = out_dir / f"{prefix}-{_slug(label)}.png"
            shutil.copyfile(server_output / image.get("subfolder", "") / image["filename"], target)
            saved.append({"file": str(target), "label": label, "source": source})
    return saved


def remove_previous_images(out_dir):
    """Images the last report listed go, so the folder holds what the new report lists."""
    previous = out_dir / "report.json"
    if not previous.is_file():
        return
    try:
        listed = json.loads(previous.read_text()).get("images", [])
    except (json.JSONDecodeError, AttributeError):
        return
    for image in listed:
        path = Path(image["file"] if isinstance(image, dict) else image)
        if path.parent.resolve() == out_dir.resolve() and path.suffix == ".png":
            path.unlink(missing_ok=True)


def build_report(args, model, summaries, times, images, metrics=None, texts=()):
    report = {
        "workflow": args.workflow,
        "model": model,
        "device": "default (GPU if any)" if args.gpu else "CPU",
        "cutoff": summaries,
        "median_seconds": {name: statistics.median(values) for name, values in times.items()},
        "all_seconds": times,
        "images": images,
        "node_text": list(texts),
    }
    for name in ("cutoff", "window"):  # (keys of the cutoff alone as before the window existed)
        if name in times:
            full, cut = report["median_seconds"]["full CFG"], report["median_seconds"][name]
            report["runs_per_variant"] = args.repeats
            prefix = "" if name == "cutoff" else "window_"
            report[f"{prefix}time_saved_percent"] = 100.0 * (1.0 - cut / full)
            report[f"{name}_vs_full_cfg"] = (metrics or {}).get(name)
    return report


def report_markdown(report):
    lines = ["# ShapeFirst demo", "",
             f"- workflow: {report['workflow']}; model: {report['model']}; device: {report['device']}"]
    lines += [f"- {summary}" for summary in report["cutoff"]]
    t = report["median_seconds"]
    timed = [(name, prefix) for name, prefix in (("cutoff", ""), ("window", "window_"))
             if f"{prefix}time_saved_percent" in report]
    if timed:
        each = ", ".join(f"{name} {t[name]:.3f} s ({report[prefix + 'time_saved_percent']:.1f}% time saved)"
                         for name, prefix in timed)
        lines.append(f"- median wall time of the sampler (queue to result, {report['runs_per_variant']} runs each, "
                     f"interleaved, after a warm-up): full CFG {t['full CFG']:.3f} s, {each}")
        for name, _ in timed:
            m = report[f"{name}_vs_full_cfg"]
            if m:
                lines.append(f"- {name} image vs full-CFG image: L1 {m['L1']:.4f}, PSNR {m['PSNR']:.2f} dB, "
                             f"SSIM {m['SSIM']:.4f}")
    else:
        lines.append(f"- wall time of the whole workflow: {t['whole workflow']:.3f} s")
    lines.append("- images, named after the node that made them:")
    lines += [f"  - {Path(image['file']).name}: {image['label']}" for image in report["images"]]
    for text in report["node_text"]:  # node text (e.g. a token map) is a block of its own
        lines += ["", "```", text.rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
