"""common.py: data, checkpoints and logging shared by gimp-ldm's training scripts."""
import csv
import hashlib
import math
import os
import random
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
COMMITTED = os.path.join(HERE, "checkpoints")     # small fp16 resume checkpoints (committed)
CACHE = os.environ.get("LDM_TRAIN_CACHE", "/var/cache/gimp-ldm/train")


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def setup_threads():
    n = int(os.environ.get("LDM_TRAIN_THREADS", "2"))
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


# --------------------------------------------------------------------------------------------
# Photos
# --------------------------------------------------------------------------------------------

def photo_root():
    """The folder holding MANIFEST.tsv and images/: $LDM_PHOTOS, else ../shared beside the
    checkout, else the cache tools/train/fetch-photos fills."""
    cands = [os.environ.get("LDM_PHOTOS"),
             os.path.join(os.path.dirname(TOP), "shared", "datasets", "debian-photos"),
             os.path.join(CACHE, "..", "photos")]
    for c in cands:
        if c and os.path.isfile(os.path.join(c, "MANIFEST.tsv")) \
                and os.path.isdir(os.path.join(c, "images")):
            return os.path.abspath(c)
    sys.exit("no training photos: run tools/train/fetch-photos (or set LDM_PHOTOS)")


def manifest(split):
    root = photo_root()
    with open(os.path.join(root, "MANIFEST.tsv"), newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["split"] == split]
    return root, rows


def load_photos(split="train", max_side=2000):
    """All photos of a split as uint8 HxWx3 arrays; pictures with a side over max_side (the
    big wallpapers, with their JPEG artefacts) are shrunk 2x (area filter). Cached as .npy."""
    from PIL import Image
    root, rows = manifest(split)
    cdir = os.path.join(CACHE, "photos-npy", split)
    os.makedirs(cdir, exist_ok=True)
    out = []
    for r in rows:
        key = hashlib.sha1(r["path"].encode()).hexdigest()[:16]
        cp = os.path.join(cdir, key + ".npy")
        if os.path.exists(cp):
            out.append(np.load(cp))
            continue
        im = Image.open(os.path.join(root, r["path"]))
        im.load()
        im = im.convert("RGB")
        while max(im.size) > max_side:
            im = im.reduce(2)
        a = np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
        np.save(cp + ".tmp.npy", a)
        os.replace(cp + ".tmp.npy", cp)
        out.append(a)
    return out


def random_crops(photos, n, size, rng, min_scale=1.0, max_scale=3.0):
    """n random size x size crops, each from a photo picked uniformly (per photo, not per
    pixel), covering a random square of size*s pixels (s log-uniform in [min_scale, max_scale]
    but at most what fits) shrunk to size with an area filter; random horizontal flips.
    Returns float32 N x 3 x size x size in [-1, 1]."""
    import cv2
    batch = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        a = photos[rng.randrange(len(photos))]
        h, w = a.shape[:2]
        lim = min(h, w) / size
        hi = min(max_scale, lim)
        lo = min(min_scale, hi)
        s = math.exp(rng.uniform(math.log(lo), math.log(hi))) if hi > lo else lo
        cs = max(size, int(round(size * s)))
        cs = min(cs, h, w)
        y = rng.randrange(h - cs + 1)
        x = rng.randrange(w - cs + 1)
        c = a[y:y + cs, x:x + cs]
        if cs != size:
            c = cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            c = c[:, ::-1]
        batch[i] = c
    t = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

def atomic_save(obj, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def half_state(sd):
    return {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}


def float_state(sd):
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def load_resume(name):
    """The newest of the full cache checkpoint and the committed fp16 one (by step)."""
    cands = []
    for prio, p in ((1, os.path.join(CACHE, name + ".pt")),
                    (0, os.path.join(COMMITTED, name + ".pt"))):
        if os.path.exists(p):
            try:
                ck = torch.load(p, map_location="cpu", weights_only=False)
                cands.append((ck.get("step", 0), prio, p, ck))
            except Exception as e:   # a broken file must not stop training
                log("cannot read", p, e)
    if not cands:
        return None, None
    cands.sort(key=lambda c: c[:2])      # the newest; on a tie the full cache one
    return cands[-1][3], cands[-1][2]


class Lr:
    """Linear warm-up then constant, with a cosine decay to lr_min over the last part."""

    def __init__(self, lr, warmup=500, decay_start=None, decay_end=None, lr_min=None):
        self.lr, self.warmup = lr, warmup
        self.decay_start, self.decay_end = decay_start, decay_end
        self.lr_min = lr if lr_min is None else lr_min

    def __call__(self, step):
        f = min(1.0, (step + 1) / self.warmup)
        lr = self.lr
        if self.decay_start is not None and step > self.decay_start:
            p = min(1.0, (step - self.decay_start) / max(1, self.decay_end - self.decay_start))
            lr = self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * p))
        return lr * f


def set_lr(opt, lr):
    for g in opt.param_groups:
        g["lr"] = lr


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
