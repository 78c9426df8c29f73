#!/usr/bin/env python3
"""Check that the C engine and PyTorch (sample.py) give the same pictures for exported models.

  tools/in-env python3 tools/train/check_engine.py --ldm build-p3/tools/ldm [--work DIR]

For each of data/models/ldm-inpaint-builtin and ldm-sr-builtin (when present): a 128x128 crop of
a validation photo (and a box+stroke mask, or its 4x bicubic reduction for SR), the same x_T,
DDIM 20 steps eta 0, in both; prints the per-pixel differences.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402


def compare(a, b):
    x = np.asarray(Image.open(a)).astype(int)
    y = np.asarray(Image.open(b)).astype(int)
    d = np.abs(x - y)
    return d.max(), d.mean(), (d > 2).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ldm", required=True)
    ap.add_argument("--work", default="build-p3/check-engine")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--models", default=os.path.join(common.TOP, "data", "models"),
                    help="the folder of the exported models (default data/models)")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    w = args.work
    root, rows = common.manifest("val")
    im = Image.open(os.path.join(root, rows[0]["path"])).convert("RGB")
    s = min(im.size)
    im = im.crop((0, 0, s, s)).resize((128, 128), Image.LANCZOS)
    im.save(f"{w}/img.png")
    m = np.zeros((128, 128), np.uint8)
    m[40:88, 28:92] = 255
    m[100:108, 10:120] = 255
    Image.fromarray(m).save(f"{w}/mask.png")
    im.resize((32, 32), Image.BICUBIC).save(f"{w}/lr.png")
    ok = True
    models = args.models
    for name, mode in (("ldm-inpaint-builtin", "inpaint"), ("ldm-sr-builtin", "upscale")):
        path = os.path.join(models, name + ".safetensors")
        if not os.path.exists(path):
            continue
        img = f"{w}/img.png" if mode == "inpaint" else f"{w}/lr.png"
        extra = ["--mask", f"{w}/mask.png"] if mode == "inpaint" else []
        subprocess.run([sys.executable, os.path.join(HERE, "sample.py"), mode, path,
                        "--image", img, "--output", f"{w}/{name}-torch.png",
                        "--x-T", f"{w}/{name}-xT.safetensors", "--steps", str(args.steps)]
                       + extra, check=True)
        # --authors: none of ldm's aids (keep-known, match-colors, color-fix), as sample.py
        subprocess.run([args.ldm, mode, "--model", path, "--image", img, "--authors",
                        "--output", f"{w}/{name}-engine.png", "--steps", str(args.steps),
                        "--eta", "0", "--x-T", f"{w}/{name}-xT.safetensors:x_T", "-q"]
                       + extra, check=True)
        mx, mean, frac = compare(f"{w}/{name}-torch.png", f"{w}/{name}-engine.png")
        print(f"{name}: engine vs PyTorch: max {mx}, mean {mean:.3f} levels, "
              f"{100 * frac:.2f} % of values differ by more than 2")
        ok &= mx <= 8 and frac < 0.01
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
