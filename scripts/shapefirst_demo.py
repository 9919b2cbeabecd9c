#!/usr/bin/env python3
"""Run a ShapeFirst example workflow headless through ComfyUI and report the saving.

    python scripts/shapefirst_demo.py                      # tiny random model, CPU
    python scripts/shapefirst_demo.py --checkpoint v1-5-pruned-emaonly.safetensors --gpu

Starts ComfyUI (found through --comfyui, $COMFYUI_PATH, the ComfyUI this pack sits in, or
an importable `comfy`) on 127.0.0.1 with this pack loaded, runs the example once to save
its images, then times the full-CFG sampler and the cutoff sampler alternately (after a
warm-up of each) and prints where the text was dropped, the UNet evaluations saved and the
median times. Images and a report go to --output-dir.
"""
import argparse
import json
import re
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this script's own imports; the pack itself never edits sys.path

from shapefirst_core import headless, workflow_graph as wg  # noqa: E402

DEFAULT_WORKFLOW = REPO / "example_workflows" / "sd15_cutoff_vs_full_cfg.api.json"
TINY_MODEL_SIZE = 256
SUMMARY_PATTERN = re.compile(r"ShapeFirst guidance cutoff: .*")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint file name in your ComfyUI models/checkpoints "
                                        "(default: a tiny random-weight model, images are noise)")
    p.add_argument("--comfyui", help="path of your ComfyUI folder")
    p.add_argument("--workflow", default=str(DEFAULT_WORKFLOW),
                   help="API-format workflow with a full-CFG KSampler and a KSampler fed by ShapeFirstGuidanceCutoff")
    p.add_argument("--steps", type=int, help="override the samplers' steps")
    p.add_argument("--size", type=int, help="override the image width and height in pixels "
                                        "(default: the workflow's; 256 for the tiny model, to keep CPU runs short)")
    p.add_argument("--batch-size", type=int, help="override the batch size")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each variant (after one warm-up each)")
    p.add_argument("--gpu", action="store_true", help="let ComfyUI use its default device instead of --cpu")
    p.add_argument("--output-dir", default="shapefirst_demo_output", help="where images and the report go")
    return p.parse_args(argv)


def find_samplers(prompt):
    """(cutoff sampler id, full-CFG sampler id) of the example."""
    cutoff_nodes = headless.nodes_of_type(prompt, "ShapeFirstGuidanceCutoff")
    samplers = [i for i, n in prompt.items() if n["class_type"] in ("KSampler", "KSamplerAdvanced")]
    with_cutoff = [i for i in samplers if str(prompt[i]["inputs"]["model"][0]) in cutoff_nodes]
    without = [i for i in samplers if i not in with_cutoff]
    if not with_cutoff or not without:
        raise SystemExit("the workflow needs one KSampler fed by ShapeFirstGuidanceCutoff and one without it")
    return with_cutoff[0], without[0]


def prepare(args):
    prompt = headless.load_workflow(args.workflow)
    prompt = wg.use_checkpoint(prompt, args.checkpoint) if args.checkpoint else wg.use_tiny_checkpoint(prompt)
    if args.steps:
        prompt = wg.set_inputs(prompt, "KSampler", steps=args.steps)
    size = args.size or (None if args.checkpoint else TINY_MODEL_SIZE)
    if size:
        prompt = wg.set_inputs(prompt, "EmptyLatentImage", width=size, height=size)
    if args.batch_size:
        prompt = wg.set_inputs(prompt, "EmptyLatentImage", batch_size=args.batch_size)
    return prompt


def main(argv=None):
    args = parse_args(argv)
    comfyui = Path(args.comfyui) if args.comfyui else headless.find_comfyui(REPO)
    if comfyui is None or not (comfyui / "main.py").is_file():
        raise SystemExit(f"ComfyUI not found: pass --comfyui /path/to/ComfyUI or {headless.HOST_HINT}.")
    prompt = prepare(args)
    cutoff_id, full_id = find_samplers(prompt)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    with headless.HostServer(comfyui, REPO, cpu=not args.gpu, models_from=comfyui) as server:
        print(f"ComfyUI {comfyui} on {server.url} ({'default device' if args.gpu else 'CPU'}); "
              f"model: {args.checkpoint or 'tiny random-weight SD1.5-shaped model'}")
        entry, _ = server.run(prompt)
        images = copy_images(entry, Path(server.base_dir) / "output", out_dir)
        summaries = SUMMARY_PATTERN.findall(server.log_text())

        times = {"full CFG": [], "cutoff": []}
        variants = {"full CFG": full_id, "cutoff": cutoff_id}
        for repeat in range(args.repeats + 1):  # repeat 0 warms both variants up
            order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
            for name in order:
                timed = wg.latent_only(prompt, variants[name], f"shapefirst_timing/{repeat}")
                # a new seed each round, so ComfyUI's cache cannot skip the sampler
                timed = wg.set_inputs(timed, "KSampler", seed=1000 + repeat)
                _, seconds = server.run(timed)
                if repeat > 0:
                    times[name].append(seconds)

    report = build_report(args, summaries, times, images)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(report_markdown(report))
    print(report_markdown(report))


def copy_images(entry, server_output, out_dir):
    saved = []
    for node_output in entry.get("outputs", {}).values():
        for image in node_output.get("images", []):
            source = server_output / image.get("subfolder", "") / image["filename"]
            target = out_dir / f"{Path(image.get('subfolder', '')).name}_{image['filename']}".lstrip("_")
            shutil.copyfile(source, target)
            saved.append(str(target))
    return saved


def build_report(args, summaries, times, images):
    full, cut = statistics.median(times["full CFG"]), statistics.median(times["cutoff"])
    return {
        "model": args.checkpoint or "tiny random-weight SD1.5-shaped model (images are noise)",
        "device": "default (GPU if any)" if args.gpu else "CPU",
        "cutoff": summaries[0] if summaries else "no cutoff summary in the ComfyUI log",
        "runs_per_variant": args.repeats,
        "median_seconds": {"full CFG": full, "cutoff": cut},
        "all_seconds": times,
        "time_saved_percent": 100.0 * (1.0 - cut / full),
        "images": images,
    }


def report_markdown(report):
    t = report["median_seconds"]
    return "\n".join([
        "# ShapeFirst demo",
        "",
        f"- model: {report['model']}; device: {report['device']}",
        f"- {report['cutoff']}",
        f"- median wall time of the sampler (queue to result, {report['runs_per_variant']} runs each, interleaved, "
        f"after a warm-up): full CFG {t['full CFG']:.3f} s, cutoff {t['cutoff']:.3f} s "
        f"({report['time_saved_percent']:.1f}% saved)",
        f"- images: {', '.join(report['images'])}",
        "",
    ])


if __name__ == "__main__":
    main()
