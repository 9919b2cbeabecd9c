#!/usr/bin/env python3
"""The paper's experiments on the trained demo model, through the pack's own nodes.

    python tools/demo_model/report.py                # full setting, writes docs/demo_model/
    python tools/demo_model/report.py --quick        # a reduced setting (seconds), for a smoke run
    python tools/demo_model/report.py --frontier-only  # only the frontier (4.), merged into the report

Every picture is sampled by the host's KSampler from the ShapeFirst Demo Checkpoint's
model, its prompts encoded by CLIPTextEncode or the pack's EOS nodes, the cutoff applied by
the Guidance Cutoff node, the frequencies recorded by the Frequency Trace and Forward
Frequency nodes; the attribute scorer (nodes/demo_models/scorer.py) reads the pictures.

1. acceleration: a = share of the final steps without text (guided_fraction = 1 - a),
   keeping uncond (the paper) or cond, for DDIM, euler and DPM++ 2M: adherence per attribute,
   L1 / PSNR / SSIM against the same sampler's full-CFG pictures, UNet rows evaluated
   (counted by a UNet wrapper) and the share saved.
2. [EOS]: adherence with the full, EOS-only and prompt-only conditionings (EOS Split);
   EOS Swap (tokens of prompt A, [EOS] of prompt B, B differing from A in every attribute):
   the share of pictures whose attribute follows B, follows A, or neither; the switch
   experiment: the swap for the first part of the steps, A's full prompt after.
3. frequencies: the Frequency Trace of x0's low and high band per step, and at which step
   each reaches (and stays within 10 % of) its final level; the forward-process curves
   of the generated training pictures (Forward Frequency node).
4. the frontier: UNet work saved against adherence and PSNR to full CFG for the cutoff's ways of
   choosing the cut (fixed shares keeping uncond or cond, the adaptive ratio rule, the automatic
   mode, a guidance window), each at its defaults; and with a negative prompt, how many pictures
   follow it.
"""
import argparse
import dataclasses
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pack_loader  # noqa: E402

pack_loader.load_pack()
REPO = pack_loader.REPO

import torch  # noqa: E402

from shapefirst.tools.demo_model import host  # noqa: E402

from shapefirst.nodes.demo_models import scorer as scorer_module  # noqa: E402
from shapefirst.nodes.demo_models import shapes_data  # noqa: E402

OUT_DIR = REPO / "docs" / "demo_model"
SAMPLERS = (("ddim", "ddim_uniform"), ("euler", "normal"), ("dpmpp_2m", "normal"))
TEXT_FREE_SHARES = (0.0, 0.3, 0.5, 0.7, 1.0)
KEEPS = ("uncond", "cond")
SWITCH_SHARES = (0.2, 0.4)  # share of the steps (of the noise schedule's percent) with the swap
SETTLED = 0.10  # a band has reached its final level once it stays within 10 % of it
GRID_COLUMNS = 8


@dataclasses.dataclass
class Setting:
    prompts: int = 32
    steps: int = 20
    cfg: float = 5.0
    seed: int = 2024
    samplers: tuple = SAMPLERS
    text_free_shares: tuple = TEXT_FREE_SHARES
    keeps: tuple = KEEPS
    switch_shares: tuple = SWITCH_SHARES
    cfg_sweep: tuple = (1.0, 3.0, 5.0, 7.5)
    forward_steps: int = 50
    adherence_batches: int = 6  # batches of `prompts` pictures for the full-CFG adherence


QUICK = Setting(prompts=4, steps=4, samplers=(("euler", "normal"),), text_free_shares=(0.0, 0.5),
                keeps=("uncond",), switch_shares=(0.5,), cfg_sweep=(5.0,), forward_steps=8,
                adherence_batches=1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the reduced setting the CI test runs")
    p.add_argument("--prompts", type=int, help="pictures per configuration")
    p.add_argument("--output-dir", default=str(OUT_DIR))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--negative-only", action="store_true", help=(
        "run only the negative-prompt experiment and merge it into the report.json in --output-dir "
        "(its date and machine are recorded beside it)"))
    p.add_argument("--frontier-only", action="store_true", help=(
        "run only the frontier (UNet work saved against adherence for every way of choosing the cut) and "
        "merge it into the report.json in --output-dir (its date and machine are recorded beside it)"))
    return p.parse_args(argv)


def node(class_name, module):
    """A pack node class as the host's executor prepares it (hidden inputs set; no server,
    so nothing is sent live)."""
    return getattr(pack_loader.pack_module(module), class_name).PREPARE_CLASS_CLONE({"UNIQUE_ID": "report"})


# ---------------------------------------------------------------- pieces
class UNetRows:
    """Counts the rows (pictures x branches) the UNet evaluates, through the host's UNet wrapper."""

    def __init__(self):
        self.rows = 0

    def attach(self, model):
        patched = model.clone()

        def wrapper(apply_model, args):
            self.rows += int(args["input"].shape[0])
            return apply_model(args["input"], args["timestep"], **args["c"])
        patched.set_model_unet_function_wrapper(wrapper)
        return patched


def stack(conditionings):
    """One conditioning of batch N from N single-prompt conditionings (host layout)."""
    tensor = torch.cat([c[0][0] for c in conditionings])
    extras = {k: v for k, v in conditionings[0][0][1].items() if k != "pooled_output"}
    return [[tensor, extras]]


def sample(model, vae, positive, negative, setting, sampler, scheduler, cfg=None):
    import nodes
    latent = nodes.EmptyLatentImage().generate(shapes_data.IMAGE_SIZE, shapes_data.IMAGE_SIZE, positive[0][0].shape[0])[0]
    with torch.inference_mode():
        samples = nodes.KSampler().sample(model, setting.seed, setting.steps, setting.cfg if cfg is None else cfg,
                                          sampler, scheduler, positive, negative, latent, denoise=1.0)[0]
        return nodes.VAEDecode().decode(vae, samples)[0].float().cpu()


def guidance_cutoff_model(model, inputs, empty_conditioning=None):
    """The Guidance Cutoff node's model for ``inputs`` (the others at their defaults; ``empty_conditioning``:
    the empty prompt, which keep 'uncond' evaluates after the cut instead of the negative prompt)."""
    from shapefirst.nodes.guidance_cutoff import schedule
    values = {**dataclasses.asdict(schedule.CutoffSettings()), **inputs}
    if empty_conditioning is not None:
        values["empty_conditioning"] = empty_conditioning
    return node("ShapeFirstGuidanceCutoff", "nodes.guidance_cutoff.nodes").EXECUTE_NORMALIZED(
        model=model, **values).result[0]


def cutoff_patch(patched):
    """The Guidance Cutoff's patch on a model it returned (its ``last_run`` holds the run's record)."""
    return patched.model_options["sampler_calc_cond_batch_function"].__self__


def cutoff_model(model, a, keep, empty_conditioning=None):
    """The Guidance Cutoff node's model: the last ``a`` of the steps keep one branch."""
    from shapefirst.nodes.guidance_cutoff import schedule
    return guidance_cutoff_model(model, {"cutoff_mode": schedule.MODE_FRACTION,
                                         "guided_fraction": round(1.0 - a, 4), "keep": keep}, empty_conditioning)


# The negative-prompt experiment: (label, a, keep, the empty prompt connected); a = 0 is full CFG.
NEGATIVE_CONFIGURATIONS = (
    ("full CFG", 0.0, "-", False),
    ("a = 0.5, keep uncond, no empty prompt (the negative runs alone)", 0.5, "uncond", False),
    ("a = 0.5, keep uncond, empty prompt connected", 0.5, "uncond", True),
    ("a = 0.7, keep uncond, no empty prompt (the negative runs alone)", 0.7, "uncond", False),
    ("a = 0.7, keep uncond, empty prompt connected", 0.7, "uncond", True),
    ("a = 0.5, keep cond", 0.5, "cond", False),
)


def negative_prompt_experiment(model, clip, vae, setting, log=print, configurations=NEGATIVE_CONFIGURATIONS):
    """Each prompt with a negative prompt that differs from it in every attribute (euler): the share
    of pictures whose attribute follows the NEGATIVE prompt, and the prompt, per configuration. Shows
    what ComfyUI's uncond (the negative prompt) does after the cut, against the paper's empty prompt."""
    import nodes
    truth, negatives, positive, negative = negative_prompt_pairs(clip, setting)
    empty = nodes.CLIPTextEncode().encode(clip, "")[0]
    scorer = scorer_module.AttributeScorer()
    rows, pictures = [], {}
    for label, a, keep, with_empty in configurations:
        patched = cutoff_model(model, a, keep, empty if with_empty else None) if a > 0 else model
        images = sample(patched, vae, positive, negative, setting, "euler", "normal")
        read = scorer.read(images.numpy())
        rows.append({"configuration": label, "a": a, "keep": keep, "empty_prompt": with_empty,
                     "follows_negative": {n: float(np.mean([r[n] == b[n] for r, b in zip(read, negatives)]))
                                          for n in shapes_data.ATTRIBUTES},
                     "follows_prompt": {n: float(np.mean([r[n] == t[n] for r, t in zip(read, truth)]))
                                        for n in shapes_data.ATTRIBUTES}})
        pictures[label] = images
        log(f"negative prompt, {label}: follows the negative {rows[-1]['follows_negative']}")
    return {"sampler": "euler", "scheduler": "normal", "steps": setting.steps, "cfg": setting.cfg,
            "pictures": setting.prompts, "rows": rows}, pictures


def report_prompts(clip, setting):
    """The report's prompts (the acceleration table's and the frontier's): random attributes from
    ``setting.seed``, their canonical captions, and the captions' and the empty prompt's conditionings."""
    import nodes
    rng = np.random.default_rng(setting.seed)
    attributes = [shapes_data.random_attributes(rng) for _ in range(setting.prompts)]
    captions = [shapes_data.canonical_caption(a) for a in attributes]
    encode = nodes.CLIPTextEncode()
    positive = stack([encode.encode(clip, t)[0] for t in captions])
    negative = stack([encode.encode(clip, "")[0] for _ in captions])
    return attributes, captions, positive, negative


def negative_prompt_pairs(clip, setting):
    """The negative-prompt experiment's prompts: the attributes of each prompt and of its negative
    prompt (differing in every attribute), and their conditionings."""
    import nodes
    rng = np.random.default_rng(setting.seed + 4)
    truth = [shapes_data.random_attributes(rng) for _ in range(setting.prompts)]
    negatives = [different_attributes(rng, a) for a in truth]
    encode = nodes.CLIPTextEncode()
    positive = stack([encode.encode(clip, shapes_data.canonical_caption(a))[0] for a in truth])
    negative = stack([encode.encode(clip, shapes_data.canonical_caption(a))[0] for a in negatives])
    return truth, negatives, positive, negative


def image_metrics(images, reference):
    from shapefirst.nodes.evaluation import metrics
    return {"L1": float(metrics.l1(images, reference).mean()), "PSNR": float(metrics.psnr(images, reference).clamp(max=100).mean()),
            "SSIM": float(metrics.ssim(images, reference).mean())}


def settled_step(points, key):
    """The first step (from 1) from which ``key`` stays within SETTLED of its last value."""
    values = [p[key] for p in points]
    final = values[-1]
    step = len(values)
    for i in range(len(values) - 1, -1, -1):
        if values[i] is None or abs(values[i] - final) > SETTLED * abs(final):
            break
        step = points[i]["step"]
    return step


def different_attributes(rng, attributes):
    """Attributes that differ from ``attributes`` in every attribute (and are not held out)."""
    while True:
        other = {}
        for name in shapes_data.ATTRIBUTES:
            choices = [c for c in shapes_data.CHOICES[name] if c != attributes[name]]
            other[name] = choices[rng.integers(len(choices))]
        if not shapes_data.is_held_out(other):
            return other


def grid(images, rows, path, columns=GRID_COLUMNS, scale=2):
    """A PNG grid: one row per configuration (labelled in the report), ``columns`` pictures each."""
    from PIL import Image
    tiles = [shapes_data.to_uint8(images[r][:columns].numpy()) for r in rows]
    size = shapes_data.IMAGE_SIZE
    canvas = np.full((len(tiles) * (size + 2), columns * (size + 2), 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            canvas[r * (size + 2):r * (size + 2) + size, c * (size + 2):c * (size + 2) + size] = tile
    Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST).save(path)


# ---------------------------------------------------------------- the experiments
def run(model, clip, vae, setting, out_dir, log=print):
    """All three experiments; writes report.json, report.md and the grids into ``out_dir``."""
    import nodes
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scorer = scorer_module.AttributeScorer()
    started = time.time()
    attributes, captions, positive, negative = report_prompts(clip, setting)
    encode = nodes.CLIPTextEncode()

    def score(images, truth=attributes):
        return scorer.adherence(images.numpy(), truth)

    report = {"setting": {k: v for k, v in dataclasses.asdict(setting).items()},
              "chance": {a: scorer_module.chance_level(a) for a in shapes_data.ATTRIBUTES},
              "scorer_accuracy": scorer_module.load_card().get("accuracy", {})}
    grids = {}

    # The README's setting, a cfg sweep and the held-out combinations.
    euler = ("euler", "normal")
    sweep = {}
    for cfg in setting.cfg_sweep:
        images = sample(model, vae, positive, negative, setting, *euler, cfg=cfg)
        sweep[str(cfg)] = score(images)
        grids[f"cfg {cfg}"] = images
    report["cfg_sweep"] = sweep
    # The README's setting on more pictures than the other rows (several seeds): the figure the
    # tests hold the model to, and the one that says which attributes it has learned.
    batches = []
    for batch in range(setting.adherence_batches):
        batch_rng = np.random.default_rng(setting.seed + 100 + batch)
        truth = [shapes_data.random_attributes(batch_rng) for _ in range(setting.prompts)]
        batch_positive = stack([encode.encode(clip, shapes_data.canonical_caption(a))[0] for a in truth])
        batch_setting = dataclasses.replace(setting, seed=setting.seed + 100 + batch)
        batches.append(score(sample(model, vae, batch_positive, negative, batch_setting, *euler), truth))
    report["full_cfg_adherence"] = {
        "sampler": "euler", "scheduler": "normal", "cfg": setting.cfg, "steps": setting.steps,
        "pictures": setting.prompts * setting.adherence_batches,
        "adherence": {n: float(np.mean([b[n] for b in batches])) for n in shapes_data.ATTRIBUTES},
        "per_batch": batches}
    held_rng = np.random.default_rng(setting.seed + 1)
    held = [shapes_data.random_attributes(held_rng, held_out=True) for _ in range(setting.prompts)]
    held_positive = stack([encode.encode(clip, shapes_data.canonical_caption(a))[0] for a in held])
    held_images = sample(model, vae, held_positive, negative, setting, *euler)
    report["held_out_combinations_adherence"] = score(held_images, held)
    grid(grids, [f"cfg {c}" for c in setting.cfg_sweep] , out_dir / "cfg_sweep.png")
    log(f"full CFG: {report['full_cfg_adherence']['adherence']} ({time.time() - started:.0f}s)")

    # 1. acceleration table
    table = []
    accel_images = {}
    for sampler, scheduler in setting.samplers:
        reference = None
        for keep in setting.keeps:
            for a in setting.text_free_shares:
                if a == 0.0 and keep != setting.keeps[0]:
                    continue  # a = 0 is full CFG whichever branch would be kept
                counter = UNetRows()
                patched = counter.attach(cutoff_model(model, a, keep) if a > 0 else model)
                images = sample(patched, vae, positive, negative, setting, sampler, scheduler)
                if a == 0.0:
                    reference, full_rows = images, counter.rows
                row = {"sampler": sampler, "scheduler": scheduler, "keep": keep if a > 0 else "-", "a": a,
                       "adherence": score(images), "vs_full_cfg": image_metrics(images, reference),
                       "unet_rows": counter.rows, "unet_work_saved": 1.0 - counter.rows / full_rows}
                table.append(row)
                accel_images[f"{sampler} {row['keep']} a={a}"] = images
                log(f"{sampler} keep {row['keep']} a={a}: saved {100 * row['unet_work_saved']:.0f}% "
                    f"{row['adherence']} ({time.time() - started:.0f}s)")
    report["acceleration"] = table
    euler_rows = [k for k in accel_images if k.startswith("euler ")]
    grid(accel_images, euler_rows, out_dir / "acceleration_euler.png")

    # 1b. a negative prompt in the graph
    report["negative_prompt"], negative_images = negative_prompt_experiment(model, clip, vae, setting, log)
    grid(negative_images, list(negative_images), out_dir / "negative_prompt.png")
    report["frontier"] = frontier_section(model, clip, vae, setting, out_dir, log)

    # 2. [EOS]
    split = node("ShapeFirstEOSSplit", "nodes.eos_tokens.nodes")
    swap = node("ShapeFirstEOSSwap", "nodes.eos_tokens.nodes")
    from shapefirst.nodes.eos_tokens import roles
    eos = {}
    eos_images = {}
    for replacement in (roles.REPLACE_EMPTY, roles.REPLACE_ZEROS):
        parts = [split.EXECUTE_NORMALIZED(clip=clip, text=t, replacement=replacement, eos_scope=roles.EOS_SCOPE_BLOCK,
                                          pooled_output=roles.POOLED_KEEP, seed=0).result for t in captions]
        for index, name in ((1, "EOS only"), (2, "prompt only")):
            images = sample(model, vae, stack([p[index] for p in parts]), negative, setting, *euler)
            eos[f"{name} ({replacement})"] = score(images)
            eos_images[f"{name} ({replacement})"] = images
    eos["full prompt"] = report["full_cfg_adherence"]["adherence"]
    eos_images["full prompt"] = grids[f"cfg {setting.cfg}"]
    report["eos_split"] = eos
    log(f"EOS split: {eos} ({time.time() - started:.0f}s)")

    pair_rng = np.random.default_rng(setting.seed + 2)
    donors = [different_attributes(pair_rng, a) for a in attributes]
    donor_captions = [shapes_data.canonical_caption(a) for a in donors]
    swapped = stack([swap.EXECUTE_NORMALIZED(clip=clip, token_text=t, eos_text=e, eos_scope=roles.EOS_SCOPE_BLOCK,
                                             pooled_output=roles.POOLED_FROM_EOS_PROMPT).result[0]
                     for t, e in zip(captions, donor_captions)])

    def follows(images):
        read = scorer.read(images.numpy())
        out = {}
        for name in shapes_data.ATTRIBUTES:
            eos_share = float(np.mean([r[name] == d[name] for r, d in zip(read, donors)]))
            token_share = float(np.mean([r[name] == a[name] for r, a in zip(read, attributes)]))
            out[name] = {"follows_eos_text": eos_share, "follows_token_text": token_share,
                         "neither": 1.0 - eos_share - token_share}
        return out

    images = sample(model, vae, swapped, negative, setting, *euler)
    eos_images["swap, all steps"] = images
    switch = {"all steps": follows(images)}
    for share in setting.switch_shares:
        first = nodes.ConditioningSetTimestepRange().set_range(swapped, 0.0, share)[0]
        rest = nodes.ConditioningSetTimestepRange().set_range(positive, share, 1.0)[0]
        combined = nodes.ConditioningCombine().combine(first, rest)[0]
        images = sample(model, vae, combined, negative, setting, *euler)
        switch[f"swap for the first {share:.0%} of the schedule, then the token prompt's full prompt"] = follows(images)
        eos_images[f"swap first {share:.0%}"] = images
    report["eos_swap"] = {"token_text": "prompt A (its attributes are the prompt's)",
                          "eos_text": "prompt B, differing from A in every attribute", "results": switch}
    grid(eos_images, list(eos_images), out_dir / "eos.png")
    log(f"EOS swap: {switch['all steps']} ({time.time() - started:.0f}s)")

    # 3. frequencies
    from shapefirst.nodes.frequency import bands
    trace = node("ShapeFirstFrequencyTrace", "nodes.frequency.nodes")
    latent = nodes.EmptyLatentImage().generate(shapes_data.IMAGE_SIZE, shapes_data.IMAGE_SIZE, setting.prompts)[0]
    with torch.inference_mode():
        result = trace.EXECUTE_NORMALIZED(model=model, positive=positive, negative=negative, latent_image=latent,
                                          seed=setting.seed, steps=setting.steps, cfg=setting.cfg, sampler_name="euler",
                                          scheduler="normal", denoise=1.0, cutoff_radius=bands.DEFAULT_CUTOFF,
                                          strip_columns=6, vae=vae).result
    trace_data = json.loads(result[3])
    points = trace_data["points"]
    from PIL import Image
    Image.fromarray(shapes_data.to_uint8(result[1][0].float().cpu().numpy())).save(out_dir / "frequency_trace.png")
    Image.fromarray(shapes_data.to_uint8(result[2][0].float().cpu().numpy())).save(out_dir / "frequency_trace_strip.png")
    report["frequency_trace"] = {
        "sampler": "euler", "steps": setting.steps, "cfg": setting.cfg, "cutoff_radius": trace_data["cutoff_radius"],
        "x0_low_settles_at_step": settled_step(points, "x0_low"), "x0_high_settles_at_step": settled_step(points, "x0_high"),
        "points": [{k: p[k] for k in ("step", "sigma", "x0_low", "x0_high", "x0_ratio", "guidance")} for p in points]}
    forward = node("ShapeFirstForwardFrequency", "nodes.frequency.nodes")
    data_images = torch.from_numpy(shapes_data.batch(setting.seed + 3, setting.prompts)[0])
    with torch.inference_mode():
        result = forward.EXECUTE_NORMALIZED(model=model, steps=setting.forward_steps, scheduler="normal", seed=setting.seed,
                                            cutoff_radius=bands.DEFAULT_CUTOFF, image=data_images, vae=vae).result
    forward_data = json.loads(result[1])
    Image.fromarray(shapes_data.to_uint8(result[0][0].float().cpu().numpy())).save(out_dir / "forward_frequency.png")
    report["forward_frequency"] = {"steps": setting.forward_steps, "points": forward_data["points"]}
    log(f"frequencies: low settles at step {report['frequency_trace']['x0_low_settles_at_step']}, high at "
        f"{report['frequency_trace']['x0_high_settles_at_step']} of {setting.steps} ({time.time() - started:.0f}s)")

    report["seconds"] = round(time.time() - started)
    report["machine"] = _machine()
    report["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report["grids"] = {"cfg_sweep.png": [f"cfg {c}" for c in setting.cfg_sweep], "acceleration_euler.png": euler_rows,
                       "eos.png": list(eos_images), "negative_prompt.png": list(negative_images)}
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "report.md").write_text(markdown(report))
    return report


# ---------------------------------------------------------------- markdown
def _pct(x):
    return f"{100 * x:.0f}%"


def _adherence_cells(values, names=shapes_data.ATTRIBUTES):
    return " | ".join(_pct(values[n]) for n in names)


def markdown(report):
    s = report["setting"]
    names = shapes_data.ATTRIBUTES
    head = " | ".join(names)
    lines = [
        "# The paper's experiments on the ShapeFirst demo model", "",
        f"Measured {report['date']} on {report['machine']} in {report['seconds']} s by `tools/demo_model/report.py`: "
        f"{s['prompts']} prompts per configuration (canonical captions of random attribute combinations), "
        f"{s['steps']} steps, cfg {s['cfg']}, seed {s['seed']}, 64x64 px. Adherence = share of pictures the "
        "attribute scorer reads as the prompt says; chance: " + ", ".join(
            f"{n} {_pct(report['chance'][n])}" for n in names) + ". The scorer's own accuracy on fresh generated "
        "pictures (VAE reconstructions): " + ", ".join(
            f"{n} {_pct(report['scorer_accuracy'].get('fresh_vae', {}).get(n, float('nan')))}" for n in names) + ".", "",
        "## Full classifier-free guidance", "",
        f"| cfg | {head} |", "|---|" + "---|" * len(names)]
    for cfg, values in report["cfg_sweep"].items():
        lines.append(f"| {cfg} | {_adherence_cells(values)} |")
    full = report["full_cfg_adherence"]
    lines += ["", f"At the README's setting (euler, cfg {full['cfg']}) on {full['pictures']} pictures "
              f"({len(full['per_batch'])} seeds): " + ", ".join(f"{n} {_pct(v)}" for n, v in full["adherence"].items())
              + "; per batch: " + "; ".join(_adherence_cells(b).replace(" | ", "/") for b in full["per_batch"]) + "."]
    lines += ["", f"Held-out (kind, colour, texture) combinations, cfg {s['cfg']}: "
              + ", ".join(f"{n} {_pct(v)}" for n, v in report["held_out_combinations_adherence"].items()), "",
              "![cfg sweep](cfg_sweep.png)", "",
              "## 1. Acceleration: the last a of the steps without text", "",
              "a = share of the final steps that evaluate one branch only; keep uncond = the paper (w = 0), keep cond "
              "for comparison. L1 / PSNR / SSIM against the same sampler's full-CFG pictures (same seed). UNet work = "
              "rows the UNet evaluated (pictures x branches), counted by a UNet wrapper.", "",
              f"| sampler | keep | a | {head} | L1 | PSNR dB | SSIM | UNet work saved |",
              "|---|---|---|" + "---|" * len(names) + "---|---|---|---|"]
    for row in report["acceleration"]:
        m = row["vs_full_cfg"]
        lines.append(f"| {row['sampler']} | {row['keep']} | {row['a']} | {_adherence_cells(row['adherence'])} | "
                     f"{m['L1']:.4f} | {m['PSNR']:.1f} | {m['SSIM']:.3f} | {_pct(row['unet_work_saved'])} |")
    lines += ["", "Rows of the grid (euler): " + "; ".join(report["grids"]["acceleration_euler.png"]) + ".", "",
              "![acceleration, euler](acceleration_euler.png)", ""] + negative_markdown(report) + [
              "## 2. [EOS]", "", "EOS Split: the [EOS] block only (the prompt's tokens replaced) vs the prompt's tokens only "
              "(the [EOS] block replaced), replacement in brackets.", "",
              f"| conditioning | {head} |", "|---|" + "---|" * len(names)]
    for name, values in report["eos_split"].items():
        lines.append(f"| {name} | {_adherence_cells(values)} |")
    lines += ["", "EOS Swap: tokens of prompt A with the [EOS] block of prompt B (B differs from A in every attribute). "
              "Share of pictures whose attribute follows B ([EOS]) / A (tokens) / neither.", "",
              f"| when | {head} |", "|---|" + "---|" * len(names)]
    for when, values in report["eos_swap"]["results"].items():
        cells = " | ".join(f"{_pct(values[n]['follows_eos_text'])} / {_pct(values[n]['follows_token_text'])} / "
                           f"{_pct(values[n]['neither'])}" for n in names)
        lines.append(f"| {when} | {cells} |")
    lines += ["", "Rows of the grid: " + "; ".join(report["grids"]["eos.png"]) + ".", "", "![EOS](eos.png)", "",
              "## 3. Frequencies", ""]
    f = report["frequency_trace"]
    lines += [f"Frequency Trace (euler, {f['steps']} steps, cfg {f['cfg']}, band cutoff radius {f['cutoff_radius']}): "
              f"the low band of the predicted x0 stays within {SETTLED:.0%} of its final level from step "
              f"{f['x0_low_settles_at_step']}, the high band from step {f['x0_high_settles_at_step']}.", "",
              "| step | sigma | x0 low | x0 high | low/high | guidance |", "|---|---|---|---|---|---|"]
    for p in f["points"]:
        lines.append(f"| {p['step']} | {p['sigma']:.3f} | {p['x0_low']:.4f} | {p['x0_high']:.4f} | "
                     f"{p['x0_ratio'] if p['x0_ratio'] is None else round(p['x0_ratio'], 4)} | "
                     f"{'-' if p['guidance'] is None else round(p['guidance'], 4)} |")
    lines += ["", "![frequency trace](frequency_trace.png)", "",
              "The predicted x0 decoded at a few steps (Frequency Trace strip, first picture of the batch):", "",
              "![x0 over the steps](frequency_trace_strip.png)", "",
              f"Forward process on {s['prompts']} generated training pictures (VAE-encoded), {report['forward_frequency']['steps']} "
              "noise levels: the curves below (Forward Frequency node).", "", "![forward process](forward_frequency.png)", ""]
    return "\n".join(lines + frontier_markdown(report))


def negative_markdown(report):
    """The negative-prompt section of the report (empty when the report predates it)."""
    data = report.get("negative_prompt")
    if not data:
        return []
    names = shapes_data.ATTRIBUTES
    when = (f"Measured {data['date']} on {data['machine']} in {data['seconds']} s (`report.py --negative-only`). "
            if "date" in data else "")
    lines = ["## 1b. With a negative prompt", "",
             f"{when}Each prompt with a negative prompt that differs from it in every attribute ({data['sampler']}, "
             f"{data['steps']} steps, cfg {data['cfg']}, {data['pictures']} pictures per row). ComfyUI's "
             "unconditional branch is the graph's negative prompt; the paper's is the empty prompt, which the "
             "cutoff evaluates after the cut when it is connected to `empty_conditioning`. Share of pictures whose "
             "attribute follows the NEGATIVE prompt / the prompt:", "",
             "| configuration | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in data["rows"]:
        lines.append(f"| {row['configuration']} | " + " | ".join(
            f"{_pct(row['follows_negative'][n])} / {_pct(row['follows_prompt'][n])}" for n in names) + " |")
    lines += ["", "Rows of the grid: " + "; ".join(r["configuration"] for r in data["rows"]) + ".", "",
              "![negative prompt](negative_prompt.png)", ""]
    return lines


def readme_summary(report):
    """The README's summary of the report: the key numbers of each experiment, in markdown."""
    names = shapes_data.ATTRIBUTES
    head = " | ".join(names)
    full = report["full_cfg_adherence"]
    rows = [r for r in report["acceleration"] if r["sampler"] == "euler"]
    lines = [f"Prompt adherence (share of pictures the scorer reads as the prompt says; euler, {full['steps']} "
             f"steps, cfg {full['cfg']}; full CFG on {full['pictures']} pictures, the other rows on "
             f"{report['setting']['prompts']}):", "",
             f"| | {head} |", "|---|" + "---|" * len(names),
             f"| chance | {_adherence_cells(report['chance'])} |",
             f"| full CFG | {_adherence_cells(full['adherence'])} |",
             f"| held-out combinations | {_adherence_cells(report['held_out_combinations_adherence'])} |"]
    for name in ("EOS only (empty prompt)", "prompt only (empty prompt)"):
        lines.append(f"| {name} | {_adherence_cells(report['eos_split'][name])} |")
    for row in rows:
        if row["a"] > 0:
            lines.append(f"| a = {row['a']}, keep {row['keep']} ({_pct(row['unet_work_saved'])} UNet work saved, "
                         f"L1 {row['vs_full_cfg']['L1']:.3f} vs full CFG) | {_adherence_cells(row['adherence'])} |")
    swap = report["eos_swap"]["results"]
    lines += ["", "EOS Swap (tokens of prompt A, [EOS] block of prompt B; B differs in every attribute), share of "
              "pictures following B / A:", "", f"| | {head} |", "|---|" + "---|" * len(names)]
    for when, values in swap.items():
        lines.append(f"| {when} | " + " | ".join(
            f"{_pct(values[n]['follows_eos_text'])} / {_pct(values[n]['follows_token_text'])}" for n in names) + " |")
    f = report["frequency_trace"]
    lines += ["", f"Frequency Trace: the low band of x0 settles (within {SETTLED:.0%} of its final level) at step "
              f"{f['x0_low_settles_at_step']}, the high band at step {f['x0_high_settles_at_step']} of {f['steps']}."]
    return "\n".join(lines) + "\n"


def merge_negative_prompt(model, clip, vae, setting, out_dir):
    """The negative-prompt experiment alone, merged into an existing report (its own date and machine)."""
    started = time.time()
    path = out_dir / "report.json"
    report = json.loads(path.read_text())
    data, pictures = negative_prompt_experiment(model, clip, vae, setting)
    data.update(seconds=round(time.time() - started), machine=_machine(),
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    report["negative_prompt"] = data
    report.setdefault("grids", {})["negative_prompt.png"] = list(pictures)
    grid(pictures, list(pictures), out_dir / "negative_prompt.png")
    path.write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "report.md").write_text(markdown(report))
    (out_dir / "readme_summary.md").write_text(readme_summary(report))
    return report


# ---------------------------------------------------------------- 4. the frontier (issue 23)
FRONTIER_SHARES = (0.3, 0.5, 0.7)  # a: share of the final steps without text, for the fixed cuts
FRONTIER_WINDOW = (0.2, 0.7)  # the guidance window's start and end, as shares of the steps
SHAPE_ATTRIBUTES = ("kind", "colour", "size", "position")  # what the shape stage decides (the columns)


def frontier_configurations():
    """(label, the Guidance Cutoff's inputs; None: full CFG), each way of choosing the cut at its defaults."""
    from shapefirst.nodes.guidance_cutoff import schedule as cs
    rows = [("full CFG", None)]
    for keep in KEEPS:
        rows += [(f"fixed, a = {a} (text for the first {1 - a:.0%} of the steps), keep {keep}",
                  {"cutoff_mode": cs.MODE_FRACTION, "guided_fraction": round(1.0 - a, 4), "keep": keep})
                 for a in FRONTIER_SHARES]
    start, end = FRONTIER_WINDOW
    return rows + [
        ("adaptive (ratio rule), defaults", {"cutoff_mode": cs.MODE_ADAPTIVE}),
        ("automatic (shape settled), defaults", {"cutoff_mode": cs.MODE_AUTOMATIC}),
        ("automatic (shape settled), keep cond", {"cutoff_mode": cs.MODE_AUTOMATIC, "keep": "cond"}),
        (f"guidance window: text unguided for the first {start:.0%}, full CFG until {end:.0%}, keep uncond",
         {"cutoff_mode": cs.MODE_FRACTION, "guidance_start_fraction": start, "guided_fraction": end})]


def frontier_run(model, vae, positive, negative, setting, inputs, empty=None):
    """One configuration (euler): its pictures, the UNet work saved, the steps with text and the run's summary."""
    counter = UNetRows()
    full_rows = 2 * setting.prompts * setting.steps
    patched = guidance_cutoff_model(model, inputs, empty) if inputs is not None else model
    patch = cutoff_patch(patched) if inputs is not None else None
    images = sample(counter.attach(patched), vae, positive, negative, setting, "euler", "normal")
    run = patch.last_run if patch is not None else None
    return images, {"unet_work_saved": 1.0 - counter.rows / full_rows,
                    "guided_steps": run.guided_steps() if run else setting.steps,
                    "summary": run.summary() if run else "full CFG"}


def frontier_experiment(model, clip, vae, setting, log=print):
    """The frontier on the report's prompts (euler, empty negative), then the negative-prompt check."""
    scorer = scorer_module.AttributeScorer()
    truth, _, positive, negative = report_prompts(clip, setting)  # the acceleration table's prompts
    rows, pictures, reference = [], {}, None
    for label, inputs in frontier_configurations():
        images, row = frontier_run(model, vae, positive, negative, setting, inputs)
        reference = images if reference is None else reference
        row.update(configuration=label, inputs=inputs or {}, adherence=scorer.adherence(images.numpy(), truth),
                   vs_full_cfg=image_metrics(images, reference))
        rows.append(row)
        pictures[label] = images
        log(f"frontier, {label}: saved {100 * row['unet_work_saved']:.1f}%, {row['adherence']}")
    return {"sampler": "euler", "scheduler": "normal", "steps": setting.steps, "cfg": setting.cfg,
            "pictures": setting.prompts, "rows": rows,
            "negative_prompt": frontier_negative(model, clip, vae, setting, scorer, log)}, pictures


def frontier_negative(model, clip, vae, setting, scorer, log=print):
    """The automatic mode with a negative prompt differing from the prompt in every attribute (the
    negative-prompt experiment's prompts): the share of pictures following the negative prompt."""
    from shapefirst.nodes.guidance_cutoff import schedule as cs
    import nodes
    _, negatives, positive, negative = negative_prompt_pairs(clip, setting)
    automatic = {"cutoff_mode": cs.MODE_AUTOMATIC}
    rows = []
    for label, inputs, empty in (("full CFG", None, None),
                                 ("automatic, no empty prompt (the negative runs alone)", automatic, None),
                                 ("automatic, empty prompt connected", automatic,
                                  nodes.CLIPTextEncode().encode(clip, "")[0])):
        images, row = frontier_run(model, vae, positive, negative, setting, inputs, empty)
        read = scorer.read(images.numpy())
        row.update(configuration=label, follows_negative={
            n: float(np.mean([r[n] == b[n] for r, b in zip(read, negatives)])) for n in shapes_data.ATTRIBUTES})
        rows.append(row)
        log(f"frontier, negative prompt, {label}: follows the negative {row['follows_negative']}")
    return rows


def frontier_section(model, clip, vae, setting, out_dir, log=print):
    """The frontier's data, its date and machine; its grid written into ``out_dir``."""
    started = time.time()
    data, pictures = frontier_experiment(model, clip, vae, setting, log)
    data.update(seconds=round(time.time() - started), machine=_machine(),
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    grid(pictures, list(pictures), Path(out_dir) / "frontier.png")
    return data


def merge_frontier(model, clip, vae, setting, out_dir, prompts_given=False):
    """The frontier alone, merged into an existing report (its own date and machine), on as many
    prompts as the report's other rows unless ``prompts_given``."""
    path = out_dir / "report.json"
    report = json.loads(path.read_text())
    if not prompts_given:
        setting = dataclasses.replace(setting, prompts=report["setting"]["prompts"])
    report["frontier"] = frontier_section(model, clip, vae, setting, out_dir)
    report.setdefault("grids", {})["frontier.png"] = [r["configuration"] for r in report["frontier"]["rows"]]
    path.write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "report.md").write_text(markdown(report))
    (out_dir / "readme_summary.md").write_text(readme_summary(report))
    return report


def frontier_markdown(report):
    """The frontier's section of the report (empty when the report predates it)."""
    data = report.get("frontier")
    if not data:
        return []
    names = shapes_data.ATTRIBUTES
    lines = ["## 4. The frontier: UNet work saved against adherence", "",
             f"Measured {data['date']} on {data['machine']} in {data['seconds']} s (`report.py --frontier-only`): "
             f"the acceleration table's prompts ({data['pictures']} pictures per row, {data['sampler']}, "
             f"{data['steps']} steps, cfg {data['cfg']}, empty negative), every way of choosing the cut at its "
             "defaults. UNet work = rows the UNet evaluated (pictures x branches); steps with text as the run's "
             "summary reports them; PSNR against the full-CFG pictures (same seed).", "",
             "| configuration | steps with text | UNet work saved | " + " | ".join(names) + " | PSNR dB |",
             "|---|---|---|" + "---|" * len(names) + "---|"]
    for row in data["rows"]:
        lines.append(f"| {row['configuration']} | {row['guided_steps']} | {100 * row['unet_work_saved']:.1f}% | "
                     f"{_adherence_cells(row['adherence'])} | {row['vs_full_cfg']['PSNR']:.1f} |")
    lines += ["", "With a negative prompt that differs from the prompt in every attribute (the negative-prompt "
              "experiment's prompts): share of pictures whose attribute follows the NEGATIVE prompt.", "",
              "| configuration | steps with text | UNet work saved | " + " | ".join(names) + " |",
              "|---|---|---|" + "---|" * len(names)]
    for row in data["negative_prompt"]:
        lines.append(f"| {row['configuration']} | {row['guided_steps']} | {100 * row['unet_work_saved']:.1f}% | "
                     f"{_adherence_cells(row['follows_negative'])} |")
    lines += ["", "Rows of the grid: " + "; ".join(r["configuration"] for r in data["rows"]) + ".", "",
              "![frontier](frontier.png)", ""]
    return lines


def _machine():
    return (f"CPU ({platform.machine()}), {torch.get_num_threads()} thread{'' if torch.get_num_threads() == 1 else 's'}" if not torch.cuda.is_available()
            else torch.cuda.get_device_name())


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    host.import_host()
    setting = dataclasses.replace(QUICK if args.quick else Setting(), **({"prompts": args.prompts} if args.prompts else {}))
    model, clip, vae = node("ShapeFirstDemoCheckpoint", "nodes.demo_models.nodes").EXECUTE_NORMALIZED().result
    if args.negative_only:
        report = merge_negative_prompt(model, clip, vae, setting, Path(args.output_dir))
        print("\n".join(negative_markdown(report)))
        return
    if args.frontier_only:
        report = merge_frontier(model, clip, vae, setting, Path(args.output_dir), bool(args.prompts or args.quick))
        print("\n".join(frontier_markdown(report)))
        return
    report = run(model, clip, vae, setting, args.output_dir)
    (Path(args.output_dir) / "readme_summary.md").write_text(readme_summary(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
