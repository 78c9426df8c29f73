"""degrade.py: random inpainting masks and super-resolution degradations for training."""
import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def _strokes(m, rng, size):
    for _ in range(rng.randint(1, 4)):
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        width = int(rng.uniform(0.04, 0.16) * size) + 1
        angle = rng.uniform(0, 2 * math.pi)
        for _ in range(rng.randint(2, 8)):
            angle += rng.uniform(-1.2, 1.2)
            length = rng.uniform(0.1, 0.4) * size
            nx = min(max(x + length * math.cos(angle), 0), size - 1)
            ny = min(max(y + length * math.sin(angle), 0), size - 1)
            cv2.line(m, (int(x), int(y)), (int(nx), int(ny)), 1, width)
            cv2.circle(m, (int(nx), int(ny)), width // 2, 1, -1)
            x, y = nx, ny


def _boxes(m, rng, size):
    for _ in range(rng.randint(1, 3)):
        w = int(rng.uniform(0.12, 0.55) * size)
        h = int(rng.uniform(0.12, 0.55) * size)
        x = rng.randrange(0, size - w + 1)
        y = rng.randrange(0, size - h + 1)
        m[y:y + h, x:x + w] = 1


def _blobs(m, rng, size):
    """Irregular blobs: thresholded smooth noise, or a few random ellipses."""
    if rng.random() < 0.5:
        g = rng.choice([3, 4, 6])
        seed = rng.randrange(1 << 30)
        noise = np.random.RandomState(seed).rand(g, g).astype(np.float32)
        up = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        thr = np.quantile(up, 1 - rng.uniform(0.1, 0.4))
        m[up > thr] = 1
    else:
        for _ in range(rng.randint(1, 3)):
            c = (rng.randrange(size), rng.randrange(size))
            ax = (int(rng.uniform(0.06, 0.3) * size), int(rng.uniform(0.06, 0.3) * size))
            cv2.ellipse(m, c, ax, rng.uniform(0, 180), 0, 360, 1, -1)


def random_mask(size, rng):
    """A size x size uint8 mask, 1 = hole: strokes, boxes, blobs or a mix (as LaMa / the LDM
    paper's inpainting masks), covering roughly 3-60 % of the picture."""
    for _ in range(10):
        m = np.zeros((size, size), np.uint8)
        kind = rng.random()
        if kind < 0.35:
            _strokes(m, rng, size)
        elif kind < 0.6:
            _boxes(m, rng, size)
        elif kind < 0.85:
            _blobs(m, rng, size)
        else:
            _strokes(m, rng, size)
            _boxes(m, rng, size) if rng.random() < 0.5 else _blobs(m, rng, size)
        cover = m.mean()
        if 0.03 <= cover <= 0.6:
            return m
    return m


def masks_batch(n, size, rng):
    return torch.from_numpy(np.stack([random_mask(size, rng) for _ in range(n)])).float()[:, None]


def _gauss_kernel(sigma):
    r = max(1, int(math.ceil(2.5 * sigma)))
    g = torch.exp(-torch.arange(-r, r + 1).float() ** 2 / (2 * sigma * sigma))
    return g / g.sum()


def blur(x, sigma):
    if sigma <= 0.05:
        return x
    g = _gauss_kernel(sigma).to(x.dtype)
    k = g.numel()
    c = x.shape[1]
    xh = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="reflect"),
                  g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(F.pad(xh, (0, 0, k // 2, k // 2), mode="reflect"),
                    g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def degrade_sr(hr, rng):
    """HR batch in [-1, 1] -> LR (4x smaller) in [-1, 1]: mild Gaussian blur (sigma 0-1.2 HR
    pixels, sometimes none), a 4x downscale (mostly antialiased bicubic; from step 2150 on also
    the aliased reductions many programs make: bicubic or bilinear without antialiasing, as
    OpenCV's resize does, and box averaging), mild Gaussian noise (sigma 0-0.03, sometimes
    none), uint8 rounding, clamp. Aliased inputs taught as such: the model trained on antialiased
    ones only turned their jaggies into texture (degraded docs/eval PSNR 2.5 dB below bicubic)."""
    out = []
    for i in range(hr.shape[0]):
        x = hr[i:i + 1]
        s = rng.uniform(0.0, 1.2) if rng.random() < 0.7 else 0.0
        x = blur(x, s)
        h, w = x.shape[2] // 4, x.shape[3] // 4
        r = rng.random()
        if r < 0.55:
            x = F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        elif r < 0.8:
            x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
        elif r < 0.9:
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        else:
            x = F.avg_pool2d(x, 4)
        if rng.random() < 0.6:
            x = x + torch.randn_like(x) * rng.uniform(0.0, 0.03) * 2
        x = torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
        out.append(x)
    return torch.cat(out)
