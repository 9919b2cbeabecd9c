#!/usr/bin/env python3
"""Run a ShapeFirst example workflow headless through ComfyUI and report the saving.

    python tools/shapefirst_demo.py                      # the starter, on the pack's demo model, CPU
    python tools/shapefirst_demo.py --workflow sd15_cutoff_vs_full_cfg --checkpoint v1-5-pruned-emaonly-fp16.safetensors --gpu

By default it runs the starter template (example_workflows/shapefirst_starter_demo_model.json)
on the pack's trained demo model: three prompts, 4 pictures (seeds) each, sampled with full CFG,
with the Guidance Cutoff keeping the uncond branch after half the steps (the paper's cutoff)
and keeping the cond branch instead. It saves grid.png (one labelled row per variant, two
pictures per prompt), says per row what the pictures show (read back by the demo model's
attribute scorer) and times each variant on prompt 1's sampler: one batch of 16 pictures, where a
CPU shows the saving (one 64 px picture is mostly per-step overhead).

Starts ComfyUI (found through --comfyui, $COMFYUI_PATH, the ComfyUI this pack sits in, or
an importable `comfy`; with none of those, ComfyUI from the registry is set up once in a
cache folder, see tools/registry_host.py) on 127.0.0.1 with this pack loaded,
runs the example once to save its images, then times the full-CFG samplers and the cutoff
samplers alternately (after a warm-up of each; samplers fed by a cutoff with keep = cond are
timed as the "keep cond" variant, those fed by a cutoff with a guidance start, as in
sd15_guidance_window, as the "window" variant) and prints where the text was dropped, the UNet
evaluations saved and the median times. Images (named after the node that made them), the
grid and a report go to --output-dir.
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

STARTER = "shapefirst_starter_demo_model"
# With --checkpoint and no --workflow: the SD1.5 example (the starter is built on the demo model).
CHECKPOINT_WORKFLOW = "sd15_cutoff_vs_full_cfg"
# The starter in this demo: the variants are timed on one sampler with a batch of 16 pictures (at
# one 64 px picture a CPU spends its time on per-step overhead, not in the UNet, and skipping a
# branch saves little: -0.7 % measured; 17.4 % at 16); the grid's pictures come from a first run
# of the whole starter at 4 pictures per prompt.
STARTER_BATCH = 16
STARTER_PICTURES = 4
RUN_TIMEOUT = 3600  # seconds per queued workflow: a busy CPU may take minutes
TINY_MODEL_SIZE = 256
VARIANT_ORDER = ("full CFG", "cutoff", "keep cond", "window")
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
    p.add_argument("--workflow",
                   help=f"(default: {STARTER}; with --checkpoint: {CHECKPOINT_WORKFLOW}) "
                        "an example's name (e.g. sd15_cutoff_vs_full_cfg, sdxl_cutoff, paper_table_evaluation) or an "
                        "API-format workflow file; with full-CFG KSamplers beside ones fed by ShapeFirstGuidanceCutoff "
                        "both are timed and compared")
    p.add_argument("--steps", type=int, help="override the samplers' steps (default: the workflow's)")
    p.add_argument("--size", type=int, help="override the image width and height in pixels "
                                        "(default: the workflow's; 64 for the demo model, 256 for the tiny model)")
    p.add_argument("--batch-size", type=int, help=f"override the batch size (default: the workflow's; the starter: "
                                                   f"{STARTER_BATCH} for the timing, at most {STARTER_PICTURES} per "
                                                   "prompt for the pictures)")
    p.add_argument("--grid-columns", type=int, default=2, help="pictures per prompt in grid.png")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each variant (after one warm-up each)")
    p.add_argument("--gpu", action="store_true", help="let ComfyUI use its default device instead of --cpu")
    p.add_argument("--output-dir", default="shapefirst_demo_output",
                   help="where images and the report go; images a previous run listed there are removed first")
    args = p.parse_args(argv)
    args.workflow = args.workflow or (CHECKPOINT_WORKFLOW if args.checkpoint else STARTER)
    return args


def has_guidance_start(node):
    """Whether a Guidance Cutoff node's inputs set a guidance start (a window) for its mode."""
    inputs = node["inputs"]
    return bool(inputs.get(cs.START_INPUT.get(inputs.get("cutoff_mode", cs.MODE_STEPS), "guidance_start_step"), 0))


def variant_of(cutoff_node):
    """The variant a sampler fed by this Guidance Cutoff belongs to."""
    if has_guidance_start(cutoff_node):
        return "window"
    return "keep cond" if cutoff_node["inputs"].get("keep") == cs.KEEP_COND else "cutoff"


def find_samplers(prompt):
    """The samplers to time, per variant: {"full CFG": [ids], "cutoff": [ids], "keep cond": [ids],
    "window": [ids]} (samplers not fed by a Guidance Cutoff; fed by one keeping uncond, keeping
    cond, with a guidance start), in the workflow's order; variants without samplers are left
    out. None when the workflow has no full-CFG sampler beside a cutoff one."""
    cutoff_nodes = headless.nodes_of_type(prompt, "ShapeFirstGuidanceCutoff")
    samplers = sorted((i for i, n in prompt.items() if n["class_type"] in ("KSampler", "KSamplerAdvanced")), key=int)
    feeder = {i: str(prompt[i]["inputs"]["model"][0]) for i in samplers}
    found = {}
    for i in samplers:
        name = variant_of(prompt[feeder[i]]) if feeder[i] in cutoff_nodes else "full CFG"
        found.setdefault(name, []).append(i)
    if "full CFG" not in found or len(found) < 2:
        return None
    return {name: found[name] for name in VARIANT_ORDER if name in found}


def workflow_path(name):
    path = Path(name)
    if path.is_file():
        return path
    example = wg.api_path(name.removesuffix(".api.json").removesuffix(".json"))
    if example.is_file():
        return example
    raise SystemExit(f"--workflow {name!r} is neither a file nor an example; examples: {', '.join(wg.example_names())}")


def is_starter(args):
    return workflow_path(args.workflow).resolve() == wg.api_path(STARTER).resolve()


def prepare(args):
    """(the workflow to run for its pictures, the workflow to time): the same graph, with the
    options applied; the starter's pictures at most STARTER_PICTURES per prompt."""
    prompt = headless.load_workflow(workflow_path(args.workflow))
    prompt = wg.use_checkpoint(prompt, args.checkpoint) if args.checkpoint else wg.use_demo_checkpoint(prompt)
    if args.steps:
        prompt = wg.set_everywhere(prompt, steps=args.steps)
    on_tiny = not args.checkpoint and bool(headless.nodes_of_type(prompt, wg.TINY_CHECKPOINT))
    size = args.size or (TINY_MODEL_SIZE if on_tiny else None)
    if size:
        prompt = wg.set_everywhere(prompt, width=size, height=size)
    if is_starter(args):
        timing_batch = args.batch_size or STARTER_BATCH
        return (wg.set_everywhere(prompt, batch_size=min(timing_batch, STARTER_PICTURES)),
                wg.set_everywhere(prompt, batch_size=timing_batch))
    if args.batch_size:
        prompt = wg.set_everywhere(prompt, batch_size=args.batch_size)
    return prompt, prompt


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
    prompt, timing_prompt = prepare(args)  # the same graph; the starter times a larger batch
    variants = find_samplers(prompt)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_previous_images(out_dir)
    model = model_description(args, prompt)

    with headless.HostServer(comfyui, REPO, cpu=not args.gpu, models_from=comfyui) as server:
        print(f"ComfyUI {comfyui} on {server.url} ({'default device' if args.gpu else 'CPU'}); model: {model}")
        print("running the workflow once for its pictures, then timing each variant"
              f"{'' if variants is None else f' ({args.repeats} runs each after a warm-up)'} ...", flush=True)
        entry, seconds = server.run(prompt, timeout=RUN_TIMEOUT)
        images = copy_images(prompt, entry, Path(server.base_dir) / "output", out_dir)
        summaries = SUMMARY_PATTERN.findall(server.log_text())
        texts = [t for out in entry.get("outputs", {}).values() for t in out.get("text", [])]
        times = {"whole workflow": [seconds]}
        if variants is not None:
            times = time_variants(server, timing_prompt, variants, args.repeats)

    metrics, rows, grid = None, [], None
    if variants is not None:
        metrics = {name: compare_images(images, samplers, variants["full CFG"])
                   for name, samplers in variants.items() if name != "full CFG"}
        rows = grid_rows(prompt, variants, images, args.grid_columns)
        if rows:
            grid = out_dir / "grid.png"
            make_grid(rows).save(grid)
    sentences = describe_rows(prompt, variants, images, summaries) if variants is not None else []
    timed_batch = batch_of(timing_prompt, variants["full CFG"][0]) if variants is not None else None
    report = build_report(args, model, summaries, times, images, metrics, texts, grid=grid, sentences=sentences,
                          timed_batch=timed_batch)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(report_markdown(report))
    print(report_markdown(report))


def time_variants(server, prompt, variants, repeats):
    """Median-ready wall times per variant: warmed up, interleaved, a fresh seed per round. Each
    variant is timed on its first sampler (the starter: prompt 1's batch), so the variants do
    the same work."""
    times = {name: [] for name in variants}
    for repeat in range(repeats + 1):  # repeat 0 warms every variant up
        order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
        for name in order:
            timed = wg.latent_only(prompt, variants[name][:1], f"shapefirst_timing/{repeat}")
            # a new seed each round, so ComfyUI's cache cannot skip the sampler
            timed = wg.set_inputs(timed, "KSampler", seed=1000 + repeat)
            _, seconds = server.run(timed, timeout=RUN_TIMEOUT)
            if repeat > 0:
                times[name].append(seconds)
    return times


# --- the pictures: a labelled grid, and what each row shows ---------------------------------

def prompt_text(prompt, sampler_id):
    """The text of a sampler's positive prompt where a CLIPTextEncode (or a string node feeding
    one) holds it; None otherwise."""
    source = prompt[sampler_id]["inputs"].get("positive")
    node = prompt.get(str(source[0])) if isinstance(source, list) else None
    if node is None or node["class_type"] != "CLIPTextEncode":
        return None
    text = node["inputs"].get("text")
    if isinstance(text, list):
        text = prompt.get(str(text[0]), {}).get("inputs", {}).get("value")
    return text if isinstance(text, str) else None


def _images_of(images, sampler_id):
    return [image for image in images if image["source"] == sampler_id]


def grid_rows(prompt, variants, images, per_prompt=2):
    """[(row label, [(column label, picture path)])]: one row per variant, the first ``per_prompt``
    pictures of each of its samplers (prompts) in the workflow's order."""
    rows = []
    for name, samplers in variants.items():
        cells = []
        for sampler in samplers:
            text = prompt_text(prompt, sampler) or prompt[sampler].get("_meta", {}).get("title", sampler)
            for k, image in enumerate(_images_of(images, sampler)[:per_prompt]):
                cells.append((short_caption(text) + (f" #{k + 1}" if per_prompt > 1 else ""), image["file"]))
        if cells:
            rows.append((ROW_LABELS.get(name, name), cells))
    return rows if rows and all(len(cells) == len(rows[0][1]) for _, cells in rows) else []


ROW_LABELS = {"full CFG": "full CFG\n(text at every step)", "cutoff": "cutoff, keep uncond\n(text dropped\nafter half the steps)",
              "keep cond": "cutoff, keep cond\n(after half the steps:\ncond only, the text\nunguided)", "window": "guidance window"}


def short_caption(text):
    """'a large red circle, striped, ...' -> 'large red circle, striped'."""
    parts = [part.strip() for part in text.split(",")]
    head = parts[0].removeprefix("a ").removeprefix("an ")
    return ", ".join([head] + parts[1:2])[:34]


def make_grid(rows, cell=128, label_width=170, header=34, title=None):
    """One labelled row per variant, its column labels on top; pictures scaled up without
    smoothing (the demo model paints 64 px)."""
    from PIL import Image, ImageDraw, ImageFont

    columns = len(rows[0][1])
    wrap = max(8, cell // 6)
    lines = max(len(_wrap(label, wrap)) for label, _ in rows[0][1])
    header = max(header, 14 * min(lines, 3) + 8)
    top = header + (28 if title else 0)
    grid = Image.new("RGB", (label_width + columns * (cell + 4) + 4, top + len(rows) * (cell + 4) + 4), "#1e2229")
    draw = ImageDraw.Draw(grid)
    font, small = ImageFont.load_default(size=14), ImageFont.load_default(size=11)
    if title:
        draw.text((8, 6), title, fill="#f0f0f0", font=ImageFont.load_default(size=16))
    for c, (column_label, _) in enumerate(rows[0][1]):
        x = label_width + c * (cell + 4) + 4
        for line_no, line in enumerate(_wrap(column_label, wrap)[:3]):
            draw.text((x + 2, top - header + 2 + 14 * line_no), line, fill="#d8d8d8", font=small)
    for r, (row_label, cells) in enumerate(rows):
        y = top + r * (cell + 4) + 4
        draw.multiline_text((8, y + 8), row_label, fill="#f0f0f0", font=font, spacing=4)
        for c, (_, path) in enumerate(cells):
            with Image.open(path) as picture:
                grid.paste(picture.convert("RGB").resize((cell, cell), Image.NEAREST),
                           (label_width + c * (cell + 4) + 4, y))
    return grid


def _wrap(text, width):
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def caption_attributes(text):
    """The demo model's attributes of a demo caption in its canonical form (as DEMO_PROMPTS are
    written), or None."""
    import itertools

    from shapefirst.nodes.demo_models import shapes_data
    global _CAPTIONS
    if _CAPTIONS is None:
        names = shapes_data.ATTRIBUTES
        _CAPTIONS = {}
        for values in itertools.product(*(shapes_data.CHOICES[n] for n in names)):
            attributes = dict(zip(names, values))
            _CAPTIONS[shapes_data.canonical_caption(attributes)] = attributes
    return _CAPTIONS.get((text or "").strip())


_CAPTIONS = None
SHAPE_WORDS = "kind, colour, size, position and background"


PATTERN_AT_LEAST = 0.25  # contrast inside a shape above which a pattern is drawn (plain shapes: ~0.15)
FAINTER_BELOW = 0.85  # a pattern under this share of full CFG's contrast is visibly fainter


def pattern_contrast(image, analysis):
    """How strong the pattern inside the shape is: (90th - 10th percentile) / 90th percentile of
    the brightness of the shape's inner pixels (0: flat; stripes drawn in full: ~0.5)."""
    import numpy as np

    from shapefirst.nodes.demo_models import scorer as demo_scorer
    inner = demo_scorer.inner_pixels(analysis["mask"])
    if inner.sum() < 8:
        return 0.0
    brightness = image.max(-1)[inner]
    top = np.percentile(brightness, 90)
    return float((top - np.percentile(brightness, 10)) / max(top, 1e-3))


def describe_rows(prompt, variants, images, summaries=()):
    """One sentence per variant (picture row) saying what its pictures show, read back by the
    demo model's attribute scorer (shape and texture as asked) and by the contrast of the pattern
    inside each shape against full CFG's; [] when the prompts are not demo captions."""
    import numpy as np
    from PIL import Image

    from shapefirst.nodes.demo_models import scorer as demo_scorer

    reader = None
    rows = {}  # variant -> [(short caption, shape ok, texture ok, pictures, mean contrast)] per prompt
    for name, samplers in variants.items():
        rows[name] = []
        for sampler in samplers:
            text = prompt_text(prompt, sampler)
            attributes = caption_attributes(text)
            pictures = _images_of(images, sampler)
            if attributes is None or not pictures:
                return []
            reader = reader or demo_scorer.AttributeScorer()
            arrays = [np.asarray(Image.open(p["file"]).convert("RGB"), np.float32) / 255.0 for p in pictures]
            reads = reader.read(arrays)
            shape = sum(all(r[a] == attributes[a] for a in demo_scorer.shapes_data.SHAPE_ATTRIBUTES) for r in reads)
            texture = sum(r["texture"] == attributes["texture"] for r in reads)
            contrast = float(np.mean([pattern_contrast(a, demo_scorer.analyse(a)) for a in arrays]))
            caption = (f"{demo_scorer.shapes_data.texture_word(attributes['texture'])} {attributes['colour']} "
                       f"{attributes['kind']}")
            rows[name].append((caption, shape, texture, len(arrays), contrast))
    full = rows["full CFG"]
    sentences = []
    for name, per_prompt in rows.items():
        total = sum(n for *_, n, _ in per_prompt)
        shape, texture = sum(r[1] for r in per_prompt), sum(r[2] for r in per_prompt)
        said = (f"{ROW_LABELS.get(name, name).splitlines()[0]}: {shape} of {total} pictures have the asked "
                f"{SHAPE_WORDS}; the scorer reads the asked texture in {texture} of {total} "
                f"({', '.join(f'{c} {t} of {n}' for c, _, t, n, _ in per_prompt)})")
        if name == "full CFG":
            flat = [c for c, *_, contrast in per_prompt if contrast < PATTERN_AT_LEAST]
            said += "; the reference: the text guides every step"
            if flat:
                said += f"; no pattern is drawn on the {' or the '.join(flat)}"
        else:
            notes = []
            for (caption, *_, contrast), (_, *_, reference) in zip(per_prompt, full):
                if reference < PATTERN_AT_LEAST:
                    continue
                ratio = contrast / reference
                notes.append(f"{'fainter' if ratio < FAINTER_BELOW else 'as strong'} on the {caption} "
                             f"({ratio:.0%} of full CFG's contrast)")
            if notes:
                said += "; the pattern inside the shape is " + " and ".join(notes)
        sentences.append(said + ".")
    return sentences


def compare_images(images, samplers, full_samplers):
    """Mean L1, PSNR and SSIM of each sampler's pictures against the full-CFG sampler's of the
    same prompt (the same place in the workflow's order), picture by picture; None when the
    pictures do not pair up."""
    import numpy as np
    import torch
    from PIL import Image

    from shapefirst.nodes.evaluation import metrics as image_metrics

    def load(path):
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)[None]

    if len(samplers) != len(full_samplers):
        return None
    pairs = []
    for sampler, full_sampler in zip(samplers, full_samplers):
        cut, full = _images_of(images, sampler), _images_of(images, full_sampler)
        if not cut or len(cut) != len(full):
            return None
        pairs += list(zip(full, cut))
    values = {"L1": [], "PSNR": [], "SSIM": []}
    for full, cut in pairs:
        a, b = load(full["file"]), load(cut["file"])
        values["L1"].append(image_metrics.l1(a, b).item())
        values["PSNR"].append(image_metrics.psnr(a, b).item())
        values["SSIM"].append(image_metrics.ssim(a, b).item())
    result = {name: statistics.mean(v) for name, v in values.items()}
    result["pairs"] = len(pairs)
    return result


def model_description(args, prompt):
    if args.checkpoint:
        return args.checkpoint
    if headless.nodes_of_type(prompt, wg.DEMO_CHECKPOINT) and is_starter(args):
        return "the ShapeFirst demo model (trained here, 64x64 px pictures of one shape)"
    if headless.nodes_of_type(prompt, wg.DEMO_CHECKPOINT):
        texts = sorted({node["inputs"][name] for node in prompt.values() for class_type, name in wg.PROMPT_WIDGETS
                        if node["class_type"] == class_type and str(node["inputs"].get(name, "")).strip()})
        return ("the ShapeFirst demo model (trained here, 64x64 px pictures of one shape; prompts replaced by "
                f"demo captions: {'; '.join(repr(t) for t in texts)})")
    shapes = sorted({node["inputs"]["architecture"].upper().replace("SD15", "SD1.5") for node in prompt.values()
                     if node["class_type"] == wg.TINY_CHECKPOINT})
    return f"tiny random-weight {' and '.join(shapes)}-shaped model (images are noise)"


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
        report = json.loads(previous.read_text())
        listed = report.get("images", []) + ([report["grid"]] if report.get("grid") else [])
    except (json.JSONDecodeError, AttributeError, TypeError):
        return
    for image in listed:
        path = Path(image["file"] if isinstance(image, dict) else image)
        if path.parent.resolve() == out_dir.resolve() and path.suffix == ".png":
            path.unlink(missing_ok=True)


def batch_of(prompt, sampler_id):
    """The batch size of the empty latent a sampler starts from (None when not an Empty Latent)."""
    source = prompt[sampler_id]["inputs"].get("latent_image")
    node = prompt.get(str(source[0])) if isinstance(source, list) else None
    value = node["inputs"].get("batch_size") if node else None
    return value if isinstance(value, int) else None


def build_report(args, model, summaries, times, images, metrics=None, texts=(), grid=None, sentences=(),
                 timed_batch=None):
    report = {
        "workflow": args.workflow,
        "model": model,
        "device": "default (GPU if any)" if args.gpu else "CPU",
        "cutoff": summaries,
        "median_seconds": {name: statistics.median(values) for name, values in times.items()},
        "all_seconds": times,
        "images": images,
        "node_text": list(texts),
        "grid": str(grid) if grid else None,
        "rows": list(sentences),
        "timed_batch": timed_batch,
    }
    for name, prefix in TIMED:  # (keys of the cutoff alone as before the other variants existed)
        if name in times:
            full, cut = report["median_seconds"]["full CFG"], report["median_seconds"][name]
            report["runs_per_variant"] = args.repeats
            report[f"{prefix}time_saved_percent"] = 100.0 * (1.0 - cut / full)
            report[f"{name.replace(' ', '_')}_vs_full_cfg"] = (metrics or {}).get(name)
    return report


TIMED = (("cutoff", ""), ("keep cond", "keep_cond_"), ("window", "window_"))


def report_markdown(report):
    lines = ["# ShapeFirst demo", "",
             f"- workflow: {report['workflow']}; model: {report['model']}; device: {report['device']}"]
    lines += [f"- {summary}" for summary in dict.fromkeys(report["cutoff"])]
    t = report["median_seconds"]
    timed = [(name, prefix) for name, prefix in TIMED if f"{prefix}time_saved_percent" in report]
    if timed:
        each = ", ".join(f"{name} {t[name]:.3f} s ({report[prefix + 'time_saved_percent']:.1f}% time saved)"
                         for name, prefix in timed)
        batch = f", one sampler of {report['timed_batch']} pictures" if report.get("timed_batch") else ""
        lines.append(f"- median wall time of the sampler (queue to result{batch}, {report['runs_per_variant']} runs each, "
                     f"interleaved, after a warm-up): full CFG {t['full CFG']:.3f} s, {each}")
        for name, _ in timed:
            m = report[f"{name.replace(' ', '_')}_vs_full_cfg"]
            if m:
                pairs = f" (mean of {m['pairs']} pairs)" if m.get("pairs", 1) > 1 else ""
                lines.append(f"- {name} images vs full-CFG images{pairs}: L1 {m['L1']:.4f}, PSNR {m['PSNR']:.2f} dB, "
                             f"SSIM {m['SSIM']:.4f}")
    else:
        lines.append(f"- wall time of the whole workflow: {t['whole workflow']:.3f} s")
    if report.get("grid"):
        lines.append(f"- grid of the pictures, one row per variant: {report['grid']}")
        lines += [f"  - {sentence}" for sentence in report.get("rows", [])]
    lines.append("- images, named after the node that made them:")
    lines += [f"  - {Path(image['file']).name}: {image['label']}" for image in report["images"]]
    for text in report["node_text"]:  # node text (e.g. a token map) is a block of its own
        lines += ["", "```", text.rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
