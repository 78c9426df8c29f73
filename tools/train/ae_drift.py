#!/usr/bin/env python3
"""Colour drift of an autoencoder: decode(quantise(encode(x))) against x on validation crops.

  tools/in-env python3 tools/train/ae_drift.py [--model data/models/ldm-sr-builtin.safetensors]
                                               [--decoder tools/train/checkpoints/decoder.pt]

The autoencoder comes from an exported model (first_stage_model.*); --decoder replaces its
decoder (post_quant_conv + decoder.*) by the one of a train_decoder.py checkpoint (its EMA
weights). Crops: the 8 validation photos (never trained on), 8 random 128-px crops each (1-2x
scale, fixed seed) and each photo's central square at 256 px (as tools/eval). Prints, per
photo and over all: PSNR (8-bit), mean CIELAB dE (1976), the mean signed error per channel
(R, G, B, in 8-bit levels), the mean |error| of 8x8 block means (low-frequency colour), the
mean signed G error on saturated reds (R > 150, R - G > 80, R - B > 60) and the texture ratio
(detail energy of the round trip over the photo's, tools/eval's measure; mean over crops).
"""
import argparse
import json
import os
import random
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
from ldm_models import VQAutoencoder  # noqa: E402


def load_ae(model, decoder=None):
    """The frozen autoencoder of an exported model (fp32 of its fp16 numbers), optionally with
    the decoder of a train_decoder.py checkpoint."""
    from safetensors import safe_open
    with safe_open(model, "pt") as f:
        tensors = {k[len("first_stage_model."):]: f.get_tensor(k).float()
                   for k in f.keys() if k.startswith("first_stage_model.")}
    import yaml
    with open(os.path.splitext(model)[0] + ".yaml") as f:
        cfg = yaml.safe_load(f)
    p = cfg["model"]["params"]["first_stage_config"]["params"]
    dd = p["ddconfig"]
    ae = VQAutoencoder(ch=dd["ch"], ch_mult=dd["ch_mult"], num_res_blocks=dd["num_res_blocks"],
                       z_channels=dd["z_channels"], embed_dim=p["embed_dim"],
                       n_embed=p["n_embed"], mid_attention=dd["attn_type"] != "none")
    missing, unexpected = ae.load_state_dict(tensors, strict=False)
    assert not unexpected and all(k.startswith("quantize.") for k in missing), missing
    if decoder:
        ck = torch.load(decoder, map_location="cpu", weights_only=False)
        ae.load_state_dict(common.float_state(ck["ema"]), strict=False)
    ae.eval()
    for q in ae.parameters():
        q.requires_grad_(False)
    return ae


def val_crops(seed=4321, per_photo=8, size=128):
    """(name, uint8 N x H x W x 3) per validation photo."""
    import cv2
    photos = common.load_photos("val")
    _, rows = common.manifest("val")
    rng = random.Random(seed)
    out = []
    for r, a in zip(rows, photos):
        name = os.path.splitext(os.path.basename(r["path"]))[0]
        t = common.random_crops([a], per_photo, size, rng, 1.0, 2.0)
        small = ((t.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
        h, w = a.shape[:2]
        s = max(min(h, w) // 2, min(256, h, w))
        y, x = (h - s) // 2, (w - s) // 2
        big = cv2.resize(a[y:y + s, x:x + s], (256, 256), interpolation=cv2.INTER_AREA)
        out.append((name, small, big[None]))
    return out


def srgb_to_lab(u8):
    c = u8.astype(np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    e = 216 / 24389
    f = np.where(xyz > e, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], -1)


@torch.no_grad()
def roundtrip(ae, u8):
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1
    y = ae.decode(ae.encode(x)).clamp(-1, 1)
    return ((y.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)


def detail_energy(u8):
    """Mean squared detail of the grey picture (grey - GaussianBlur sigma 1.5): tools/eval's
    texture measure."""
    import cv2
    g = cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(((g - cv2.GaussianBlur(g, (0, 0), 1.5)) ** 2).mean())


def stats(x, y):
    """Sums over the pixels (to pool), for ground truth x and output y (uint8 N x H x W x 3)."""
    d = y.astype(np.float64) - x.astype(np.float64)
    n, h, w, _ = x.shape
    de = np.sqrt(((srgb_to_lab(y) - srgb_to_lab(x)) ** 2).sum(-1))
    b = 8
    bl = d[:, :h // b * b, :w // b * b].reshape(n, h // b, b, w // b, b, 3).mean((2, 4))
    xi = x.astype(int)
    red = (xi[..., 0] > 150) & (xi[..., 0] - xi[..., 1] > 80) & (xi[..., 0] - xi[..., 2] > 60)
    return dict(px=n * h * w, sq=(d ** 2).sum(), de=de.sum(), ch=d.reshape(-1, 3).sum(0),
                blk=np.abs(bl).mean(-1).sum() * b * b, red=int(red.sum()),
                red_g=d[..., 1][red].sum(), psnr_sum=sum(
                    10 * np.log10(255 ** 2 / max((d[i] ** 2).mean(), 1e-10)) for i in range(n)),
                texture_sum=sum(detail_energy(y[i]) / max(detail_energy(x[i]), 1e-12)
                                for i in range(n)),
                n=n)


def merge(ss):
    out = {}
    for s in ss:
        for k, v in s.items():
            out[k] = out.get(k, 0) + v
    return out


def summary(s):
    ch = s["ch"] / s["px"]
    return dict(psnr=10 * np.log10(255 ** 2 / (s["sq"] / s["px"] / 3)),
                psnr_mean=s["psnr_sum"] / s["n"], dE=s["de"] / s["px"],
                err_rgb=[round(float(v), 2) for v in ch], block8=s["blk"] / s["px"],
                texture=s["texture_sum"] / s["n"],
                red_px=s["red"], red_g=(s["red_g"] / s["red"]) if s["red"] else float("nan"))


def fmt(name, r):
    return (f"{name:18s} {r['psnr']:6.2f} {r['psnr_mean']:6.2f} {r['dE']:6.2f} "
            f"{r['err_rgb'][0]:+6.2f} {r['err_rgb'][1]:+6.2f} {r['err_rgb'][2]:+6.2f} "
            f"{r['block8']:6.2f} {r['red_g']:+7.2f} ({r['red_px']}) {r['texture']:6.3f}")


def measure(ae, crops):
    res, small_all, big_all = {}, [], []
    for name, small, big in crops:
        ss = stats(small, roundtrip(ae, small))
        sb = stats(big, roundtrip(ae, big))
        small_all.append(ss)
        big_all.append(sb)
        res[name] = summary(merge([ss, sb]))
    res["all 128-px crops"] = summary(merge(small_all))
    res["all 256-px centres"] = summary(merge(big_all))
    res["all"] = summary(merge(small_all + big_all))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(common.TOP, "data", "models",
                                                    "ldm-inpaint-builtin.safetensors"))
    ap.add_argument("--decoder", help="a train_decoder.py checkpoint (its EMA decoder)")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    common.setup_threads()
    ae = load_ae(args.model, args.decoder)
    res = measure(ae, val_crops())
    print(f"{args.model}" + (f" + decoder {args.decoder}" if args.decoder else ""))
    print("photo / set          PSNR  mean   dE     R-err  G-err  B-err  blk8   red G-err (px) texture")
    for k, r in res.items():
        print(fmt(k, r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=float)


if __name__ == "__main__":
    main()
