"""The paper's acceleration table on the user's own checkpoint: rows and their text.

A run compares, per prompt and seed, full CFG with the guidance cutoff at several ``a``
(final steps without text). Times are medians over prompts and repeats; similarity metrics
are means against the full-CFG image of the same prompt and seed.
"""
import statistics
from dataclasses import dataclass, field

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


@dataclass
class Row:
    """One variant: full CFG (``a`` = 0 and no cutoff) or the cutoff at ``a`` steps."""
    label: str
    text_free_steps: int
    seconds: list = field(default_factory=list)
    saved_branch_share: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # name -> list of values, one per image pair

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
            "guided_steps": steps - row.text_free_steps,
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
