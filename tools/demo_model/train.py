#!/usr/bin/env python3
"""Train the ShapeFirst demo model from scratch and write its weights and model card.

    python tools/demo_model/train.py                 # the committed weights' settings (4 min on an H200)
    python tools/demo_model/train.py --minutes 5 --vae-minutes 2   # fit the stages into a time budget
    python tools/demo_model/train.py --time-only     # time 20 steps of each stage, train nothing

Stage 1 trains the AutoencoderKL on the pictures of ``nodes/demo_models/shapes_data.py``
(L1 + MSE + a small KL term), then measures the latent scale factor on fresh pictures
(1 / std of the latents, as SD1's 0.18215 was chosen). Stage 2 trains the CLIP text model
and the UNet together (epsilon prediction on the SD1 noise schedule, 10 % empty captions
for classifier-free guidance), keeping an EMA of both, whose weights are saved. The
networks are the host's classes built by ``nodes/demo_models/trained.py``; the device is
CUDA when present, else the CPU. Seeds fix the data and the initial weights (CPU float
math is deterministic for a given thread count; GPU runs are close, not bitwise equal).
"""
import argparse
import copy
import datetime
import json
import math
import os
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

from shapefirst.tools.demo_model import host  # noqa: E402
import torch.nn.functional as F  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

from shapefirst.nodes.demo_models import shapes_data  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae-steps", type=int, default=2353, help="VAE steps (at most, with --vae-minutes)")
    p.add_argument("--vae-minutes", type=float, default=0, help="fit stage 1 in this many minutes, as --minutes")
    p.add_argument("--vae-batch", type=int, default=64)
    p.add_argument("--vae-crop", type=int, default=64, help="train the VAE on random crops of this size (px)")
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--vae-pool", type=int, default=60000, help="pictures generated once for stage 1")
    p.add_argument("--steps", type=int, default=2689, help="CLIP + UNet steps (at most, with --minutes)")
    p.add_argument("--minutes", type=float, default=0,
                   help="fit stage 2 in this many minutes: after 30 steps the step count is fixed from the speed of steps 10-30 "
                        "(the model card records it; --steps with that count and no --minutes reproduces the run)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--dataset", type=int, default=60000, help="pictures encoded once for stage 2")
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1),
                   help="processes generating the pictures (the result does not depend on it)")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=20261202)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads; on a shared machine one thread is faster than two fighting for cores")
    p.add_argument("--output-dir", default=str(REPO / "nodes" / "demo_models" / "weights"))
    p.add_argument("--time-only", action="store_true", help="time 20 steps of each stage and exit")
    p.add_argument("--card-only", action="store_true", help="rewrite MODEL_CARD.md from model_card.json and exit")
    p.add_argument("--skip-vae", action="store_true", help="reuse the VAE in --output-dir (stage 2 only)")
    p.add_argument("--vae-only", action="store_true", help="train and save the VAE only (stage 1)")
    p.add_argument("--resume-vae", action="store_true",
                   help="continue training the VAE in --output-dir (a further stage-1 phase, recorded in vae_card.json)")
    return p.parse_args(argv)


def import_host():
    host.import_host()
    from shapefirst.nodes.demo_models import trained
    return trained


@torch.no_grad()
def initialise(module, seed):
    """Standard PyTorch initialisation of every layer: the host's layers skip it (checkpoints
    overwrite them), so without this the weights are whatever memory held."""
    torch.manual_seed(seed)
    for sub in module.modules():
        if isinstance(sub, torch.nn.Conv2d):
            torch.nn.Conv2d.reset_parameters(sub)
        elif isinstance(sub, torch.nn.Linear):
            torch.nn.Linear.reset_parameters(sub)
        elif isinstance(sub, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
            if sub.weight is not None:
                sub.weight.fill_(1.0)
                sub.bias.zero_()
        elif isinstance(sub, torch.nn.Embedding):
            sub.weight.normal_(0, 0.02)


# ---------------------------------------------------------------- data
def to_tensor(images):
    """[N, H, W, 3] 0..1 numpy -> [N, 3, H, W] in -1..1 (the AutoencoderKL's range)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous() * 2 - 1


class TokenTable:
    """Caption -> token ids through the host's SD1 tokenizer, and the compact ids training uses."""

    def __init__(self, clip):
        self.tokenizer = clip.tokenizer
        used = set()
        for text in shapes_data.caption_vocabulary() + [""]:
            used.update(self._ids(text))
        self.token_ids = torch.tensor(sorted(used), dtype=torch.long)
        self.compact = {int(t): i for i, t in enumerate(self.token_ids)}
        self.cache = {}

    def _ids(self, text):
        chunks = self.tokenizer.tokenize_with_weights(text)["l"]
        assert len(chunks) == 1, "captions fit one 77-token chunk"
        return [int(t) for t, _ in chunks[0]]

    def __call__(self, captions):
        rows = []
        for text in captions:
            if text not in self.cache:
                self.cache[text] = [self.compact[t] for t in self._ids(text)]
            rows.append(self.cache[text])
        return torch.tensor(rows, dtype=torch.long)


def encode_text(text_model, embedding, compact_ids):
    """The host CLIP text model's forward, written out of place so autograd can run through it
    (the host's CLIPLayer adds in place). Same maths: causal mask, pre-norm layers, last layer
    with the final layer norm (what the host returns for clip skip -1)."""
    tm = text_model.transformer.text_model
    x = embedding[compact_ids] + tm.embeddings.position_embedding.weight[: compact_ids.shape[1]]
    heads = text_model.transformer.text_model.encoder.layers[0].self_attn.heads
    n = x.shape[1]
    causal = torch.full((n, n), float("-inf"), device=x.device).triu(1)
    for layer in tm.encoder.layers:
        h = F.layer_norm(x, (x.shape[-1],), layer.layer_norm1.weight, layer.layer_norm1.bias, 1e-5)
        a = layer.self_attn
        q, k, v = (F.linear(h, p.weight, p.bias) for p in (a.q_proj, a.k_proj, a.v_proj))
        b, _, w = q.shape
        q, k, v = (t.view(b, n, heads, w // heads).transpose(1, 2) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=causal).transpose(1, 2).reshape(b, n, w)
        x = x + F.linear(o, a.out_proj.weight, a.out_proj.bias)
        h = F.layer_norm(x, (w,), layer.layer_norm2.weight, layer.layer_norm2.bias, 1e-5)
        h = F.linear(h, layer.mlp.fc1.weight, layer.mlp.fc1.bias)
        h = h * torch.sigmoid(1.702 * h)  # quick_gelu, as the SD1 config says
        x = x + F.linear(h, layer.mlp.fc2.weight, layer.mlp.fc2.bias)
    return F.layer_norm(x, (x.shape[-1],), tm.final_layer_norm.weight, tm.final_layer_norm.bias, 1e-5)


# ---------------------------------------------------------------- stage 1: VAE
def vae_loss(autoencoder, x, kl_weight=1e-6):
    posterior = autoencoder.encoder(x)
    posterior = autoencoder.quant_conv(posterior) if hasattr(autoencoder, "quant_conv") and autoencoder.quant_conv is not None else posterior
    mean, logvar = posterior.chunk(2, dim=1)
    logvar = logvar.clamp(-30, 20)
    z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
    z = autoencoder.post_quant_conv(z) if hasattr(autoencoder, "post_quant_conv") and autoencoder.post_quant_conv is not None else z
    out = autoencoder.decoder(z)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean()
    l1 = (out - x).abs().mean()
    mse = (out - x).pow(2).mean()
    return l1 + mse + kl_weight * kl, {"l1": l1.item(), "mse": mse.item(), "kl": kl.item()}


@torch.no_grad()
def encode_mean(autoencoder, x):
    posterior = autoencoder.encoder(x)
    if getattr(autoencoder, "quant_conv", None) is not None:
        posterior = autoencoder.quant_conv(posterior)
    mean, logvar = posterior.chunk(2, dim=1)
    return mean, logvar.clamp(-30, 20)


CHUNK = 256  # pictures per generator seed: the pools do not depend on the number of workers


def _chunk(job):
    seed, count = job
    images, captions, _ = shapes_data.batch(seed, count)
    return images, captions


def generate(first_seed, count, workers):
    """``count`` pictures and captions, in chunks of CHUNK pictures seeded first_seed + offset,
    made by ``workers`` processes (before CUDA starts: forked workers must not inherit it)."""
    jobs = [(first_seed + i, min(CHUNK, count - i)) for i in range(0, count, CHUNK)]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_chunk, jobs)
    else:
        parts = [_chunk(job) for job in jobs]
    return np.concatenate([p[0] for p in parts]), [c for p in parts for c in p[1]]


class StepBudget:
    """Fits a stage into ``minutes`` (0: no budget): at step 30 the step count is fixed from the
    speed of steps 10-30, before the warm-up of the learning rate ends (the rate so far does not
    depend on it, so `--steps N` with the recorded N reproduces the run). The first steps carry
    the warm-up (allocations, cuDNN's choices), which made the committed run's estimate from
    steps 0-30 1.5-2x too slow."""

    def __init__(self, minutes, stage, log):
        self.minutes, self.stage, self.log, self.tenth = minutes, stage, log, None

    def steps(self, step, steps):
        if step == 10:
            self.tenth = time.time()
        if self.minutes and step == 30:
            speed = (time.time() - self.tenth) / 20
            steps = max(31, min(steps, int(self.minutes * 60 / speed)))
            self.log(f"{self.stage} {speed:.3f} s/step: {steps} steps fit in {self.minutes} minutes")
        return steps


def random_crops(x, crop, generator):
    if crop >= x.shape[-1]:
        return x
    n = x.shape[0]
    offsets = torch.randint(0, (x.shape[-1] - crop) // 8 + 1, (n, 2), generator=generator) * 8
    return torch.stack([x[i, :, oy:oy + crop, ox:ox + crop] for i, (oy, ox) in enumerate(offsets.tolist())])


def cosine_lr(step, total, base, warmup=100):
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_vae(autoencoder, args, log, steps, pool):
    optimiser = torch.optim.AdamW(autoencoder.parameters(), lr=args.vae_lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(args.seed + 1)
    pool = to_tensor(pool).to(DEVICE)
    autoencoder.train()
    history = []
    start = time.time()
    budget = StepBudget(args.vae_minutes, "vae", log)
    step = 0
    while step < steps:
        steps = budget.steps(step, steps)
        index = torch.randint(0, pool.shape[0], (args.vae_batch,), generator=generator).to(DEVICE)
        x = random_crops(pool[index], args.vae_crop, generator)
        for group in optimiser.param_groups:
            group["lr"] = cosine_lr(step, steps, args.vae_lr)
        loss, parts = vae_loss(autoencoder, x)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(autoencoder.parameters(), 1.0)
        optimiser.step()
        history.append(parts)
        if step % 100 == 0 or step == steps - 1:
            recent = {k: float(np.mean([h[k] for h in history[-100:]])) for k in parts}
            log(f"vae step {step}/{steps} {recent} {time.time() - start:.0f}s")
        step += 1
    autoencoder.eval()
    return history, steps


@torch.no_grad()
def measure_vae(autoencoder, args):
    """Reconstruction error on fresh full-size pictures, and the latent scale factor."""
    images, _, _ = shapes_data.batch(args.seed + 7, 256)
    x = to_tensor(images).to(DEVICE)
    mean, _ = encode_mean(autoencoder, x)
    z = mean
    if getattr(autoencoder, "post_quant_conv", None) is not None:
        z = autoencoder.post_quant_conv(z)
    out = autoencoder.decoder(z).clamp(-1, 1)
    l1 = float((out - x).abs().mean() / 2)  # in 0..1 units
    mse = float(((out - x) / 2).pow(2).mean())
    return {"l1": l1, "psnr_db": float(10 * math.log10(1 / max(mse, 1e-12))),
            "latent_std": float(mean.std()), "latent_mean": float(mean.mean()),
            # 1 / RMS rather than 1 / std: the latents' mean is not zero and SD1's latent
            # format has no shift, so the scaled latents must be of unit size including it.
            "scale_factor": float(1 / mean.pow(2).mean().sqrt())}


# ---------------------------------------------------------------- stage 2: CLIP + UNet
def encode_dataset(autoencoder, pictures, log):
    """The stage-2 pictures: latent means and log-variances (sampled per step), captions."""
    images, captions = pictures
    means, logvars = [], []
    for i in range(0, len(captions), CHUNK):
        mean, logvar = encode_mean(autoencoder, to_tensor(images[i:i + CHUNK]).to(DEVICE))
        means.append(mean)
        logvars.append(logvar)
    log(f"encoded {len(captions)} pictures")
    return torch.cat(means), torch.cat(logvars), captions


def train_text_to_image(unet_model, clip, tokens, data, scale_factor, args, log, steps):
    means, logvars, captions = data
    means, logvars = means.cpu(), logvars.cpu()  # indexed with the CPU generator
    diffusion = unet_model.diffusion_model
    text_model = clip.cond_stage_model.clip_l
    for p in list(diffusion.parameters()) + list(text_model.parameters()):
        p.requires_grad_(True)
    # Training keeps only the embedding rows the captions use; they go back into the full table at save.
    full_table = text_model.transformer.text_model.embeddings.token_embedding.weight
    embedding = torch.nn.Parameter(full_table.detach()[tokens.token_ids.to(full_table.device)].clone())
    text_params = [p for n, p in text_model.named_parameters() if "token_embedding" not in n and "logit_scale" not in n]
    params = list(diffusion.parameters()) + text_params + [embedding]
    optimiser = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ema = [p.detach().clone() for p in params]
    alphas_cumprod = (1 / (1 + unet_model.model_sampling.sigmas.float() ** 2)).cpu()  # the host keeps sigmas only
    empty = tokens([""])
    generator = torch.Generator().manual_seed(args.seed + 2)
    history = []
    start = time.time()
    diffusion.train()
    budget = StepBudget(args.minutes, "t2i", log)
    step = 0
    while step < steps:
        steps = budget.steps(step, steps)
        index = torch.randint(0, means.shape[0], (args.batch,), generator=generator)
        z = means[index] + torch.randn(means[index].shape, generator=generator) * torch.exp(0.5 * logvars[index])
        x0 = z * scale_factor
        ids = tokens([captions[i] for i in index.tolist()])
        drop = torch.rand(args.batch, generator=generator) < 0.1
        ids[drop] = empty
        t = torch.randint(0, 1000, (args.batch,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = (a.sqrt() * x0 + (1 - a).sqrt() * noise).to(DEVICE)
        noise, ids, t = noise.to(DEVICE), ids.to(DEVICE), t.to(DEVICE)
        for group in optimiser.param_groups:
            group["lr"] = cosine_lr(step, steps, args.lr, warmup=200)
        context = encode_text(text_model, embedding, ids)
        prediction = diffusion(xt, timesteps=t.float(), context=context)
        loss = F.mse_loss(prediction, noise)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema, params):
                e.lerp_(p.detach(), 1 - decay)
        history.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            log(f"t2i step {step}/{steps} loss {np.mean(history[-100:]):.4f} {time.time() - start:.0f}s")
        step += 1
    diffusion.eval()
    with torch.no_grad():
        for e, p in zip(ema, params):
            p.copy_(e)
    for p in params:
        p.requires_grad_(False)
    return embedding.detach(), history, steps


# ---------------------------------------------------------------- saving
def save_weights(out_dir, trained, unet_model, clip, embedding, token_ids, scale_factor):
    from safetensors.torch import save_file
    out_dir.mkdir(parents=True, exist_ok=True)
    half = lambda sd: {k: v.detach().cpu().to(torch.float16).contiguous() for k, v in sd.items()}  # noqa: E731
    save_file(half(unet_model.diffusion_model.state_dict()), str(out_dir / trained.UNET_FILE),
              metadata={trained.SCALE_FACTOR_KEY: repr(scale_factor)})
    sd = {k: v for k, v in clip.cond_stage_model.clip_l.state_dict().items()
          if k != trained.TOKEN_EMBEDDING_KEY and "position_ids" not in k}
    sd = half(sd)
    sd[trained.TOKEN_EMBEDDING_KEY] = embedding.cpu().to(torch.float16).contiguous()
    sd[trained.TOKEN_IDS_KEY] = token_ids.to(torch.int32).contiguous()
    save_file(sd, str(out_dir / trained.CLIP_FILE))


def model_card_markdown(card):
    """MODEL_CARD.md from model_card.json: what was trained, on what, how long, how well."""
    vae, t2i = card["vae"], card["text_to_image"]
    fresh = vae["fresh_pictures"]
    unet, clip = t2i["unet_config"], t2i["clip_config"]
    ddconfig = vae["config"]["params"]["ddconfig"]
    lines = [
        "# ShapeFirst demo model", "",
        "A small SD1.x-family text-to-image model trained from scratch by `tools/demo_model/train.py` "
        "on synthetic pictures (`nodes/demo_models/shapes_data.py`): one shape per 64x64 picture "
        "(circle, square, triangle, cross; red, green, blue, yellow; small, large; left, right, top, bottom, "
        "centre; plain, striped, dotted, checkered; on black, gray or white), captions from "
        f"{len(shapes_data._TEMPLATES)} templates with varied word order. Held-out (kind, colour, texture) "
        "combinations never seen in training: " + ", ".join(" ".join(c) for c in card["held_out_combinations"]) + ".",
        "", "It is a demonstration model for the pack's experiments, not an image generator: it draws only "
        "what its captions describe, at 64x64 px.", "",
        "## Trained", "",
        f"- on: {card['trained_on']}; {card['machine']}; {card['date']}; torch {card['torch']}; seed {card['seed']}",
        f"- VAE (AutoencoderKL, ch {ddconfig['ch']}, ch_mult {ddconfig['ch_mult']}, {ddconfig['num_res_blocks']} res block "
        f"per level, 8x downscale, 4 latent channels), L1 + MSE + 1e-6 KL, trained in {len(vae['phases'])} phase(s), "
        f"{vae['seconds']} s in all: " + "; ".join(
            f"{p['steps']} steps of batch {p['batch']} on {p['crop']} px crops, lr {p['lr']}"
            + (f" ({p['data']})" if p.get("data") else "") for p in vae["phases"]) + ". On fresh full-size pictures: "
        f"L1 {fresh['l1']:.4f}, PSNR {fresh['psnr_db']:.1f} dB; latent mean {fresh['latent_mean']:.3f}, std "
        f"{fresh['latent_std']:.3f}; latent scale factor {card['latent_scale_factor']:.4f} (1 / RMS of the latents).",
        f"- CLIP text model (SD1 architecture, causal, the real tokenizer, 77-token chunks): width "
        f"{clip['hidden_size']}, {clip['num_hidden_layers']} layers, {clip['num_attention_heads']} heads; "
        f"UNet (SD15 config): model_channels {unet['model_channels']}, channel_mult {unet['channel_mult']}, "
        f"res blocks {unet['num_res_blocks']}, attention at every level, context {unet['context_dim']}. Trained "
        f"together from scratch, epsilon prediction on the SD1 noise schedule, {t2i['steps']} steps of batch "
        f"{card['settings']['batch']}, AdamW lr {card['settings']['lr']} (cosine), 10 % empty captions, EMA "
        f"{card['settings']['ema']} (the EMA weights are saved), on {card['settings']['dataset']} pictures encoded once "
        f"(latents sampled from the VAE posterior each step), {t2i['seconds']} s.",
        f"- loss: first 100 steps {t2i['loss_first_100']:.4f}, last 200 steps {t2i['loss_last_200']:.4f}; "
        "per 500 steps: " + ", ".join(f"{v:.4f}" for v in t2i["loss_curve_per_500"]),
        f"- files: fp16 safetensors; the CLIP token embedding holds the {card['caption_tokens']} rows the captions "
        "use (`token_ids` lists them), the other rows are zeros at load.", "",
        "Its prompt adherence and the paper's experiments on it: `docs/demo_model/report.md`.", ""]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.card_only:
        out_dir = Path(args.output_dir)
        (out_dir / "MODEL_CARD.md").write_text(model_card_markdown(json.loads((out_dir / "model_card.json").read_text())))
        return
    torch.set_num_threads(args.threads)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True  # a demo model: TF32's precision is plenty
        torch.backends.cudnn.allow_tf32 = True
    vae_steps, t2i_steps = (20, 20) if args.time_only else (args.vae_steps, args.steps)
    if args.time_only:
        args.dataset, args.vae_pool = min(args.dataset, 512), min(args.vae_pool, 512)
    started = time.time()
    vae_pool = None if args.skip_vae else generate(args.seed * 1000, args.vae_pool, args.workers)[0]
    pictures = None if args.vae_only else generate(args.seed * 7, args.dataset, args.workers)
    generate_seconds = time.time() - started
    trained = import_host()
    out_dir = Path(args.output_dir)
    log_lines = []

    def log(line):
        line = f"{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S} {line}"
        print(line, flush=True)
        log_lines.append(line)

    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {args.threads} threads)"
    log(f"generated {args.vae_pool if vae_pool is not None else 0} + {args.dataset if pictures else 0} pictures "
        f"in {generate_seconds:.0f}s ({args.workers} workers)")

    autoencoder = trained.build_autoencoder()
    initialise(autoencoder, args.seed)
    autoencoder.to(DEVICE)
    started = time.time()
    if args.resume_vae:
        from safetensors.torch import load_file
        autoencoder.load_state_dict({k: v.float() for k, v in load_file(str(out_dir / trained.VAE_FILE)).items()})
    if args.skip_vae:
        from safetensors.torch import load_file
        autoencoder.load_state_dict({k: v.float() for k, v in load_file(str(out_dir / trained.VAE_FILE)).items()})
        autoencoder.eval()
        vae_history = []
    else:
        vae_history, vae_steps = train_vae(autoencoder, args, log, vae_steps, vae_pool)
        del vae_pool
    vae_seconds = time.time() - started
    vae_stats = measure_vae(autoencoder, args)
    log(f"vae: {vae_stats} in {vae_seconds:.0f}s")
    if not args.skip_vae and not args.time_only:
        # Saved now, so stage 2 can be rerun alone (--skip-vae) with the same VAE.
        from safetensors.torch import save_file
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().to(torch.float16).contiguous() for k, v in autoencoder.state_dict().items()},
                  str(out_dir / trained.VAE_FILE))
        phase = {"steps": vae_steps, "batch": args.vae_batch, "crop": args.vae_crop, "lr": args.vae_lr,
                 "pool": args.vae_pool, "on": device_name,
                 "seconds": round(vae_seconds), "fresh_pictures": vae_stats,
                 "final_losses": {k: float(np.mean([h[k] for h in vae_history[-200:]])) for k in ("l1", "mse", "kl")}}
        card_path = out_dir / "vae_card.json"
        phases = json.loads(card_path.read_text())["phases"] if args.resume_vae and card_path.is_file() else []
        phases.append(phase)
        card_path.write_text(json.dumps({"phases": phases, "steps": sum(p["steps"] for p in phases),
                                         "seconds": sum(p["seconds"] for p in phases), "fresh_pictures": vae_stats},
                                        indent=1) + "\n")
    if args.vae_only:
        return
    scale_factor = vae_stats["scale_factor"]

    unet_model = trained.build_unet_model(scale_factor)
    initialise(unet_model.diffusion_model, args.seed + 10)
    clip = trained.build_clip()
    initialise(clip.cond_stage_model, args.seed + 20)
    unet_model.diffusion_model.to(DEVICE)
    clip.cond_stage_model.to(DEVICE)
    tokens = TokenTable(clip)
    log(f"caption tokens: {len(tokens.token_ids)}; unet params "
        f"{sum(p.numel() for p in unet_model.diffusion_model.parameters()) / 1e6:.2f}M; clip params (w/o embedding) "
        f"{sum(p.numel() for n, p in clip.cond_stage_model.named_parameters() if 'token_embedding' not in n) / 1e6:.2f}M; "
        f"vae params {sum(p.numel() for p in autoencoder.parameters()) / 1e6:.2f}M")
    started = time.time()
    data = encode_dataset(autoencoder, pictures, log)
    encode_seconds = time.time() - started
    started = time.time()
    embedding, t2i_history, t2i_steps = train_text_to_image(unet_model, clip, tokens, data, scale_factor, args, log, t2i_steps)
    args.steps, args.vae_steps = t2i_steps, vae_steps  # the counts that ran (with a budget, fixed after 30 steps)
    t2i_seconds = time.time() - started
    log(f"stage 2: {t2i_seconds:.0f}s")
    if args.time_only:
        log(f"timing: vae {vae_seconds / vae_steps:.3f} s/step (batch {args.vae_batch}, crop {args.vae_crop}), "
            f"t2i {t2i_seconds / t2i_steps:.3f} s/step (batch {args.batch}), encode {encode_seconds:.1f}s for {args.dataset}")
        return
    save_weights(out_dir, trained, unet_model, clip, embedding,
                 tokens.token_ids, scale_factor)
    card = {
        "trained_on": device_name,
        "machine": (f"the project's GPU machine, {os.cpu_count()} CPU cores (shared)" if torch.cuda.is_available()
                    else f"shared machine, {os.cpu_count()} cores (other jobs ran at the same time)"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__, "seed": args.seed,
        "settings": {k: v for k, v in vars(args).items() if k not in ("output_dir", "time_only")},
        "image_size": shapes_data.IMAGE_SIZE, "latent": [4, shapes_data.IMAGE_SIZE // 8, shapes_data.IMAGE_SIZE // 8],
        "vae": dict(json.loads((out_dir / "vae_card.json").read_text()), config=trained.VAE_CONFIG),
        "text_to_image": {"unet_config": trained.UNET_CONFIG, "clip_config": trained.CLIP_CONFIG,
                          "seconds": round(t2i_seconds), "steps": t2i_steps,
                          "loss_first_100": float(np.mean(t2i_history[:100])),
                          "loss_last_200": float(np.mean(t2i_history[-200:])),
                          "loss_curve_per_500": [float(np.mean(t2i_history[i:i + 500])) for i in range(0, len(t2i_history), 500)]},
        "caption_tokens": len(tokens.token_ids), "latent_scale_factor": scale_factor,
        "held_out_combinations": [list(c) for c in shapes_data.HELD_OUT_COMBINATIONS],
    }
    (out_dir / "model_card.json").write_text(json.dumps(card, indent=1) + "\n")
    (out_dir / "MODEL_CARD.md").write_text(model_card_markdown(card))
    (out_dir / "training_log.txt").write_text("\n".join(log_lines) + "\n")
    log(f"wrote {out_dir}")


if __name__ == "__main__":
    main()
