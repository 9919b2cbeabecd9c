"""Low/high spatial-frequency bands of latents (or images): pure torch, no ComfyUI.

Vocabulary (used across the pack and its README):
- ``cutoff`` is a *normalized radius*: frequencies are measured as a share of the
  Nyquist frequency on each spatial axis, so 1.0 is the highest frequency along one
  axis and sqrt(2) the corner of the spectrum. A 64x64 and a 128x128 latent with the
  same cutoff keep the same share of their spectrum, so their curves compare.
- ``low`` keeps every frequency with radius <= cutoff (the constant part, radius 0, is
  always low), ``high`` is the rest; ``low + high`` is the input.
- norms are RMS values (L2 norm / sqrt(number of values)) per image, so latents of
  different sizes compare too; ``low_rms**2 + high_rms**2 == rms**2`` (Parseval).

Spatial axes are the last two, whatever comes before (batch, channels, video frames),
so 4-channel (SD1.x/SDXL) and 16-channel (SD3/Flux) latents are handled alike.
"""
import math

import torch

from ..validation import require

DEFAULT_CUTOFF = 0.25
MAX_CUTOFF = 1.5  # above sqrt(2): everything is low
_EPS = 1e-12


def check_cutoff(cutoff):
    """The error message for a bad cutoff, or None."""
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)) or not math.isfinite(cutoff):
        return f"cutoff_radius must be a number; got {cutoff!r}."
    if not 0.0 <= cutoff <= MAX_CUTOFF:
        return (f"cutoff_radius must be between 0 and {MAX_CUTOFF} (a share of the Nyquist frequency; "
                f"0.25 keeps the coarse shape); got {cutoff!r}.")
    return None


def check_spatial(x, name="latent"):
    """The error message when ``x`` has no two spatial axes to transform, or None."""
    if not isinstance(x, torch.Tensor):
        return f"{name} must be a tensor; got {type(x).__name__}."
    if x.ndim < 3:
        return (f"{name} must have a batch axis and two spatial axes (shape [batch, channels, height, width]); "
                f"got shape {list(x.shape)}.")
    if x.shape[-1] < 1 or x.shape[-2] < 1 or x.numel() == 0:
        return f"{name} is empty (shape {list(x.shape)}); give it at least one value."
    return None


def radius_grid(height, width, device=None):
    """Normalized radius of every bin of ``torch.fft.rfft2`` for a height x width signal."""
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float32) / 0.5
    fx = torch.fft.rfftfreq(width, device=device, dtype=torch.float32) / 0.5
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def low_mask(height, width, cutoff, device=None):
    """1.0 for the frequencies kept by the low band, 0.0 elsewhere (rfft2 layout)."""
    # A hair of slack so bins exactly on the circle do not flip with float rounding.
    return (radius_grid(height, width, device) <= cutoff + 1e-6).to(torch.float32)


def split(x, cutoff=DEFAULT_CUTOFF):
    """``(low, high)`` float32 tensors of ``x``'s shape and device, ``low + high == x``."""
    require(check_spatial(x, "x"), check_cutoff(cutoff))
    x = x.to(torch.float32)
    height, width = x.shape[-2], x.shape[-1]
    spectrum = torch.fft.rfft2(x)
    low = torch.fft.irfft2(spectrum * low_mask(height, width, cutoff, x.device), s=(height, width))
    # The complement by subtraction: exact recomposition and one transform fewer.
    return low, x - low


def rms(x):
    """Per-image RMS over every axis but the first (batch)."""
    x = x.to(torch.float32)
    return torch.sqrt(torch.mean(x.reshape(x.shape[0], -1) ** 2, dim=1))


def band_rms(x, cutoff=DEFAULT_CUTOFF):
    """Per-image ``(low_rms, high_rms)`` of ``x``."""
    low, high = split(x, cutoff)
    return rms(low), rms(high)


def ratio(low, high):
    """low/high, safe for a zero high band (a constant latent gives a huge, finite ratio)."""
    return low / torch.clamp(high, min=_EPS)


def band_summary(x, cutoff=DEFAULT_CUTOFF):
    """Batch means ``{"low", "high", "ratio"}`` as a float32 tensor [3] (kept on x's device,
    so callers read many summaries with one device->host copy)."""
    low, high = band_rms(x, cutoff)
    return torch.stack([low.mean(), high.mean(), ratio(low, high).mean()])
