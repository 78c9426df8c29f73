#!/usr/bin/env python3
"""Quality evaluation of gimp-ldm's built-in models against classical baselines.

  tools/in-env python3 tools/eval/eval.py --ldm build-eval/tools/ldm [--out docs/eval] [--quick]

Inpainting: every validation photo (256x256 crop) x a fixed set of 4 hole shapes (10-30 % of
the crop), filled by the built-in model (the C engine, `ldm inpaint`), OpenCV's Telea and
Navier-Stokes inpainting and a mean-colour fill; PSNR and SSIM inside the hole and the ratio of
high-frequency energy inside the hole to around it.
Super-resolution: each crop blurred and reduced 4x, brought back by the built-in model
(`ldm upscale`), bicubic and Lanczos; PSNR, SSIM and the high-frequency energy ratio to the
original.
Timing: wall time of each engine call (model loading included).

Writes report.md, results.json, inpaint-sheet.png and upscale-sheet.png into --out.
See tools/eval/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tools", "train"))
import common  # noqa: E402  (tools/train/common.py: the validation photos)

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

INPAINT_METHODS = ["model", "telea", "ns", "mean"]
INPAINT_LABELS = {"model": "built-in model", "telea": "OpenCV Telea", "ns": "OpenCV Navier-Stokes",
                  "mean": "mean-colour fill", "truth": "ground truth (reference)"}
SR_METHODS = ["model", "bicubic", "lanczos"]
SR_LABELS = {"model": "built-in model", "bicubic": "bicubic (cv2.INTER_CUBIC)",
             "lanczos": "Lanczos (cv2.INTER_LANCZOS4)"}


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


def load_photos(count):
    """The first `count` validation photos as a list of (name, full RGB array)."""
    root, rows = common.manifest("val")
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


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------

def run_ldm(cmd):
    """Runs one engine command; returns its wall time in seconds."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"engine failed ({r.returncode}): {shlex.join(cmd)}\n{r.stderr}{r.stdout}")
    return dt


def model_inpaint(args, rgb, mask, seed, stem):
    """The built-in model's fill (via `ldm inpaint`); returns (RGB output, seconds)."""
    img, msk, out = stem + "-in.png", stem + "-mask.png", stem + "-model.png"
    write_rgb(img, rgb)
    cv2.imwrite(msk, mask)
    dt = run_ldm([args.ldm, "inpaint", "--model", args.inpaint_model, "--image", img,
                  "--mask", msk, "--output", out, "--steps", str(args.steps),
                  "--seed", str(seed), "--sampler", args.sampler, "--eta", str(args.eta), "-q"]
                 + (["--keep-known"] if args.keep_known else [])
                 + (["--match-colors"] if args.match_colors else []))
    return read_rgb(out), dt


def model_upscale(args, lr, seed, stem):
    """The built-in model's 4x upscaling (via `ldm upscale`); returns (RGB output, seconds)."""
    img, out = stem + "-lr.png", stem + "-model.png"
    write_rgb(img, lr)
    dt = run_ldm([args.ldm, "upscale", "--model", args.sr_model, "--image", img,
                  "--output", out, "--steps", str(args.steps), "--seed", str(seed),
                  "--sampler", args.sr_sampler, "--eta", str(args.sr_eta), "-q"])
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


def degrade(hr):
    """The low-resolution input: Gaussian blur (sigma SR_BLUR_SIGMA), then a 4x reduction with
    cv2.INTER_CUBIC."""
    s = hr.shape[0] // SR_FACTOR
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
                    "truth_texture_ratio": texture_ratio(gt, hole)}
            for meth, out in outs.items():
                case[meth] = {"psnr": psnr(out, gt, hole), "ssim": ssim(out, gt, hole),
                              "texture_ratio": texture_ratio(out, hole)}
            cases.append(case)
            images[(pname, mname)] = dict(outs, truth=gt)
            print(f"inpaint {idx + 1}/{n} {pname} {mname}: " + ", ".join(
                f"{m} {case[m]['psnr']:.2f} dB" for m in INPAINT_METHODS) + f" ({dt:.1f} s)",
                flush=True)
    return cases, images


def evaluate_upscaling(args, photos):
    """Every photo reduced and brought back by every method. Returns (cases, images)."""
    work = os.path.join(args.work, "upscale")
    os.makedirs(work, exist_ok=True)
    cases, images = [], {}
    for pi, (pname, full) in enumerate(photos):
        hr = eval_crop(full)
        lr = degrade(hr)
        seed = args.seed + pi
        model, dt = model_upscale(args, lr, seed, os.path.join(work, pname))
        outs = {"model": model,
                "bicubic": cv2.resize(lr, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC),
                "lanczos": cv2.resize(lr, (SIZE, SIZE), interpolation=cv2.INTER_LANCZOS4)}
        case = {"photo": pname, "seed": seed, "model_seconds": dt}
        for meth, out in outs.items():
            case[meth] = {"psnr": psnr(out, hr), "ssim": ssim(out, hr),
                          "texture_ratio": energy_ratio(out, hr)}
        cases.append(case)
        images[pname] = dict(outs, lr=lr, truth=hr)
        print(f"upscale {pi + 1}/{len(photos)} {pname}: " + ", ".join(
            f"{m} {case[m]['psnr']:.2f} dB" for m in SR_METHODS) + f" ({dt:.1f} s)", flush=True)
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


def mean_metrics(cases, methods, select=lambda c: True):
    """Mean of each metric of each method over the selected cases."""
    chosen = [c for c in cases if select(c)]
    return {m: {k: float(np.mean([c[m][k] for c in chosen]))
                for k in ("psnr", "ssim", "texture_ratio")} for m in methods}


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


def md_table(header, rows):
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


METRIC_HEADER = ["method", "PSNR (dB)", "SSIM", "texture ratio"]


def metric_rows(labels, means, methods):
    """One table row per method: label, mean PSNR, SSIM and texture ratio."""
    return [[labels[m], f"{means[m]['psnr']:.2f}", f"{means[m]['ssim']:.4f}",
             f"{means[m]['texture_ratio']:.3f}"] for m in methods]


def write_report(path, res):
    """Writes report.md from the results dictionary."""
    s, inp, sr, tm, crit = (res["settings"], res["inpainting"], res["upscaling"],
                            res["timing"], res["criteria"])
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
        f"Models: inpainting `{s['inpaint_model']}`, super-resolution `{s['sr_model']}`.",
        "",
        "## Acceptance criteria",
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
        f"{len(s['photos'])} validation photos x {len(s['masks'])} hole shapes = "
        f"{len(inp['cases'])} cases. Crop: the central square of side min(h, w) // 2 (at least 256 when the photo allows) of each "
        f"photo, resized to {SIZE}x{SIZE} (cv2.INTER_AREA). Holes (fraction of the crop): "
        + ", ".join(f"{k} {100 * v:.1f} %" for k, v in s["masks"].items()) + ".",
        "",
        f"Model: `ldm inpaint`, {s['steps']} steps, sampler {s['sampler']}, eta {s['eta']}, "
        f"keep-known {'on' if s.get('keep_known') else 'off'}, "
        f"match-colors {'on' if s.get('match_colors') else 'off'} (the plug-in has both on), "
        f"seed {s['seed']} + case index. OpenCV: `cv2.inpaint` radius {INPAINT_RADIUS} on the "
        f"BGR picture. Mean fill: the mean colour of the pixels within {RING_OUTER} px of the "
        "hole.",
        "",
        "PSNR: MSE over the hole's pixels (3 channels, 0-255). SSIM: map with an 11x11 Gaussian "
        f"window (sigma {SSIM_SIGMA}), C1 = (0.01*255)^2, C2 = (0.03*255)^2, per channel then "
        "averaged, mean over the hole's pixels. Texture ratio: mean squared high-pass (grey - "
        f"Gaussian blur sigma {HIGHPASS_SIGMA}) over the hole eroded by {INNER_ERODE} px, "
        f"divided by the same over the ring between the hole dilated by {RING_INNER} px and by "
        f"{RING_OUTER} px; 1.0 = texture as rich as around the hole. The ground truth's own "
        "ratio is the reference. All numbers are means over the cases.",
        "",
        md_table(METRIC_HEADER, metric_rows(INPAINT_LABELS, allm, INPAINT_METHODS)
                 + [[INPAINT_LABELS["truth"], "", "", f"{inp['truth_texture_ratio']:.3f}"]]),
        "",
        "By hole shape (PSNR dB / SSIM / texture ratio):",
        "",
        md_table(["method"] + list(s["masks"]),
                 [[INPAINT_LABELS[m]] + [
                     f"{inp['by_mask'][k][m]['psnr']:.2f} / {inp['by_mask'][k][m]['ssim']:.3f}"
                     f" / {inp['by_mask'][k][m]['texture_ratio']:.2f}" for k in s["masks"]]
                  for m in INPAINT_METHODS]
                 + [[INPAINT_LABELS["truth"]] + [
                     f"{inp['truth_texture_ratio_by_mask'][k]:.2f}" for k in s["masks"]]]),
        "",
        "![inpainting contact sheet](inpaint-sheet.png)",
        "",
        "Contact sheet: one case per photo, the hole shape cycling; columns: input with the hole "
        "in grey, model, Telea, Navier-Stokes, mean fill, original (each shrunk to "
        f"{TILE} px).",
        "",
        "## 4x upscaling",
        "",
        f"HR: the same {SIZE}x{SIZE} crops. LR: Gaussian blur sigma {SR_BLUR_SIGMA}, then "
        f"cv2.resize to {SIZE // SR_FACTOR}x{SIZE // SR_FACTOR} with cv2.INTER_CUBIC. Model: "
        f"`ldm upscale`, {s['steps']} steps, sampler {s['sr_sampler']}, eta {s['sr_eta']}, "
        f"seed {s['seed']} + photo index. PSNR and SSIM (as above) over the whole picture; "
        "texture ratio = mean high-pass energy of the output / of HR.",
        "",
        md_table(METRIC_HEADER, metric_rows(SR_LABELS, sr["mean"], SR_METHODS)),
        "",
        "![upscaling contact sheet](upscale-sheet.png)",
        "",
        f"Contact sheet: the central {TILE}x{TILE} crop at 1:1 of LR (nearest-neighbour "
        "upscaled), model, bicubic, Lanczos, HR.",
        "",
        "## Time per image (C engine)",
        "",
        f"Wall time of each `ldm` call, model loading included, {s['steps']} steps. Machine: "
        f"{mach['cpu']}, {mach['cores']} cores, OMP_NUM_THREADS {mach['omp_num_threads']}, "
        f"1-minute load average {mach['load_average_1min_at_start']} at the start (other "
        "jobs running make the times longer).",
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
# Main
# --------------------------------------------------------------------------------------------

def parse_args():
    """Command-line options; paths made absolute."""
    models = os.path.join(TOP, "data", "models")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ldm", required=True, help="the engine's CLI (build dir/tools/ldm)")
    ap.add_argument("--inpaint-model",
                    default=os.path.join(models, "ldm-inpaint-builtin.safetensors"))
    ap.add_argument("--sr-model", default=os.path.join(models, "ldm-sr-builtin.safetensors"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="ddim", help="inpainting sampler (ddim, ddpm, dpmpp-2m)")
    ap.add_argument("--eta", type=float, default=0.0, help="inpainting DDIM eta")
    ap.add_argument("--keep-known", action=argparse.BooleanOptionalAction, default=True,
                    help="pass --keep-known to ldm inpaint (the plug-in's default)")
    ap.add_argument("--match-colors", action=argparse.BooleanOptionalAction, default=True,
                    help="pass --match-colors to ldm inpaint (the plug-in's default)")
    ap.add_argument("--sr-sampler", default="ddim", help="upscaling sampler")
    ap.add_argument("--sr-eta", type=float, default=1.0, help="upscaling DDIM eta")
    ap.add_argument("--seed", type=int, default=1, help="base seed (plus the case index)")
    ap.add_argument("--out", default=os.path.join(TOP, "docs", "eval"),
                    help="report folder (default docs/eval)")
    ap.add_argument("--work", default=os.path.join(TOP, "build-eval", "eval-work"),
                    help="temporary files (default build-eval/eval-work)")
    ap.add_argument("--quick", action="store_true", help="2 photos only, for a fast check")
    args = ap.parse_args()
    for k in ("ldm", "inpaint_model", "sr_model", "out", "work"):
        setattr(args, k, os.path.abspath(getattr(args, k)))
    for k in ("ldm", "inpaint_model", "sr_model"):
        if not os.path.isfile(getattr(args, k)):
            ap.error(f"--{k.replace('_', '-')}: no such file: {getattr(args, k)}")
    return args


def rel(path):
    """A path relative to the checkout when inside it."""
    r = os.path.relpath(path, TOP)
    return path if r.startswith("..") else r


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    started = time.time()
    machine = machine_info()
    photos = load_photos(2 if args.quick else 8)
    masks = make_masks()

    inp_cases, inp_images = evaluate_inpainting(args, photos, masks)
    sr_cases, sr_images = evaluate_upscaling(args, photos)
    big_photo, big_seconds = time_big_inpaint(args, photos)

    inpaint_sheet(inp_images, photos, masks, os.path.join(args.out, "inpaint-sheet.png"))
    upscale_sheet(sr_images, photos, os.path.join(args.out, "upscale-sheet.png"))

    allm = mean_metrics(inp_cases, INPAINT_METHODS)
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
            "steps": args.steps, "sampler": args.sampler, "eta": args.eta,
            "keep_known": args.keep_known, "match_colors": args.match_colors,
            "sr_sampler": args.sr_sampler,
            "sr_eta": args.sr_eta, "seed": args.seed,
            "photos": [p for p, _ in photos], "crop_size": SIZE,
            "masks": {k: float((m > 0).mean()) for k, m in masks.items()},
            "sr_blur_sigma": SR_BLUR_SIGMA, "sr_factor": SR_FACTOR},
        "criteria": criteria,
        "inpainting": {
            "mean": allm,
            "by_mask": {k: mean_metrics(inp_cases, INPAINT_METHODS, lambda c, k=k: c["mask"] == k)
                        for k in masks},
            "truth_texture_ratio": float(np.mean([c["truth_texture_ratio"] for c in inp_cases])),
            "truth_texture_ratio_by_mask": {
                k: float(np.mean([c["truth_texture_ratio"] for c in inp_cases if c["mask"] == k]))
                for k in masks},
            "cases": inp_cases},
        "upscaling": {"mean": mean_metrics(sr_cases, SR_METHODS), "cases": sr_cases},
        "timing": [
            timing_row(f"inpaint {SIZE}x{SIZE}", [c["model_seconds"] for c in inp_cases]),
            timing_row(f"upscale {SIZE // SR_FACTOR}x{SIZE // SR_FACTOR} -> {SIZE}x{SIZE}",
                       [c["model_seconds"] for c in sr_cases]),
            timing_row(f"inpaint {BIG}x{BIG} ({big_photo}, box)", [big_seconds])],
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    write_report(os.path.join(args.out, "report.md"), res)

    print(f"\nwritten to {args.out} in {time.time() - started:.0f} s")
    print(f"criterion model PSNR > mean-fill PSNR: {allm['model']['psnr']:.2f} vs "
          f"{allm['mean']['psnr']:.2f} dB: "
          + ("PASS" if criteria["model_psnr_beats_mean_fill"] else "FAIL"))
    print(f"criterion |model texture ratio - 1| < |Telea's|: "
          f"{allm['model']['texture_ratio']:.3f} vs {allm['telea']['texture_ratio']:.3f}: "
          + ("PASS" if criteria["model_texture_closer_than_telea"] else "FAIL"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
