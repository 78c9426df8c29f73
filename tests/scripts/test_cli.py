"""The `ldm` program's interface: `ldm info` on every fixture model (both file formats),
`ldm tensors`, exit codes and messages for bad use."""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import pngutil  # noqa: E402

LDM = os.environ["LDM_EXE"]
SHARED = os.environ.get("LDM_SHARED_DIR", "")
SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "samples")
FIXTURES = {
    # fixture: (kind as `ldm info` names it, U-Net parameter count as a substring)
    "ldm-inpaint-tiny": "inpaint",
    "ldm-sr-tiny": "super-resolution",
    "sd-inpaint-tiny": "Stable Diffusion",
}

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok' if ok else 'FAIL'}: {name}{': ' + detail if detail and not ok else ''}")


def ldm(*args):
    return subprocess.run([LDM, *args], capture_output=True, text=True, timeout=120)


def read_png(path):
    """(width, height, channels, rows of 8-bit samples) of an 8-bit PNG."""
    w, h, channels, rows, maxval = pngutil.read_png(path)
    assert maxval == 255, path
    return w, h, channels, [bytes(r) for r in rows]


def max_diff(a, b):
    assert a[:3] == b[:3], (a[:3], b[:3])
    return max(abs(x - y) for ra, rb in zip(a[3], b[3]) for x, y in zip(ra, rb))


def run_fixture_images():
    """`ldm inpaint` and `ldm upscale` with the fixture's x_T (and noises) reproduce the
    authors' expected.png within 2/255; outside the mask the input is kept exactly."""
    with tempfile.TemporaryDirectory() as tmp:
        f = os.path.join(SHARED, "fixtures", "ldm-inpaint-tiny")
        ref = os.path.join(f, "reference.safetensors")
        for model in ("model.ckpt", "model.safetensors"):
            out = os.path.join(tmp, "inpaint.png")
            r = ldm("inpaint", "--model", os.path.join(f, model), "--image",
                    os.path.join(f, "image.png"), "--mask", os.path.join(f, "mask.png"),
                    "--output", out, "--steps", "5", "--eta", "0", "--seed", "1",
                    "--x-T", ref + ":ddim.x_T", "--quiet", "--authors")
            check(f"inpaint {model}: exit 0", r.returncode == 0, r.stderr)
            if r.returncode:
                continue
            got, want = read_png(out), read_png(os.path.join(f, "expected.png"))
            d = max_diff(got, want)
            check(f"inpaint {model}: within 2/255 of expected.png", d <= 2, f"max diff {d}")
            src, mask = read_png(os.path.join(f, "image.png")), read_png(os.path.join(f, "mask.png"))
            kept = all(got[3][y][x * 3:x * 3 + 3] == src[3][y][x * 3:x * 3 + 3]
                       for y in range(src[1]) for x in range(src[0]) if mask[3][y][x] < 128)
            check(f"inpaint {model}: pixels outside the mask unchanged", kept)

        # --keep-known and --match-colors: the fill changes, the pixels outside the mask do not;
        # with the whole picture masked no latent is known and no pixel is around the fill, so
        # the result is the authors' bit for bit.
        src = read_png(os.path.join(f, "image.png"))
        mask = read_png(os.path.join(f, "mask.png"))
        full = os.path.join(tmp, "all-masked.png")
        pngutil.write_png(full, src[0], src[1], 1, [bytes([255] * src[0])] * src[1])
        outs = {}
        both = ["--keep-known", "--match-colors"]
        for name, m, extra in (("kk", "mask.png", ["--authors", "--keep-known"]),
                               ("full", full, ["--authors"]),
                               ("full-kk", full, ["--authors"] + both),
                               ("mc", "mask.png", ["--authors"] + both),
                               ("cf", "mask.png", ["--authors", "--color-fix"] + both),
                               ("default", "mask.png", []),
                               # the plug-in's region defaults, given (ldm_region_params_init)
                               # (--authors implies fp32: --precision auto, the default)
                               ("region", "mask.png", ["--authors"] + both + [
                                   "--color-fix", "--context-padding", "64", "--working-size",
                                   "512", "--mask-grow", "4", "--mask-blur", "8",
                                   "--precision", "auto"])):
            outs[name] = os.path.join(tmp, name + ".png")
            r = ldm("inpaint", "--model", os.path.join(f, "model.safetensors"), "--image",
                    os.path.join(f, "image.png"), "--mask", os.path.join(f, m), "--output",
                    outs[name], "--steps", "5", "--seed", "1", "--x-T", ref + ":ddim.x_T",
                    "--quiet", *extra)
            check(f"inpaint --keep-known ({name}): exit 0", r.returncode == 0, r.stderr)
        if all(os.path.exists(o) for o in outs.values()):
            got = read_png(outs["kk"])
            kept = all(got[3][y][x * 3:x * 3 + 3] == src[3][y][x * 3:x * 3 + 3]
                       for y in range(src[1]) for x in range(src[0]) if mask[3][y][x] < 128)
            check("inpaint --keep-known: pixels outside the mask unchanged", kept)
            got = read_png(outs["mc"])
            kept = all(got[3][y][x * 3:x * 3 + 3] == src[3][y][x * 3:x * 3 + 3]
                       for y in range(src[1]) for x in range(src[0]) if mask[3][y][x] < 128)
            check("inpaint --match-colors: pixels outside the mask unchanged", kept)
            check("inpaint --match-colors: the fill differs from --keep-known alone",
                  max_diff(got, read_png(outs["kk"])) > 0)
            check("inpaint --keep-known: the fill differs from the authors' sampler",
                  max_diff(got, read_png(os.path.join(f, "expected.png"))) > 2)
            cf = read_png(outs["cf"])
            check("inpaint --color-fix: pixels outside the mask unchanged",
                  all(cf[3][y][x * 3:x * 3 + 3] == src[3][y][x * 3:x * 3 + 3]
                      for y in range(src[1]) for x in range(src[0]) if mask[3][y][x] < 128))
            check("inpaint --color-fix: the fill differs from --match-colors alone",
                  max_diff(cf, got) > 0)
            check("inpaint without --authors: the aids and the plug-in's region are on (= "
                  "--keep-known --match-colors --color-fix --context-padding 64 --working-size "
                  "512 --mask-grow 4 --mask-blur 8 --precision auto)",
                  read_png(outs["default"]) == read_png(outs["region"]))
            check("inpaint: mask grow and blur change pixels next to the mask",
                  read_png(outs["default"]) != cf)
            a, b = read_png(outs["full"]), read_png(outs["full-kk"])
            check("inpaint --keep-known --match-colors with everything masked: the same as "
                  "without", a == b,
                  f"max diff {max_diff(a, b)}")

        f = os.path.join(SHARED, "fixtures", "ldm-sr-tiny")
        ref = os.path.join(f, "reference.safetensors")
        for model in ("model.ckpt", "model.safetensors"):
            for eta, expected in (("0", "expected_eta0.png"), ("1", "expected.png")):
                out = os.path.join(tmp, "up.png")
                args = ["upscale", "--model", os.path.join(f, model), "--image",
                        os.path.join(f, "lowres.png"), "--output", out, "--steps", "5",
                        "--eta", eta, "--x-T", ref + ":ddim.x_T", "--quiet", "--authors"]
                if eta == "1":
                    args += ["--step-noise", ref + ":eta1.ddim.step%02d.noise"]
                r = ldm(*args)
                check(f"upscale {model} eta {eta}: exit 0", r.returncode == 0, r.stderr)
                if r.returncode:
                    continue
                d = max_diff(read_png(out), read_png(os.path.join(f, expected)))
                check(f"upscale {model} eta {eta}: within 2/255 of {expected}", d <= 2,
                      f"max diff {d}")

        # The colour fix (default): each 4x4 block of the output averages to its input pixel.
        lr = read_png(os.path.join(f, "lowres.png"))
        outs = {}
        for name, extra in (("authors", ["--authors"]), ("default", []),
                            ("authors-fix", ["--authors", "--color-fix", "--precision", "auto"])):
            outs[name] = os.path.join(tmp, f"up-{name}.png")
            r = ldm("upscale", "--model", os.path.join(f, "model.safetensors"), "--image",
                    os.path.join(f, "lowres.png"), "--output", outs[name], "--steps", "5",
                    "--eta", "0", "--x-T", ref + ":ddim.x_T", "--quiet", *extra)
            check(f"upscale ({name}): exit 0", r.returncode == 0, r.stderr)

        def block_error(path):
            w, h, c, rows = read_png(path)
            total = 0
            for y in range(lr[1]):
                for x in range(lr[0]):
                    for k in range(3):
                        m = sum(rows[4 * y + dy][(4 * x + dx) * c + k] for dy in range(4)
                                for dx in range(4)) / 16
                        total += abs(m - lr[3][y][x * lr[2] + k])
            return total / (lr[0] * lr[1] * 3)
        if all(os.path.exists(o) for o in outs.values()):
            e_authors, e_fix = block_error(outs["authors"]), block_error(outs["default"])
            check("upscale: the colour fix is on by default (= --authors --color-fix "
                  "--precision auto)",
                  read_png(outs["default"]) == read_png(outs["authors-fix"]))
            check("upscale --color-fix: block means within 1 level of the input (and closer "
                  "than without)", e_fix < 1.0 and e_fix < e_authors,
                  f"mean block error {e_fix:.3f} (without: {e_authors:.3f})")

        # bad arguments: exit 2 with a message naming the problem
        f = os.path.join(SHARED, "fixtures", "ldm-inpaint-tiny")
        base = ["inpaint", "--model", os.path.join(f, "model.ckpt"), "--image",
                os.path.join(f, "image.png"), "--mask", os.path.join(f, "mask.png"),
                "--output", os.path.join(tmp, "x.png"), "--quiet"]
        for extra, needle in ((["--steps", "0"], "steps"), (["--steps", "abc"], "steps"),
                              (["--sampler", "euler-x"], "sampler"), (["--eta", "-1"], "eta"),
                              (["--eta", "1.5"], "eta"),
                              (["--x-T", ref + ":nope"], "nope"),
                              (["--x-T", os.path.join(f, "expected.png") + ":t"], "expected.png")):
            r = ldm(*base, *extra)
            check(f"inpaint {' '.join(extra)}: exit 2 naming {needle}",
                  r.returncode == 2 and needle in r.stderr, r.stderr)
        sr = os.path.join(SHARED, "fixtures", "ldm-sr-tiny", "model.ckpt")
        r = ldm(*(base[:2] + [sr] + base[3:]))
        check("inpaint with the SR model: exit 2", r.returncode == 2 and "super-resolution" in r.stderr,
              r.stderr)
        r = ldm("upscale", "--model", os.path.join(f, "model.ckpt"), "--image",
                os.path.join(f, "image.png"), "--output", os.path.join(tmp, "y.png"), "--quiet")
        check("upscale with the inpainting model: exit 2", r.returncode == 2, r.stderr)
        r = ldm("inpaint", "--model", os.path.join(f, "model.ckpt"), "--image",
                os.path.join(f, "image.png"), "--output", "x.png")
        check("inpaint without --mask: exit 2", r.returncode == 2 and "--mask" in r.stderr,
              r.stderr)


def ldm_env(env, *args):
    return subprocess.run([LDM, *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **env))


def run_builtin_lookup():
    """Without --model, `ldm` takes the built-in model of the task: only from
    $GIMP_LDM_MODEL_DIR when that is set (an empty folder = a clear error naming the place)."""
    f = os.path.join(SHARED, "fixtures", "ldm-inpaint-tiny")
    common = ["--image", os.path.join(f, "image.png"), "--mask", os.path.join(f, "mask.png"),
              "--steps", "2", "--seed", "7", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        empty = os.path.join(tmp, "empty")
        os.makedirs(empty)
        r = ldm_env({"GIMP_LDM_MODEL_DIR": empty}, "inpaint", *common,
                    "--output", os.path.join(tmp, "x.png"))
        want = os.path.join(empty, "ldm-inpaint-builtin.safetensors")
        check("no built-in model: exit 2 naming where it looked",
              r.returncode == 2 and "not installed" in r.stderr and want in r.stderr, r.stderr)
        models = os.path.join(tmp, "models")
        os.makedirs(models)
        os.symlink(os.path.join(f, "model.safetensors"),
                   os.path.join(models, "ldm-inpaint-builtin.safetensors"))
        os.symlink(os.path.join(f, "config.yaml"), os.path.join(models, "ldm-inpaint-builtin.yaml"))
        a, b = os.path.join(tmp, "builtin.png"), os.path.join(tmp, "given.png")
        r1 = ldm_env({"GIMP_LDM_MODEL_DIR": models}, "inpaint", *common, "--output", a)
        r2 = ldm("inpaint", "--model", os.path.join(f, "model.safetensors"), *common,
                 "--output", b)
        check("built-in model from GIMP_LDM_MODEL_DIR: exit 0", r1.returncode == 0 and
              r2.returncode == 0, r1.stderr + r2.stderr)
        if r1.returncode == 0 and r2.returncode == 0:
            check("built-in model: the same picture as with --model", read_png(a) == read_png(b))
        r = ldm_env({"GIMP_LDM_MODEL_DIR": models}, "upscale", "--image",
                    os.path.join(f, "image.png"), "--output", os.path.join(tmp, "u.png"), "-q")
        check("upscale without a built-in SR model: exit 2 naming it", r.returncode == 2
              and "ldm-sr-builtin.safetensors" in r.stderr, r.stderr)


def run_init_strength():
    """--init fill / original with --strength: the last share of the steps runs (and ldm says
    so), pixels outside the mask stay exact, the same seed gives the same pixels, and the start
    matters (the picture differs from a pure-noise start)."""
    f = os.path.join(SHARED, "fixtures", "ldm-inpaint-tiny")
    base = ["inpaint", "--model", os.path.join(f, "model.safetensors"), "--image",
            os.path.join(f, "image.png"), "--mask", os.path.join(f, "mask.png"), "--steps", "10",
            "--seed", "5", "--mask-grow", "0", "--mask-blur", "0"]
    src, mask = read_png(os.path.join(f, "image.png")), read_png(os.path.join(f, "mask.png"))
    with tempfile.TemporaryDirectory() as tmp:
        outs = {}
        for name, extra in (("noise", []), ("fill", ["--init", "fill", "--strength", "0.5"]),
                            ("fill-again", ["--init", "fill", "--strength", "0.5"]),
                            ("original", ["--init", "original", "--strength", "0.5"])):
            outs[name] = os.path.join(tmp, name + ".png")
            r = ldm(*base, "--output", outs[name], *extra)
            check(f"inpaint --init {name}: exit 0", r.returncode == 0, r.stderr)
            if extra:
                check(f"inpaint --init {name} --strength 0.5: says 5 of 10 steps run",
                      "running the last 5 steps of the schedule for 10" in r.stderr, r.stderr)
        if all(os.path.exists(o) for o in outs.values()):
            got = {k: read_png(v) for k, v in outs.items()}
            for k in ("fill", "original"):
                kept = all(got[k][3][y][x * 3:x * 3 + 3] == src[3][y][x * 3:x * 3 + 3]
                           for y in range(src[1]) for x in range(src[0]) if mask[3][y][x] < 128)
                check(f"inpaint --init {k}: pixels outside the mask unchanged", kept)
            check("inpaint --init fill: the same seed gives the same pixels",
                  got["fill"] == got["fill-again"])
            check("inpaint --init fill differs from noise and from original",
                  max_diff(got["fill"], got["noise"]) > 0 and max_diff(got["fill"],
                                                                         got["original"]) > 0)
        f = os.path.join(SHARED, "fixtures", "ldm-sr-tiny")
        up = {}
        for name, extra in (("noise", []), ("original", ["--init", "original", "--strength",
                                                         "0.3"])):
            up[name] = os.path.join(tmp, "up-" + name + ".png")
            r = ldm("upscale", "--model", os.path.join(f, "model.safetensors"), "--image",
                    os.path.join(f, "lowres.png"), "--output", up[name], "--steps", "10",
                    "--seed", "5", "-q", *extra)
            check(f"upscale --init {name}: exit 0", r.returncode == 0, r.stderr)
        if all(os.path.exists(o) for o in up.values()):
            a, b = read_png(up["noise"]), read_png(up["original"])
            check("upscale --init original: 4x, and differs from a noise start",
                  a[:3] == b[:3] and max_diff(a, b) > 0)


def run_timings():
    """--timings: one line at the end with load, encode, the steps (their count is what ran:
    all 10, or the last 3 of 10 at --strength 0.3), decode and the whole, which the parts add
    up to, and the peak RSS; -q keeps it (it is asked for) and drops the rest."""
    f = os.path.join(SHARED, "fixtures", "ldm-sr-tiny")
    number = r"(\d+\.\d+)"
    line = re.compile(rf"^ldm: timings: load {number} s, encode (-?\d+\.\d+) s, (\d+) steps "
                      rf"{number} s \({number} s each\), decode {number} s, whole {number} s; "
                      rf"peak RSS (\d+) MB; (?:fp32|bf16)$")
    with tempfile.TemporaryDirectory() as tmp:
        for extra, want in (([], 10), (["--init", "original", "--strength", "0.3"], 3)):
            r = ldm("upscale", "--model", os.path.join(f, "model.safetensors"), "--image",
                    os.path.join(f, "lowres.png"), "--output", os.path.join(tmp, "u.png"),
                    "--steps", "10", "--seed", "5", "-q", "--timings", *extra)
            lines = r.stderr.splitlines()
            m = line.match(lines[0]) if len(lines) == 1 else None
            check(f"upscale --timings {' '.join(extra)}: exit 0, one line", r.returncode == 0
                  and m is not None, r.stderr)
            if not m:
                continue
            load, encode, steps, steps_s, _, decode, whole, rss = (float(x) for x in m.groups())
            check(f"--timings {' '.join(extra)}: {want} steps", steps == want, r.stderr)
            parts = load + encode + steps_s + decode
            check(f"--timings {' '.join(extra)}: the parts add up to the whole",
                  abs(parts - whole) <= 0.02 + 0.01 * whole and min(load, steps_s, decode) >= 0,
                  r.stderr)
            # the fixture's weights alone are more than 1 MB; ldm is far below 2 GB on it
            check(f"--timings {' '.join(extra)}: a peak RSS", 1 <= rss < 2048, r.stderr)


def cpu_has_bf16():
    """Whether the kernel reports AVX512-BF16 or AMX-BF16 for this CPU (what --precision auto
    runs bfloat16 on)."""
    with open("/proc/cpuinfo") as f:
        flags = set(f.read().split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def run_precision():
    """--precision: auto runs bf16 exactly where /proc/cpuinfo lists AVX512-BF16 or AMX-BF16,
    fp32 and --authors run fp32 (the --timings line says which ran); bf16 keeps every pixel
    outside the mask and stays within a few levels of fp32 inside it, or, on a CPU without
    bfloat16, fails saying so; an unknown precision is a bad argument."""
    f = os.path.join(SHARED, "fixtures", "ldm-inpaint-tiny")
    has = cpu_has_bf16()
    with tempfile.TemporaryDirectory() as tmp:
        common = ["inpaint", "--model", os.path.join(f, "model.safetensors"), "--image",
                  os.path.join(f, "image.png"), "--mask", os.path.join(f, "mask.png"),
                  "--steps", "3", "--seed", "2", "-q", "--timings"]
        outs = {}
        for extra, want in (([], "bf16" if has else "fp32"), (["--precision", "fp32"], "fp32"),
                            (["--authors"], "fp32"), (["--precision", "bf16"], "bf16")):
            out = os.path.join(tmp, f"p{len(outs)}.png")
            r = ldm(*common, "--output", out, *extra)
            name = " ".join(extra) or "(default)"
            if want == "bf16" and not has:
                check(f"--precision bf16 without bfloat16 instructions: exit 1 saying so",
                      r.returncode == 1 and "bfloat16" in r.stderr, r.stderr)
                continue
            check(f"inpaint {name}: exit 0, runs {want}",
                  r.returncode == 0 and r.stderr.rstrip().endswith("; " + want), r.stderr)
            if r.returncode == 0:
                outs[name] = read_png(out)
        r = ldm(*common, "--output", os.path.join(tmp, "x.png"), "--precision", "half")
        check("--precision half: exit 2 naming --precision",
              r.returncode == 2 and "--precision" in r.stderr, r.stderr)
        if has and "--precision bf16" in outs:
            check("--precision auto = bf16 here, bit for bit",
                  outs["(default)"] == outs["--precision bf16"])
        if not has:
            return
        # what bfloat16 changes in a picture a user would make: the built-in model on the
        # sample photo, a hard-edged hole (grow 0, blur 0: every pixel outside it is kept)
        photo = os.path.join(SAMPLES, "chelsea.png")
        src = read_png(photo)
        w, h = src[0], src[1]
        hole = [[1 if 180 <= x < 260 and 100 <= y < 170 else 0 for x in range(w)]
                for y in range(h)]
        mask = os.path.join(tmp, "hole.png")
        pngutil.write_png(mask, w, h, 1, [bytes(255 * v for v in row) for row in hole])
        got = {}
        for p in ("fp32", "bf16"):
            out = os.path.join(tmp, f"chelsea-{p}.png")
            r = ldm("inpaint", "--image", photo, "--mask", mask, "--output", out, "--steps", "4",
                    "--seed", "3", "--mask-grow", "0", "--mask-blur", "0", "-q",
                    "--precision", p)
            check(f"built-in model, --precision {p}: exit 0", r.returncode == 0, r.stderr)
            if r.returncode:
                return
            got[p] = read_png(out)
        half, full = got["bf16"], got["fp32"]
        kept = all(half[3][y][x * 3:x * 3 + 3] == src[3][y][x * 3:x * 3 + 3]
                   for y in range(h) for x in range(w) if not hole[y][x])
        check("built-in model, bf16: every pixel outside the hole kept", kept)
        diffs = [abs(a - b) for y in range(h) for x in range(w) if hole[y][x]
                 for a, b in zip(half[3][y][x * 3:x * 3 + 3], full[3][y][x * 3:x * 3 + 3])]
        mean = sum(diffs) / len(diffs)
        check("built-in model, bf16: the fill within 1 level (mean) of fp32's, not equal",
              0 < mean <= 1, f"mean difference {mean:.3f}")


def dilate(mask, w, h, r):
    """The square dilation by r of a mask (rows of 0/1): every pixel within r (Chebyshev)."""
    rows = [[max(row[max(0, x - r):x + r + 1]) for x in range(w)] for row in mask]
    return [[max(rows[yy][x] for yy in range(max(0, y - r), min(h, y + r + 1)))
             for x in range(w)] for y in range(h)]


def run_region():
    """`ldm inpaint` with the plug-in's region options on a photo (data/samples/chelsea.png,
    451x300) with a big elliptical hole: the crop around the hole (+ grow + blur + context)
    runs at --working-size (ldm says the size; it is the crop scaled to the working size), the
    pixels farther than grow + blur from the hole are the input's exactly, the hole changes;
    with grow 0, blur 0, the whole image as context and full size, the result is the full-image
    run (--authors with the aids) bit for bit."""
    f = os.path.join(SHARED, "fixtures", "ldm-inpaint-tiny")
    photo = os.path.join(SAMPLES, "chelsea.png")
    src = read_png(photo)
    w, h = src[0], src[1]
    cx, cy, rx, ry = 220, 150, 90, 60
    hole = [[1 if ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1 else 0 for x in range(w)]
            for y in range(h)]
    with tempfile.TemporaryDirectory() as tmp:
        mask = os.path.join(tmp, "hole.png")
        pngutil.write_png(mask, w, h, 1, [bytes(255 * v for v in row) for row in hole])
        common = ["inpaint", "--model", os.path.join(f, "model.safetensors"), "--image", photo,
                  "--mask", mask, "--steps", "2", "--seed", "3"]
        out = os.path.join(tmp, "region.png")
        r = ldm(*common, "--output", out, "--working-size", "96", "--mask-grow", "3",
                "--mask-blur", "5", "--context-padding", "20")
        check("inpaint --working-size 96: exit 0", r.returncode == 0, r.stderr)
        if r.returncode == 0:
            # the crop: the hole's bounds (131..309 x 90..210) + 3 + 5 + 20, in the image
            x0, y0 = cx - rx - 28, cy - ry - 28
            cw, ch = 2 * rx + 1 + 56, 2 * ry + 1 + 56
            mw, mh = 96, round(ch * 96 / cw)
            check("inpaint --working-size: the crop runs at the working size",
                  f"the {cw}x{ch} crop at ({x0}, {y0}) runs at {mw}x{mh}" in r.stderr, r.stderr)
            got = read_png(out)
            near = dilate(hole, w, h, 3 + 5 + 1)
            kept = all(got[3][y][x * 3:x * 3 + 3] == src[3][y][x * 3:x * 3 + 3]
                       for y in range(h) for x in range(w) if not near[y][x])
            check("inpaint --working-size: pixels beyond grow + blur of the hole exact", kept)
            changed = sum(got[3][y][x * 3:x * 3 + 3] != src[3][y][x * 3:x * 3 + 3]
                          for y in range(h) for x in range(w) if hole[y][x])
            check("inpaint --working-size: the hole is regenerated",
                  changed > sum(map(sum, hole)) // 2, f"{changed} pixels changed")
        a, b = os.path.join(tmp, "a.png"), os.path.join(tmp, "b.png")
        r1 = ldm(*common, "--output", a, "--quiet", "--mask-grow", "0", "--mask-blur", "0",
                 "--context-padding", "16384", "--working-size", "0")
        # --authors implies fp32; --precision auto puts back r1's (the default)
        r2 = ldm(*common, "--output", b, "--quiet", "--authors", "--keep-known",
                 "--match-colors", "--color-fix", "--precision", "auto")
        check("inpaint: grow 0, blur 0, whole context, full size = the full-image run",
              r1.returncode == 0 and r2.returncode == 0 and read_png(a) == read_png(b),
              r1.stderr + r2.stderr)
        for option, value in (("--working-size", "16"), ("--mask-grow", "257"),
                              ("--mask-blur", "-1"), ("--context-padding", "x")):
            r = ldm(*common, "--output", a, option, value)
            check(f"inpaint {option} {value}: exit 2 naming it",
                  r.returncode == 2 and option in r.stderr, r.stderr)


def read_safetensors_f32(path, name):
    """(shape, values) of the float32 tensor NAME of a .safetensors file."""
    import json
    import struct
    with open(path, "rb") as fp:
        n = struct.unpack("<Q", fp.read(8))[0]
        header = json.loads(fp.read(n))
        t = header[name]
        assert t["dtype"] == "F32", t
        begin, end = t["data_offsets"]
        fp.seek(8 + n + begin)
        data = fp.read(end - begin)
    return t["shape"], struct.unpack(f"<{len(data) // 4}f", data)


def run_prompts():
    """`ldm inpaint --prompt/--negative-prompt/--guidance` with sd-inpaint-clip-tiny (its
    prompts.json: the authors' DDIM run from x_T, CLIP inside the checkpoint) reproduces
    expected.png within 2/255 inside the mask (expected.png is the decoded image, not
    composited: the authors truncate, the engine rounds); outside, the input exactly."""
    import json
    f = os.path.join(SHARED, "fixtures", "sd-inpaint-clip-tiny")
    if not os.path.isdir(f):
        print("sd-inpaint-clip-tiny not found: skipping the prompt checks")
        return
    with open(os.path.join(f, "prompts.json")) as fp:
        pj = json.load(fp)
    ref = os.path.join(f, "reference.safetensors")
    src, mask = read_png(os.path.join(f, "image.png")), read_png(os.path.join(f, "mask.png"))
    want = read_png(os.path.join(f, "expected.png"))
    inside = [(x, y) for y in range(src[1]) for x in range(src[0]) if mask[3][y][x] >= 128]
    outside = [(x, y) for y in range(src[1]) for x in range(src[0]) if mask[3][y][x] < 128]

    def px(img, x, y):
        return img[3][y][x * 3:x * 3 + 3]

    with tempfile.TemporaryDirectory() as tmp:
        common = ["--image", os.path.join(f, "image.png"), "--mask", os.path.join(f, "mask.png"),
                  "--authors", "--sampler", "ddim", "--steps", str(pj["steps"]),
                  "--eta", str(pj["eta"]), "--x-T", ref + ":" + pj["x_T"]]
        outs = {}
        for model in ("model.ckpt", "model.safetensors"):
            out = outs[model] = os.path.join(tmp, model + ".png")
            r = ldm("inpaint", "--model", os.path.join(f, model), "--output", out, *common,
                    "--prompt", pj["prompt"], "--negative-prompt", pj["negative_prompt"],
                    "--guidance", str(pj["guidance"]), "--quiet")
            check(f"prompt {model}: exit 0", r.returncode == 0, r.stderr)
            if r.returncode:
                continue
            got = read_png(out)
            d = max(abs(a - b) for x, y in inside for a, b in zip(px(got, x, y), px(want, x, y)))
            check(f"prompt {model}: within 2/255 of expected.png in the mask "
                  f"({len(inside)} pixels)", d <= 2, f"max diff {d}")
            check(f"prompt {model}: pixels outside the mask unchanged",
                  all(px(got, x, y) == px(src, x, y) for x, y in outside))
        other = os.path.join(tmp, "other.png")
        r = ldm("inpaint", "--model", os.path.join(f, "model.safetensors"), "--output", other,
                *common, "--prompt", "a red cube on a table", "--quiet")
        check("another prompt: another fill", r.returncode == 0 and
              max_diff(read_png(other), read_png(outs["model.safetensors"])) > 2, r.stderr)
        for g in ("0.5", "31", "nan"):
            r = ldm("inpaint", "--model", os.path.join(f, "model.safetensors"), "--output",
                    other, *common, "--prompt", "x", "--guidance", g)
            check(f"--guidance {g}: exit 2 saying 1 to 30",
                  r.returncode == 2 and "1 to 30" in r.stderr, r.stderr)
        r = ldm("inpaint", "--model", os.path.join(f, "model.safetensors"), "--output", other,
                *common, "--prompt", "x", "--context", ref + ":cond.context")
        check("--prompt with --context: exit 2", r.returncode == 2 and "--context" in r.stderr,
              r.stderr)
        # a checkpoint without a text encoder: a clear message
        plain = os.path.join(SHARED, "fixtures", "sd-inpaint-tiny", "model.safetensors")
        r = ldm("inpaint", "--model", plain, "--output", other, *common, "--prompt", "x")
        check("no text encoder: exit 2 saying so",
              r.returncode == 2 and "no text encoder" in r.stderr, r.stderr)
        # ldm encode-text: the context of the fixture's prompt = the authors' cond.context
        enc = os.path.join(tmp, "context.safetensors")
        r = ldm("encode-text", "--model", os.path.join(f, "model.ckpt"), "--prompt",
                pj["prompt"], "--output", enc)
        check("encode-text: exit 0", r.returncode == 0, r.stderr)
        if r.returncode == 0:
            shape, got = read_safetensors_f32(enc, "context")
            want_shape, want = read_safetensors_f32(ref, "cond.context")
            err = max(abs(a - b) for a, b in zip(got, want)) / (max(want) - min(want))
            check("encode-text: context 1 x 77 x dim = cond.context within 1e-4 of its range",
                  shape == want_shape == [1, 77, 64] and err <= 1e-4, f"{shape} {err:.3g}")
        r = ldm("encode-text", "--model", plain, "--prompt", "x", "--output", enc)
        check("encode-text without a text encoder: exit 2",
              r.returncode == 2 and "no text encoder" in r.stderr, r.stderr)
        # an LDM model ignores the prompt, and says so
        l = os.path.join(SHARED, "fixtures", "ldm-inpaint-tiny")
        r = ldm("inpaint", "--model", os.path.join(l, "model.safetensors"), "--image",
                os.path.join(l, "image.png"), "--mask", os.path.join(l, "mask.png"),
                "--output", other, "--steps", "2", "--seed", "1", "--prompt", "a horse")
        check("LDM model: the prompt is ignored with a note",
              r.returncode == 0 and "prompt is ignored" in r.stderr, r.stderr)


def main():
    r = ldm("help")
    check("help exits 0 and lists info", r.returncode == 0 and "info" in r.stdout, r.stderr)
    r = ldm()
    check("no command: exit 2 with usage", r.returncode == 2 and "usage" in r.stderr)
    r = ldm("frobnicate")
    check("unknown command: exit 2", r.returncode == 2 and "frobnicate" in r.stderr)
    r = ldm("info")
    check("info without a file: exit 2", r.returncode == 2 and "usage" in r.stderr)
    r = ldm("info", "/nonexistent/model.ckpt")
    check("missing file: exit 2 naming it",
          r.returncode == 2 and "/nonexistent/model.ckpt" in r.stderr, r.stderr)

    if not os.path.isdir(os.path.join(SHARED, "fixtures")):
        print("fixtures not found: skipping fixture checks")
    else:
        for fixture, kind in FIXTURES.items():
            outputs = {}
            for fname in ("model.ckpt", "model.safetensors"):
                path = os.path.join(SHARED, "fixtures", fixture, fname)
                r = ldm("info", path)
                check(f"info {fixture}/{fname}: exit 0", r.returncode == 0, r.stderr)
                check(f"info {fixture}/{fname}: kind", kind.lower() in r.stdout.lower(), r.stdout)
                check(f"info {fixture}/{fname}: config source named",
                      "config.yaml" in r.stdout, r.stdout)
                check(f"info {fixture}/{fname}: EMA weights used", "EMA" in r.stdout, r.stdout)
                outputs[fname] = [l for l in r.stdout.splitlines()
                                  if "parameters" in l.lower()]
            check(f"info {fixture}: both formats give the same parameter counts",
                  outputs["model.ckpt"] == outputs["model.safetensors"] and outputs["model.ckpt"],
                  repr(outputs))

            path = os.path.join(SHARED, "fixtures", fixture, "model.safetensors")
            r = ldm("tensors", path)
            names = [l.split()[0] for l in r.stdout.splitlines()]
            check(f"tensors {fixture}: lists them", r.returncode == 0 and
                  "model.diffusion_model.input_blocks.0.0.weight" in names, r.stderr)
            r = ldm("tensors", path, "model.diffusion_model.input_blocks.0.0.weight")
            check(f"tensors {fixture}: stats of one", r.returncode == 0 and
                  "non-finite 0" in r.stdout, r.stdout + r.stderr)
            r = ldm("tensors", path, "no.such.tensor")
            check(f"tensors {fixture}: unknown name exit 2", r.returncode == 2 and
                  "no.such.tensor" in r.stderr)

    if os.path.isdir(os.path.join(SHARED, "fixtures")):
        run_fixture_images()
        run_builtin_lookup()
        run_init_strength()
        run_timings()
        run_precision()
        run_region()
        run_prompts()

    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "notes.txt")
        with open(text, "w") as f:
            f.write("this is not a model, just some words long enough\n")
        r = ldm("info", text)
        check("a text file: exit 2 naming it", r.returncode == 2 and text in r.stderr, r.stderr)

    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
