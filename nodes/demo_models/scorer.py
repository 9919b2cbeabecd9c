"""Reads a demo-model picture's attributes back, to score prompt adherence (host-free).

Where a pixel analysis is exact for these pictures it is used: the **background** is the
median colour of the picture's border, the **foreground mask** the pixels far from it, the
**colour** the mean hue direction of the foreground (the texture's dark tone is the same
hue), the **size** the mask's extent, the **position** its centroid and the fill
**texture** the share and the layout of the dark-tone pixels inside the shape (none: plain;
a fifth: dots; half, constant along the diagonal: stripes; half otherwise: checks). The
shape **kind** comes from a small CNN (``AttributeClassifier``) trained on the generator's
ground truth and on VAE reconstructions by ``tools/demo_model/train_scorer.py``; the whole
scorer's held-out accuracy is recorded beside its weights (``scorer_card.json``).
"""
import json
from pathlib import Path

import numpy as np
import torch

from . import shapes_data

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CLASSIFIER_FILE = "scorer.safetensors"
CARD_FILE = "scorer_card.json"

MASK_THRESHOLD = 0.22  # RGB distance (0..1 units) from the background that counts as the shape
SIZE_THRESHOLD = 22.5  # mask extent in px at 64 px: small shapes span 16-20, large 27-32
SCORED_ATTRIBUTES = shapes_data.ATTRIBUTES


class ScorerWeightsError(RuntimeError):
    """The classifier's weight file is missing or unreadable."""


def _prototypes(table):
    names = list(table)
    return names, np.array([table[n] for n in names], np.float32) / 255.0


def _as_64(image):
    image = np.asarray(image, np.float32)
    if image.shape[0] != shapes_data.IMAGE_SIZE:
        from PIL import Image
        pil = Image.fromarray(shapes_data.to_uint8(image)).resize((shapes_data.IMAGE_SIZE,) * 2, Image.BILINEAR)
        image = np.asarray(pil, np.float32) / 255.0
    return image[..., :3]


def background_colour(image):
    border = np.concatenate([image[:2].reshape(-1, 3), image[-2:].reshape(-1, 3),
                             image[:, :2].reshape(-1, 3), image[:, -2:].reshape(-1, 3)])
    return np.median(border, axis=0)


def analyse(image):
    """The pixel analysis of one picture [H, W, 3] in 0..1: a dict of the exact attributes
    (background, colour, size, position) and the arrays the classifier reads."""
    image = _as_64(image)
    names, prototypes = _prototypes(shapes_data.BACKGROUNDS)
    bg = background_colour(image)
    background = names[int(np.argmin(((prototypes - bg) ** 2).sum(1)))]
    mask = np.sqrt(((image - bg) ** 2).sum(-1)) > MASK_THRESHOLD
    result = {"background": background, "mask": mask, "image": image, "background_rgb": bg}
    if mask.sum() < 4:  # nothing drawn: no shape attribute can be read
        result.update(colour=None, size=None, position=None, texture=None)
        return result
    pixels = image[mask]
    directions = pixels / np.maximum(pixels.max(1, keepdims=True), 1e-3)
    colour_names, colour_rgb = _prototypes(shapes_data.COLOURS)
    colour_directions = colour_rgb / colour_rgb.max(1, keepdims=True)
    mean_direction = directions.mean(0)
    result["colour"] = colour_names[int(np.argmin(((colour_directions - mean_direction) ** 2).sum(1)))]
    ys, xs = np.nonzero(mask)
    extent = max(np.percentile(xs, 98) - np.percentile(xs, 2), np.percentile(ys, 98) - np.percentile(ys, 2)) + 1
    result["size"] = "large" if extent > SIZE_THRESHOLD else "small"
    result["texture"] = read_texture(image, mask)
    centre = np.array([xs.mean(), ys.mean()]) / shapes_data.IMAGE_SIZE
    position_names = list(shapes_data.POSITIONS)
    anchors = np.array([shapes_data.POSITIONS[p] for p in position_names])
    result["position"] = position_names[int(np.argmin(((anchors - centre) ** 2).sum(1)))]
    return result


DARK_TONE = 0.75  # a pixel below this share of the shape's full brightness is the texture's dark tone
PLAIN_AT_MOST, DOTS_AT_MOST = 0.08, 0.33  # dark share: plain ~0, dots ~0.19, stripes and checks ~0.5
STRIPES_AT_LEAST = 0.85  # stripes keep their tone along the anti-diagonal; checks in ~62 % of the pairs


def inner_pixels(mask):
    """The shape's mask without its edge (a pixel stays when its four neighbours are inside too)."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def read_texture(image, mask):
    """The fill texture from the dark-tone pixels inside the shape (its edge left out)."""
    inner = inner_pixels(mask)
    if inner.sum() < 8:
        return "plain"
    brightness = image.max(-1)
    dark = brightness < DARK_TONE * np.percentile(brightness[inner], 90)
    share = dark[inner].mean()
    if share <= PLAIN_AT_MOST:
        return "plain"
    if share <= DOTS_AT_MOST:
        return "dots"
    pairs = inner[1:, :-1] & inner[:-1, 1:]  # (y, x) with (y - 1, x + 1)
    same = (dark[1:, :-1] == dark[:-1, 1:])[pairs].mean() if pairs.any() else 0.0
    return "stripes" if same >= STRIPES_AT_LEAST else "checks"


CROP = 40  # px around the shape's centroid the classifier sees (large shapes span <= 32 px)


def classifier_input(analysis):
    """[4, CROP, CROP] around the shape's centroid: the picture minus its background colour,
    and the foreground mask (zeros beyond the picture's edge)."""
    image = analysis["image"] - analysis["background_rgb"]
    x = np.concatenate([image.transpose(2, 0, 1), analysis["mask"][None].astype(np.float32)]).astype(np.float32)
    ys, xs = np.nonzero(analysis["mask"])
    cy, cx = (int(round(ys.mean())), int(round(xs.mean()))) if len(xs) else (x.shape[1] // 2, x.shape[2] // 2)
    padded = np.pad(x, ((0, 0), (CROP, CROP), (CROP, CROP)))
    top, left = cy + CROP - CROP // 2, cx + CROP - CROP // 2
    return np.ascontiguousarray(padded[:, top:top + CROP, left:left + CROP])


class AttributeClassifier(torch.nn.Module):
    """The shape kind from ``classifier_input``: four conv layers, global max pooling (so the
    position does not matter), one linear layer."""

    def __init__(self, width=32):
        super().__init__()
        layers, channels = [], 4
        for out in (width // 2, width, 2 * width, 2 * width):
            layers += [torch.nn.Conv2d(channels, out, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
            channels = out
        self.features = torch.nn.Sequential(*layers[:-1], torch.nn.AdaptiveMaxPool2d(1))
        self.head = torch.nn.Linear(channels, len(shapes_data.KINDS))

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def load_classifier(weights_dir=WEIGHTS_DIR):
    from safetensors.torch import load_file
    path = Path(weights_dir) / CLASSIFIER_FILE
    fix = ("restore it with `git checkout -- nodes/demo_models/weights`, or retrain it with "
           "`python tools/demo_model/train_scorer.py`")
    if not path.is_file():
        raise ScorerWeightsError(f"ShapeFirst attribute scorer: weight file {path} is missing; {fix}")
    try:
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        classifier = AttributeClassifier()
        classifier.load_state_dict(state)
    except Exception as error:
        raise ScorerWeightsError(f"ShapeFirst attribute scorer: weight file {path} is unreadable "
                                 f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); {fix}") from None
    return classifier.eval()


def load_card(weights_dir=WEIGHTS_DIR):
    path = Path(weights_dir) / CARD_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


class AttributeScorer:
    """``scorer.read(images)`` -> one attribute dict per picture; ``scorer.adherence(images,
    attributes)`` -> the share of pictures whose attribute matches, per attribute."""

    def __init__(self, classifier=None, weights_dir=WEIGHTS_DIR):
        self.classifier = classifier if classifier is not None else load_classifier(weights_dir)

    @torch.no_grad()
    def read(self, images):
        analyses = [analyse(image) for image in images]
        x = torch.from_numpy(np.stack([classifier_input(a) for a in analyses]))
        kinds = torch.cat([self.classifier(chunk) for chunk in torch.split(x, 256)]).argmax(1).tolist()
        return [{"kind": shapes_data.KINDS[k], "colour": a["colour"], "background": a["background"],
                 "size": a["size"], "position": a["position"], "texture": a["texture"]}
                for a, k in zip(analyses, kinds)]

    def adherence(self, images, attributes, names=SCORED_ATTRIBUTES):
        """{attribute: share of pictures read as their ``attributes`` say} (0..1)."""
        read = self.read(images)
        return {n: float(np.mean([r[n] == a[n] for r, a in zip(read, attributes)])) for n in names}


def chance_level(attribute):
    """Adherence of a picture that ignores the prompt: one over the attribute's choices."""
    return 1.0 / len(shapes_data.CHOICES[attribute])
