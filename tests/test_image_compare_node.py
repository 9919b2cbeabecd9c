"""ShapeFirstImageCompare in the host, with a tiny CLIP vision model."""
import math

import pytest
import torch

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def node(pack):
    return pack["nodes.evaluation.nodes"].ShapeFirstImageCompare


def test_metrics_and_report(node):
    a = torch.rand(2, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    b = a.clone()
    b[1] = (b[1] + 0.1).clamp(0, 1)
    before = a.clone(), b.clone()
    out = node.execute(a, b)
    l1, psnr, ssim, clip_score, report = out.result
    assert torch.equal(a, before[0]) and torch.equal(b, before[1])  # inputs untouched
    assert 0 < l1 < 0.1 and math.isfinite(psnr) and psnr > 20 and 0.5 < ssim < 1
    assert clip_score == -1.0 and "not computed" in report
    assert "pair 0: L1 0.0000, PSNR identical" in report
    assert report == out.ui.as_dict()["text"][0]


def test_clip_score_with_a_clip_vision_model(node, tiny):
    clip_vision = tiny.tiny_clip_vision(seed=3)
    a = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    same = node.execute(a, a, clip_vision).result[3]
    other = node.execute(a, torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(2)), clip_vision).result[3]
    assert same == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= other < same
    embeds = clip_vision.encode_image(a).image_embeds
    assert embeds.shape == (1, 16)


def test_size_mismatch_names_the_inputs(node):
    with pytest.raises(ValueError, match="image_a is 32x32 but image_b is 16x16"):
        node.execute(torch.rand(1, 32, 32, 3), torch.rand(1, 16, 16, 3))
