"""Image similarity metrics used to compare a cutoff run with full CFG (the paper's table).

Images are ComfyUI IMAGE tensors: [batch, height, width, channels], floats in 0..1.
Every function returns one value per image pair.
"""
import math

import torch
import torch.nn.functional as F

from ..validation import require

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


METRIC_NAMES = ("L1", "PSNR", "SSIM")
CLIP_SCORE = "CLIP"


def check_pair(image_a, image_b):
    """The message when the two batches cannot be compared pair by pair, or None."""
    if image_a.ndim != 4 or image_b.ndim != 4:
        return "image_a and image_b must be IMAGE batches [batch, height, width, channels]."
    if image_a.shape[1:3] != image_b.shape[1:3]:
        return (f"image_a is {image_a.shape[2]}x{image_a.shape[1]} but image_b is "
                f"{image_b.shape[2]}x{image_b.shape[1]} pixels: scale one to the other's size first "
                f"(e.g. with ImageScale).")
    if image_a.shape[0] != image_b.shape[0] and 1 not in (image_a.shape[0], image_b.shape[0]):
        return (f"image_a has {image_a.shape[0]} images and image_b {image_b.shape[0]}: give batches of the "
                f"same size, or one image to compare with every image of the other batch.")
    return None


def paired(image_a, image_b):
    """Both batches as float32 of equal size; a batch of one is compared with every image."""
    require(check_pair(image_a, image_b))
    channels = min(image_a.shape[3], image_b.shape[3])  # an alpha channel is not compared
    a, b = image_a[..., :channels].float(), image_b[..., :channels].float()
    if a.shape[0] != b.shape[0]:
        n = max(a.shape[0], b.shape[0])
        a, b = a.expand(n, *a.shape[1:]), b.expand(n, *b.shape[1:])
    return a, b


def l1(image_a, image_b):
    a, b = paired(image_a, image_b)
    return (a - b).abs().mean(dim=(1, 2, 3))


def psnr(image_a, image_b):
    """Peak signal-to-noise ratio in dB for a 0..1 range; inf for identical images."""
    a, b = paired(image_a, image_b)
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))
    return torch.where(mse > 0, 10.0 * torch.log10(1.0 / mse.clamp_min(1e-20)), torch.full_like(mse, math.inf))


def _gaussian_window(size, sigma, channels, device):
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(image_a, image_b):
    """Structural similarity (Wang et al. 2004): Gaussian 11x11 window, sigma 1.5,
    averaged over channels and positions. Small images use a window that fits."""
    a, b = paired(image_a, image_b)
    a, b = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    channels = a.shape[1]
    size = min(SSIM_WINDOW, a.shape[2], a.shape[3])
    size -= 1 - size % 2  # odd
    window = _gaussian_window(size, SSIM_SIGMA, channels, a.device)

    def blur(x):
        return F.conv2d(x, window, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / \
            ((mu_a ** 2 + mu_b ** 2 + SSIM_C1) * (var_a + var_b + SSIM_C2))
    return score.mean(dim=(1, 2, 3))


def cosine_similarity(embeds_a, embeds_b):
    """Cosine similarity per pair of embeddings [batch, dim] (the paper's Image-CLIPScore
    when the embeddings are CLIP image embeddings)."""
    a, b = embeds_a.float(), embeds_b.float()
    if a.shape[0] != b.shape[0]:
        n = max(a.shape[0], b.shape[0])
        a, b = a.expand(n, -1), b.expand(n, -1)
    return F.cosine_similarity(a, b, dim=-1)


def compare(image_a, image_b, embed=None):
    """Every metric per image pair, as lists: L1, PSNR, SSIM and, given ``embed`` (images ->
    embeddings [batch, dim], e.g. a CLIP vision model's), the Image-CLIPScore."""
    a, b = paired(image_a, image_b)
    values = {"L1": l1(a, b).tolist(), "PSNR": psnr(a, b).tolist(), "SSIM": ssim(a, b).tolist()}
    if embed is not None:
        values[CLIP_SCORE] = cosine_similarity(embed(a), embed(b)).tolist()
    return values


def summarize(metrics):
    """Readable lines: mean over the batch, then each pair. ``metrics`` maps name -> values."""
    def fmt(value):
        return "identical" if math.isinf(value) else f"{value:.4f}"

    names = list(metrics)
    count = len(next(iter(metrics.values())))
    lines = ["mean over %d pair%s: " % (count, "" if count == 1 else "s")
             + ", ".join(f"{n} {fmt(mean_finite(metrics[n]))}" for n in names)]
    if count > 1:
        for i in range(count):
            lines.append(f"pair {i}: " + ", ".join(f"{n} {fmt(metrics[n][i])}" for n in names))
    return "\n".join(lines)


def mean_finite(values, none_finite=math.inf):
    """Mean of the finite values (identical pairs have infinite PSNR); ``none_finite`` when
    there is none."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else none_finite
