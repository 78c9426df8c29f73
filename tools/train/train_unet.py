#!/usr/bin/env python3
"""Stage 2: the U-Nets of gimp-ldm's built-in models, with the stage-1 autoencoder frozen.

  tools/in-env python3 tools/train/train_unet.py --task inpaint|sr [--minutes 120]

inpaint: U-Net input [x_t (3) | enc(masked image) (3) | mask (1)], masked pixels -1, the
         encoding NOT quantised, the mask the top-left pixel of each 4x4 block in {-1, +1}
         (as inpainting_big); linear betas 0.00085..0.012 and v-prediction with an L2 loss
         (SD 2's parameterization "v"): see TASKS for why not inpainting_big's eps and L1.
sr:      U-Net input [x_t (3) | LR image in [-1, 1] (3)] at latent size = LR size;
         linear betas 0.0015..0.0155 (as bsr_sr), v-prediction (eps until step 8118), L2
         loss. LR = blur + bicubic 4x + noise (degrade.py) of 128-px crops.
Every --hires-every-th step trains on 256-px crops (64x64 latents) instead, batch / 4: a U-Net
trained on 32x32 latents only drew speckled noise at 64x64 (sr too: 64-px LR images).
Target latents: quant_conv(encoder(x)) unquantised (VQModelInterface.encode).
Encoded samples go through a pool (LatentPool): each step encodes --fresh new crops and trains
on a random batch of the pool, so every sample is seen about batch/fresh times.

On first start the autoencoder is taken from the stage-1 checkpoint, rounded to fp16 (as it
ships) and its latent space rescaled exactly (one global scale, a per-channel shift, folded
into quant_conv, the codebook and post_quant_conv; nearest-code choice is unchanged) to unit
variance. That autoencoder copy is stored in this stage's checkpoints and exported with it.
Checkpoints: $LDM_TRAIN_CACHE/<task>.pt (fp32, optimizer, EMA) every few minutes and
tools/train/checkpoints/<task>.pt (fp16: EMA U-Net weights + the autoencoder; on a new machine
training resumes from the EMA weights with a fresh optimizer).
"""
import argparse
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import degrade  # noqa: E402
from ldm_models import UNet, VQAutoencoder, linear_alphas_cumprod  # noqa: E402

TASKS = {
    # inpainting_big's 0.0015..0.0205 ends at alpha-bar 1e-4: an eps error there is amplified
    # ~100x in the x0 estimate, and the small U-Net (3300 steps) never learned to draw the
    # hole's colours from the context at t > 850 (measured: x0 error 1.2 where the context
    # alone gives 0.1). The SD schedule (0.00085..0.012, alpha-bar 5e-3 at the end) is gentler;
    # training went on from those weights with it (step 3217).
    # Even so, eps-prediction at t = 951 needs eps right to 0.01 for an x0 right to 0.1, and
    # after 6700 steps the x0 error there was still 0.6 outside the hole, where the
    # conditioning holds the answer: samples drifted to grey/yellow whatever the context.
    # From step 6700 the U-Net predicts v = sqrt(a) eps - sqrt(1 - a) x0 (SD 2's
    # parameterization "v"): about -x0 at high t, so copying the context is easy, and about eps
    # at low t. L2, as SD 2 trains v.
    "inpaint": dict(in_channels=7, linear_start=0.00085, linear_end=0.012, loss="l2",
                    parameterization="v"),
    # sr predicted eps (as bsr_sr) until step 8118: its own low frequencies stayed wrong (mean
    # colour dE 19.9 from the photo without color-fix, docs/eval's 8 crops), the high-t
    # weakness above; from 8118 on v, as inpaint.
    "sr": dict(in_channels=6, linear_start=0.0015, linear_end=0.0155, loss="l2",
               parameterization="v"),
}
UNET_CONFIG = dict(out_channels=3, model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2,
                   attention_resolutions=(4,), num_heads=-1, num_head_channels=32)


def unet_for(task):
    return UNet(in_channels=TASKS[task]["in_channels"], **UNET_CONFIG)


def load_stage1_ae():
    ck, src = common.load_resume("ae")
    if ck is None:
        sys.exit("no stage-1 autoencoder checkpoint (train_ae.py first)")
    ae = VQAutoencoder(**ck["config"])
    # Round to fp16 as shipped.
    ae.load_state_dict(common.float_state(common.half_state(ck["ae"])))
    common.log(f"autoencoder from {src}, stage-1 step {ck['step']}")
    return ae, ck["step"]


@torch.no_grad()
def normalise_latents(ae, photos, rng):
    """Fold z' = s (z - m) into the autoencoder (s global, m per channel)."""
    zs = []
    for _ in range(8):
        x = common.random_crops(photos, 8, 128, rng)
        zs.append(ae.encode(x))
    z = torch.cat(zs)
    m = z.mean(dim=(0, 2, 3))
    s = 1.0 / (z - m[None, :, None, None]).std().item()
    qc, pq, emb = ae.quant_conv, ae.post_quant_conv, ae.quantize.embedding.weight
    qc.weight.mul_(s)
    qc.bias.copy_(s * (qc.bias - m))
    # post(z) = W (z'/s + m) + b
    pq.bias.add_(pq.weight[:, :, 0, 0] @ m)
    pq.weight.div_(s)
    emb.copy_(s * (emb - m[None]))
    # Round again to fp16 (as shipped), so training sees the exported numbers.
    ae.load_state_dict(common.float_state(common.half_state(ae.state_dict())))
    common.log(f"latents normalised: mean {m.tolist()} std {1 / s:.4f} -> scale {s:.4f}")
    return dict(scale=s, shift=m.tolist())


def make_batch(task, ae, photos, n, rng, size=128):
    x = common.random_crops(photos, n, size, rng)
    with torch.no_grad():
        z0 = ae.encode(x)
        if task == "inpaint":
            m = degrade.masks_batch(n, size, rng)
            masked = x * (1 - m) - m           # (1-m)*img in [0,1], then *2-1: holes are -1
            c = ae.encode(masked)
            ml = m[:, :, ::4, ::4] * 2 - 1     # top-left pixel of each 4x4 block, {-1, +1}
            cond = torch.cat([c, ml], 1)
        else:
            cond = degrade.degrade_sr(x, rng)
    return z0, cond


class LatentPool:
    """Encoded training samples, each used several times (with new t and noise each time).

    Encoding the 128-px crops through the autoencoder costs more than the U-Net step itself
    (about 9 GFLOP per crop against 6 for the U-Net's forward and backward), so each step
    encodes only `fresh` new samples into the pool and trains on a random batch from it. The
    pool starts with `start` samples, grows to `size`, then new samples replace random ones."""

    def __init__(self, task, ae, photos, rng, size, fresh, start, crop=128):
        self.task, self.ae, self.photos, self.rng, self.crop = task, ae, photos, rng, crop
        self.size, self.fresh = size, fresh
        self.z0, self.cond = [], []
        self.add(start)

    def add(self, n):
        z0, cond = make_batch(self.task, self.ae, self.photos, n, self.rng, self.crop)
        for i in range(n):
            if len(self.z0) < self.size:
                self.z0.append(z0[i])
                self.cond.append(cond[i])
            else:
                j = self.rng.randrange(self.size)
                self.z0[j], self.cond[j] = z0[i], cond[i]

    def batch(self, n):
        self.add(self.fresh)
        idx = [self.rng.randrange(len(self.z0)) for _ in range(n)]
        return (torch.stack([self.z0[i] for i in idx]),
                torch.stack([self.cond[i] for i in idx]))


class Ema:
    def __init__(self, model, decay):
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model):
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for k, v in model.state_dict().items():
            self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--minutes", type=float, default=120)
    ap.add_argument("--max-steps", type=int, default=10 ** 9)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--save-minutes", type=float, default=5)
    ap.add_argument("--pool", type=int, default=3000, help="encoded samples kept (LatentPool)")
    ap.add_argument("--fresh", type=int, default=2, help="new samples encoded per step")
    ap.add_argument("--hires-every", type=int, default=2,
                    help="every k-th step trains on 256-px crops (64x64 latents, batch / 4), "
                         "so the U-Net also learns larger pictures than 128 px; 0 = never")
    ap.add_argument("--no-commit-ckpt", action="store_true")
    args = ap.parse_args()
    common.setup_threads()
    task = args.task
    spec = TASKS[task]

    unet = unet_for(task)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    ck, src = common.load_resume(task)
    photos = common.load_photos("train")
    step, seconds = 0, 0.0
    if ck is not None:
        ae = VQAutoencoder(**ck["ae_config"])
        ae.load_state_dict(common.float_state(ck["ae"]))
        norm = ck["latent_norm"]
        ae_step = ck["ae_step"]
        step, seconds = ck["step"], ck.get("seconds", 0.0)
        old_param = ck.get("parameterization", "eps")
        phase_start = ck.get("phase_start", 0)
        if old_param != spec["parameterization"]:
            # A new target: start from the EMA weights with a fresh optimizer, EMA and warm-up.
            unet.load_state_dict(common.float_state(ck["ema"]))
            ema = Ema(unet, args.ema_decay)
            phase_start = step
            common.log(f"parameterization {old_param} -> {spec['parameterization']} at step {step}")
        else:
            if "unet" in ck:
                unet.load_state_dict(common.float_state(ck["unet"]))
                opt.load_state_dict(ck["opt"])
            else:
                unet.load_state_dict(common.float_state(ck["ema"]))
            ema = Ema(unet, args.ema_decay)
            ema.shadow = common.float_state(ck["ema"])
            ema.num_updates = ck.get("ema_updates", 0)
        common.log(f"resumed {task} from {src} at step {step} ({seconds / 3600:.2f} h)")
    else:
        ae, ae_step = load_stage1_ae()
        norm = normalise_latents(ae, photos, random.Random(99))
        ema = Ema(unet, args.ema_decay)
        phase_start = 0
    ae.eval()
    for p in ae.parameters():
        p.requires_grad_(False)
    common.seed_all(step * 7919 + 29 + len(task))
    rng = random.Random(step * 104729 + 5 + len(task))
    nparam = sum(p.numel() for p in unet.parameters())
    common.log(f"{task} U-Net {nparam / 1e6:.2f} M parameters {unet.cfg}")

    acp = linear_alphas_cumprod(spec["linear_start"], spec["linear_end"]).float()
    sa, s1a = acp.sqrt(), (1 - acp).sqrt()
    warm = common.Lr(args.lr, warmup=100)
    lr_at = lambda s: warm(s - phase_start)  # noqa: E731  (warm-up again after a switch)
    pool = LatentPool(task, ae, photos, rng, args.pool, args.fresh, start=16 * args.batch)
    # 256-px crops: 4x the encoding per sample, so a smaller pool refreshed one at a time.
    hires = (LatentPool(task, ae, photos, rng, args.pool // 4, 1, start=4 * args.batch, crop=256)
             if args.hires_every > 0 else None)

    def save():
        base = dict(task=task, step=step, seconds=seconds, unet_config=unet.cfg,
                    ae_config=ae.cfg, ae_step=ae_step, latent_norm=norm,
                    ema_updates=ema.num_updates, parameterization=spec["parameterization"],
                    linear_start=spec["linear_start"], linear_end=spec["linear_end"],
                    loss=spec["loss"], phase_start=phase_start)
        common.atomic_save(dict(base, unet=unet.state_dict(), ema=ema.shadow,
                                opt=opt.state_dict(), ae=ae.state_dict()),
                           os.path.join(common.CACHE, task + ".pt"))
        if not args.no_commit_ckpt:
            common.atomic_save(dict(base, ema=common.half_state(ema.shadow),
                                    ae=common.half_state(ae.state_dict())),
                               os.path.join(common.COMMITTED, task + ".pt"))
        common.log(f"saved step {step}")

    first_step = step
    t0 = time.time()
    t_save = t_last = time.time()
    acc, nacc = 0.0, 0
    tbins = torch.zeros(4)
    tcnt = torch.zeros(4)
    while step < args.max_steps and time.time() - t0 < args.minutes * 60:
        common.set_lr(opt, lr_at(step))
        if hires is not None and step % args.hires_every == args.hires_every - 1:
            z0, cond = hires.batch(max(1, args.batch // 4))
        else:
            z0, cond = pool.batch(args.batch)
        b = z0.shape[0]
        t = torch.randint(0, acp.shape[0], (b,))
        eps = torch.randn_like(z0)
        xt = sa[t][:, None, None, None] * z0 + s1a[t][:, None, None, None] * eps
        out = unet(torch.cat([xt, cond], 1), t)
        if spec["parameterization"] == "v":
            target = sa[t][:, None, None, None] * eps - s1a[t][:, None, None, None] * z0
        else:
            target = eps
        if spec["loss"] == "l1":
            per = (out - target).abs().mean(dim=(1, 2, 3))
        else:
            per = ((out - target) ** 2).mean(dim=(1, 2, 3))
        loss = per.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.update(unet)
        step += 1
        acc += loss.item()
        nacc += 1
        q = (t // 250).clamp(max=3)
        tbins.index_add_(0, q, per.detach())
        tcnt.index_add_(0, q, torch.ones(b))
        now = time.time()
        seconds += now - t_last
        t_last = now
        if step % 50 == 0:
            bins = " ".join(f"{v:.3f}" for v in (tbins / tcnt.clamp(min=1)).tolist())
            common.log(f"step {step} loss {acc / nacc:.4f} (t quartiles {bins}) "
                       f"lr {lr_at(step):.2e} {seconds / max(step, 1):.2f} s/step avg")
            acc, nacc = 0.0, 0
            tbins.zero_()
            tcnt.zero_()
        if now - t_save > args.save_minutes * 60:
            save()
            t_save = now
    if step > first_step:  # a resume that switched targets and ran no step has nothing new
        save()


if __name__ == "__main__":
    main()
