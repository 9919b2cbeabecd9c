"""Image similarity metrics (no host needed)."""
import math

import pytest
import torch

from shapefirst.nodes.evaluation import metrics as im


def images(n=2, h=16, w=16, seed=0):
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed))


def test_identical_images():
    a = images()
    assert im.l1(a, a).tolist() == [0.0, 0.0]
    assert all(math.isinf(v) for v in im.psnr(a, a).tolist())
    assert torch.allclose(im.ssim(a, a), torch.ones(2))


def test_psnr_of_a_known_error():
    a = torch.full((1, 8, 8, 3), 0.5)
    b = a + 0.1  # mse 0.01 -> 20 dB
    assert im.psnr(a, b).item() == pytest.approx(20.0, abs=1e-4)
    assert im.l1(a, b).item() == pytest.approx(0.1, abs=1e-6)


def _ssim_reference(x, y, size=11, sigma=1.5):
    """Independent float64 SSIM: explicit window sums at every valid position."""
    x, y = x.double(), y.double()
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    w = torch.outer(g, g) / torch.outer(g, g).sum()
    h, wd, c = x.shape
    values = []
    for ch in range(c):
        for i in range(h - size + 1):
            for j in range(wd - size + 1):
                px, py = x[i:i + size, j:j + size, ch], y[i:i + size, j:j + size, ch]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * px * px).sum() - mx ** 2, (w * py * py).sum() - my ** 2
                cxy = (w * px * py).sum() - mx * my
                values.append(((2 * mx * my + im.SSIM_C1) * (2 * cxy + im.SSIM_C2))
                              / ((mx ** 2 + my ** 2 + im.SSIM_C1) * (vx + vy + im.SSIM_C2)))
    return float(torch.stack(values).mean())


def test_ssim_matches_a_direct_computation():
    a, b = images(1, 14, 13, seed=1), images(1, 14, 13, seed=2)
    b = 0.7 * a + 0.3 * b
    assert im.ssim(a, b).item() == pytest.approx(_ssim_reference(a[0], b[0]), abs=1e-5)


def test_ssim_drops_with_noise():
    a = images(1, 32, 32)
    slightly = (a + 0.02 * torch.randn_like(a)).clamp(0, 1)
    very = (a + 0.3 * torch.randn_like(a)).clamp(0, 1)
    assert 1.0 > im.ssim(a, slightly).item() > im.ssim(a, very).item()


def test_a_single_image_is_compared_with_every_image():
    a, b = images(1), images(3, seed=5)
    assert im.l1(a, b).shape == (3,)
    assert im.l1(a, b)[2].item() == pytest.approx((a[0] - b[2]).abs().mean().item())


@pytest.mark.parametrize("a,b,needle", [
    (torch.rand(1, 8, 8, 3), torch.rand(1, 16, 8, 3), "scale one"),
    (torch.rand(2, 8, 8, 3), torch.rand(3, 8, 8, 3), "same size"),
    (torch.rand(8, 8, 3), torch.rand(1, 8, 8, 3), "IMAGE batches"),
])
def test_mismatched_batches_are_explained(a, b, needle):
    with pytest.raises(ValueError, match=needle):
        im.l1(a, b)


def test_alpha_channel_is_ignored():
    a = images(1)
    b = torch.cat([a, torch.zeros(1, 16, 16, 1)], dim=-1)
    assert im.l1(a, b).item() == 0.0


def test_cosine_and_summary():
    e = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert im.cosine_similarity(e, torch.tensor([[1.0, 0.0]])).tolist() == pytest.approx([1.0, 2 ** -0.5])
    text = im.summarize({"L1": [0.1, 0.3], "PSNR": [math.inf, 20.0]})
    assert "mean over 2 pairs: L1 0.2000, PSNR 20.0000" in text and "pair 0: L1 0.1000, PSNR identical" in text
