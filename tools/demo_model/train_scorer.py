#!/usr/bin/env python3
"""Train the attribute scorer's classifier (shape kind) and measure the whole scorer.

    python tools/demo_model/train_scorer.py

It learns from the generator's ground truth and from the same pictures passed through the
demo model's VAE (encode, decode: what a sampled picture looks like at best), so it reads
both. Then the whole scorer (pixel analysis + classifier) is measured on fresh pictures of
a different seed, the held-out combinations included, original and VAE-reconstructed; the
accuracies go to ``scorer_card.json`` beside the weights, which the tests hold it to.
"""
import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pack_loader  # noqa: E402

pack_loader.load_pack()
REPO = pack_loader.REPO

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from shapefirst.nodes.demo_models import scorer, shapes_data  # noqa: E402
from shapefirst.tools import registry_host  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pictures", type=int, default=3000, help="training pictures (each also VAE-reconstructed)")
    p.add_argument("--test-pictures", type=int, default=600)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weights-dir", default=str(REPO / "nodes" / "demo_models" / "weights"))
    return p.parse_args(argv)


def vae_roundtrip(weights_dir):
    """images -> the demo VAE's reconstruction, through the host's VAE class."""
    comfyui = registry_host.find_or_set_up_comfyui(REPO)
    sys.path.insert(0, str(comfyui))
    import comfy.cli_args
    if not torch.cuda.is_available():
        comfy.cli_args.args.cpu = True
    from shapefirst.nodes.demo_models import trained
    vae = trained.load_vae(weights_dir)

    @torch.no_grad()
    def roundtrip(images):
        out = []
        for i in range(0, len(images), 256):
            pixels = torch.from_numpy(images[i:i + 256])
            out.append(vae.decode(vae.encode(pixels)).float().cpu().numpy())
        return np.concatenate(out).clip(0, 1)
    return roundtrip


def dataset(seed, count, roundtrip, held_out=False):
    images, _, attributes = shapes_data.batch(seed, count, held_out=held_out)
    return {"original": (images, attributes), "vae": (roundtrip(images), attributes)}


def tensors(images, attributes):
    x = torch.from_numpy(np.stack([scorer.classifier_input(scorer.analyse(i)) for i in images]))
    kinds = torch.tensor([shapes_data.KINDS.index(a["kind"]) for a in attributes])
    return x, kinds


def train(classifier, x, kinds, args, log):
    optimiser = torch.optim.AdamW(classifier.parameters(), lr=2e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(args.seed)
    steps = args.epochs * (len(x) // 128)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, 2e-3, total_steps=steps)
    classifier.train()
    for step in range(steps):
        index = torch.randint(0, len(x), (128,), generator=generator)
        batch = x[index]
        # Robustness to sampled pictures: a little noise and brightness change.
        batch = batch + torch.randn(batch.shape, generator=generator) * 0.03 * torch.rand(128, 1, 1, 1, generator=generator)
        loss = F.cross_entropy(classifier(batch), kinds[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
        if step % 100 == 0:
            log(f"scorer step {step}/{steps} loss {loss.item():.4f}")
    return classifier.eval()


def measure(read_scorer, sets):
    """{set name: {attribute: accuracy}} of the whole scorer."""
    return {name: read_scorer.adherence(images, attributes) for name, (images, attributes) in sets.items()}


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.time()
    log = lambda line: print(f"{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S} {line}", flush=True)  # noqa: E731
    roundtrip = vae_roundtrip(args.weights_dir)
    train_sets = dataset(args.seed * 1000, args.pictures, roundtrip)
    parts = [tensors(*train_sets[k]) for k in ("original", "vae")]
    x, kinds = (torch.cat(p) for p in zip(*parts))
    log(f"training on {len(x)} pictures")
    classifier = train(scorer.AttributeClassifier(), x, kinds, args, log)
    read_scorer = scorer.AttributeScorer(classifier)
    test = dataset(args.seed * 1000 + 1, args.test_pictures, roundtrip)
    held_out = dataset(args.seed * 1000 + 2, args.test_pictures // 2, roundtrip, held_out=True)
    accuracy = measure(read_scorer, {"fresh": test["original"], "fresh_vae": test["vae"],
                                     "held_out_combinations": held_out["original"],
                                     "held_out_combinations_vae": held_out["vae"]})
    for name, values in accuracy.items():
        log(f"{name}: {values}")
    from safetensors.torch import save_file
    out = Path(args.weights_dir)
    save_file({k: v.to(torch.float16).contiguous() for k, v in classifier.state_dict().items()},
              str(out / scorer.CLASSIFIER_FILE))
    card = {
        "what": "accuracy of the attribute scorer (pixel analysis for background, colour, size, position, texture; "
                "CNN for kind) on fresh generated pictures of a seed not used in training, as drawn and after the "
                "demo VAE (encode + decode)",
        "accuracy": accuracy, "test_pictures": args.test_pictures, "held_out_pictures": args.test_pictures // 2,
        "training_pictures": args.pictures, "training_includes_vae_reconstructions": True,
        "epochs": args.epochs, "seed": args.seed, "seconds": round(time.time() - start),
        "machine": f"CPU ({platform.machine()}, {args.threads} threads)",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    (out / scorer.CARD_FILE).write_text(json.dumps(card, indent=1) + "\n")
    log(f"wrote {out / scorer.CLASSIFIER_FILE} and {scorer.CARD_FILE}")


if __name__ == "__main__":
    main()
