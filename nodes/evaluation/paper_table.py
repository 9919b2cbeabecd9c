"""The paper's acceleration table on the user's own checkpoint: rows and their text.

A run compares, per prompt and seed, full CFG with the guidance cutoff at several ``a``
(final steps without text), and optionally with a guidance window for each ``a`` (the first
steps unguided too, ``u`` of them). Times are medians over prompts and repeats; similarity metrics
are means against the full-CFG image of the same prompt and seed.
"""
import statistics
from dataclasses import dataclass, field

from ..guidance_cutoff.schedule import steps_for_fraction
from ..validation import require
from .metrics import mean_finite


def _prompt_lines(text):
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def check_prompts(text):
    if not _prompt_lines(text):
        return "prompts is empty: write one prompt per line."
    return None


def parse_prompts(text):
    """One prompt per non-empty line; lines starting with # are comments."""
    require(check_prompts(text))
    return _prompt_lines(text)


def _fractions(text):
    """The numbers of ``text``, or None when one is not a number."""
    try:
        return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        return None


def check_fractions(text):
    values = _fractions(text)
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        return (f"text_free_fractions must be numbers between 0 and 1 separated by commas, like "
                f"'0.3, 0.5, 0.7'; got {text!r}.")
    return None


def parse_fractions(text):
    """The ``a`` values as fractions of the steps, e.g. "0.3, 0.5, 0.7"."""
    require(check_fractions(text))
    return _fractions(text)


def check_window(start_fraction, fractions_text):
    """The window variants' start: a share of the steps before full CFG, below every cutoff's
    guided share ``1 - a`` (0: no window variants)."""
    if isinstance(start_fraction, bool) or not isinstance(start_fraction, (int, float)) or not (
            0.0 <= start_fraction < 1.0):
        return (f"window_start_fraction must be a number from 0 (no window variants) to below 1; "
                f"got {start_fraction!r}.")
    values = _fractions(fractions_text) or []
    if start_fraction and values and start_fraction >= 1.0 - max(values):
        return (f"window_start_fraction ({start_fraction:g}) must be below 1 - a for every a of text_free_fractions "
                f"(the largest a is {max(values):g}: below {1.0 - max(values):g}), so that full CFG runs between the "
                f"start and the cutoff; lower it, remove the large a, or set it to 0 for no window variants.")
    return None


def window_steps(steps, start_fraction, text_free_steps):
    """``u``, the steps before full CFG of a window variant of ``steps`` with ``a`` text-free
    steps (``schedule.steps_for_fraction``'s rounding); ValueError naming the input when the
    rounding leaves no full-CFG step."""
    unguided = steps_for_fraction(steps, start_fraction)
    require(None if unguided < steps - text_free_steps else (
        f"window_start_fraction ({start_fraction:g}) is {unguided} of {steps} steps, not below the "
        f"{steps - text_free_steps} guided steps of a = {text_free_steps}: lower it or use more steps."))
    return unguided


@dataclass
class Row:
    """One variant: full CFG (``a`` = 0 and no cutoff), the cutoff at ``a`` steps, or a window
    (``steps_before_start`` = ``u`` first steps unguided, then full CFG, then ``a`` without text)."""
    label: str
    text_free_steps: int
    seconds: list = field(default_factory=list)
    saved_branch_share: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # name -> list of values, one per image pair
    steps_before_start: int = 0

    def add_metrics(self, values):
        for name, vals in values.items():
            self.metrics.setdefault(name, []).extend(vals)


def summarize(rows, steps):
    """Dicts, one per row, with the reference (first row) as the time base."""
    base = statistics.median(rows[0].seconds)
    out = []
    for row in rows:
        seconds = statistics.median(row.seconds)
        out.append({
            "variant": row.label,
            "a": row.text_free_steps,
            "steps_before_start": row.steps_before_start,
            "guided_steps": steps - row.text_free_steps - row.steps_before_start,
            "median_seconds": seconds,
            "time_saved_percent": 100.0 * (1.0 - seconds / base) if base > 0 else 0.0,
            "unet_work_saved_percent": 100.0 * (mean_finite(row.saved_branch_share, None) or 0.0),
            **{name: mean_finite(vals, None) for name, vals in row.metrics.items()},
        })
    return out


def markdown(summary, metric_names):
    head = ["variant", "a", "median s", "time saved", "UNet work saved", *metric_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        cells = [r["variant"], str(r["a"]), f"{r['median_seconds']:.3f}", f"{r['time_saved_percent']:.1f}%",
                 f"{r['unet_work_saved_percent']:.1f}%"]
        cells += ["—" if r.get(name) is None else f"{r[name]:.4f}" for name in metric_names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
