"""Large images within a memory budget (`ldm ... --memory-limit`, issue 15):

1. The budget refusal: a 4000x3000 upscale within 150 MB is refused at once (exit 1), the
   message naming the limit and what would fit, its peak RSS under 200 MB (the PNG itself is
   36 MB of pixels).
2. The seam measure on a photo: a 160x120 crop of data/samples/chelsea.png upscaled 4x with
   the built-in SR model under the smallest budget that runs it (found by raising the limit
   from where it is refused), so that sampling and decoding run in windows; on the tile
   borders (the rows and columns where a U-Net or decoder window starts or ends, which ldm
   prints) the mean |gradient| is within 1.1 of the mean over every other row and column.
3. `--memory-limit` parsing: units, and bad values exit 2 naming the option."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import pngutil  # noqa: E402
from checks import check, report, sanitized  # noqa: E402

LDM = os.environ["LDM_EXE"]
SOURCE = os.environ.get("LDM_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SR_MODEL = os.path.join(SOURCE, "data", "models", "ldm-sr-builtin.safetensors")
PHOTO = os.path.join(SOURCE, "data", "samples", "chelsea.png")

def run_measured(*args, timeout=900):
    """ldm with its own peak RSS (os.wait4: this child only), in MB: (exit, stderr, MB)."""
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([LDM, *args], stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        err.seek(0)
        return (os.waitstatus_to_exitcode(status), err.read().decode(errors="replace"),
                usage.ru_maxrss / 1024)


# bfloat16 where the CPU has it (as core's dnn_bf16_supported)
BF16 = any(f in open("/proc/cpuinfo").read().split() for f in ("avx512_bf16", "amx_bf16"))


def budget_held(mb, rss, what):
    """The run's own peak RSS within its --memory-limit (not under a sanitizer, whose shadow
    memory the planner does not count)."""
    if not sanitized(os.environ.get("LDM_BUILD_DIR", "")):
        check(f"{what}: the peak RSS within the {mb} MB budget", rss <= mb, f"{rss:.0f} MB")
        print(f"{what}: budget {mb} MB, peak RSS {rss:.0f} MB")


def refusal(tmp):
    big = os.path.join(tmp, "big.png")
    row = bytes((x * 7) % 256 for x in range(4000 * 3))
    pngutil.write_png(big, 4000, 3000, 3, [row] * 3000)
    code, err, rss = run_measured("upscale", "--model", SR_MODEL, "--image", big, "--output",
                                  os.path.join(tmp, "out.png"), "--memory-limit", "150M")
    check("upscale 4000x3000 within 150 MB: refused (exit 1)", code == 1, f"{code} {err}")
    check("the refusal names the limit and what would fit or is needed",
          "memory limit of 150 MB" in err and ("fits" in err or "raise the memory limit" in err),
          err)
    if not sanitized(os.environ.get("LDM_BUILD_DIR", "")):
        check("the refusal comes before the work: peak RSS under 200 MB", rss < 200,
              f"{rss:.0f} MB")


def windows(length, win, overlap):
    """Origins of the windows along an axis, as core/run/tiles.c places them."""
    if win == 0 or win >= length:
        return [0]
    stride = max(1, win - overlap)
    n = (length - win + stride - 1) // stride + 1
    return [min(i * stride, length - win) for i in range(n)]


def seams(tmp):
    w, h, c, rows, _ = pngutil.read_png(PHOTO)
    x0, y0, cw, ch = 150, 60, 160, 120  # the cat's face and fur: detail everywhere
    crop = os.path.join(tmp, "crop.png")
    pngutil.write_png(crop, cw, ch, 3,
                      [bytes(rows[y][x0 * c:(x0 + cw) * c]) for y in range(y0, y0 + ch)])
    out, whole = os.path.join(tmp, "up.png"), os.path.join(tmp, "whole.png")
    plan, refused = None, 0
    for mb in range(40, 2000, 10):
        code, err, rss = run_measured("upscale", "--model", SR_MODEL, "--image", crop,
                                      "--output", out, "--steps", "5", "--seed", "1",
                                      "--memory-limit", f"{mb}M", timeout=1800)
        if code == 1 and "memory limit" in err:
            refused += 1
            continue
        check("a smaller budget was refused first", refused > 0)
        check(f"upscale under the smallest budget that runs it ({mb} MB): exit 0",
              code == 0, err)
        budget_held(mb, rss, "the default precision")
        # the planner counts what each precision holds (bf16: a copy of each layer's input)
        for precision in ("fp32", "bf16") if BF16 else ("fp32",):
            code, err_p, rss = run_measured("upscale", "--model", SR_MODEL, "--image", crop,
                                            "--output", os.path.join(tmp, "p.png"), "--steps",
                                            "1", "--seed", "1", "--memory-limit", f"{mb}M",
                                            "--precision", precision, timeout=1800)
            check(f"--precision {precision} within {mb} MB: exit 0 or a memory-limit refusal",
                  code == 0 or (code == 1 and "memory limit" in err_p), err_p)
            if code == 0:
                budget_held(mb, rss, f"--precision {precision}")
        line = [l for l in err.splitlines() if l.startswith("ldm: windows")]
        if line:
            # "ldm: windows (latent cells; 0 = whole): U-Net U (overlap O), encoder E,
            #  decoder D (overlap P)"
            words = line[0].replace(",", " ").replace("(", " ").replace(")", " ").split()
            nums = [int(t) for t in words if t.isdigit()]
            plan = {"unet": nums[1], "unet_overlap": nums[2], "decode": nums[4],
                    "decode_overlap": nums[5]}
        break
    check("the budget makes sampling and decoding run in windows",
          plan is not None and plan["unet"] > 0 and plan["decode"] > 0, repr(plan))
    if not plan or not os.path.exists(out):
        return
    r = subprocess.run([LDM, "upscale", "--model", SR_MODEL, "--image", crop, "--output", whole,
                        "--steps", "5", "--seed", "1", "--memory-limit", "8G", "-q"],
                       capture_output=True, text=True, timeout=1800)
    check("the same upscale within 8 GB (whole): exit 0", r.returncode == 0, r.stderr)
    ow, oh, oc, img, _ = pngutil.read_png(out)
    f = ow // cw
    lw, lh = cw, ch  # the SR latent is the input itself (160 x 120: a multiple of 4)
    borders_x, borders_y = set(), set()
    for win, ov in ((plan["unet"], plan["unet_overlap"]), (plan["decode"], plan["decode_overlap"])):
        for o in windows(lw, win, ov):
            borders_x.update({o * f, (o + win) * f} if win else set())
        for o in windows(lh, win, ov):
            borders_y.update({o * f, (o + win) * f} if win else set())
    borders_x = {b for b in borders_x if 0 < b < ow}
    borders_y = {b for b in borders_y if 0 < b < oh}

    def border_ratio(img):
        """mean |gradient| across the border lines / across every other line"""
        def col_grad(x):  # mean |I(x) - I(x - 1)| down column x
            return sum(abs(img[y][x * oc + k] - img[y][(x - 1) * oc + k])
                       for y in range(oh) for k in range(3)) / (oh * 3)

        def row_grad(y):
            return sum(abs(img[y][i] - img[y - 1][i]) for i in range(ow * oc)
                       if i % oc < 3) / (ow * 3)
        cols = {x: col_grad(x) for x in range(1, ow)}
        rws = {y: row_grad(y) for y in range(1, oh)}
        on = [cols[x] for x in borders_x] + [rws[y] for y in borders_y]
        off = [v for x, v in cols.items() if x not in borders_x] + \
              [v for y, v in rws.items() if y not in borders_y]
        return (sum(on) / len(on)) / (sum(off) / len(off))

    ratio = border_ratio(img)
    untiled = border_ratio(pngutil.read_png(whole)[3]) if os.path.exists(whole) else 0
    print(f"seams: {len(borders_x)} border columns, {len(borders_y)} border rows, "
          f"mean |gradient| on them / elsewhere = {ratio:.3f} (the whole run on the same "
          f"lines: {untiled:.3f})")
    check("seams: mean |gradient| on the tile borders within 1.1 of elsewhere",
          ratio <= 1.1, f"ratio {ratio:.3f}")
    check("seams: the borders not blurred either (within 1.1 of the whole run's same lines)",
          ratio >= untiled / 1.1, f"ratio {ratio:.3f}, whole {untiled:.3f}")


def parsing(tmp):
    crop = os.path.join(tmp, "small.png")
    pngutil.write_png(crop, 8, 8, 3, [bytes(24)] * 8)
    for value in ("0", "-5", "12X", "1e99", "0.5K"):
        r = subprocess.run([LDM, "upscale", "--model", SR_MODEL, "--image", crop, "--output",
                            os.path.join(tmp, "o.png"), "--memory-limit", value, "-q"],
                           capture_output=True, text=True, timeout=60)
        check(f"--memory-limit {value}: exit 2 naming the option",
              r.returncode == 2 and "--memory-limit" in r.stderr, r.stderr)
    for value in ("2G", "2048MB", "2048", "2097152k", "2GiB"):
        r = subprocess.run([LDM, "upscale", "--model", SR_MODEL, "--image", crop, "--output",
                            os.path.join(tmp, "o.png"), "--memory-limit", value, "-q",
                            "--steps", "1"], capture_output=True, text=True, timeout=120)
        check(f"--memory-limit {value}: accepted", r.returncode == 0, r.stderr)


def main():
    if not os.path.exists(SR_MODEL):
        print("the built-in SR model is not there: nothing to test")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        for part in (parsing, refusal, seams):
            sub = os.path.join(tmp, part.__name__)
            os.makedirs(sub)
            part(sub)
    return report()


if __name__ == "__main__":
    sys.exit(main())
