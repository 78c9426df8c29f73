#!/usr/bin/env python3
"""Quality evaluation of gimp-ldm's built-in models against classical baselines.

  tools/in-env python3 tools/eval/eval.py --ldm build-eval/tools/ldm [--out docs/eval] [--quick]
      [--photos val|unseen] [--count N]
  tools/in-env python3 tools/eval/eval.py --self-test

Inpainting: every photo of the set (--photos: validation or unseen; 256x256 crop) x a fixed set
of 4 hole shapes (10-30 % of the crop), filled by the built-in model (the C engine, `ldm
inpaint`), OpenCV's Telea and Navier-Stokes inpainting and a mean-colour fill; inside the hole
PSNR, SSIM, the ratio of high-frequency energy inside the hole to around it, the 4-px (latent
grid) blockiness and the share of alien colours (dE > 20 from every colour around the hole).
Super-resolution: each crop reduced 4x (plain bicubic, and blurred then bicubic), brought back
by the built-in model (`ldm upscale`), bicubic and Lanczos; PSNR, SSIM, the high-frequency
energy ratio to the original and the shift of the mean Lab colour.
Goals (issue 12) with PASS/FAIL. Timing: wall time of each engine call (model loading included).

Writes report.md, results.json, inpaint-sheet.png, upscale-sheet.png and upscale-plain-sheet.png
into --out. See tools/eval/README.md.
"""
import argparse
import csv
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time

import cv2
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tools", "train"))
import common  # noqa: E402  (tools/train/common.py: the validation photos)

UNSEEN_MANIFEST = os.path.join(HERE, "unseen-MANIFEST.tsv")  # see tools/eval/fetch-unseen
UNSEEN_DEFAULT = "/var/cache/gimp-ldm/unseen-photos"
PHOTO_SETS = {"val": "validation photos (used for tuning)",
              "unseen": "unseen photos (tools/eval/unseen-MANIFEST.tsv)"}
SIZE = 256             # evaluation crop side
BIG = 512              # side of the single large inpainting timing run
SR_FACTOR = 4
SR_BLUR_SIGMA = 0.8    # Gaussian blur before the 4x bicubic reduction
SSIM_SIGMA = 1.5       # SSIM window: Gaussian 11x11
HIGHPASS_SIGMA = 1.5   # high-pass = grey - GaussianBlur(grey, sigma)
INNER_ERODE = 3        # texture: hole eroded by this many pixels ...
RING_INNER = 3         # ... against the ring between the hole dilated by RING_INNER
RING_OUTER = 16        # and by RING_OUTER pixels (also the ring of the mean-colour fill)
INPAINT_RADIUS = 3     # cv2.inpaint radius
TILE = 128             # contact sheet tile side
HOLE_GREY = 128
LATENT_BLOCK = 4       # the autoencoder's downsampling: one latent pixel = 4x4 image pixels
BLOCK_EPS = 0.01       # grey levels added to both means of the blockiness ratio (flat = 1.0)
ALIEN_DE = 20.0        # alien colour: farther than this (CIE76 dE) from every ring colour
LAB_CELL = 2.0         # ring colours deduplicated on a grid of this many Lab units
# The goals (issue 12)
GOAL_PSNR_VS_TELEA = 0.5     # inpainting PSNR >= Telea - this (dB)
GOAL_TEXTURE = (0.5, 1.6)    # inpainting texture ratio within
GOAL_BLOCK_OVER_TRUTH = 0.1  # inpainting blockiness <= the photo's own + this
GOAL_ALIEN = 0.02            # alien share <= max(this, GOAL_ALIEN_TRUTH x the photo's own)
GOAL_ALIEN_TRUTH = 2.0
GOAL_SR_PSNR_VS_BICUBIC = 1.0  # upscaling PSNR >= bicubic - this (dB)
GOAL_SR_TEXTURE = 0.6          # upscaling texture ratio >= this
GOAL_SR_SHIFT = 3.0            # upscaling mean colour shift (dE) <= this

INPAINT_METHODS = ["model", "telea", "ns", "mean"]
INPAINT_LABELS = {"model": "built-in model", "telea": "OpenCV Telea", "ns": "OpenCV Navier-Stokes",
                  "mean": "mean-colour fill", "truth": "ground truth (reference)"}
SR_METHODS = ["model", "bicubic", "lanczos"]
SR_LABELS = {"model": "built-in model", "bicubic": "bicubic (cv2.INTER_CUBIC)",
             "lanczos": "Lanczos (cv2.INTER_LANCZOS4)"}
# The two kinds of low-resolution input (see lowres()); "degraded" is the one of earlier reports
LR_KINDS = ["plain", "degraded"]
LR_LABELS = {"plain": "plain bicubic-downsampled input",
             "degraded": f"docs/eval's degradation (blur sigma {SR_BLUR_SIGMA} + cv2 bicubic)"}
INPAINT_METRICS = ("psnr", "ssim", "texture_ratio", "blockiness", "alien_share")
SR_METRICS = ("psnr", "ssim", "texture_ratio", "colour_shift")


# --------------------------------------------------------------------------------------------
# Data: photos, crops, masks
# --------------------------------------------------------------------------------------------

def read_rgb(path):
    """An image file as an RGB uint8 array."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_rgb(path, rgb):
    """Writes an RGB uint8 array as PNG."""
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise RuntimeError(f"cannot write {path}")


def central_square(rgb, side, size):
    """The central side x side square of an image, resized to size x size (area filter)."""
    h, w = rgb.shape[:2]
    y, x = (h - side) // 2, (w - side) // 2
    crop = rgb[y:y + side, x:x + side]
    if side != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop)


def photo_set(which):
    """(folder, manifest rows) of a photo set: `val`, the validation photos of tools/train
    (used for tuning), or `unseen`, those of tools/eval/unseen-MANIFEST.tsv (never used for
    training or tuning), which tools/eval/fetch-unseen puts into $LDM_UNSEEN_PHOTOS."""
    if which == "val":
        return common.manifest("val")
    root = os.environ.get("LDM_UNSEEN_PHOTOS", UNSEEN_DEFAULT)
    with open(UNSEEN_MANIFEST, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    absent = [r["path"] for r in rows if not os.path.isfile(os.path.join(root, r["path"]))]
    if absent:
        sys.exit(f"{root}: {len(absent)} of the {len(rows)} unseen photos absent ({absent[0]}, "
                 "...): run tools/in-env python3 tools/eval/fetch-unseen")
    return root, rows


def load_photos(which, count=None):
    """The first `count` (default all) photos of a set (photo_set) as a list of (name, full
    RGB array)."""
    root, rows = photo_set(which)
    photos = []
    for row in rows[:count]:
        name = os.path.splitext(os.path.basename(row["path"]))[0]
        photos.append((name, read_rgb(os.path.join(root, row["path"]))))
    return photos


def eval_crop(rgb):
    """The evaluation crop: the central square of side min(h, w) // 2 (at least SIZE when the
    photo allows, so small photos are not enlarged), resized to SIZE."""
    short = min(rgb.shape[:2])
    return central_square(rgb, min(short, max(SIZE, short // 2)), SIZE)


def make_masks(size=SIZE):
    """The fixed hole shapes, as uint8 masks (255 = hole) of size x size, each covering
    10-30 % of the picture and at least RING_OUTER + 4 pixels away from the border.
    Coordinates are given for 256 and scaled with size."""
    k = size / 256.0

    def p(*xy):
        return tuple(int(round(v * k)) for v in xy)

    masks = {}
    m = np.zeros((size, size), np.uint8)
    cv2.rectangle(m, p(70, 84), p(180, 176), 255, thickness=-1)
    masks["box"] = m
    m = np.zeros((size, size), np.uint8)
    cv2.ellipse(m, p(128, 124), p(80, 46), 30, 0, 360, 255, thickness=-1)
    masks["ellipse"] = m
    m = np.zeros((size, size), np.uint8)
    pts = np.array([p(44, 64), p(110, 124), p(84, 204), p(196, 176), p(214, 60)], np.int32)
    cv2.polylines(m, [pts], False, 255, thickness=int(round(24 * k)))
    masks["stroke"] = m
    m = np.zeros((size, size), np.uint8)
    for cx, cy, r in ((108, 118, 44), (156, 138, 36), (92, 168, 26), (150, 84, 24), (188, 164, 20)):
        cv2.circle(m, p(cx, cy), int(round(r * k)), 255, thickness=-1)
    masks["blob"] = m
    margin = int((RING_OUTER + 4) * k)
    for name, m in masks.items():
        frac = (m > 0).mean()
        assert 0.10 <= frac <= 0.30, f"mask {name} covers {100 * frac:.1f} %"
        assert not m[:margin].any() and not m[-margin:].any() \
            and not m[:, :margin].any() and not m[:, -margin:].any(), f"mask {name} at border"
    return masks


def disk(radius):
    """An elliptical structuring element of the given radius."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def dilate(mask, radius):
    """A boolean mask grown by radius pixels."""
    return cv2.dilate(mask.astype(np.uint8), disk(radius)) > 0


def erode(mask, radius):
    """A boolean mask shrunk by radius pixels."""
    return cv2.erode(mask.astype(np.uint8), disk(radius)) > 0


def ring(hole, inner, outer):
    """The pixels within `outer` pixels of the hole but not within `inner` (inner 0 = the
    hole itself excluded)."""
    return dilate(hole, outer) & ~(dilate(hole, inner) if inner else hole)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

def psnr(out, ref, region=None):
    """PSNR in dB (0-255 range) of the MSE over the region's pixels (all if None), 3 channels.
    The MSE is floored at 1e-10 so identical pictures give a finite number."""
    d = out.astype(np.float64) - ref.astype(np.float64)
    if region is not None:
        d = d[region]
    mse = max(float(np.mean(d * d)), 1e-10)
    return 10.0 * np.log10(255.0 ** 2 / mse)


def ssim_map(out, ref):
    """The SSIM map (Gaussian 11x11 window, sigma 1.5, C1 = (0.01 * 255)^2,
    C2 = (0.03 * 255)^2) of each channel on 0-255 floats, averaged over the channels."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(a):
        return cv2.GaussianBlur(a, (11, 11), SSIM_SIGMA)

    maps = []
    for c in range(out.shape[2]):
        x = out[..., c].astype(np.float64)
        y = ref[..., c].astype(np.float64)
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        maps.append(((2 * mx * my + c1) * (2 * cxy + c2))
                    / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return np.mean(maps, axis=0)


def ssim(out, ref, region=None):
    """Mean of the SSIM map over the region (all pixels if None)."""
    m = ssim_map(out, ref)
    return float(m[region].mean() if region is not None else m.mean())


def highpass_energy(rgb):
    """Per-pixel squared high-pass of the grey image: (grey - GaussianBlur(grey, 1.5))^2."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)
    hp = grey - cv2.GaussianBlur(grey, (0, 0), HIGHPASS_SIGMA)
    return hp * hp


def texture_ratio(rgb, hole):
    """Mean high-pass energy inside the hole (eroded by INNER_ERODE) over the same around it
    (ring between the hole dilated by RING_INNER and by RING_OUTER): 1.0 = as rich a texture
    as the surroundings, 0 = flat."""
    e = highpass_energy(rgb)
    inside = e[erode(hole, INNER_ERODE)].mean()
    around = e[ring(hole, RING_INNER, RING_OUTER)].mean()
    return float(inside / max(around, 1e-12))


def energy_ratio(out, ref):
    """Mean high-pass energy of the whole output over that of the reference."""
    return float(highpass_energy(out).mean() / max(highpass_energy(ref).mean(), 1e-12))


def grey_float(rgb):
    """Rec. 601 luma (0.299 R + 0.587 G + 0.114 B) as float64, unrounded."""
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def blockiness(rgb, hole, block=LATENT_BLOCK):
    """Visibility of the latent grid inside the hole: the mean |grey step| between
    horizontally or vertically adjacent pixels across a block border (x = block*k - 1 and
    block*k, same for y; the grid starts at pixel 0 since the crop is the whole engine input)
    over the mean |step| between the other adjacent pairs; only pairs with both pixels in the
    hole. BLOCK_EPS is added to both means, so a flat fill gives 1.0. About 1 for a natural
    picture, large for a picture made of flat blocks."""
    g = grey_float(rgb)
    dx = np.abs(g[:, 1:] - g[:, :-1])
    dy = np.abs(g[1:, :] - g[:-1, :])
    inx = hole[:, 1:] & hole[:, :-1]
    iny = hole[1:, :] & hole[:-1, :]
    # pair (j, j + 1) crosses a border when j + 1 is a multiple of block
    bx = np.zeros(dx.shape, bool)
    bx[:, block - 1::block] = True
    by = np.zeros(dy.shape, bool)
    by[block - 1::block, :] = True
    across = np.concatenate([dx[inx & bx], dy[iny & by]])
    other = np.concatenate([dx[inx & ~bx], dy[iny & ~by]])
    if not len(across) or not len(other):
        return 1.0
    return float((across.mean() + BLOCK_EPS) / (other.mean() + BLOCK_EPS))


_SRGB_LINEAR = np.where(np.arange(256) / 255.0 <= 0.04045, np.arange(256) / 255.0 / 12.92,
                        ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4)
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],   # sRGB primaries, D65
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb):
    """uint8 sRGB (any shape ... x 3) -> CIELAB (D65 white), float64 ... x 3: the sRGB
    transfer curve, the sRGB -> XYZ matrix, then CIE L*a*b* with the CIE 1976 cube root and
    its linear segment below (6/29)^3."""
    lin = _SRGB_LINEAR[np.asarray(rgb, np.uint8)]
    t = (lin @ _RGB_TO_XYZ.T) / _D65_WHITE
    d = 6.0 / 29.0
    f = np.where(t > d ** 3, np.cbrt(t), t / (3 * d * d) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                     200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def min_distance(points, refs, chunk):
    """For each row of points, the Euclidean distance to the nearest row of refs (chunked
    |a|^2 + |b|^2 - 2 a.b)."""
    rr = (refs * refs).sum(1)
    out = np.empty(len(points), points.dtype)
    for i in range(0, len(points), chunk):
        a = points[i:i + chunk]
        d2 = (a * a).sum(1)[:, None] + rr[None, :] - 2.0 * (a @ refs.T)
        out[i:i + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0))
    return out


def alien_share(out, ref, hole, chunk=2048):
    """The share of the hole's pixels of `out` whose CIELAB colour is farther than ALIEN_DE
    (CIE76) from every colour of the RING_OUTER-px ring around the hole in `ref` (the input's
    known pixels). Exact, made fast: the hole's colours deduplicated by RGB value; a first pass
    against the ring's colours merged on a LAB_CELL-unit Lab grid (each cell's centre is within
    h = LAB_CELL * sqrt(3) / 2 of its members, so the true distance is within h of that pass's),
    then the colours within h of the threshold measured against every distinct ring colour."""
    ring_lab = srgb_to_lab(np.unique(ref[ring(hole, 0, RING_OUTER)], axis=0))
    cells = np.unique(np.round(ring_lab / LAB_CELL).astype(np.int32), axis=0) * LAB_CELL
    colours, counts = np.unique(out[hole], axis=0, return_counts=True)
    lab = srgb_to_lab(colours)
    d = min_distance(lab.astype(np.float32), cells.astype(np.float32), chunk).astype(np.float64)
    h = LAB_CELL * np.sqrt(3) / 2 + 0.01          # + float32 rounding margin
    near = np.abs(d - ALIEN_DE) <= h
    if near.any():
        d[near] = min_distance(lab[near], ring_lab, chunk)
    return float(counts[d > ALIEN_DE].sum() / counts.sum())


def colour_shift(out, ref):
    """CIE76 distance between the mean CIELAB colour of out and that of ref."""
    return float(np.linalg.norm(srgb_to_lab(out).reshape(-1, 3).mean(0)
                                - srgb_to_lab(ref).reshape(-1, 3).mean(0)))


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------

def run_ldm(cmd, stderr_out=None):
    """Runs one engine command; returns its wall time in seconds (its stderr appended to the
    list stderr_out when one is given)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"engine failed ({r.returncode}): {shlex.join(cmd)}\n{r.stderr}{r.stdout}")
    if stderr_out is not None:
        stderr_out.append(r.stderr)
    return dt


def steps_run(stderr):
    """The step count of an ldm run, from its --timings line ("..., 10 steps 4.2 s ...")."""
    counts = re.findall(r"ldm: timings: .*?, (\d+) steps ", stderr)
    if not counts:
        sys.exit(f"eval: no --timings line in ldm's output:\n{stderr}")
    return int(counts[-1])


def model_inpaint(args, rgb, mask, seed, stem):
    """The built-in model's fill (via `ldm inpaint`); returns (RGB output, seconds)."""
    img, msk, out = stem + "-in.png", stem + "-mask.png", stem + "-model.png"
    write_rgb(img, rgb)
    cv2.imwrite(msk, mask)
    dt = run_ldm([args.ldm, "inpaint", "--model", args.inpaint_model, "--image", img,
                  "--mask", msk, "--output", out, "--steps", str(args.steps),
                  "--seed", str(seed), "--sampler", args.sampler, "--eta", str(args.eta), "-q",
                  "--keep-known" if args.keep_known else "--no-keep-known",
                  "--match-colors" if args.match_colors else "--no-match-colors",
                  "--init", args.init, "--strength", str(args.strength),
                  "--precision", args.precision,
                  # the whole crop at full size with a hard mask, as the figures were measured
                  "--context-padding", "16384", "--working-size", "0", "--mask-grow", "0",
                  "--mask-blur", "0"])
    return read_rgb(out), dt


def model_upscale(args, lr, seed, stem):
    """The built-in model's 4x upscaling (via `ldm upscale`); returns (RGB output, seconds)."""
    img, out = stem + "-lr.png", stem + "-model.png"
    write_rgb(img, lr)
    # without --sr-steps, ldm's own default (core's ldm_sample_params_init), read back from
    # its --timings line for the report
    steps = [] if args.sr_steps is None else ["--steps", str(args.sr_steps)]
    stderr = []
    dt = run_ldm([args.ldm, "upscale", "--model", args.sr_model, "--image", img,
                  "--output", out, "--seed", str(seed),
                  "--sampler", args.sr_sampler, "--eta", str(args.sr_eta), "-q", "--timings",
                  "--init", args.sr_init, "--strength", str(args.sr_strength),
                  "--precision", args.precision,
                  "--color-fix" if args.color_fix else "--no-color-fix"] + steps, stderr)
    args.sr_steps_run = steps_run(stderr[0])
    return read_rgb(out), dt


def cv_inpaint(rgb, mask, flag):
    """OpenCV inpainting (cv2.INPAINT_TELEA or cv2.INPAINT_NS) on the BGR picture."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(cv2.inpaint(bgr, mask, INPAINT_RADIUS, flag), cv2.COLOR_BGR2RGB)


def mean_fill(rgb, mask):
    """The hole filled with the mean colour of the pixels within RING_OUTER pixels of it."""
    hole = mask > 0
    out = rgb.copy()
    out[hole] = np.round(rgb[ring(hole, 0, RING_OUTER)].mean(axis=0)).astype(np.uint8)
    return out


def lowres(hr, kind):
    """The low-resolution input. "degraded" (docs/eval's degradation, as in earlier reports):
    Gaussian blur (sigma SR_BLUR_SIGMA), then a 4x reduction with cv2.INTER_CUBIC. "plain":
    a plain bicubic 4x reduction, antialiased (PIL's BICUBIC, the kernel widened 4x, as MATLAB's
    imresize and the SR benchmarks' "bicubic" LR; also the training degradation without its
    random blur and noise)."""
    s = hr.shape[0] // SR_FACTOR
    if kind == "plain":
        return np.asarray(Image.fromarray(hr).resize((s, s), Image.BICUBIC))
    assert kind == "degraded", kind
    return cv2.resize(cv2.GaussianBlur(hr, (0, 0), SR_BLUR_SIGMA), (s, s),
                      interpolation=cv2.INTER_CUBIC)


# --------------------------------------------------------------------------------------------
# Evaluations
# --------------------------------------------------------------------------------------------

def evaluate_inpainting(args, photos, masks):
    """Every photo x every mask with every method. Returns (cases, images) where cases is a
    list of per-case metric dicts and images maps (photo, mask) to the outputs by method."""
    work = os.path.join(args.work, "inpaint")
    os.makedirs(work, exist_ok=True)
    cases, images = [], {}
    n = len(photos) * len(masks)
    for pi, (pname, full) in enumerate(photos):
        gt = eval_crop(full)
        for mi, (mname, mask) in enumerate(masks.items()):
            idx = pi * len(masks) + mi
            seed = args.seed + idx
            hole = mask > 0
            model, dt = model_inpaint(args, gt, mask, seed, os.path.join(work, f"{pname}-{mname}"))
            outs = {"model": model,
                    "telea": cv_inpaint(gt, mask, cv2.INPAINT_TELEA),
                    "ns": cv_inpaint(gt, mask, cv2.INPAINT_NS),
                    "mean": mean_fill(gt, mask)}
            case = {"photo": pname, "mask": mname, "hole_fraction": float(hole.mean()),
                    "seed": seed, "model_seconds": dt,
                    "truth_texture_ratio": texture_ratio(gt, hole),
                    "truth_blockiness": blockiness(gt, hole),
                    "truth_alien_share": alien_share(gt, gt, hole)}
            for meth, out in outs.items():
                case[meth] = {"psnr": psnr(out, gt, hole), "ssim": ssim(out, gt, hole),
                              "texture_ratio": texture_ratio(out, hole),
                              "blockiness": blockiness(out, hole),
                              "alien_share": alien_share(out, gt, hole)}
            cases.append(case)
            images[(pname, mname)] = dict(outs, truth=gt)
            print(f"inpaint {idx + 1}/{n} {pname} {mname}: " + ", ".join(
                f"{m} {case[m]['psnr']:.2f} dB" for m in INPAINT_METHODS) + f" ({dt:.1f} s)",
                flush=True)
    return cases, images


def evaluate_upscaling(args, photos, kind):
    """Every photo reduced (lowres(hr, kind)) and brought back by every method. Returns
    (cases, images)."""
    work = os.path.join(args.work, "upscale-" + kind)
    os.makedirs(work, exist_ok=True)
    cases, images = [], {}
    for pi, (pname, full) in enumerate(photos):
        hr = eval_crop(full)
        lr = lowres(hr, kind)
        seed = args.seed + pi
        model, dt = model_upscale(args, lr, seed, os.path.join(work, pname))
        outs = {"model": model,
                "bicubic": cv2.resize(lr, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC),
                "lanczos": cv2.resize(lr, (SIZE, SIZE), interpolation=cv2.INTER_LANCZOS4)}
        case = {"photo": pname, "lr": kind, "seed": seed, "model_seconds": dt}
        for meth, out in outs.items():
            case[meth] = {"psnr": psnr(out, hr), "ssim": ssim(out, hr),
                          "texture_ratio": energy_ratio(out, hr),
                          "colour_shift": colour_shift(out, hr)}
        cases.append(case)
        images[pname] = dict(outs, lr=lr, truth=hr)
        print(f"upscale ({kind}) {pi + 1}/{len(photos)} {pname}: " + ", ".join(
            f"{m} {case[m]['psnr']:.2f} dB dE {case[m]['colour_shift']:.2f}"
            for m in SR_METHODS) + f" ({dt:.1f} s)", flush=True)
    return cases, images


def time_big_inpaint(args, photos):
    """One BIG x BIG inpainting (box mask) of the first photo with a side of at least BIG (else
    the first photo, enlarged); returns (photo name, seconds)."""
    name, full = next(((n, p) for n, p in photos if min(p.shape[:2]) >= BIG), photos[0])
    rgb = central_square(full, min(min(full.shape[:2]), BIG), BIG)
    mask = make_masks(BIG)["box"]
    work = os.path.join(args.work, "timing")
    os.makedirs(work, exist_ok=True)
    _, dt = model_inpaint(args, rgb, mask, args.seed, os.path.join(work, f"{name}-{BIG}"))
    print(f"inpaint {BIG}x{BIG} {name}: {dt:.1f} s", flush=True)
    return name, dt


def mean_metrics(cases, methods, metrics, select=lambda c: True):
    """Mean of each metric of each method over the selected cases."""
    chosen = [c for c in cases if select(c)]
    return {m: {k: float(np.mean([c[m][k] for c in chosen])) for k in metrics}
            for m in methods}


def truth_means(cases, select=lambda c: True):
    """Mean of the ground truth's own texture ratio, blockiness and alien share."""
    chosen = [c for c in cases if select(c)]
    return {k: float(np.mean([c["truth_" + k] for c in chosen]))
            for k in ("texture_ratio", "blockiness", "alien_share")}


def goal_rows(inp_mean, inp_truth, sr_means):
    """The issue's goals: a list of dicts (task, goal, value, bound, passed) from the mean
    figures (sr_means: LR kind -> mean_metrics of the upscaling)."""
    m, t = inp_mean["model"], inp_truth
    lo, hi = GOAL_TEXTURE
    alien_bound = max(GOAL_ALIEN, GOAL_ALIEN_TRUTH * t["alien_share"])
    rows = [
        {"task": "inpainting", "goal": f"PSNR in the hole >= Telea - {GOAL_PSNR_VS_TELEA} dB",
         "value": f"{m['psnr']:.2f} dB",
         "bound": f">= {inp_mean['telea']['psnr'] - GOAL_PSNR_VS_TELEA:.2f} dB",
         "passed": m["psnr"] >= inp_mean["telea"]["psnr"] - GOAL_PSNR_VS_TELEA},
        {"task": "inpainting", "goal": f"texture ratio in {lo}..{hi}",
         "value": f"{m['texture_ratio']:.3f}", "bound": f"{lo}..{hi}",
         "passed": lo <= m["texture_ratio"] <= hi},
        {"task": "inpainting",
         "goal": f"4-px blockiness <= ground truth's + {GOAL_BLOCK_OVER_TRUTH}",
         "value": f"{m['blockiness']:.3f}",
         "bound": f"<= {t['blockiness'] + GOAL_BLOCK_OVER_TRUTH:.3f}",
         "passed": m["blockiness"] <= t["blockiness"] + GOAL_BLOCK_OVER_TRUTH},
        {"task": "inpainting",
         "goal": f"alien colours (dE > {ALIEN_DE:.0f} from the ring) <= {100 * GOAL_ALIEN:.0f} % "
                 f"or <= {GOAL_ALIEN_TRUTH:.0f}x ground truth's",
         "value": f"{100 * m['alien_share']:.2f} %", "bound": f"<= {100 * alien_bound:.2f} %",
         "passed": m["alien_share"] <= alien_bound}]
    for kind in LR_KINDS:
        s = sr_means[kind]
        rows += [
            {"task": f"upscaling, {kind} LR",
             "goal": f"PSNR >= bicubic - {GOAL_SR_PSNR_VS_BICUBIC:g} dB",
             "value": f"{s['model']['psnr']:.2f} dB",
             "bound": f">= {s['bicubic']['psnr'] - GOAL_SR_PSNR_VS_BICUBIC:.2f} dB",
             "passed": s["model"]["psnr"] >= s["bicubic"]["psnr"] - GOAL_SR_PSNR_VS_BICUBIC},
            {"task": f"upscaling, {kind} LR", "goal": f"texture ratio >= {GOAL_SR_TEXTURE}",
             "value": f"{s['model']['texture_ratio']:.3f}", "bound": f">= {GOAL_SR_TEXTURE}",
             "passed": s["model"]["texture_ratio"] >= GOAL_SR_TEXTURE},
            {"task": f"upscaling, {kind} LR",
             "goal": f"mean colour shift (dE of the mean Lab) <= {GOAL_SR_SHIFT:g}",
             "value": f"{s['model']['colour_shift']:.2f}", "bound": f"<= {GOAL_SR_SHIFT:g}",
             "passed": s["model"]["colour_shift"] <= GOAL_SR_SHIFT}]
    return rows


# --------------------------------------------------------------------------------------------
# Contact sheets
# --------------------------------------------------------------------------------------------

def contact_sheet(rows, titles, path):
    """Writes a grid of TILE x TILE RGB tiles (rows = lists of tiles) with column titles."""
    gap, head = 2, 18
    ncol = len(titles)
    w = ncol * TILE + (ncol + 1) * gap
    h = head + len(rows) * (TILE + gap) + gap
    sheet = np.full((h, w, 3), 255, np.uint8)
    for ci, title in enumerate(titles):
        x = gap + ci * (TILE + gap)
        (tw, _), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        cv2.putText(sheet, title, (x + max(0, (TILE - tw) // 2), head - 5),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for ri, tiles in enumerate(rows):
        y = head + ri * (TILE + gap)
        for ci, tile in enumerate(tiles):
            x = gap + ci * (TILE + gap)
            sheet[y:y + TILE, x:x + TILE] = tile
    if not cv2.imwrite(path, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise RuntimeError(f"cannot write {path}")


def shrink(rgb):
    """A picture reduced to a TILE x TILE tile (area filter)."""
    return cv2.resize(rgb, (TILE, TILE), interpolation=cv2.INTER_AREA)


def centre_tile(rgb):
    """The central TILE x TILE crop of a picture, at 1:1."""
    y, x = (rgb.shape[0] - TILE) // 2, (rgb.shape[1] - TILE) // 2
    return rgb[y:y + TILE, x:x + TILE]


def inpaint_sheet(images, photos, masks, path):
    """One row per photo (the mask cycling through the shapes): masked input (hole grey),
    model, Telea, NS, mean fill, original; each shrunk to TILE."""
    names = list(masks)
    rows = []
    for pi, (pname, _) in enumerate(photos):
        mname = names[pi % len(names)]
        outs = images[(pname, mname)]
        masked = outs["truth"].copy()
        masked[masks[mname] > 0] = HOLE_GREY
        rows.append([shrink(a) for a in (masked, outs["model"], outs["telea"], outs["ns"],
                                         outs["mean"], outs["truth"])])
    contact_sheet(rows, ["masked input", "model", "Telea", "Navier-Stokes", "mean fill",
                         "original"], path)


def upscale_sheet(images, photos, path):
    """One row per photo: LR (nearest-neighbour upscaled), model, bicubic, Lanczos, HR; each
    the central TILE x TILE crop at full resolution."""
    rows = []
    for pname, _ in photos:
        outs = images[pname]
        lr_big = cv2.resize(outs["lr"], (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
        rows.append([centre_tile(a) for a in (lr_big, outs["model"], outs["bicubic"],
                                              outs["lanczos"], outs["truth"])])
    contact_sheet(rows, ["LR (nearest)", "model", "bicubic", "Lanczos", "HR"], path)


SR_SHEETS = {"degraded": "upscale-sheet.png", "plain": "upscale-plain-sheet.png"}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def machine_info():
    """CPU model, core count, OMP_NUM_THREADS and load average, to put timings in context."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
            "load_average_1min_at_start": round(os.getloadavg()[0], 2)}


def sha256(path):
    """The SHA-256 of a file, hex (as data/models/SHA256SUMS)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def md_table(header, rows):
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def on_off(flag):
    return "on" if flag else "off"


INPAINT_HEADER = ["method", "PSNR (dB)", "SSIM", "texture ratio", "4-px blockiness",
                  "alien colours"]
SR_HEADER = ["method", "PSNR (dB)", "SSIM", "texture ratio", "mean colour shift (dE)"]


def inpaint_rows(means, truth):
    """One table row per inpainting method, then the ground truth's own figures."""
    rows = [[INPAINT_LABELS[m], f"{means[m]['psnr']:.2f}", f"{means[m]['ssim']:.4f}",
             f"{means[m]['texture_ratio']:.3f}", f"{means[m]['blockiness']:.3f}",
             f"{100 * means[m]['alien_share']:.2f} %"] for m in INPAINT_METHODS]
    rows.append([INPAINT_LABELS["truth"], "", "", f"{truth['texture_ratio']:.3f}",
                 f"{truth['blockiness']:.3f}", f"{100 * truth['alien_share']:.2f} %"])
    return rows


def sr_rows(means):
    """One table row per upscaling method."""
    return [[SR_LABELS[m], f"{means[m]['psnr']:.2f}", f"{means[m]['ssim']:.4f}",
             f"{means[m]['texture_ratio']:.3f}", f"{means[m]['colour_shift']:.2f}"]
            for m in SR_METHODS]


def write_report(path, res):
    """Writes report.md from the results dictionary."""
    s, inp, tm, crit = res["settings"], res["inpainting"], res["timing"], res["criteria"]
    srs = {"degraded": res["upscaling"], "plain": res["upscaling_plain"]}
    mach = res["machine"]
    allm = inp["mean"]
    out = [
        "# gimp-ldm quality evaluation",
        "",
        f"Generated by `tools/eval/eval.py` on {res['date']}.",
        "",
        "Command line:",
        "",
        f"    {res['command']}",
        "",
        f"Models: inpainting `{s['inpaint_model']}` (SHA-256 {s['inpaint_model_sha256'][:16]}...), "
        f"super-resolution `{s['sr_model']}` (SHA-256 {s['sr_model_sha256'][:16]}...).",
        "",
        f"Engine aids: inpainting keep-known {on_off(s['keep_known'])}, match-colors "
        f"{on_off(s['match_colors'])}; upscaling color-fix {on_off(s['color_fix'])} (each "
        "passed to `ldm` explicitly, `--x` or `--no-x`; the plug-in has all three on).",
        "",
        "## Goals (issue 12)",
        "",
        f"Means over the cases ({len(inp['cases'])} inpainting cases, {len(s['photos'])} "
        "photos for each kind of upscaling input). Models: "
        f"inpainting SHA-256 {s['inpaint_model_sha256'][:16]}..., super-resolution "
        f"{s['sr_model_sha256'][:16]}...",
        "",
        md_table(["task", "goal", "model", "bound", "result"],
                 [[g["task"], g["goal"], g["value"], g["bound"],
                   "PASS" if g["passed"] else "FAIL"] for g in res["goals"]]),
        "",
        "Earlier acceptance criteria (kept for comparison with earlier reports):",
        "",
        md_table(["criterion", "value", "result"], [
            ["model PSNR > mean-fill PSNR (hole, mean over cases)",
             f"{allm['model']['psnr']:.2f} dB vs {allm['mean']['psnr']:.2f} dB",
             "PASS" if crit["model_psnr_beats_mean_fill"] else "FAIL"],
            ["\\|model texture ratio - 1\\| < \\|Telea texture ratio - 1\\|",
             f"{allm['model']['texture_ratio']:.3f} vs {allm['telea']['texture_ratio']:.3f}",
             "PASS" if crit["model_texture_closer_than_telea"] else "FAIL"],
        ]),
        "",
        "## Inpainting",
        "",
        f"{len(s['photos'])} {PHOTO_SETS[s.get('photo_set', 'val')]} x {len(s['masks'])} "
        "hole shapes = "
        f"{len(inp['cases'])} cases. Crop: the central square of side min(h, w) // 2 (at least "
        f"256 when the photo allows) of each photo, resized to {SIZE}x{SIZE} (cv2.INTER_AREA); "
        "the crop is the whole engine input. Holes (fraction of the crop): "
        + ", ".join(f"{k} {100 * v:.1f} %" for k, v in s["masks"].items()) + ".",
        "",
        f"Model: `ldm inpaint`, {s['steps']} steps, sampler {s['sampler']}, eta {s['eta']}, "
        f"keep-known {on_off(s['keep_known'])}, match-colors {on_off(s['match_colors'])}, "
        f"seed {s['seed']} + case index. OpenCV: `cv2.inpaint` radius {INPAINT_RADIUS} on the "
        f"BGR picture. Mean fill: the mean colour of the pixels within {RING_OUTER} px of the "
        "hole.",
        "",
        "PSNR: MSE over the hole's pixels (3 channels, 0-255). SSIM: map with an 11x11 Gaussian "
        f"window (sigma {SSIM_SIGMA}), C1 = (0.01*255)^2, C2 = (0.03*255)^2, per channel then "
        "averaged, mean over the hole's pixels. Texture ratio: mean squared high-pass (grey - "
        f"Gaussian blur sigma {HIGHPASS_SIGMA}) over the hole eroded by {INNER_ERODE} px, "
        f"divided by the same over the ring between the hole dilated by {RING_INNER} px and by "
        f"{RING_OUTER} px; 1.0 = texture as rich as around the hole. "
        f"4-px blockiness: on grey (0.299 R + 0.587 G + 0.114 B), the mean |step| between "
        f"horizontally or vertically adjacent pixels across a {LATENT_BLOCK}-px block border "
        f"(the latent grid: x = {LATENT_BLOCK}k-1 and {LATENT_BLOCK}k, same for y) over the "
        f"mean |step| between the other adjacent pairs, both pixels in the hole ({BLOCK_EPS} "
        "added to both means: a flat fill gives 1.0); about 1 for a photo, more when the grid "
        "shows. Alien colours: the share of the hole's pixels whose CIELAB colour (sRGB, D65) "
        f"is more than dE {ALIEN_DE:.0f} (CIE76) from every colour of the {RING_OUTER}-px ring "
        "around the hole in the input (exact; own sRGB -> Lab conversion). The ground truth's "
        "own figures (the photo in the hole) "
        "are the references. All numbers are means over the cases.",
        "",
        md_table(INPAINT_HEADER, inpaint_rows(allm, inp["truth"])),
        "",
        "By hole shape (PSNR dB / SSIM / texture ratio):",
        "",
        md_table(["method"] + list(s["masks"]),
                 [[INPAINT_LABELS[m]] + [
                     f"{inp['by_mask'][k][m]['psnr']:.2f} / {inp['by_mask'][k][m]['ssim']:.3f}"
                     f" / {inp['by_mask'][k][m]['texture_ratio']:.2f}" for k in s["masks"]]
                  for m in INPAINT_METHODS]
                 + [[INPAINT_LABELS["truth"]] + [
                     f"{inp['truth_by_mask'][k]['texture_ratio']:.2f}" for k in s["masks"]]]),
        "",
        "By hole shape (4-px blockiness / alien colours %):",
        "",
        md_table(["method"] + list(s["masks"]),
                 [[INPAINT_LABELS[m]] + [
                     f"{inp['by_mask'][k][m]['blockiness']:.2f} / "
                     f"{100 * inp['by_mask'][k][m]['alien_share']:.1f}" for k in s["masks"]]
                  for m in INPAINT_METHODS]
                 + [[INPAINT_LABELS["truth"]] + [
                     f"{inp['truth_by_mask'][k]['blockiness']:.2f} / "
                     f"{100 * inp['truth_by_mask'][k]['alien_share']:.1f}" for k in s["masks"]]]),
        "",
        "![inpainting contact sheet](inpaint-sheet.png)",
        "",
        "Contact sheet: one case per photo, the hole shape cycling; columns: input with the hole "
        "in grey, model, Telea, Navier-Stokes, mean fill, original (each shrunk to "
        f"{TILE} px).",
        "",
        "## 4x upscaling",
        "",
        f"HR: the same {SIZE}x{SIZE} crops, reduced to {SIZE // SR_FACTOR}x{SIZE // SR_FACTOR} "
        "in two ways, each with its table: **plain** bicubic downsampling (PIL's BICUBIC, "
        "antialiased: the kernel widened 4x, as MATLAB's imresize and the SR benchmarks' bicubic "
        "LR), and **docs/eval's degradation** (as in earlier reports): Gaussian blur sigma "
        f"{SR_BLUR_SIGMA}, then cv2.resize with cv2.INTER_CUBIC. Model: `ldm upscale`, "
        f"{s.get('sr_steps', s['steps'])} steps, sampler {s['sr_sampler']}, eta {s['sr_eta']}, color-fix "
        f"{on_off(s['color_fix'])}, seed {s['seed']} + photo index. PSNR and SSIM (as above) "
        "over the whole picture; texture ratio = mean high-pass energy of the output / of HR; "
        "mean colour shift = CIE76 distance between the mean CIELAB colour of the output and "
        "that of HR.",
        ""]
    for kind in LR_KINDS:
        out += [f"### {LR_LABELS[kind][0].upper() + LR_LABELS[kind][1:]}", "",
                md_table(SR_HEADER, sr_rows(srs[kind]["mean"])), "",
                f"![upscaling contact sheet, {kind} LR]({SR_SHEETS[kind]})", ""]
    out += [
        f"Contact sheets: the central {TILE}x{TILE} crop at 1:1 of LR (nearest-neighbour "
        "upscaled), model, bicubic, Lanczos, HR.",
        "",
        "## Time per image (C engine)",
        "",
        f"Wall time of each `ldm` call, model loading included, {s['steps']} steps (inpainting), "
        f"{s.get('sr_steps', s['steps'])} (upscaling), precision {s.get('precision', 'fp32')}. "
        "Machine: "
        f"{mach['cpu']}, {mach['cores']} cores, OMP_NUM_THREADS {mach['omp_num_threads']}, "
        f"1-minute load average {mach['load_average_1min_at_start']} at the start (other "
        f"jobs running make the times longer). Whole evaluation: {res['total_seconds']:.0f} s.",
        "",
        md_table(["task", "calls", "mean (s)", "min (s)", "max (s)"], [
            [t["task"], t["calls"], f"{t['mean']:.2f}", f"{t['min']:.2f}", f"{t['max']:.2f}"]
            for t in tm]),
        "",
        "Per-case numbers: `results.json`.",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(out))


def timing_row(task, seconds):
    """Summary of a list of call times."""
    return {"task": task, "calls": len(seconds), "mean": float(np.mean(seconds)),
            "min": float(np.min(seconds)), "max": float(np.max(seconds))}


# --------------------------------------------------------------------------------------------
# Self-test of the metrics (--self-test; also run before every evaluation)
# --------------------------------------------------------------------------------------------

def self_test():
    """Checks the metrics on synthetic cases; raises AssertionError on a failure."""
    rng = np.random.default_rng(0)
    hole = make_masks()["ellipse"] > 0

    def close(a, b, tol, what):
        assert abs(a - b) <= tol, f"{what}: {a} vs {b} (tolerance {tol})"

    # CIELAB: white, black, sRGB red's textbook value, and OpenCV's float conversion
    lab = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.uint8))
    assert np.abs(lab[0] - [100, 0, 0]).max() < 0.01, lab[0]
    assert np.abs(lab[1]).max() < 1e-9, lab[1]
    assert np.abs(lab[2] - [53.24, 80.09, 67.20]).max() < 0.02, lab[2]
    rnd = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ref = cv2.cvtColor(rnd.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    # (OpenCV's float conversion works with tabulated approximations: off by up to ~0.35)
    close(float(np.abs(srgb_to_lab(rnd) - ref).max()), 0.0, 0.5, "Lab vs OpenCV")

    # a photo-like picture: smooth noise plus a gradient
    photo = cv2.GaussianBlur(rng.normal(128, 40, (SIZE, SIZE, 3)), (0, 0), 2.0)
    photo = np.clip(photo + np.linspace(-30, 30, SIZE)[None, :, None], 0, 255).astype(np.uint8)

    # blockiness: a perfect copy gives the truth's own; the photo about 1; 4x4 flat blocks on
    # the latent grid are very blocky, the same blocks 2 px off the grid not at all; flat 1.0
    b_truth = blockiness(photo, hole)
    assert blockiness(photo.copy(), hole) == b_truth
    close(b_truth, 1.0, 0.15, "blockiness of a smooth picture")
    blocks = np.kron(rng.integers(0, 256, (SIZE // 4, SIZE // 4, 3)),
                     np.ones((4, 4, 1))).astype(np.uint8)
    assert blockiness(blocks, hole) > 20, blockiness(blocks, hole)
    assert blockiness(np.roll(blocks, (2, 2), axis=(0, 1)), hole) < 0.05
    close(blockiness(np.full_like(photo, 77), hole), 1.0, 1e-9, "blockiness of a flat fill")
    # a fill with a step of 10 at every grid border and of 2 elsewhere, in x only
    ramp = np.zeros((SIZE, SIZE), np.float64)
    steps = np.where((np.arange(1, SIZE) % 4) == 0, 10.0, 2.0)
    ramp[:, 1:] = np.cumsum(steps)[None, :]
    ramp = np.clip(ramp - ramp[0, 40] + 20, 0, 255)   # 20..134 inside the hole below
    ramp_rgb = np.repeat(ramp[..., None], 3, axis=2).astype(np.uint8)
    big = np.zeros((SIZE, SIZE), bool)
    big[40:60, 40:70] = True
    # x pairs: across 10, others 2; y pairs all 0 (counted as "other" for rows 43/47/...
    # borders and "across" for y borders): compute the expected ratio directly
    nx_across = 20 * len([j for j in range(40, 69) if (j + 1) % 4 == 0])
    nx_other = 20 * 29 - nx_across
    ny_across = 30 * len([i for i in range(40, 59) if (i + 1) % 4 == 0])
    ny_other = 30 * 19 - ny_across
    want = ((10 * nx_across) / (nx_across + ny_across) + BLOCK_EPS) \
        / ((2 * nx_other) / (nx_other + ny_other) + BLOCK_EPS)
    close(blockiness(ramp_rgb, big), want, 1e-9, "blockiness of a known ramp")

    # alien colours: a palette picture has no alien colour of its own; a fill with a colour
    # absent from the ring is all alien, with a ring colour none, half and half 0.5
    palette = np.array([[20, 20, 20], [128, 128, 128], [230, 230, 230], [200, 60, 40]],
                       np.uint8)
    pal = palette[rng.integers(0, len(palette), (SIZE, SIZE))]
    assert alien_share(pal, pal, hole) == 0.0
    fill = pal.copy()
    fill[hole] = (0, 200, 0)            # green: far from every palette colour
    assert alien_share(fill, pal, hole) == 1.0
    fill[hole] = palette[1]
    assert alien_share(fill, pal, hole) == 0.0
    ys = np.nonzero(hole)[0]
    fill[hole & (np.arange(SIZE)[:, None] < np.median(ys))] = (0, 200, 0)
    close(alien_share(fill, pal, hole), float((hole & (np.arange(SIZE)[:, None]
                                                       < np.median(ys))).sum() / hole.sum()),
          1e-12, "alien share of a half-green fill")
    # against a brute-force exact computation (no grid, no dedup), small chunks
    noisy = np.clip(photo.astype(int) + rng.integers(-60, 61, photo.shape), 0, 255) \
        .astype(np.uint8)
    a = srgb_to_lab(noisy[hole])
    r = srgb_to_lab(photo[ring(hole, 0, RING_OUTER)])
    dmin = np.concatenate([np.sqrt(((a[i:i + 256, None, :] - r[None]) ** 2).sum(-1)).min(1)
                           for i in range(0, len(a), 256)])
    exact = float((dmin > ALIEN_DE).mean())
    assert 0.2 < exact < 0.8, exact     # a case with many colours near the threshold
    close(alien_share(noisy, photo, hole, chunk=97), exact, 1e-12, "alien share vs brute force")

    # colour shift: an exact copy 0; black vs white 100; a uniform colour change as Lab says
    close(colour_shift(photo, photo.copy()), 0.0, 1e-12, "colour shift of a copy")
    close(colour_shift(np.zeros_like(photo), np.full_like(photo, 255)), 100.0, 0.01,
          "colour shift black/white")
    c1, c2 = np.array([[120, 90, 60]], np.uint8), np.array([[128, 90, 60]], np.uint8)
    close(colour_shift(np.broadcast_to(c1, photo.shape).copy(),
                       np.broadcast_to(c2, photo.shape).copy()),
          float(np.linalg.norm(srgb_to_lab(c1) - srgb_to_lab(c2))), 1e-9,
          "colour shift of a uniform change")

    # goals: a model as good as the truth passes, a blocky alien one fails those two
    inp = {m: {"psnr": 15.0, "ssim": 0.4, "texture_ratio": 1.0, "blockiness": 1.05,
               "alien_share": 0.01} for m in INPAINT_METHODS}
    truth = {"texture_ratio": 1.0, "blockiness": 1.0, "alien_share": 0.02}
    srm = {k: {m: {"psnr": 25.0, "ssim": 0.7, "texture_ratio": 0.8, "colour_shift": 1.0}
               for m in SR_METHODS} for k in LR_KINDS}
    assert all(g["passed"] for g in goal_rows(inp, truth, srm))
    inp["model"].update(blockiness=1.2, alien_share=0.05)
    assert [g["passed"] for g in goal_rows(inp, truth, srm)][:4] == [True, True, False, False]
    truth["alien_share"] = 0.03         # 5 % <= 2 x 3 %: passes by the truth's own share
    assert goal_rows(inp, truth, srm)[3]["passed"]
    print("self-test of the metrics: passed", flush=True)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def parse_args():
    """Command-line options; paths made absolute."""
    models = os.path.join(TOP, "data", "models")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ldm", help="the engine's CLI (build dir/tools/ldm); required unless "
                    "--self-test")
    ap.add_argument("--inpaint-model",
                    default=os.path.join(models, "ldm-inpaint-builtin.safetensors"))
    ap.add_argument("--sr-model", default=os.path.join(models, "ldm-sr-builtin.safetensors"))
    ap.add_argument("--steps", type=int, default=20, help="inpainting steps")
    ap.add_argument("--sr-steps", type=int, default=None,
                    help="upscaling steps (default: ldm upscale's own)")
    ap.add_argument("--sampler", default="ddim", help="inpainting sampler (ddim, ddpm, dpmpp-2m)")
    ap.add_argument("--eta", type=float, default=0.0, help="inpainting DDIM eta")
    ap.add_argument("--keep-known", action=argparse.BooleanOptionalAction, default=True,
                    help="ldm inpaint --keep-known / --no-keep-known (the plug-in: on)")
    ap.add_argument("--match-colors", action=argparse.BooleanOptionalAction, default=True,
                    help="ldm inpaint --match-colors / --no-match-colors (the plug-in: on)")
    ap.add_argument("--color-fix", action=argparse.BooleanOptionalAction, default=True,
                    help="ldm upscale --color-fix / --no-color-fix (the plug-in: on)")
    ap.add_argument("--init", default="noise", choices=("noise", "fill", "original"),
                    help="ldm inpaint --init (the start of sampling)")
    ap.add_argument("--strength", type=float, default=1.0, help="ldm inpaint --strength")
    ap.add_argument("--only", choices=("inpaint", "upscale"),
                    help="run one task only (a sweep; the report then covers that task)")
    ap.add_argument("--sr-sampler", default="ddim", help="upscaling sampler")
    ap.add_argument("--sr-eta", type=float, default=1.0, help="upscaling DDIM eta")
    ap.add_argument("--sr-init", default="noise", choices=("noise", "original"),
                    help="ldm upscale --init (original: the bilinear upsample, noised)")
    ap.add_argument("--sr-strength", type=float, default=1.0, help="ldm upscale --strength")
    ap.add_argument("--seed", type=int, default=1, help="base seed (plus the case index)")
    ap.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"),
                    help="ldm --precision (default fp32: the report's figures then do not "
                    "depend on the CPU; bf16 pictures are about 50 dB from fp32's)")
    ap.add_argument("--out", default=os.path.join(TOP, "docs", "eval"),
                    help="report folder (default docs/eval)")
    ap.add_argument("--work", default=os.path.join(TOP, "build-eval", "eval-work"),
                    help="temporary files (default build-eval/eval-work)")
    ap.add_argument("--photos", default="val", choices=tuple(PHOTO_SETS),
                    help="photo set: the validation photos of tools/train (default), or the "
                    "unseen ones of tools/eval/unseen-MANIFEST.tsv (tools/eval/fetch-unseen)")
    ap.add_argument("--count", type=int, help="only the first N photos of the set")
    ap.add_argument("--quick", action="store_true", help="2 photos only, for a fast check")
    ap.add_argument("--self-test", action="store_true",
                    help="only check the metrics on synthetic cases, then exit")
    args = ap.parse_args()
    if args.self_test:
        return args
    if args.count is not None and args.count < 1:
        ap.error("--count must be at least 1")
    if not args.ldm:
        ap.error("--ldm is required (unless --self-test)")
    for k in ("ldm", "inpaint_model", "sr_model", "out", "work"):
        setattr(args, k, os.path.abspath(getattr(args, k)))
    for k in ("ldm", "inpaint_model", "sr_model"):
        if not os.path.isfile(getattr(args, k)):
            ap.error(f"--{k.replace('_', '-')}: no such file: {getattr(args, k)}")
    return args


def sweep(args, photos, masks, started):
    """--only TASK: that task's means and goals printed and written to OUT/sweep-TASK.json
    (one setting of a sweep; the report and the sheets are left as they are)."""
    if args.only == "inpaint":
        cases, _ = evaluate_inpainting(args, photos, masks)
        means = mean_metrics(cases, INPAINT_METHODS, INPAINT_METRICS)
        goals = [g for g in goal_rows(means, truth_means(cases),
                                      {k: {m: {"psnr": 0, "texture_ratio": 0, "colour_shift": 0}
                                           for m in SR_METHODS} for k in LR_KINDS})
                 if g["task"] == "inpainting"]
    else:
        runs = {kind: evaluate_upscaling(args, photos, kind)[0] for kind in LR_KINDS}
        means = {kind: mean_metrics(runs[kind], SR_METHODS, SR_METRICS) for kind in LR_KINDS}
        dummy = {m: {k: 0 for k in INPAINT_METRICS} for m in INPAINT_METHODS}
        goals = [g for g in goal_rows(dummy, {k: 0 for k in INPAINT_METRICS}, means)
                 if g["task"] != "inpainting"]
    res = {"command": shlex.join(["python3"] + sys.argv), "photo_set": args.photos,
           "photos": [p for p, _ in photos], "means": means, "goals": goals,
           "seconds": time.time() - started}
    if args.only == "upscale":
        res["sr_steps"] = args.sr_steps_run
    with open(os.path.join(args.out, f"sweep-{args.only}.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(means, indent=1))
    for g in goals:
        print(f"goal ({g['task']}) {g['goal']}: {g['value']} (bound {g['bound']}): "
              + ("PASS" if g["passed"] else "FAIL"))
    return 0


def rel(path):
    """A path relative to the checkout when inside it."""
    r = os.path.relpath(path, TOP)
    return path if r.startswith("..") else r


def main():
    args = parse_args()
    self_test()
    if args.self_test:
        return 0
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    started = time.time()
    machine = machine_info()
    model_sums = {k: sha256(getattr(args, k)) for k in ("inpaint_model", "sr_model")}
    photos = load_photos(args.photos, 2 if args.quick else args.count)
    masks = make_masks()

    if args.only:
        return sweep(args, photos, masks, started)
    inp_cases, inp_images = evaluate_inpainting(args, photos, masks)
    sr = {kind: evaluate_upscaling(args, photos, kind) for kind in LR_KINDS}
    big_photo, big_seconds = time_big_inpaint(args, photos)

    inpaint_sheet(inp_images, photos, masks, os.path.join(args.out, "inpaint-sheet.png"))
    for kind in LR_KINDS:
        upscale_sheet(sr[kind][1], photos, os.path.join(args.out, SR_SHEETS[kind]))

    allm = mean_metrics(inp_cases, INPAINT_METHODS, INPAINT_METRICS)
    truth = truth_means(inp_cases)
    sr_means = {kind: mean_metrics(sr[kind][0], SR_METHODS, SR_METRICS) for kind in LR_KINDS}
    goals = goal_rows(allm, truth, sr_means)
    criteria = {
        "model_psnr_beats_mean_fill": allm["model"]["psnr"] > allm["mean"]["psnr"],
        "model_texture_closer_than_telea": abs(allm["model"]["texture_ratio"] - 1)
        < abs(allm["telea"]["texture_ratio"] - 1)}
    res = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": shlex.join(["python3"] + sys.argv),
        "machine": machine,
        "settings": {
            "inpaint_model": rel(args.inpaint_model), "sr_model": rel(args.sr_model),
            "inpaint_model_sha256": model_sums["inpaint_model"],
            "sr_model_sha256": model_sums["sr_model"],
            "steps": args.steps, "sampler": args.sampler, "eta": args.eta,
            "keep_known": args.keep_known, "match_colors": args.match_colors,
            "init": args.init, "strength": args.strength,
            "color_fix": args.color_fix,
            "sr_sampler": args.sr_sampler,
            "sr_steps": getattr(args, "sr_steps_run", args.sr_steps),
            "sr_eta": args.sr_eta, "sr_init": args.sr_init, "sr_strength": args.sr_strength,
            "seed": args.seed, "precision": args.precision,
            "photo_set": args.photos, "photos": [p for p, _ in photos], "crop_size": SIZE,
            "masks": {k: float((m > 0).mean()) for k, m in masks.items()},
            "sr_blur_sigma": SR_BLUR_SIGMA, "sr_factor": SR_FACTOR,
            "sr_lr_kinds": LR_LABELS, "latent_block": LATENT_BLOCK,
            "alien_de": ALIEN_DE, "lab_cell": LAB_CELL},
        "goals": goals,
        "criteria": criteria,
        "inpainting": {
            "mean": allm,
            "truth": truth,
            "by_mask": {k: mean_metrics(inp_cases, INPAINT_METHODS, INPAINT_METRICS,
                                        lambda c, k=k: c["mask"] == k) for k in masks},
            "truth_by_mask": {k: truth_means(inp_cases, lambda c, k=k: c["mask"] == k)
                              for k in masks},
            # the keys of earlier reports
            "truth_texture_ratio": truth["texture_ratio"],
            "truth_texture_ratio_by_mask": {
                k: float(np.mean([c["truth_texture_ratio"] for c in inp_cases if c["mask"] == k]))
                for k in masks},
            "cases": inp_cases},
        # "upscaling": docs/eval's degradation, as in earlier reports; "upscaling_plain": the
        # plain bicubic-downsampled input
        "upscaling": {"lr": "degraded", "mean": sr_means["degraded"], "cases": sr["degraded"][0]},
        "upscaling_plain": {"lr": "plain", "mean": sr_means["plain"], "cases": sr["plain"][0]},
        "timing": [
            timing_row(f"inpaint {SIZE}x{SIZE}", [c["model_seconds"] for c in inp_cases])]
        + [timing_row(f"upscale {SIZE // SR_FACTOR}x{SIZE // SR_FACTOR} -> {SIZE}x{SIZE} "
                      f"({kind} LR)", [c["model_seconds"] for c in sr[kind][0]])
           for kind in LR_KINDS]
        + [timing_row(f"inpaint {BIG}x{BIG} ({big_photo}, box)", [big_seconds])],
    }
    res["total_seconds"] = time.time() - started
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    write_report(os.path.join(args.out, "report.md"), res)

    print(f"\nwritten to {args.out} in {res['total_seconds']:.0f} s")
    for g in goals:
        print(f"goal ({g['task']}) {g['goal']}: {g['value']} (bound {g['bound']}): "
              + ("PASS" if g["passed"] else "FAIL"))
    print(f"earlier criterion model PSNR > mean-fill PSNR: {allm['model']['psnr']:.2f} vs "
          f"{allm['mean']['psnr']:.2f} dB: "
          + ("PASS" if criteria["model_psnr_beats_mean_fill"] else "FAIL"))
    print(f"earlier criterion |model texture ratio - 1| < |Telea's|: "
          f"{allm['model']['texture_ratio']:.3f} vs {allm['telea']['texture_ratio']:.3f}: "
          + ("PASS" if criteria["model_texture_closer_than_telea"] else "FAIL"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
