"""The numbers the frequency nodes record, as plain JSON: one format for the node's
JSON output, its PIL plot, the live chart in the browser and the chart shown again on
a cache hit. No ComfyUI and no torch here.

A payload is ``{"kind", "title", "panels", "points", "cutoff", ...}``:
- ``points``: one dict per sampling step (trace) or schedule sigma (forward process),
  with ``step`` and ``sigma`` and the values named by the panels' series keys.
- ``panels``: what to draw: a title, a log or linear y axis and series (key, label, colour).
- ``cutoff``: where ShapeFirstGuidanceCutoff switched to one branch, or None.
- ``guidance_start`` (traces): where full CFG began after one-branch steps (the cutoff's
  guidance start), or None. Both are drawn as dashed lines after their ``after_step``.
"""
import json
import math

from ..guidance_cutoff import schedule as cs

# Names shared with js/frequency_chart.js: the node's UI output key and the live events.
UI_KEY = "shapefirst_frequency"
EVENT_START = "shapefirst.frequency.start"
EVENT_STEP = "shapefirst.frequency.step"

KIND_TRACE = "trace"
KIND_FORWARD = "forward"

X_LABELS = {
    KIND_TRACE: "sampling step",
    KIND_FORWARD: "noise level at the start of sampling step k (last: sigma 0, the clean latent)",
}

# Branch counts per step, as the chart colours its step strip.
BOTH_BRANCHES = 2
ONE_BRANCH = 1

_LOW, _HIGH = "#2f7ed8", "#f28f1c"
_X0_LOW, _X0_HIGH = "#1aa57a", "#d6393b"
_GUIDANCE = "#9b59d0"

_XT_PANEL = {"title": "x_t as the model sees it (RMS)", "log": False, "series": [
    {"key": "xt_low", "label": "x_t low", "color": _LOW},
    {"key": "xt_high", "label": "x_t high", "color": _HIGH}]}
_X0_PANEL = {"title": "predicted x0 (RMS)", "log": False, "series": [
    {"key": "x0_low", "label": "x0 low", "color": _X0_LOW},
    {"key": "x0_high", "label": "x0 high", "color": _X0_HIGH}]}
_GUIDANCE_PANEL = {"title": "text guidance ||eps_c - eps_u|| (RMS)", "log": False, "series": [
    {"key": "guidance", "label": "guidance", "color": _GUIDANCE}]}


def _ratio_panel(with_x0):
    series = [{"key": "xt_ratio", "label": "x_t low/high", "color": _LOW}]
    if with_x0:
        series.append({"key": "x0_ratio", "label": "x0 low/high", "color": _X0_LOW})
    return {"title": "low / high ratio", "log": True, "series": series}


def panels(kind):
    """The panels of a trace or a forward-process chart (copies: callers may edit them)."""
    if kind == KIND_TRACE:
        chosen = [_XT_PANEL, _X0_PANEL, _ratio_panel(True), _GUIDANCE_PANEL]
    elif kind == KIND_FORWARD:
        chosen = [_XT_PANEL, _ratio_panel(False)]
    else:
        raise ValueError(f"kind must be {KIND_TRACE!r} or {KIND_FORWARD!r}; got {kind!r}")
    return json.loads(json.dumps(chosen))


def clean(value):
    """A JSON-safe number: non-finite values become None (browsers reject NaN in JSON)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def band_point(prefix, low, high, ratio):
    """``{prefix_low, prefix_high, prefix_ratio}`` from three numbers."""
    return {f"{prefix}_low": clean(low), f"{prefix}_high": clean(high), f"{prefix}_ratio": clean(ratio)}


def trace_point(step, sigma, xt, x0, guidance, branches):
    """One step of a sampling trace; ``step`` counts from 1 (the way the cutoff's guided
    steps count), ``xt`` and ``x0`` are (low, high, ratio) triples."""
    point = {"step": int(step), "sigma": clean(sigma)}
    point.update(band_point("xt", *xt))
    point.update(band_point("x0", *x0))
    point["guidance"] = clean(guidance)
    point["branches"] = branches
    return point


def forward_point(step, sigma, timestep, xt):
    """One noise level of the forward process; ``step`` is the sampling step (from 1) that
    starts at this sigma with the same scheduler, so forward and trace charts line up."""
    point = {"step": int(step), "sigma": clean(sigma), "timestep": clean(timestep)}
    point.update(band_point("xt", *xt))
    return point


def cutoff_marker(guided_steps, total_steps, keep, sigma):
    """Where the sampler switched to one branch; None when it never did."""
    if guided_steps is None or guided_steps >= total_steps:
        return None
    return {"after_step": int(guided_steps), "keep": keep, "sigma": clean(sigma),
            "label": f"{cs.after_cut_words(keep)} after step {guided_steps}"}


def latent_label(shape):
    """How a chart's title names the latent: its channels and, for a video, its frames."""
    shape = list(shape)
    if len(shape) == 5 and shape[2] == 1:
        return f"{shape[1]}-channel latent, 1 frame"  # an image in a video model's layout (Qwen-Image)
    if len(shape) == 5:
        return f"{shape[1]}-channel video latent, {shape[2]} frames (bands per frame)"
    return f"{shape[1]}-channel latent" if len(shape) >= 2 else "latent"


def guidance_start_marker(steps_before, total_steps, keep_before, sigma):
    """Where full CFG began after ``steps_before`` one-branch steps (``keep_before``, at and
    below ``sigma``); None without such steps or when the window was never reached."""
    if not steps_before or steps_before >= total_steps:
        return None
    return {"after_step": int(steps_before), "keep": keep_before, "sigma": clean(sigma),
            "label": f"full CFG after step {steps_before}"}


def markers(data):
    """The dashed lines of a payload, in step order: the guidance start, the cutoff."""
    return [m for m in (data.get("guidance_start"), data.get("cutoff")) if m is not None]


def payload(kind, title, points, cutoff_radius, total_steps, cutoff=None, guidance_start=None, **extra):
    data = {"kind": kind, "title": title, "panels": panels(kind), "points": list(points),
            "cutoff_radius": clean(cutoff_radius), "total_steps": int(total_steps), "cutoff": cutoff,
            "guidance_start": guidance_start, "x_label": X_LABELS[kind]}
    data.update(extra)
    return data


def to_json(data):
    return json.dumps(data, indent=1, allow_nan=False)
