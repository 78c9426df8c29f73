#!/usr/bin/env python3
"""Stage 1: the VQ-f4 autoencoder of gimp-ldm's built-in models.

  tools/in-env python3 tools/train/train_ae.py [--minutes 120] [--max-steps N]

Resumable: a full checkpoint (fp32 + optimizer) goes to $LDM_TRAIN_CACHE/ae.pt every few
minutes and a small fp16 one (weights and codebook statistics only) to
tools/train/checkpoints/ae.pt; the newer of the two is picked up on start.
Loss: L1 + L1 of 4x4 block means + 0.5 multi-scale gradient L1 + 0.25 (1 - SSIM)
+ 0.25 commitment (EMA codebook with dead-code restarts), and from --disc-start on a small hinge patch discriminator.
"""
import argparse
import os
import random
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from ldm_models import VQAutoencoder  # noqa: E402

# ch 96 with ch_mult [1, 1, 1]: GroupNorm(32) needs at least 3 channels per group at the
# decoder's norm_out, or (1 channel per group, as with ch 32) it normalises away each channel's
# mean over the picture and the decoder cannot reproduce the global colour.
AE_CONFIG = dict(ch=96, ch_mult=(1, 1, 1), num_res_blocks=1, z_channels=3, embed_dim=3,
                 n_embed=1024, mid_attention=False)


def grad_loss(a, b):
    loss = 0.0
    for s in range(3):
        if s:
            a = F.avg_pool2d(a, 2)
            b = F.avg_pool2d(b, 2)
        for d in (2, 3):
            loss = loss + (torch.diff(a, dim=d) - torch.diff(b, dim=d)).abs().mean()
    return loss / 3


def _gauss(ws=11, sigma=1.5):
    g = torch.exp(-(torch.arange(ws) - ws // 2).float() ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None]).expand(3, 1, ws, ws).contiguous()


_WIN = _gauss()


def ssim(a, b):
    """Mean SSIM of images in [-1, 1] (computed on [0, 1]), Gaussian 11x11 window."""
    a = (a + 1) / 2
    b = (b + 1) / 2
    w = _WIN.to(a.dtype)
    mu_a = F.conv2d(a, w, groups=3)
    mu_b = F.conv2d(b, w, groups=3)
    saa = F.conv2d(a * a, w, groups=3) - mu_a ** 2
    sbb = F.conv2d(b * b, w, groups=3) - mu_b ** 2
    sab = F.conv2d(a * b, w, groups=3) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return m.mean()


class PatchDisc(nn.Module):
    """A small PatchGAN (3 stride-2 convs, GroupNorm, LeakyReLU)."""

    def __init__(self, ch=32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, ch, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.GroupNorm(8, ch * 2), nn.LeakyReLU(0.2),
            nn.Conv2d(ch * 2, ch * 4, 4, 2, 1), nn.GroupNorm(8, ch * 4), nn.LeakyReLU(0.2),
            nn.Conv2d(ch * 4, 1, 3, 1, 1))

    def forward(self, x):
        return self.net(x)


def val_batch(size=128):
    """Fixed crops of the validation photos (never trained on)."""
    photos = common.load_photos("val")
    rng = random.Random(1234)
    return common.random_crops(photos, 16, size, rng, 1.0, 2.0)


@torch.no_grad()
def evaluate(ae, xv):
    ae.eval()
    rec, _, _, idx = ae(xv)
    ae.train()
    mse = F.mse_loss(rec.clamp(-1, 1), xv).item()
    psnr = 10 * torch.log10(torch.tensor(4.0 / max(mse, 1e-10))).item()
    used = torch.bincount(idx, minlength=ae.quantize.n_embed).float()
    p = used / used.sum()
    perplexity = torch.exp(-(p[p > 0] * p[p > 0].log()).sum()).item()
    return psnr, ssim(rec.clamp(-1, 1), xv).item(), perplexity


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=120)
    ap.add_argument("--max-steps", type=int, default=10 ** 9)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=8e-4)
    ap.add_argument("--disc-start", type=int, default=3000)
    ap.add_argument("--disc-weight", type=float, default=0.05)
    ap.add_argument("--save-minutes", type=float, default=5)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--no-commit-ckpt", action="store_true",
                    help="do not write tools/train/checkpoints/ae.pt (tests)")
    args = ap.parse_args()
    common.setup_threads()

    ae = VQAutoencoder(**AE_CONFIG)
    disc = PatchDisc()
    opt = torch.optim.Adam([p for p in ae.parameters() if p.requires_grad], lr=args.lr,
                           betas=(0.5, 0.9))
    dopt = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.9))
    step, trained_seconds = 0, 0.0
    ck, src = common.load_resume("ae")
    if ck is not None and ck["config"] != AE_CONFIG:
        sys.exit(f"{src} holds another architecture ({ck['config']}): move it away to start over")
    if ck is not None:
        ae.load_state_dict(common.float_state(ck["ae"]))
        disc.load_state_dict(common.float_state(ck["disc"]))
        if "opt" in ck:
            opt.load_state_dict(ck["opt"])
            dopt.load_state_dict(ck["dopt"])
        step, trained_seconds = ck["step"], ck.get("seconds", 0.0)
        common.log(f"resumed from {src} at step {step} ({trained_seconds / 3600:.2f} h)")
    common.seed_all(step * 7919 + 17)
    rng = random.Random(step * 104729 + 3)
    nparam = sum(p.numel() for p in ae.parameters())
    common.log(f"autoencoder {nparam / 1e6:.2f} M parameters, config {AE_CONFIG}")

    photos = common.load_photos("train")
    common.log(f"{len(photos)} training photos")
    xv = val_batch(128)
    lr_at = common.Lr(args.lr, warmup=50)

    def save():
        state = dict(step=step, seconds=trained_seconds, config=AE_CONFIG,
                     ae=ae.state_dict(), disc=disc.state_dict())
        common.atomic_save(dict(state, opt=opt.state_dict(), dopt=dopt.state_dict()),
                           os.path.join(common.CACHE, "ae.pt"))
        if not args.no_commit_ckpt:
            common.atomic_save(dict(state, ae=common.half_state(ae.state_dict()),
                                    disc=common.half_state(disc.state_dict())),
                               os.path.join(common.COMMITTED, "ae.pt"))
        common.log(f"saved step {step}")

    t_start = time.time()
    t_save = time.time()
    t_last = time.time()
    acc = {}
    while True:
        if step >= args.max_steps or time.time() - t_start > args.minutes * 60:
            break
        common.set_lr(opt, lr_at(step))
        x = common.random_crops(photos, args.batch, args.size, rng)
        rec, commit, _, _ = ae(x)
        l1 = (rec - x).abs().mean()
        # Mean colour of each 4x4 block (what one latent pixel must carry): keeps the
        # structure terms from starving colour.
        lc = (F.avg_pool2d(rec, 4) - F.avg_pool2d(x, 4)).abs().mean()
        lg = grad_loss(rec, x)
        ls = 1 - ssim(rec, x)
        loss = l1 + lc + 0.5 * lg + 0.25 * ls + 0.25 * commit
        use_disc = step >= args.disc_start
        if use_disc:
            lgan = -disc(rec).mean()
            loss = loss + args.disc_weight * lgan
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        if use_disc:
            common.set_lr(dopt, lr_at(step))
            dr = disc(x)
            df = disc(rec.detach())
            dl = F.relu(1 - dr).mean() + F.relu(1 + df).mean()
            dopt.zero_grad(set_to_none=True)
            dl.backward()
            dopt.step()
            acc["d"] = acc.get("d", 0) + dl.item()
            acc["g"] = acc.get("g", 0) + lgan.item()
        for k, v in (("l1", l1), ("colour", lc), ("grad", lg), ("ssim", ls), ("commit", commit)):
            acc[k] = acc.get(k, 0) + v.item()
        acc["n"] = acc.get("n", 0) + 1
        step += 1
        now = time.time()
        trained_seconds += now - t_last
        t_last = now
        if step % 50 == 0:
            n = acc.pop("n")
            msg = " ".join(f"{k} {v / n:.4f}" for k, v in acc.items())
            common.log(f"step {step} {msg} ({trained_seconds / step:.2f} s/step avg)")
            acc = {}
        if step % args.eval_every == 0:
            psnr, s, perp = evaluate(ae, xv)
            common.log(f"val step {step}: PSNR {psnr:.2f} dB SSIM {s:.4f} "
                       f"code perplexity {perp:.0f}")
        if now - t_save > args.save_minutes * 60:
            save()
            t_save = now
    save()
    psnr, s, perp = evaluate(ae, xv)
    common.log(f"done at step {step}: val PSNR {psnr:.2f} dB SSIM {s:.4f} perplexity {perp:.0f}")


if __name__ == "__main__":
    main()
