"""The automatic cutoff's measure: how much the text still changes the shape of the picture.

Host-free (torch and the pack's own frequency split only). ComfyUI's branch predictions reach
the cutoff as denoised outputs, x0 predictions, for every parameterisation (eps, v, flow), so
a measure on them needs no knowledge of the model's parameterisation.

The measure of one guided evaluation, per image: the change the cut would make to the predicted
picture's shape, relative to that shape,

    effect = || low(x0_cfg - x0_kept) || / || low(x0_cfg) ||,

with ``x0_cfg = x0_u + cfg * (x0_c - x0_u)`` (what full CFG predicts), ``x0_kept`` the branch
that runs after the cut (``x0_u``, or ``x0_c`` for keep 'cond') and ``low`` the low band of the
pack's frequency split (``frequency.bands``, the shape in the paper's sense). Since
``x0 = x - sigma * eps`` for an eps model, ``x0_cfg - x0_u = sigma * cfg * (eps_c - eps_u)``: the
noise level is part of the measure, unlike the ``adaptive`` mode's ``||eps_c - eps_u|| / ||eps_u||``.

The text goes after the first guided evaluation whose effect is below the threshold for EVERY
image of the batch (the largest one decides); one value (that largest) is read per measured
evaluation.
"""
import math

from ..frequency import bands

DEFAULT_THRESHOLD = 0.25
MAX_THRESHOLD = 10.0
SHAPE_CUTOFF = bands.DEFAULT_CUTOFF  # the band of x0 taken as the shape (share of Nyquist)


def check_threshold(value, name="auto_threshold"):
    """The message naming the input for a bad threshold, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= MAX_THRESHOLD:
        return (f"{name} must be a number between 0 and {MAX_THRESHOLD:g} (the text's effect on the shape of the "
                f"predicted picture, as a share of that shape; 0 never cuts, {DEFAULT_THRESHOLD} is the default); "
                f"got {value!r}.")
    return None


def guidance_weights(cfg, keep_cond):
    """``(w, r)``: the cut changes x0 by ``w * (x0_c - x0_u)`` and full CFG predicts
    ``x0_u + r * (x0_c - x0_u)``. Keep uncond: ``(cfg, cfg)``; keep cond: ``(cfg - 1, cfg)``. A
    cfg that is not one number (a guider with a cfg schedule): ``(1, 1)``, the text's own effect
    on the conditional prediction."""
    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not math.isfinite(cfg):
        return 1.0, 1.0
    return (cfg - 1.0 if keep_cond else cfg), cfg


def shape_effect(cond_x0, uncond_x0, cfg, keep_cond=False, cutoff=SHAPE_CUTOFF):
    """Per image (a float32 tensor [batch] on the predictions' device, nothing read): the change
    the cut would make to the low band of the predicted x0, relative to full CFG's low band."""
    weight, scale = guidance_weights(cfg, keep_cond)
    difference = (cond_x0 - uncond_x0).float()
    low_difference, _ = bands.split(difference, cutoff)
    low_guided, _ = bands.split(uncond_x0.float() + scale * difference, cutoff)
    return abs(weight) * bands.rms(low_difference) / bands.rms(low_guided).clamp_min(1e-12)


def batch_effect(cond_x0, uncond_x0, cfg, keep_cond=False, cutoff=SHAPE_CUTOFF):
    """The largest per-image effect of the batch, as a 0-d device tensor: the text goes only when
    every image is ready."""
    return shape_effect(cond_x0, uncond_x0, cfg, keep_cond, cutoff).max()


def settled(value, threshold):
    """Whether a measured batch effect ends the text (strictly below the threshold)."""
    return value < threshold
