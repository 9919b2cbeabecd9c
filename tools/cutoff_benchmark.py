#!/usr/bin/env python3
"""Wall time of the guidance cutoff against stock sampling, through ComfyUI's own sampler.

    python tools/cutoff_benchmark.py --models sd15 --batches 1 --regimes eager,reduce-overhead
    python tools/cutoff_benchmark.py --device cpu --tiny --repeats 1      # smoke test, seconds
    python tools/cutoff_benchmark.py --merge a.json b.json --out all.json --md all.md

Builds the host's SD1.5 and SDXL UNets at full size with random weights (speed does not
depend on the values) in fp16, loads them through ``comfy.model_management.load_models_gpu``
and samples with ``comfy.sample.sample`` (euler, 'normal' schedule, cfg 7.5) on random
conditioning of the right shapes. For each group (model, resolution, batch, steps, regime):

- ``full``: stock sampling, both CFG branches every step;
- ``one``: stock sampling at cfg 1, the host's one-branch path;
- the ShapeFirst cutoff at a = 0.3, 0.5, 0.7 of the steps without text, keeping uncond or cond.

``ideal`` is the step-weighted mix (guided steps at the full time per step, the others at the
one-branch time), so ``cutoff_over_ideal`` is what the cutoff costs beyond the UNet work it
keeps. The UNet call time at batch b (one branch) and 2b (both) is read with CUDA events
around each call. Every variant is warmed up first (that is also where torch.compile
compiles), then the variants run interleaved in a rotating order, and medians are reported.
Regimes: ``eager``; ``host-inductor`` (the host's TorchCompileModel node, inductor);
``reduce-overhead`` (ShapeFirstCompileModel: inductor with CUDA graphs); ``dynamo-eager``
(ShapeFirstCompileModel with the 'eager' backend, for CPU smoke tests of the compiled path).
In compiled regimes the script also counts compiled graphs and CUDA-graph recordings before
and after the timed runs, and on CUDA it counts host-device synchronisations per run with
torch's sync debug mode, stock against cutoff.
"""
import argparse
import datetime
import json
import logging
import platform
import re
import statistics
import sys
import time
import warnings
from pathlib import Path

import machine_state  # this script's neighbours (Python puts a script's folder first on sys.path)
import model_families
import pack_loader
from pack_loader import pack_module

REPO = pack_loader.REPO

CFG = 7.5
SAMPLER = "euler"
SCHEDULER = "normal"
SEED = 42
REGIMES = ("eager", "host-inductor", "reduce-overhead", "dynamo-eager")
KEEPS = ("uncond", "cond")

# The host's full UNet configurations (comfy/model_detection.py, unet_config_from_diffusers_unet).
FULL_UNET_CONFIGS = {
    "sd15": {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
             "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
             "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
             "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
             "context_dim": 768, "num_heads": 8, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
             "use_temporal_attention": False, "use_temporal_resblock": False},
    "sdxl": {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
             "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4,
             "model_channels": 320, "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
             "channel_mult": [1, 2, 4], "transformer_depth_middle": 10, "use_linear_in_transformer": True,
             "context_dim": 2048, "num_head_channels": 64,
             "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
             "use_temporal_attention": False, "use_temporal_resblock": False},
}
# (image size in pixels, text width, pooled width) per model; tiny models: nodes/demo_models/tiny.py widths.
SHAPES = {"sd15": (512, 768, None), "sdxl": (1024, 2048, 1280)}
TINY_SHAPES = {"sd15": (64, 32, None), "sdxl": (64, 64, 32)}

log = logging.getLogger("cutoff_benchmark")


# ---------------------------------------------------------------- host and pack

def import_host(comfyui, cpu):
    """Put the host on sys.path and import what the benchmark uses (CPU forced if asked)."""
    sys.path.insert(0, str(comfyui))
    import comfy.cli_args
    comfy.cli_args.args.cpu = cpu  # read by comfy.model_management at import
    import comfy.model_management  # noqa: F401
    import comfy.sample  # noqa: F401


def find_host(explicit):
    if explicit:
        return Path(explicit)
    headless = pack_module("tools.headless")
    found = headless.find_comfyui(REPO)
    if found is None:
        raise SystemExit(f"ComfyUI not found: pass --comfyui /path/to/ComfyUI or {headless.HOST_HINT}.")
    return found


# ---------------------------------------------------------------- models and inputs

def full_model(architecture, seed=0):
    """The host's full-size UNet (fp16, random weights) in a ModelPatcher, loaded to the GPU
    through the host's model management."""
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    family = {"sd15": comfy.supported_models.SD15, "sdxl": comfy.supported_models.SDXL}[architecture]
    config = family(dict(FULL_UNET_CONFIGS[architecture]))
    config.set_inference_dtype(torch.float16, None)
    model = config.get_model({}, device=mm.unet_offload_device())
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    mm.load_models_gpu([patcher])
    model_families.fill_random(model.diffusion_model, seed)  # on the GPU: 2.6 B weights
    return patcher


def build_model(architecture, tiny):
    if model_families.is_family(architecture):  # SD3, Flux, Wan
        return model_families.build(architecture, tiny)
    if tiny:
        return pack_module("tools.tiny_test_models").tiny_model(architecture, seed=0)
    return full_model(architecture)


def random_conditioning(architecture, tiny, batch, seed=SEED):
    """(positive, negative, latent, noise): random text embeddings of the model's shapes,
    an empty latent of the model's resolution and the host's seeded noise."""
    if model_families.is_family(architecture):
        return model_families.random_inputs(architecture, tiny, batch, seed)
    import torch
    import comfy.sample
    size, width, pooled = (TINY_SHAPES if tiny else SHAPES)[architecture]
    generator = torch.Generator().manual_seed(seed)

    def cond():
        extra = {}
        if pooled:
            extra = {"pooled_output": torch.randn(1, pooled, generator=generator), "width": size, "height": size}
        return [[torch.randn(1, 77, width, generator=generator), extra]]

    positive, negative = cond(), cond()
    latent = torch.zeros(batch, 4, size // 8, size // 8)
    return positive, negative, latent, comfy.sample.prepare_noise(latent, seed)


def model_size(architecture, tiny):
    if model_families.is_family(architecture):
        return model_families.size_label(architecture, tiny)
    return (TINY_SHAPES if tiny else SHAPES)[architecture][0]


def model_dtype(architecture, tiny):
    if model_families.is_family(architecture):
        return model_families.dtype_name(architecture, tiny)
    return "float32" if tiny else "float16"


def regime_model(base, regime):
    """The base ModelPatcher as the user's graph would hand it to the sampler, per regime."""
    if regime == "eager":
        return base
    if regime == "host-inductor":
        from comfy_extras.nodes_torch_compile import TorchCompileModel
        return TorchCompileModel.execute(base, "inductor").result[0]
    compile_model = pack_module("nodes.performance.nodes")
    if regime == "reduce-overhead":
        return compile_model.compiled_clone(base, "inductor", "reduce-overhead")
    return compile_model.compiled_clone(base, "eager", "default")


# ---------------------------------------------------------------- timing

class Clock:
    """Wall time of whole runs and device time of UNet calls (CUDA events on a GPU)."""

    def __init__(self, device):
        import torch
        self.torch = torch
        self.cuda = device.type == "cuda"
        self.device = device

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def mark(self):
        if self.cuda:
            event = self.torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed_ms(self, start, end):
        """After ``sync``: milliseconds between two marks."""
        return start.elapsed_time(end) if self.cuda else 1000.0 * (end - start)


def _sample(patcher, inputs, steps, cfg):
    """comfy.sample.sample as the KSampler node calls it, on this group's inputs."""
    import comfy.sample
    positive, negative, latent, noise = inputs
    return comfy.sample.sample(patcher, noise, steps, cfg, SAMPLER, SCHEDULER, positive, negative, latent,
                               disable_pbar=True, seed=SEED)


def sample_once(patcher, inputs, steps, cfg, clock):
    """One sampling run; returns (seconds, output latent)."""
    clock.sync()
    start = time.perf_counter()
    out = _sample(patcher, inputs, steps, cfg)
    clock.sync()
    return time.perf_counter() - start, out


def unet_call_ms(patcher, inputs, steps, cfg, clock):
    """Median time of one UNet call in a sampling run, timed around the host's own call
    through ``model_function_wrapper``; the first two calls are left out."""
    calls = timeline_once(patcher, inputs, steps, cfg, clock)["unet_call_ms"]
    return statistics.median(calls[2:] or calls)


def device_allocation_count(clock):
    """Memory segments the CUDA caching allocator has requested from the device so far."""
    if not clock.cuda:
        return None
    return int(clock.torch.cuda.memory_stats(clock.device).get("num_device_alloc", 0))


def timeline_once(patcher, inputs, steps, cfg, clock):
    """Where the time of one sampling run goes: per UNet call its device time and the device
    time before it that was not UNet work (the sampler's own kernels, and the device idling
    while the host prepares the next call). CUDA events only, so no synchronisation is added."""
    calls = []

    def timed_call(apply_model, args):
        start = clock.mark()
        out = apply_model(args["input"], args["timestep"], **args["c"])
        calls.append((start, clock.mark(), int(args["input"].shape[0])))
        return out

    timed = patcher.clone()
    timed.set_model_unet_function_wrapper(timed_call)
    clock.sync()
    begin = clock.mark()
    _sample(timed, inputs, steps, cfg)
    end = clock.mark()
    clock.sync()
    unet = [clock.elapsed_ms(s, e) for s, e, _ in calls]
    gaps = [clock.elapsed_ms(previous[1], current[0]) for previous, current in zip(calls, calls[1:])]
    switch = next((i for i in range(1, len(calls)) if calls[i][2] != calls[i - 1][2]), None)
    return {"total_ms": clock.elapsed_ms(begin, end), "unet_ms": sum(unet), "between_calls_ms": sum(gaps),
            "before_first_ms": clock.elapsed_ms(begin, calls[0][0]), "after_last_ms": clock.elapsed_ms(calls[-1][1], end),
            "batches": [b for _, _, b in calls], "unet_call_ms": unet, "gap_ms": gaps,
            "gap_at_batch_change_ms": gaps[switch - 1] if switch else None,
            "first_call_after_change_ms": unet[switch] if switch else None}


def timelines(variants, inputs, steps, clock, repeats=5):
    """Interleaved timelines of stock full, stock cfg 1 and the a=0.5 keep=uncond cutoff;
    medians of each part over the runs."""
    chosen = [v for v in variants if v[3] is None or (v[3][0] == 0.5 and v[3][1] == "uncond")]
    runs = {name: [] for name, *_ in chosen}
    for name, patcher, cfg, _ in chosen:  # warm the timed clones (the clone is new to the host)
        timeline_once(patcher, inputs, steps, cfg, clock)
    for _ in range(repeats):
        for name, patcher, cfg, _ in chosen:
            runs[name].append(timeline_once(patcher, inputs, steps, cfg, clock))
    summary = {}
    for name, parts in runs.items():
        keys = [k for k, v in parts[0].items() if isinstance(v, float)]
        summary[name] = {k: statistics.median(p[k] for p in parts) for k in keys}
        summary[name]["batches"] = parts[0]["batches"]
        # per call position, medians over the runs: shows where a difference sits
        summary[name]["unet_call_ms"] = [statistics.median(c) for c in zip(*(p["unet_call_ms"] for p in parts))]
        summary[name]["gap_ms"] = [statistics.median(c) for c in zip(*(p["gap_ms"] for p in parts))]
    return summary


def count_syncs(patcher, inputs, steps, cfg, clock):
    """Host-device synchronisations in one sampling run (torch's CUDA sync debug mode)."""
    torch = clock.torch
    if not clock.cuda:
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            sample_once(patcher, inputs, steps, cfg, clock)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum(1 for w in caught if "synchroniz" in str(w.message))


def compile_counters(device):
    """Graphs dynamo compiled and CUDA graphs recorded so far (None where torch hides it)."""
    from torch._dynamo.utils import counters
    return {"compiled_graphs": int(counters["stats"]["unique_graphs"]),
            "cudagraph_recordings": cudagraph_recordings(device),
            "cudagraph_skips": int(counters["inductor"]["cudagraph_skips"])}


def cudagraph_recordings(device):
    """CUDA graphs recorded by inductor's CUDA-graph trees on this device (its graph id
    counter; a private attribute, so None if this torch lays it out otherwise)."""
    if device.type != "cuda":
        return None
    try:
        from torch._inductor import cudagraph_trees
        manager = cudagraph_trees.get_container(device.index or 0).tree_manager
        if manager is None:
            return 0
        match = re.match(r"count\((-?\d+)", repr(manager.graph_counter))
        return int(match.group(1)) if match else None
    except Exception:  # private API: report "unknown", never fail the benchmark for it
        return None


def counter_delta(after, before):
    return {k: (None if after[k] is None or before[k] is None else after[k] - before[k]) for k in after}


class RecompileLog(logging.Handler):
    """Collects dynamo's recompilation messages (each says which guard failed)."""

    def __init__(self, host):
        super().__init__()
        self.messages = []
        self.host_prefix = str(Path(host).resolve()) + "/"

    def emit(self, record):
        message = record.getMessage().replace(self.host_prefix, "")  # host-relative paths only
        if "ecompil" in message:
            self.messages.append(" | ".join(line.strip() for line in message.strip().splitlines())[:1500])


# ---------------------------------------------------------------- one group

def variants_for(cutoff_patch, cs, base, a_values, keeps, cond_a_values):
    """(name, ModelPatcher, cfg, (a, keep, patch) or None) of every variant of one group."""
    # Every variant gets its own clone, so every interleaved run pays the same ModelPatcher
    # switch in the host's load_models_gpu (a shared clone would favour the stock variants).
    variants = [("full", base.clone(), CFG, None), ("one", base.clone(), 1.0, None)]
    for keep in keeps:
        for a in (a_values if keep == "uncond" else cond_a_values):
            settings = cs.CutoffSettings(cutoff_mode=cs.MODE_FRACTION, guided_fraction=round(1.0 - a, 6), keep=keep)
            patched, patch = cutoff_patch.apply_cutoff(base, settings)
            variants.append((f"cutoff a={a:g} keep={keep}", patched, CFG, (a, keep, patch)))
    return variants


def warm_up(variants, inputs, steps, clock, device, recompiles, compiled):
    """The first run of every variant (loading, allocation, compiling): its seconds, its
    compile counters and recompile messages, and its output."""
    warmup, outputs = {}, {}
    for name, patcher, cfg, _ in variants:
        before = compile_counters(device) if compiled else None
        logged = len(recompiles.messages)
        seconds, out = sample_once(patcher, inputs, steps, cfg, clock)
        warmup[name] = {"seconds": seconds}
        if compiled:
            warmup[name]["counters"] = counter_delta(compile_counters(device), before)
            warmup[name]["recompile_messages"] = recompiles.messages[logged:]
        outputs[name] = out
    return warmup, outputs


def time_interleaved(variants, inputs, steps, clock, repeats):
    """Seconds per run of every variant, in rotating order; with each run's host CPU seconds
    and the device memory segments the caching allocator had to request (cudaMalloc): where a
    launch-bound run spends its time."""
    times = {name: [] for name, *_ in variants}
    cpu_seconds = {name: [] for name, *_ in variants}
    device_allocations = {name: [] for name, *_ in variants}
    for repeat in range(repeats):
        shift = repeat % len(variants)  # rotate the order so no variant always runs first
        for name, patcher, cfg, _ in variants[shift:] + variants[:shift]:
            cpu_before, allocations_before = time.process_time(), device_allocation_count(clock)
            times[name].append(sample_once(patcher, inputs, steps, cfg, clock)[0])
            cpu_seconds[name].append(time.process_time() - cpu_before)
            if allocations_before is not None:
                device_allocations[name].append(device_allocation_count(clock) - allocations_before)
    return times, cpu_seconds, device_allocations


def sync_counts(model, variants, inputs, steps, clock):
    """Device synchronisations per run: full CFG, one branch, and the cutoff at a = 0.5 (uncond)."""
    half = next((v for v in variants if v[3] and v[3][0] == 0.5 and v[3][1] == "uncond"), variants[-1])
    return {"steps": steps, "full": count_syncs(model, inputs, steps, CFG, clock),
            "one": count_syncs(model, inputs, steps, 1.0, clock),
            "cutoff": count_syncs(half[1], inputs, steps, CFG, clock), "cutoff_variant": half[0]}


def cutoff_cells(group, variants, times, median):
    """One cell per cutoff variant: its time against full CFG and against the ideal mix."""
    steps, full, one = group["steps"], group["full_s"], group["one_s"]
    cells = []
    for name, _, _, extra in variants:
        if extra is None:
            continue
        a, keep, patch = extra
        run = patch.last_run
        guided = run.guided_steps()
        ideal = (guided * full + (steps - guided) * one) / steps
        cutoff = median[name]
        over_ideal, interval = ratio_with_interval(times[name], times["full"], times["one"], guided, steps)
        cells.append({
            **{key: group[key] for key in ("model", "size", "dtype", "batch", "steps", "regime")},
            "a": a, "a_steps": steps - guided, "keep": keep, "full_s": full, "one_s": one, "cutoff_s": cutoff,
            "ideal_s": ideal, "cutoff_over_ideal": over_ideal, "cutoff_over_ideal_90": interval,
            "saved_pct": 100.0 * (1.0 - cutoff / full),
            "ideal_saved_pct": 100.0 * (1.0 - ideal / full), "unet_ms_b": group["unet_ms_b"],
            "unet_ms_2b": group["unet_ms_2b"],
            "full_evaluations": run.full_evaluations, "single_evaluations": run.single_evaluations,
            "sigma_reads": run.sigma_reads,
        })
    return cells


def run_group(spec, model, args, clock, device, recompiles, sync_check):
    """Warm up, then time every variant of one (model, batch, steps, regime) interleaved."""
    import torch
    cutoff_patch = pack_module("nodes.guidance_cutoff.patch")
    cs = pack_module("nodes.guidance_cutoff.schedule")
    model_name, batch, steps, regime, repeats = spec
    inputs = random_conditioning(model_name, args.tiny, batch)
    compiled = regime != "eager"
    variants = variants_for(cutoff_patch, cs, model, args.a_values, args.keeps, args.cond_a_values)

    counters_start = compile_counters(device) if compiled else None
    warmup, outputs = warm_up(variants, inputs, steps, clock, device, recompiles, compiled)
    counters_warm = compile_counters(device) if compiled else None
    logged = len(recompiles.messages)
    times, cpu_seconds, device_allocations = time_interleaved(variants, inputs, steps, clock, repeats)
    counters_timed = compile_counters(device) if compiled else None
    logged_timed = len(recompiles.messages)

    unet_2b = unet_call_ms(model, inputs, steps, CFG, clock)
    unet_b = unet_call_ms(model, inputs, steps, 1.0, clock)
    syncs = sync_counts(model, variants, inputs, steps, clock) if sync_check and clock.cuda else None
    timeline = timelines(variants, inputs, steps, clock) if args.timeline else None

    median = {name: statistics.median(values) for name, values in times.items()}
    full, one = median["full"], median["one"]
    group = {
        "model": model_name, "size": model_size(model_name, args.tiny), "dtype": model_dtype(model_name, args.tiny),
        "batch": batch, "steps": steps, "regime": regime, "repeats": repeats, "full_s": full, "one_s": one,
        "unet_ms_b": unet_b, "unet_ms_2b": unet_2b, "unet_2b_over_b": unet_2b / unet_b,
        "runs_s": times, "warmup_s": {k: v["seconds"] for k, v in warmup.items()},
        "cpu_s_median": {k: statistics.median(v) for k, v in cpu_seconds.items()},
        "device_allocations_median": {k: statistics.median(v) for k, v in device_allocations.items() if v},
        "outputs_finite": all(bool(torch.isfinite(o).all()) for o in outputs.values()),
        "sync_debug_counts": syncs, "timeline": timeline,
    }
    if compiled:
        group["compile"] = {
            # first run of a variant minus its steady time: compiling and capturing its shapes
            "compile_s": {k: max(v["seconds"] - median[k], 0.0) for k, v in warmup.items()},
            "warmup_counters": {k: v["counters"] for k, v in warmup.items()},
            "during_warmup": counter_delta(counters_warm, counters_start),
            "during_timed_runs": counter_delta(counters_timed, counters_warm),
            "recompile_messages_warmup": {k: v["recompile_messages"] for k, v in warmup.items()},
            "recompile_messages_timed_runs": recompiles.messages[logged:logged_timed],
        }
    return group, cutoff_cells(group, variants, times, median)


def ratio_with_interval(cutoff_runs, full_runs, one_runs, guided, steps, resamples=2000):
    """cutoff/ideal from the medians, and a 90 % bootstrap interval of it (the interleaved
    rounds resampled): how far the machine's noise leaves the ratio uncertain."""
    import random

    def ratio(rounds):
        full = statistics.median(full_runs[r] for r in rounds)
        one = statistics.median(one_runs[r] for r in rounds)
        return statistics.median(cutoff_runs[r] for r in rounds) / ((guided * full + (steps - guided) * one) / steps)

    everything = range(len(cutoff_runs))
    pick = random.Random(SEED)
    ratios = sorted(ratio(pick.choices(everything, k=len(everything))) for _ in range(resamples))
    return ratio(everything), [ratios[int(0.05 * resamples)], ratios[int(0.95 * resamples) - 1]]


# ---------------------------------------------------------------- output

def environment(device, tiny):
    import torch
    import comfy.model_management as mm
    try:
        import comfyui_version
        host_version = comfyui_version.__version__
    except ImportError:
        host_version = "unknown"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "device": mm.get_torch_device_name(device), "torch": torch.__version__, "comfyui": host_version,
        "python": platform.python_version(), "tiny_models": tiny, "dtype": "float32" if tiny else "float16",
        "sampler": SAMPLER, "scheduler": SCHEDULER, "cfg": CFG,
        "attention": "pytorch sdpa" if mm.ENABLE_PYTORCH_ATTENTION else "host default",
        # what sets the pace of launch-bound runs, and the GPU's state before the first group
        "machine": machine_state.host_machine(), "kernel_launch_us": machine_state.kernel_launch_us(device),
        "gpu_state_start": machine_state.gpu_state(),
    }


REGIME_LABELS = {"eager": "eager", "host-inductor": "TorchCompileModel (inductor)",
                 "reduce-overhead": "ShapeFirstCompileModel (reduce-overhead)", "dynamo-eager": "dynamo, eager backend"}


def machine_line(env):
    """Card, host, torch, sandbox, CPU, launch cost and GPU state of one run's environment."""
    machine, gpu = env.get("machine") or {}, env.get("gpu_state_start") or {}
    parts = [env["device"], f"ComfyUI {env['comfyui']}", f"torch {env['torch']}"]
    if machine:
        parts.append(f"{machine['runtime']} (kernel {machine['kernel']}), {machine['cpu']}, {machine['cpu_count']} CPUs")
    if env.get("kernel_launch_us") is not None:
        parts.append(f"kernel launch {env['kernel_launch_us']:.1f} µs")
    if gpu and "error" not in gpu:
        parts.append(f"GPU at start: SM {gpu.get('clocks.sm')}, {gpu.get('power.draw')}, {gpu.get('temperature.gpu')} °C, "
                     f"compute processes on it: {len(gpu.get('compute_processes', []))} (the benchmark's own included)")
    return " · ".join(parts)


def render_markdown(results):
    env = results["environment"]
    lines = [
        "# Guidance cutoff: wall time on the GPU",
        "",
        f"{env['sampler']}/{env['scheduler']}, cfg {env['cfg']} · random weights, "
        f"`tools/cutoff_benchmark.py`. Medians of at least {results['repeats']} interleaved runs after a "
        "warm-up of each variant.",
        "",
    ]
    runs = results.get("environments") or {"-": env}
    lines += ["| run | date | machine |", "|---|---|---|"]
    lines += [f"| {source} | {e['date']} | {machine_line(e)} |" for source, e in runs.items()]
    lines += [
        "",
        "full = both CFG branches every step; one = cfg 1 (one branch); a = share of steps without text; "
        "ideal = guided steps at the full time per step, the rest at the one-branch time; "
        "cutoff/ideal with a 90 % bootstrap interval over the interleaved rounds (wide where the machine is noisy); "
        "UNet b / 2b = one UNet call for one branch / both (CUDA events).",
        "",
        "| model | dtype | batch | steps | regime | a | keep | full s | one s | cutoff s | ideal s | cutoff/ideal "
        "| 90 % interval | saved % | UNet b ms | UNet 2b ms | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results["cells"]:
        lines.append(
            f"| {c['model']}@{c['size']} | {c.get('dtype', env['dtype'])} | {c['batch']} | {c['steps']} "
            f"| {REGIME_LABELS[c['regime']]} | {c['a']:g} "
            f"| {c['keep']} | {c['full_s']:.3f} | {c['one_s']:.3f} | {c['cutoff_s']:.3f} | {c['ideal_s']:.3f} "
            f"| {c['cutoff_over_ideal']:.3f} | {c['cutoff_over_ideal_90'][0]:.3f}–{c['cutoff_over_ideal_90'][1]:.3f} "
            f"| {c['saved_pct']:.1f} | {c['unet_ms_b']:.1f} | {c['unet_ms_2b']:.1f} "
            f"| {c.get('source', '-')} |")
    compiled = [g for g in results["groups"] if "compile" in g]
    if compiled:
        lines += ["", "Compiled regimes: first-run overhead (compiling and capturing the batch shapes) and "
                      "what happened during the timed runs.", "",
                  "| model | batch | steps | regime | first-run overhead s (full / one / first cutoff) "
                  "| graphs compiled in warm-up | new graphs / CUDA-graph recordings in timed runs | run |",
                  "|---|---|---|---|---|---|---|---|"]
        for g in compiled:
            comp = g["compile"]
            first_cutoff = next((k for k in comp["compile_s"] if k.startswith("cutoff")), None)
            cut = f"{comp['compile_s'][first_cutoff]:.1f}" if first_cutoff else "-"
            timed = comp["during_timed_runs"]
            lines.append(
                f"| {g['model']}@{g['size']} | {g['batch']} | {g['steps']} | {REGIME_LABELS[g['regime']]} "
                f"| {comp['compile_s']['full']:.1f} / {comp['compile_s']['one']:.1f} / {cut} "
                f"| {comp['during_warmup']['compiled_graphs']} "
                f"| {timed['compiled_graphs']} / {timed['cudagraph_recordings']} | {g.get('source', '-')} |")
    synced = [g for g in results["groups"] if g.get("sync_debug_counts")]
    if synced:
        lines += ["", "Host-device synchronisations per sampling run (torch CUDA sync debug mode).", "",
                  "| model | batch | steps | regime | stock full | stock cfg 1 | cutoff a=0.5 |",
                  "|---|---|---|---|---|---|---|"]
        for g in synced:
            s = g["sync_debug_counts"]
            lines.append(f"| {g['model']}@{g['size']} | {g['batch']} | {g['steps']} | {REGIME_LABELS[g['regime']]} "
                         f"| {s['full']} | {s['one']} | {s['cutoff']} |")
    if results.get("skipped"):
        lines += ["", f"Not run (time budget): {', '.join(results['skipped'])}."]
    for error in results.get("errors", []):
        lines += ["", f"Failed: {error['group']}: {error['error'][:300]}"]
    if results.get("notes"):
        lines += ["", *[f"- {n}" for n in results["notes"]]]
    return "\n".join(lines) + "\n"


def write_results(results, out, md):
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=1) + "\n")
    if md:
        Path(md).parent.mkdir(parents=True, exist_ok=True)
        Path(md).write_text(render_markdown(results))


def merge(paths, notes):
    """One result file from several runs (e.g. one device call per regime)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    environments = {}
    for path, part in zip(paths, parts):  # which run, on which date and machine, each number came from
        for item in part["groups"] + part["cells"]:
            item.setdefault("source", Path(path).stem)
            item.setdefault("date", part["environment"]["date"])
        environments.update(part.get("environments") or {
            source: part["environment"] for source in dict.fromkeys(i["source"] for i in part["groups"])})
    merged = dict(parts[0])
    merged["environments"] = environments
    merged["groups"] = [g for p in parts for g in p["groups"]]
    merged["cells"] = [c for p in parts for c in p["cells"]]
    for group in merged["groups"]:  # intervals from the raw runs (older files have none)
        runs = group["runs_s"]
        for cell in merged["cells"]:
            if all(cell[k] == group[k] for k in ("model", "batch", "steps", "regime")) and \
                    cell.get("source") == group.get("source"):
                guided = cell["steps"] - cell["a_steps"]
                name = f"cutoff a={cell['a']:g} keep={cell['keep']}"
                cell["cutoff_over_ideal"], cell["cutoff_over_ideal_90"] = ratio_with_interval(
                    runs[name], runs["full"], runs["one"], guided, cell["steps"])
    order = lambda item: (item["model"], REGIMES.index(item["regime"]), item["batch"], item["steps"])
    merged["groups"].sort(key=order)  # stable: within a cell, the runs' order is kept
    merged["cells"].sort(key=order)
    merged["skipped"] = [s for p in parts for s in p.get("skipped", [])]
    merged["errors"] = [e for p in parts for e in p.get("errors", [])]
    merged["notes"] = [n for p in parts for n in p.get("notes", [])] + list(notes)
    merged["repeats"] = min(p["repeats"] for p in parts)
    return merged


# ---------------------------------------------------------------- main

def csv(kind):
    return lambda text: [kind(x) for x in text.split(",") if x]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfyui", help="the ComfyUI folder (default: $COMFYUI_PATH, the ComfyUI this pack sits in, "
                                     "or an importable comfy)")
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu", help="gpu: the host's default device")
    p.add_argument("--tiny", action="store_true", help="tiny random models (nodes/demo_models/tiny.py): smoke test")
    p.add_argument("--models", type=csv(str), default=["sd15", "sdxl"])
    p.add_argument("--batches", type=csv(int), default=[1, 4, 8])
    p.add_argument("--steps", type=csv(int), default=[20, 50])
    p.add_argument("--regimes", type=csv(str), default=["eager", "host-inductor", "reduce-overhead"])
    p.add_argument("--a-values", type=csv(float), default=[0.3, 0.5, 0.7],
                   help="shares of the steps WITHOUT text (the paper's a / S), keeping uncond")
    p.add_argument("--keeps", type=csv(str), default=list(KEEPS))
    p.add_argument("--cond-a-values", type=csv(float), help="a values for keep=cond (default: --a-values)")
    p.add_argument("--groups", type=csv(str),
                   help="explicit groups model:batch:steps:regime[:repeats] (overrides the grid)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--timeline", action="store_true",
                   help="also record where the time goes per UNet call (CUDA events) for full, cfg 1 and a=0.5")
    p.add_argument("--no-sync-check", dest="sync_check", action="store_false")
    p.add_argument("--time-budget-s", type=float, default=0.0,
                   help="start no new group after this many seconds (0: no limit); the rest is listed as skipped")
    p.add_argument("--note", action="append", default=[], help="a line for the results' notes")
    p.add_argument("--out", help="JSON results (written after every group)")
    p.add_argument("--md", help="markdown table of the results")
    p.add_argument("--merge", nargs="+", help="merge these JSON results into --out/--md instead of running")
    args = p.parse_args(argv)
    args.cond_a_values = args.cond_a_values if args.cond_a_values is not None else args.a_values
    for regime in args.regimes:
        if regime not in REGIMES:
            p.error(f"regime must be among {REGIMES}, got {regime!r}")
    return args


def group_specs(args):
    if args.groups:
        specs = []
        for text in args.groups:
            model_name, batch, steps, regime, *repeats = text.split(":")
            specs.append((model_name, int(batch), int(steps), regime, int(repeats[0]) if repeats else args.repeats))
        return specs
    return [(m, b, s, r, args.repeats) for m in args.models for r in args.regimes for b in args.batches
            for s in args.steps]


def main(argv=None):
    args = parse_args(argv)
    if args.merge:
        write_results(merge(args.merge, args.note), args.out, args.md)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    host = find_host(args.comfyui)
    import_host(host, cpu=args.device == "cpu")
    import torch
    import comfy.model_management as mm
    torch._dynamo.config.cache_size_limit = 64  # this sweep meets many batch shapes in one process
    recompiles = RecompileLog(host)
    logging.getLogger("torch._dynamo").addHandler(recompiles)
    torch._logging.set_logs(recompiles=True)

    device = mm.get_torch_device()
    clock = Clock(device)
    started = time.perf_counter()
    specs = group_specs(args)
    results = {"environment": environment(device, args.tiny), "repeats": min(spec[4] for spec in specs),
               "groups": [], "cells": [],
               "skipped": [], "errors": [], "notes": list(args.note)}
    print(machine_line(results["environment"]), flush=True)
    models = {}  # (model, regime) -> ModelPatcher; one compiled model per regime, reused across groups
    sync_checked = set()
    for spec in specs:
        if args.time_budget_s and time.perf_counter() - started > args.time_budget_s:
            results["skipped"].append(":".join(map(str, spec)))
            continue
        model_name, regime = spec[0], spec[3]
        if not any(key[0] == model_name for key in models):
            models.clear()
            mm.unload_all_models()
            mm.soft_empty_cache()
            models[(model_name, "eager")] = build_model(model_name, args.tiny)
        if (model_name, regime) not in models:
            models[(model_name, regime)] = regime_model(models[(model_name, "eager")], regime)
        # once per model, regime and step count: enough to see whether syncs grow with the steps
        sync_check = args.sync_check and (model_name, regime, spec[2]) not in sync_checked
        sync_checked.add((model_name, regime, spec[2]))
        try:
            group, cells = run_group(spec, models[(model_name, regime)], args, clock, device, recompiles, sync_check)
        except Exception as error:  # keep the other groups' results; the error goes into the file
            log.exception("group %s failed", spec)
            results["errors"].append({"group": ":".join(map(str, spec)), "error": repr(error)[:2000]})
            write_results(results, args.out, args.md)
            continue
        group["gpu_state_after"] = machine_state.gpu_state()  # clocks and power under load
        results["groups"].append(group)
        results["cells"].extend(cells)
        write_results(results, args.out, args.md)
        for c in cells:
            print(f"{c['model']} b{c['batch']} {c['steps']} steps {c['regime']:>15} a={c['a']:g} {c['keep']:>6}: "
                  f"full {c['full_s']:.3f}s one {c['one_s']:.3f}s cutoff {c['cutoff_s']:.3f}s "
                  f"ideal {c['ideal_s']:.3f}s cutoff/ideal {c['cutoff_over_ideal']:.3f} saved {c['saved_pct']:.1f}% "
                  f"| UNet b {c['unet_ms_b']:.1f} 2b {c['unet_ms_2b']:.1f} ms", flush=True)
        if "compile" in group:
            comp = group["compile"]
            print(f"  compile s: { {k: round(v, 1) for k, v in comp['compile_s'].items()} }; warm-up "
                  f"{comp['during_warmup']}; timed runs {comp['during_timed_runs']}, "
                  f"{len(comp['recompile_messages_timed_runs'])} recompile messages", flush=True)
        for name, t in (group["timeline"] or {}).items():
            print(f"  timeline {name}: total {t['total_ms']:.2f} ms = before first call {t['before_first_ms']:.2f} "
                  f"+ UNet {t['unet_ms']:.2f} + between calls {t['between_calls_ms']:.2f} "
                  f"+ after last {t['after_last_ms']:.2f}; at the batch change: gap "
                  f"{t.get('gap_at_batch_change_ms')}, first call {t.get('first_call_after_change_ms')}", flush=True)
            print(f"    calls ms {[round(x, 2) for x in t['unet_call_ms']]}", flush=True)
            print(f"    gaps ms {[round(x, 2) for x in t['gap_ms']]}", flush=True)
        print(f"  host CPU s per run: { {k: round(v, 3) for k, v in group['cpu_s_median'].items()} }; "
              f"device allocations per run: {group['device_allocations_median']}", flush=True)
        if group["sync_debug_counts"]:
            print(f"  syncs per run: {json.dumps(group['sync_debug_counts'])}", flush=True)
    results["environment"]["gpu_state_end"] = machine_state.gpu_state()
    write_results(results, args.out, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
