#!/usr/bin/env python3
"""Run an exported built-in model in PyTorch (for checks against the C engine).

  tools/in-env python3 tools/train/sample.py inpaint data/models/NAME.safetensors \
      --image IMG --mask MASK --output OUT.png --x-T xT.safetensors [--steps 20]
  tools/in-env python3 tools/train/sample.py upscale data/models/NAME.safetensors \
      --image LR --output OUT.png --x-T xT.safetensors [--steps 20]

Writes the initial latent to --x-T (tensor "x_T") so `ldm ... --x-T FILE:x_T` starts from the
same noise; DDIM eta 0.
"""
import argparse
import os
import sys

import numpy as np
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ldm_models import UNet, VQAutoencoder, ddim_sample, linear_alphas_cumprod  # noqa: E402


def load_model(path):
    cfg = yaml.safe_load(open(os.path.splitext(path)[0] + ".yaml"))["model"]["params"]
    sd = load_file(path)
    u = cfg["unet_config"]["params"]
    unet = UNet(in_channels=u["in_channels"], out_channels=u["out_channels"],
                model_channels=u["model_channels"], channel_mult=u["channel_mult"],
                num_res_blocks=u["num_res_blocks"],
                attention_resolutions=u["attention_resolutions"],
                num_heads=u.get("num_heads", -1),
                num_head_channels=u.get("num_head_channels", -1))
    a = cfg["first_stage_config"]["params"]
    dd = a["ddconfig"]
    ae = VQAutoencoder(ch=dd["ch"], ch_mult=dd["ch_mult"], num_res_blocks=dd["num_res_blocks"],
                       z_channels=dd["z_channels"], embed_dim=a["embed_dim"],
                       n_embed=a["n_embed"], mid_attention=dd.get("attn_type") != "none",
                       ema_codebook=False)
    p = "model.diffusion_model."
    unet.load_state_dict({k[len(p):]: v.float() for k, v in sd.items() if k.startswith(p)})
    p = "first_stage_model."
    ae.load_state_dict({k[len(p):]: v.float() for k, v in sd.items() if k.startswith(p)})
    acp = linear_alphas_cumprod(cfg["linear_start"], cfg["linear_end"], cfg["timesteps"])
    unet.parameterization = cfg.get("parameterization", "eps")
    return unet.eval(), ae.eval(), acp


def to_tensor(img):
    return torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)[None]


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["inpaint", "upscale"])
    ap.add_argument("model")
    ap.add_argument("--image", required=True)
    ap.add_argument("--mask")
    ap.add_argument("--output", required=True)
    ap.add_argument("--x-T", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    unet, ae, acp = load_model(args.model)
    img = to_tensor(Image.open(args.image).convert("RGB"))
    g = torch.Generator().manual_seed(args.seed)
    if args.mode == "inpaint":
        m = torch.from_numpy(np.asarray(Image.open(args.mask).convert("L"), np.float32) / 255.0)
        m = (m >= 0.5).float()[None, None]
        masked = (1 - m) * img
        c = ae.encode(masked * 2 - 1)
        ml = m[:, :, ::4, ::4] * 2 - 1
        cond = torch.cat([c, ml], 1)
    else:
        cond = img * 2 - 1
    b, _, h, w = cond.shape
    xT = torch.randn(1, 3, h, w, generator=g)
    save_file({"x_T": xT.contiguous()}, args.x_T)
    z = ddim_sample(unet, cond, acp, steps=args.steps, eta=0.0, x=xT.clone(),
                    parameterization=unet.parameterization)
    x = ae.decode(z, quantize=True)
    if args.mode == "inpaint":
        out = (1 - m) * img + m * ((x + 1) / 2).clamp(0, 1)
        arr = (out[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        # The engine keeps the pixels outside the mask exactly.
        keep = (m[0, 0].numpy() < 0.5)
        src = np.asarray(Image.open(args.image).convert("RGB"))
        arr[keep] = src[keep]
    else:
        arr = ((x.clamp(-1, 1) + 1) * 127.5)[0].permute(1, 2, 0).numpy().astype(np.uint8)
    Image.fromarray(arr).save(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
