"""Synthetic pictures and captions for the ShapeFirst demo model (host-free: numpy and PIL only).

Each picture is one shape on a plain background. Its attributes split the way the paper's
two stages do: the **shape** attributes live in low frequencies (which shape, its colour,
the background colour, its size, its position) and the **detail** attribute in high
frequencies (the fill texture: plain, stripes, dots, checks). Everything is drawn from a
seed, so the same seed gives the same pictures and captions.

Captions come from several templates with the words in different orders, so a conditioning
without the [EOS] rows still carries every attribute token by token, while an EOS-only
conditioning has to carry them through the [EOS] rows. A few (kind, colour, texture)
combinations never appear in training (``HELD_OUT_COMBINATIONS``), for evaluation.
"""
import re

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64

KINDS = ("circle", "square", "triangle", "cross")
COLOURS = {  # RGB of the shape; the texture's second tone is the same colour at half brightness
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
}
BACKGROUNDS = {"black": (10, 10, 10), "gray": (128, 128, 128), "white": (245, 245, 245)}
SIZES = {"small": 9, "large": 15}  # half the shape's extent in pixels at IMAGE_SIZE
POSITIONS = {  # centre of the shape as a fraction of the picture
    "left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.27), "bottom": (0.5, 0.73), "centre": (0.5, 0.5),
}
TEXTURES = ("plain", "stripes", "dots", "checks")
ATTRIBUTES = ("kind", "colour", "background", "size", "position", "texture")
# Which attributes the paper's picture stages predict: the shape first, the details later.
SHAPE_ATTRIBUTES = ("kind", "colour", "background", "size", "position")
DETAIL_ATTRIBUTES = ("texture",)

CHOICES = {
    "kind": KINDS, "colour": tuple(COLOURS), "background": tuple(BACKGROUNDS), "size": tuple(SIZES),
    "position": tuple(POSITIONS), "texture": TEXTURES,
}

# (kind, colour, texture) combinations that training never sees: one per kind and per colour.
HELD_OUT_COMBINATIONS = (
    ("circle", "blue", "stripes"), ("square", "yellow", "dots"),
    ("triangle", "red", "checks"), ("cross", "green", "plain"),
)

# Prompts the demo and the example workflows use with the demo model (held-out combinations
# excluded, every value of every attribute at least once).
DEMO_PROMPTS = (
    "a large red circle, striped, in the centre, black background",
    "a large blue square, dotted, on the left, white background",
    "a small yellow triangle, plain, at the top, gray background",
    "a large green cross, checkered, on the right, black background",
    "a small red square, checkered, at the bottom, white background",
)

_TEXTURE_WORDS = {
    "plain": ("plain", "solid", "flat"), "stripes": ("striped", "with stripes", "stripy"),
    "dots": ("dotted", "with dots", "spotted"), "checks": ("checkered", "with checks", "checked"),
}
_POSITION_WORDS = {
    "left": ("on the left", "at the left"), "right": ("on the right", "at the right"),
    "top": ("at the top", "on top"), "bottom": ("at the bottom", "on the bottom"),
    "centre": ("in the centre", "in the middle"),
}
_TEMPLATES = (
    "a {size} {colour} {kind}, {texture}, {position}, {background} background",
    "{texture} {size} {colour} {kind} {position} on a {background} background",
    "on a {background} background, a {colour} {kind} {position}, {size} and {texture}",
    "{position}: a {size} {kind} in {colour}, {texture}, {background} background",
    "a {background} background with a {texture} {colour} {kind}, {size}, {position}",
    "{colour} {kind}, {size}, {texture}, {position}, on {background}",
)


def texture_word(texture, variant=0):
    """A caption word for ``texture``; variants are alternative phrasings."""
    words = _TEXTURE_WORDS[texture]
    return words[variant % len(words)]


def caption(attributes, template=0, variant=0):
    """The caption of ``attributes`` with the given template and phrasing variant."""
    words = {
        "kind": attributes["kind"], "colour": attributes["colour"], "background": attributes["background"],
        "size": attributes["size"], "texture": texture_word(attributes["texture"], variant),
        "position": _POSITION_WORDS[attributes["position"]][variant % len(_POSITION_WORDS[attributes["position"]])],
    }
    return _TEMPLATES[template % len(_TEMPLATES)].format(**words)


def canonical_caption(attributes):
    """The one caption per combination the evaluation uses (first template and phrasing)."""
    return caption(attributes, 0, 0)


def caption_vocabulary():
    """Texts that hold every word any caption can use (the templates without their fields, and
    each field's words): the tokenizer splits words independently, so their tokens are all the
    tokens a caption can have."""
    texts = [re.sub(r"\{\w+\}", " ", template) for template in _TEMPLATES]
    for attribute in ATTRIBUTES:
        texts.extend(CHOICES[attribute])
    for phrases in list(_TEXTURE_WORDS.values()) + list(_POSITION_WORDS.values()):
        texts.extend(phrases)
    return texts


def is_held_out(attributes):
    return (attributes["kind"], attributes["colour"], attributes["texture"]) in HELD_OUT_COMBINATIONS


def random_attributes(rng, held_out=False):
    """Attributes drawn uniformly; ``held_out`` True gives only held-out combinations, False none."""
    while True:
        attributes = {a: CHOICES[a][rng.integers(len(CHOICES[a]))] for a in ATTRIBUTES}
        if held_out:
            attributes["kind"], attributes["colour"], attributes["texture"] = HELD_OUT_COMBINATIONS[
                rng.integers(len(HELD_OUT_COMBINATIONS))]
            return attributes
        if not is_held_out(attributes):
            return attributes


def _shape_mask(kind, centre, half, size):
    """A boolean mask of the shape, drawn at 4x resolution and reduced (smooth edges)."""
    scale = 4
    canvas = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = centre[0] * scale, centre[1] * scale
    h = half * scale
    if kind == "circle":
        draw.ellipse([cx - h, cy - h, cx + h, cy + h], fill=255)
    elif kind == "square":
        s = h * 0.9  # a square of the same extent looks larger than a circle: even them out a little
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=255)
    elif kind == "triangle":
        # Centroid at the centre: apex 2/3 of the height above it, base 1/3 below.
        height = 2 * h
        draw.polygon([(cx, cy - height * 2 / 3), (cx - h, cy + height / 3), (cx + h, cy + height / 3)], fill=255)
    elif kind == "cross":
        arm = h * 0.38
        draw.rectangle([cx - h, cy - arm, cx + h, cy + arm], fill=255)
        draw.rectangle([cx - arm, cy - h, cx + arm, cy + h], fill=255)
    else:
        raise ValueError(f"unknown shape kind {kind!r}; known: {KINDS}")
    small = canvas.resize((size, size), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _texture_pattern(texture, size):
    """1 where the texture shows the shape's full colour, 0 where its darker tone. Every
    pattern repeats every 8 px, aligned with the picture: each 8x8 cell of the VAE's latent
    grid sees the same piece of it, so a latent pixel can say "stripes here" and the decoder
    draws them without having to encode a phase."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    if texture == "plain":
        return np.ones((size, size), np.float32)
    if texture == "stripes":  # diagonal stripes, 4 px light, 4 px dark along x + y
        return (((x + y) // 4) % 2 == 0).astype(np.float32)
    if texture == "dots":  # a dark dot of radius 2 in the middle of each 8 px cell
        dx, dy = (x % 8) - 3.5, (y % 8) - 3.5
        return (dx * dx + dy * dy > 4.0).astype(np.float32)
    if texture == "checks":  # 4 px checks
        return (((x // 4) + (y // 4)) % 2 == 0).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}; known: {TEXTURES}")


def render(attributes, rng=None, size=IMAGE_SIZE):
    """An RGB float32 picture [size, size, 3] in 0..1 of ``attributes``, with small seeded jitter
    (position +-2 px, size +-1 px, colour +-6/255), and its shape mask."""
    rng = rng if rng is not None else np.random.default_rng(0)
    scale = size / IMAGE_SIZE
    fx, fy = POSITIONS[attributes["position"]]
    centre = (fx * size + rng.uniform(-2, 2) * scale, fy * size + rng.uniform(-2, 2) * scale)
    half = (SIZES[attributes["size"]] + rng.uniform(-1, 1)) * scale
    mask = _shape_mask(attributes["kind"], centre, half, size)
    colour = np.clip(np.array(COLOURS[attributes["colour"]], np.float32) + rng.uniform(-6, 6, 3), 0, 255) / 255
    background = np.array(BACKGROUNDS[attributes["background"]], np.float32) / 255
    pattern = _texture_pattern(attributes["texture"], size)
    fill = colour * (0.5 + 0.5 * pattern[..., None])
    image = background * (1 - mask[..., None]) + fill * mask[..., None]
    return image.astype(np.float32), mask


def batch(seed, count, held_out=False, size=IMAGE_SIZE, caption_style="random"):
    """``count`` pictures [count, size, size, 3] in 0..1, their captions and attributes, from ``seed``.

    caption_style "random" draws a template and phrasing per picture (training); "canonical"
    uses the evaluation caption.
    """
    rng = np.random.default_rng(seed)
    images, captions, attributes = [], [], []
    for _ in range(count):
        a = random_attributes(rng, held_out=held_out)
        image, _ = render(a, rng, size)
        images.append(image)
        attributes.append(a)
        if caption_style == "canonical":
            captions.append(canonical_caption(a))
        else:
            captions.append(caption(a, int(rng.integers(len(_TEMPLATES))), int(rng.integers(3))))
    return np.stack(images), captions, attributes


def to_uint8(images):
    return (np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8)
