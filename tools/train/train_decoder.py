#!/usr/bin/env python3
"""Stage 1b: fine-tune the autoencoder's decoder only, against its colour drift.

  tools/in-env python3 tools/train/train_decoder.py [--minutes 100]

The encoder, quant_conv and codebook stay frozen, exactly as the U-Nets see them: they come
from the autoencoder copy inside the stage-2 checkpoints (tools/train/checkpoints/inpaint.pt;
fp16-rounded, latent space rescaled), so the latent space, and both U-Nets trained in it, stay
valid. Trained: post_quant_conv and decoder.*, on the decoding of the quantised encoding of
training crops (what the engine decodes: it quantises the U-Net's latent).

Loss: stage 1's L1 + L1 of 4x4 block means + 0.5 multi-scale gradient L1 + 0.25 (1 - SSIM)
+ its hinge PatchGAN (weight 0.05, discriminator resumed from stage 1), plus a chroma term:
L1 of CIELAB a*, b* (/ 50) of the 4x4 block means (area low-pass), --chroma-weight, and
(from step 1056 on, --texture-weight 0.2) texture_loss: |log| of the ratio of the decoding's local
detail energy to the photo's in 8x8 windows (the round trip kept only 0.64 of the validation
photos' detail energy, which capped the 4x upscaler's texture).
Crops: 128 px (batch 3), every --hires-every-th step one 256-px crop (the decoder's GroupNorms
see the whole picture, and stage 1 only trained on 64 px).

Why: the stage-1 decoder gave 22.2 dB and a mean CIELAB dE of 14 on the validation photos, the
green channel +9.7 levels too high on average and +38 on saturated reds (tools/train/ae_drift.py).

Checkpoints (every --save-minutes, temp file + rename): $LDM_TRAIN_CACHE/decoder.pt (fp32,
optimizers, EMA, discriminator) and tools/train/checkpoints/decoder.pt (fp16: decoder, its EMA,
discriminator; a new machine resumes from it with fresh optimizers). Both carry a fingerprint
of the frozen encoder/codebook they were trained for; export.py puts the EMA decoder into the
exported models when the fingerprint matches theirs.
"""
import argparse
import hashlib
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from ldm_models import VQAutoencoder  # noqa: E402
from train_ae import PatchDisc, grad_loss, ssim  # noqa: E402

TRAINED = ("decoder.", "post_quant_conv.")
FROZEN = ("encoder.", "quant_conv.", "quantize.embedding.weight")


def frozen_fingerprint(ae_state):
    """sha256 of the frozen part (encoder, quant_conv, codebook) rounded to fp16, as shipped."""
    h = hashlib.sha256()
    for k in sorted(ae_state):
        if k.startswith(FROZEN):
            h.update(k.encode())
            h.update(ae_state[k].detach().half().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def decoder_state(ae_state):
    return {k: v for k, v in ae_state.items() if k.startswith(TRAINED)}


def load_frozen_ae():
    """The U-Nets' autoencoder copy (from the inpainting checkpoint; checked against sr's)."""
    ck, src = common.load_resume("inpaint")
    if ck is None:
        sys.exit("no stage-2 checkpoint (inpaint.pt) holding the U-Nets' autoencoder")
    ae = VQAutoencoder(**ck["ae_config"])
    ae.load_state_dict(common.float_state(ck["ae"]))
    fp = frozen_fingerprint(ck["ae"])
    other, osrc = common.load_resume("sr")
    if other is not None and frozen_fingerprint(other["ae"]) != fp:
        common.log(f"warning: {osrc} holds another encoder/codebook than {src}: the decoder "
                   f"is trained for {src} only")
    meta = dict(ae_config=ck["ae_config"], ae_step=ck["ae_step"], latent_norm=ck["latent_norm"],
                fingerprint=fp)
    common.log(f"frozen encoder/codebook from {src} (stage-1 step {ck['ae_step']}, "
               f"fingerprint {fp})")
    return ae, meta


_M = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                   [0.2126729, 0.7151522, 0.0721750],
                   [0.0193339, 0.1191920, 0.9503041]]) / torch.tensor([0.95047, 1.0,
                                                                        1.08883])[:, None]


def lab_ab(x):
    """CIELAB a*, b* (D65) of an sRGB image in [-1, 1]: N x 2 x H x W."""
    c = ((x + 1) / 2).clamp(1e-4, 1)
    lin = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = torch.einsum("ij,njhw->nihw", _M.to(x.dtype), lin)
    e = 216 / 24389
    f = torch.where(xyz > e, xyz.clamp(min=e) ** (1 / 3), (24389 / 27 * xyz + 16) / 116)
    return torch.stack([500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def chroma_loss(rec, x):
    return (lab_ab(F.avg_pool2d(rec, 4)) - lab_ab(F.avg_pool2d(x, 4))).abs().mean() / 50


_GREY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def local_detail_energy(x, sigma=1.5, window=8):
    """Local energy of the grey image's detail (grey - Gaussian blur sigma, as tools/eval's
    texture ratio), averaged over window x window pixels: N x 1 x H/window x W/window."""
    g = (x * _GREY.to(x.dtype)).sum(1, keepdim=True)
    r = int(3 * sigma + 0.5)
    k = torch.exp(-(torch.arange(-r, r + 1).float() ** 2) / (2 * sigma ** 2))
    k = (k / k.sum()).to(x.dtype)
    b = F.conv2d(F.pad(g, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    b = F.conv2d(F.pad(b, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return F.avg_pool2d((g - b) ** 2, window)


def texture_loss(rec, x):
    """|log| of the ratio of local detail energies: asks the decoder for as much detail as the
    photo has in each 8x8 window, wherever the latent cannot say exactly where it lies (L1
    alone averages such detail away: the round trip kept 0.64 of the photos' detail energy)."""
    eps = 1e-4
    return (torch.log(local_detail_energy(rec) + eps)
            - torch.log(local_detail_energy(x) + eps)).abs().mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=100)
    ap.add_argument("--max-steps", type=int, default=10 ** 9)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--hires-every", type=int, default=3,
                    help="every k-th step trains on one 256-px crop instead; 0 = never")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--decay-start", type=int, default=2000)
    ap.add_argument("--decay-end", type=int, default=4000)
    ap.add_argument("--lr-min", type=float, default=1e-5)
    ap.add_argument("--chroma-weight", type=float, default=1.0)
    ap.add_argument("--disc-weight", type=float, default=0.05)
    ap.add_argument("--texture-weight", type=float, default=None,
                    help="weight of texture_loss (default: the checkpoint's, else 0)")
    ap.add_argument("--ema-decay", type=float, default=0.998)
    ap.add_argument("--save-minutes", type=float, default=5)
    ap.add_argument("--eval-minutes", type=float, default=15)
    ap.add_argument("--no-commit-ckpt", action="store_true")
    args = ap.parse_args()
    common.setup_threads()
    import ae_drift

    ae, meta = load_frozen_ae()
    ae.eval()                          # also keeps the EMA codebook from updating
    for k, p in ae.named_parameters():
        p.requires_grad_(k.startswith(TRAINED))
    params = [p for k, p in ae.named_parameters() if k.startswith(TRAINED)]
    opt = torch.optim.Adam(params, lr=args.lr, betas=(0.5, 0.9))
    disc = PatchDisc()
    dopt = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.9))
    step, seconds = 0, 0.0
    ck, src = common.load_resume("decoder")
    if ck is not None:
        if ck["fingerprint"] != meta["fingerprint"]:
            sys.exit(f"{src} was trained for another encoder/codebook ({ck['fingerprint']}, "
                     f"now {meta['fingerprint']}): move it away to start over")
        ae.load_state_dict(common.float_state(ck["decoder"]), strict=False)
        disc.load_state_dict(common.float_state(ck["disc"]))
        ema = common.float_state(ck["ema"])
        if "opt" in ck:
            opt.load_state_dict(ck["opt"])
            dopt.load_state_dict(ck["dopt"])
        step, seconds = ck["step"], ck.get("seconds", 0.0)
        texture_weight = ck.get("texture_weight", 0.0)
        common.log(f"resumed from {src} at step {step} ({seconds / 3600:.2f} h)")
    else:
        st1, st1src = common.load_resume("ae")
        if st1 is not None:
            disc.load_state_dict(common.float_state(st1["disc"]))
            common.log(f"discriminator from {st1src} (step {st1['step']})")
        ema = {k: v.detach().clone() for k, v in decoder_state(ae.state_dict()).items()}
    if ck is None:
        texture_weight = 0.0
    if args.texture_weight is not None:
        texture_weight = args.texture_weight
    ev = VQAutoencoder(**meta["ae_config"])   # the EMA decoder, for evaluation
    ev.load_state_dict(ae.state_dict())
    ev.eval()
    common.seed_all(step * 7919 + 41)
    rng = random.Random(step * 104729 + 11)
    n = sum(p.numel() for p in params)
    common.log(f"decoder {n / 1e6:.2f} M trained parameters; chroma weight "
               f"{args.chroma_weight}, disc weight {args.disc_weight}, texture weight {texture_weight}")
    photos = common.load_photos("train")
    crops = ae_drift.val_crops()
    lr_at = common.Lr(args.lr, warmup=50, decay_start=args.decay_start,
                      decay_end=args.decay_end, lr_min=args.lr_min)

    def evaluate():
        ev.load_state_dict(ema, strict=False)
        r = ae_drift.measure(ev, crops)["all"]
        common.log(f"val step {step} (EMA): PSNR {r['psnr']:.2f} dB, dE {r['dE']:.2f}, "
                   f"RGB error {r['err_rgb']}, 8x8 blocks {r['block8']:.2f}, "
                   f"saturated reds G {r['red_g']:+.2f}, texture {r['texture']:.3f}")

    def save():
        base = dict(step=step, seconds=seconds, texture_weight=texture_weight, **meta)
        common.atomic_save(dict(base, decoder=decoder_state(ae.state_dict()), ema=ema,
                                disc=disc.state_dict(), opt=opt.state_dict(),
                                dopt=dopt.state_dict()),
                           os.path.join(common.CACHE, "decoder.pt"))
        if not args.no_commit_ckpt:
            common.atomic_save(dict(base, decoder=common.half_state(decoder_state(
                ae.state_dict())), ema=common.half_state(ema),
                disc=common.half_state(disc.state_dict())),
                os.path.join(common.COMMITTED, "decoder.pt"))
        common.log(f"saved step {step}")

    if step == 0:
        evaluate()
    t0 = time.time()
    t_save = t_eval = t_last = time.time()
    acc = {}
    while step < args.max_steps and time.time() - t0 < args.minutes * 60:
        common.set_lr(opt, lr_at(step))
        if args.hires_every > 0 and step % args.hires_every == args.hires_every - 1:
            x = common.random_crops(photos, 1, 2 * args.size, rng)
        else:
            x = common.random_crops(photos, args.batch, args.size, rng)
        with torch.no_grad():
            z = ae.encode(x)
            zq = ae.quantize.embedding.weight[ae.quantize.indices(z)]
            zq = zq.reshape(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        rec = ae.decoder(ae.post_quant_conv(zq))
        l1 = (rec - x).abs().mean()
        lc = (F.avg_pool2d(rec, 4) - F.avg_pool2d(x, 4)).abs().mean()
        lg = grad_loss(rec, x)
        ls = 1 - ssim(rec, x)
        lch = chroma_loss(rec, x)
        lgan = -disc(rec).mean()
        ltex = texture_loss(rec, x)
        loss = (l1 + lc + 0.5 * lg + 0.25 * ls + args.chroma_weight * lch
                + args.disc_weight * lgan + texture_weight * ltex)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        common.set_lr(dopt, lr_at(step))
        dl = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(rec.detach())).mean()
        dopt.zero_grad(set_to_none=True)
        dl.backward()
        dopt.step()
        with torch.no_grad():
            d = min(args.ema_decay, (1 + step) / (10 + step))
            for k, v in decoder_state(ae.state_dict()).items():
                ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
        for k, v in (("l1", l1), ("colour", lc), ("chroma", lch), ("grad", lg), ("ssim", ls),
                     ("g", lgan), ("d", dl), ("texture", ltex)):
            acc[k] = acc.get(k, 0) + v.item()
        acc["n"] = acc.get("n", 0) + 1
        step += 1
        now = time.time()
        seconds += now - t_last
        t_last = now
        if step % 50 == 0:
            k = acc.pop("n")
            msg = " ".join(f"{a} {v / k:.4f}" for a, v in acc.items())
            common.log(f"step {step} {msg} lr {lr_at(step):.2e} "
                       f"({seconds / max(step, 1):.2f} s/step avg)")
            acc = {}
        if now - t_save > args.save_minutes * 60:
            save()
            t_save = now
        if now - t_eval > args.eval_minutes * 60:
            evaluate()
            t_eval = time.time()
            t_last = t_eval            # evaluation is not training time
    save()
    evaluate()


if __name__ == "__main__":
    main()
