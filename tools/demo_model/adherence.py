"""Sample the demo model through the host's own nodes and score prompt adherence.

Shared by the tests and the report script. Every picture of a batch gets its own prompt:
the prompts are encoded one by one with the host's CLIPTextEncode and stacked into one
conditioning of batch size N (the host uses a conditioning whose batch matches the
latent's as it is), then one KSampler run samples them all from one seed.
"""
import numpy as np
import torch

from ...nodes.demo_models import scorer as scorer_module
from ...nodes.demo_models import shapes_data

# The settings the README's demo uses with the demo model.
SETTINGS = {"steps": 20, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal"}
SIZE = shapes_data.IMAGE_SIZE


def prompts(seed, count, held_out=False):
    """``count`` attribute dicts and their evaluation captions, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    attributes = [shapes_data.random_attributes(rng, held_out=held_out) for _ in range(count)]
    return attributes, [shapes_data.canonical_caption(a) for a in attributes]


def encode(clip, texts):
    """One conditioning of batch len(texts), row i encoding texts[i] (host CLIPTextEncode)."""
    import nodes
    conds = [nodes.CLIPTextEncode().encode(clip, t)[0] for t in texts]
    tensor = torch.cat([c[0][0] for c in conds])
    extras = dict(conds[0][0][1])
    extras.pop("pooled_output", None)  # the SD1 UNet does not read it
    return [[tensor, extras]]


def sample(model, vae, positive, negative, seed, batch, **settings):
    """Pictures [batch, SIZE, SIZE, 3] in 0..1 from the host's KSampler and VAEDecode."""
    import nodes
    settings = dict(SETTINGS, **settings)
    latent = nodes.EmptyLatentImage().generate(SIZE, SIZE, batch)[0]
    with torch.inference_mode():
        samples = nodes.KSampler().sample(model, seed, settings["steps"], settings["cfg"], settings["sampler_name"],
                                          settings["scheduler"], positive, negative, latent, denoise=1.0)[0]
        images = nodes.VAEDecode().decode(vae, samples)[0]
    return images.float().cpu().numpy()


def adherence(images, attributes, scorer=None):
    scorer = scorer or scorer_module.AttributeScorer()
    return scorer.adherence(images, attributes)
