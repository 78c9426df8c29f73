"""`ldm` as a careless user runs it: nothing the user had is lost or changed, bad arguments and
paths get a clear message (exit 2) before any work. Each case was seen to go wrong before it was
fixed (issue 11)."""
import os
import random
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import pngutil  # noqa: E402

LDM = os.environ["LDM_EXE"]
SHARED = os.environ.get("LDM_SHARED_DIR", "")
INPAINT = os.path.join(SHARED, "fixtures", "ldm-inpaint-tiny")
SR = os.path.join(SHARED, "fixtures", "ldm-sr-tiny")
IMAGE, MASK = os.path.join(INPAINT, "image.png"), os.path.join(INPAINT, "mask.png")

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    detail = detail if len(detail) < 2000 else detail[:2000] + "..."
    print(f"{'ok' if ok else 'FAIL'}: {name}{': ' + detail if detail and not ok else ''}",
          flush=True)
    return bool(ok)


def ldm(*args, shell_prefix=None, timeout=120):
    cmd = [LDM, *args]
    if shell_prefix:  # run under bash with limits: shell_prefix; exec ldm ...
        cmd = ["bash", "-c", shell_prefix + '; exec "$0" "$@"', *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def inpaint(out, image=IMAGE, mask=MASK, *extra):
    # a hard mask (no grow, no blur): these checks are about which pixels the mask keeps
    return ldm("inpaint", "--model", os.path.join(INPAINT, "model.safetensors"), "--image",
               image, "--mask", mask, "--output", out, "--steps", "2", "--seed", "3", "-q",
               "--mask-grow", "0", "--mask-blur", "0", *extra)


def upscale(image, out, *extra, shell_prefix=None):
    return ldm("upscale", "--model", os.path.join(SR, "model.safetensors"), "--image", image,
               "--output", out, "--steps", "2", "--seed", "3", "-q", *extra,
               shell_prefix=shell_prefix)


def png(path):
    w, h, c, rows, maxval = pngutil.read_png(path)
    return w, h, c, maxval, rows


def outputs_safety(tmp):
    # A failed write (file size limit) must leave the target, here the input itself, as it was.
    s = os.path.join(tmp, "s.png")
    with open(os.path.join(SR, "lowres.png"), "rb") as f:
        original = f.read()
    with open(s, "wb") as f:
        f.write(original)
    r = upscale(s, s, shell_prefix="trap '' XFSZ; ulimit -f 4")
    now = open(s, "rb").read() if os.path.exists(s) else None
    check("failed write (ulimit -f): exit 1", r.returncode == 1, f"{r.returncode} {r.stderr}")
    check("failed write: the input = output file is kept as it was", now == original,
          "missing" if now is None else "changed")
    check("failed write: says the file is unchanged", "unchanged" in r.stderr, r.stderr)
    check("failed write: no temporary file left",
          sorted(os.listdir(tmp)) == ["s.png"], repr(os.listdir(tmp)))

    # The same file as input and output, written successfully: replaced, permissions kept.
    os.chmod(s, 0o640)
    r = upscale(s, s)
    check("output = input: exit 0", r.returncode == 0, r.stderr)
    w, h = png(s)[:2]
    check("output = input: replaced by the 4x picture", (w, h) == (4 * png(
        os.path.join(SR, "lowres.png"))[0], 4 * png(os.path.join(SR, "lowres.png"))[1]))
    check("output = input: permissions kept", stat.S_IMODE(os.stat(s).st_mode) == 0o640,
          oct(os.stat(s).st_mode))

    # A symbolic link as output: the file it points to is written, the link stays.
    target, link = os.path.join(tmp, "target.png"), os.path.join(tmp, "link.png")
    with open(target, "wb") as f:
        f.write(b"old")
    os.symlink(target, link)
    r = upscale(os.path.join(SR, "lowres.png"), link)
    check("symlink output: exit 0, link kept, its target written",
          r.returncode == 0 and os.path.islink(link) and png(target)[0] > 0, r.stderr)

    # A pipe is written in place (a device such as /dev/full is never replaced by a file).
    fifo = os.path.join(tmp, "pipe.png")
    os.mkfifo(fifo)
    got = {}

    def reader():
        with open(fifo, "rb") as f:
            got["data"] = f.read()
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    r = upscale(os.path.join(SR, "lowres.png"), fifo)
    t.join(60)
    check("pipe output: written in place, still a pipe",
          r.returncode == 0 and got.get("data", b"")[:4] == b"\x89PNG"
          and stat.S_ISFIFO(os.lstat(fifo).st_mode), r.stderr)

    # Bad output paths are refused before any work (exit 2, the run's seed line never comes).
    for name, out in (("missing folder", os.path.join(tmp, "no", "such", "x.png")),
                      ("a folder", tmp), ("unknown type", os.path.join(tmp, "x.tif"))):
        start = time.monotonic()
        r = ldm("inpaint", "--model", os.path.join(INPAINT, "model.safetensors"), "--image",
                IMAGE, "--mask", MASK, "--output", out, "--steps", "1000")
        check(f"output {name}: exit 2 at once, naming it",
              r.returncode == 2 and out in r.stderr and "seed" not in r.stderr
              and time.monotonic() - start < 10, r.stderr)

    # JPEG output: JPEG bytes; an RGBA picture is refused (JPEG has no alpha).
    jpg = os.path.join(tmp, "x.jpg")
    r = upscale(os.path.join(SR, "lowres.png"), jpg)
    with open(jpg, "rb") as f:
        head = f.read(3) if os.path.exists(jpg) else b""
    check("--output x.jpg writes a JPEG", r.returncode == 0 and head == b"\xff\xd8\xff",
          r.stderr + repr(head))
    w, h, c, _, rows = png(IMAGE)
    rgba = os.path.join(tmp, "rgba.png")
    pngutil.write_png(rgba, w, h, 4, [sum(([*r[3 * x:3 * x + 3], 200] for x in range(w)), [])
                                      for r in rows])
    r = inpaint(os.path.join(tmp, "y.jpg"), rgba)
    check("RGBA in, .jpg out: exit 2 saying why", r.returncode == 2 and "alpha" in r.stderr,
          r.stderr)


def deep_pixels(tmp):
    """16-bit PNGs: the samples outside the mask are the file's own, bit for bit, with or
    without a gAMA chunk; 8-bit files with a gAMA chunk are not converted either."""
    w, h, c, _, rows = png(IMAGE)
    mask = png(MASK)[4]
    rnd = random.Random(5)
    deep_rows = [[v * 257 + rnd.randrange(-100, 100) if 0 < v < 255 else v * 257 for v in r]
                 for r in rows]
    for label, chunks in (("no gAMA", ()), ("gAMA 1.0", ((b"gAMA", struct.pack(">I", 100000)),)),
                          ("sRGB", ((b"sRGB", b"\0"),))):
        src, out = os.path.join(tmp, "deep.png"), os.path.join(tmp, "deep-out.png")
        pngutil.write_png(src, w, h, 3, deep_rows, depth=16, chunks=chunks)
        r = inpaint(out, src)
        if not check(f"16-bit PNG ({label}): exit 0", r.returncode == 0, r.stderr):
            continue
        ow, oh, oc, maxval, got = png(out)
        check(f"16-bit PNG ({label}): 16-bit out", maxval == 65535 and (ow, oh, oc) == (w, h, 3))
        bad = sum(1 for y in range(h) for x in range(w) if mask[y][x] < 128
                  and got[y][3 * x:3 * x + 3] != deep_rows[y][3 * x:3 * x + 3])
        check(f"16-bit PNG ({label}): every sample outside the mask kept", bad == 0,
              f"{bad} pixels differ")
        inside = sum(1 for y in range(h) for x in range(w) if mask[y][x] >= 128
                     and got[y][3 * x:3 * x + 3] != deep_rows[y][3 * x:3 * x + 3])
        check(f"16-bit PNG ({label}): the fill is generated", inside > 0)
    src, out = os.path.join(tmp, "gamma8.png"), os.path.join(tmp, "gamma8-out.png")
    pngutil.write_png(src, w, h, 3, rows, chunks=((b"gAMA", struct.pack(">I", 100000)),))
    r = inpaint(out, src)
    got = png(out)[4] if r.returncode == 0 else None
    check("8-bit PNG with gAMA 1.0: pixels outside the mask kept", got is not None and all(
        got[y][3 * x:3 * x + 3] == rows[y][3 * x:3 * x + 3]
        for y in range(h) for x in range(w) if mask[y][x] < 128), r.stderr)


def grey_and_masks(tmp):
    w, h, c, _, rows = png(IMAGE)
    mask = png(MASK)[4]
    grey_rows = [[(r[3 * x] * 3 + r[3 * x + 1] * 6 + r[3 * x + 2]) // 10 for x in range(w)]
                 for r in rows]
    grey, out = os.path.join(tmp, "grey.png"), os.path.join(tmp, "grey-out.png")
    pngutil.write_png(grey, w, h, 1, grey_rows)
    r = inpaint(out, grey)
    ok = r.returncode == 0
    check("grey image: inpaints (exit 0)", ok, r.stderr)
    if ok:
        ow, oh, oc, _, got = png(out)
        check("grey image: grey out, outside the mask kept", oc == 1 and all(
            got[y][x] == grey_rows[y][x] for y in range(h) for x in range(w) if mask[y][x] < 128))

    # A white stroke on a transparent layer: only the stroke is filled.
    box = [[255 if 20 <= x < 36 and 30 <= y < 46 else 0 for x in range(w)] for y in range(h)]
    stroke = os.path.join(tmp, "stroke.png")
    pngutil.write_png(stroke, w, h, 4, [sum(([255, 255, 255, box[y][x]] for x in range(w)), [])
                                        for y in range(h)])
    r = inpaint(out, IMAGE, stroke)
    got = png(out)[4] if r.returncode == 0 else None
    check("white on transparent mask: only the opaque part is filled", got is not None and all(
        got[y][3 * x:3 * x + 3] == rows[y][3 * x:3 * x + 3]
        for y in range(h) for x in range(w) if not box[y][x]), r.stderr)
    # A red mask is dark (luminance 54): nothing to fill, not the whole picture.
    red = os.path.join(tmp, "red.png")
    pngutil.write_png(red, w, h, 3, [[255, 0, 0] * w] * h)
    r = inpaint(out, IMAGE, red)
    check("a red mask is read by its luminance (empty: exit 2)",
          r.returncode == 2 and "empty" in r.stderr, r.stderr)
    small = os.path.join(tmp, "small.png")
    pngutil.write_png(small, w - 8, h, 1, [r[:w - 8] for r in mask])
    r = inpaint(out, IMAGE, small)
    check("mask of another size: exit 2 naming both sizes", r.returncode == 2
          and f"{w - 8}x{h}" in r.stderr and f"{w}x{h}" in r.stderr, r.stderr)


def exif_block(orientation):
    """A little-endian TIFF header with IFD0 holding the Orientation tag."""
    return (b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1)
            + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0))


def orientation(tmp):
    w, h, c, _, rows = png(IMAGE)
    mask = png(MASK)[4]
    # Stored turned: orientation 6 means "turn 90 degrees clockwise to view". Store the
    # picture turned anticlockwise, so that the viewed picture is the fixture image.
    stored = [[v for y in range(h) for v in rows[y][3 * (w - 1 - x):3 * (w - 1 - x) + 3]]
              for x in range(w)]  # stored width h, height w
    src, out = os.path.join(tmp, "turned.png"), os.path.join(tmp, "turned-out.png")
    pngutil.write_png(src, h, w, 3, stored, chunks=((b"eXIf", exif_block(6)),))
    r = inpaint(out, src)
    ok = r.returncode == 0
    check("EXIF orientation 6 (PNG eXIf): exit 0", ok, r.stderr)
    if ok:
        ow, oh, oc, _, got = png(out)
        check("EXIF orientation 6: the picture as viewed, outside the mask kept",
              (ow, oh) == (w, h) and all(got[y][3 * x:3 * x + 3] == rows[y][3 * x:3 * x + 3]
                                         for y in range(h) for x in range(w)
                                         if mask[y][x] < 128), f"{ow}x{oh}")
    # JPEG: an APP1 Exif segment with orientation 8 right after SOI.
    jpg = os.path.join(tmp, "plain.jpg")
    r = upscale(os.path.join(SR, "lowres.png"), jpg)
    if check("JPEG for the orientation case written", r.returncode == 0, r.stderr):
        data = open(jpg, "rb").read()
        body = b"Exif\0\0" + exif_block(8)
        turned = os.path.join(tmp, "turned.jpg")
        with open(turned, "wb") as f:
            f.write(data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:])
        lw, lh = png(os.path.join(SR, "lowres.png"))[:2]
        r = upscale(turned, os.path.join(tmp, "turned-up.png"))
        ok = r.returncode == 0
        check("EXIF orientation 8 (JPEG): the picture is turned (sides swapped)",
              ok and png(os.path.join(tmp, "turned-up.png"))[:2] == (16 * lh, 16 * lw),
              r.stderr)


def arguments(tmp):
    out = os.path.join(tmp, "a.png")
    for args, want in ((["--eta", "nan"], "--eta"), (["--eta", "inf"], "--eta"),
                       (["--eta", "2"], "--eta"), (["--steps", "0"], "--steps"),
                       (["--steps", "12x"], "--steps"), (["--seed", "-5"], "--seed"),
                       (["--guidance", "nan"], "--guidance")):
        r = inpaint(out, IMAGE, MASK, *args)
        check(f"{' '.join(args)}: exit 2 naming the option", r.returncode == 2
              and want in r.stderr, r.stderr)
    r = ldm("inpaint", "--model", os.path.join(INPAINT, "model.safetensors"), "--image", IMAGE,
            "--mask", MASK, "--output", out, "--steps", "12", "--seed", "3")
    check("--steps 12: says the schedule has 13 steps", r.returncode == 0
          and "13 steps" in r.stderr, r.stderr)
    for args, want in ((["--init", "bogus"], "--init"), (["--strength", "0"], "--strength"),
                       (["--init", "fill", "--strength", "1.5"], "--strength"),
                       (["--authors", "--init", "fill"], "--authors")):
        r = inpaint(out, IMAGE, MASK, *args)
        check(f"{' '.join(args)}: exit 2 naming the option", r.returncode == 2
              and want in r.stderr, r.stderr)
    ref = os.path.join(INPAINT, "reference.safetensors")
    start = time.monotonic()
    r = inpaint(out, IMAGE, MASK, "--eta", "1", "--step-noise", ref + ":%999999999d")
    check("--step-noise with a huge width: exit 2 at once", r.returncode == 2
          and "--step-noise" in r.stderr and time.monotonic() - start < 10, r.stderr)


def tiny_jpeg(width, height):
    """A baseline grey JPEG whose SOF0 claims width x height, with the entropy-coded data of a
    single 8x8 block (DC difference 0, end of block; one-code Huffman tables): an 8x8 picture
    is whole, a larger one is truncated data that libjpeg would decode as grey."""
    def segment(marker, body):
        return b"\xff" + bytes((marker,)) + struct.pack(">H", len(body) + 2) + body
    one_code = bytes((1,) + (0,) * 15) + b"\0"  # BITS: one code of length 1; HUFFVAL: 0
    return (b"\xff\xd8" + segment(0xDB, b"\0" + bytes((1,)) * 64)
            + segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
            + segment(0xC4, b"\x00" + one_code) + segment(0xC4, b"\x10" + one_code)
            + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x3f" + b"\xff\xd9")


def png_claiming(path, width, height, ihdr_crc=None, depth=8):
    """An RGB PNG whose IHDR (valid CRC unless `ihdr_crc` is given) claims width x height,
    followed by a tiny IDAT (two rows of zeros at most, far fewer than claimed)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    chunk = pngutil.png_chunk(b"IHDR", ihdr)
    if ihdr_crc is not None:
        chunk = chunk[:-4] + struct.pack(">I", ihdr_crc)
    row = b"\0" * (1 + 3 * min(width, 4096))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk + pngutil.png_chunk(b"IDAT", zlib.compress(row * 2))
                + pngutil.png_chunk(b"IEND", b""))


def run_measured(*args):
    """ldm with its own peak RSS (os.wait4's rusage: this child only), in MB."""
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([LDM, *args], stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return p.returncode, err.read().decode(errors="replace"), usage.ru_maxrss / 1024


def huge_headers(tmp):
    # Refused from the header, before any pixel buffer exists: a PNG's IHDR or a JPEG's SOF0
    # that claims gigapixels costs no memory (before: the rows were allocated and decoded).
    model = os.path.join(SR, "model.safetensors")
    out = os.path.join(tmp, "out.png")
    # what the engine says of a decoded image over 16384 pixels a side (exit 2)
    TOO_LARGE = "at most 16384 pixels a side are supported"
    cases = []
    for name, w, h in (("60000x60000", 60000, 60000), ("2147483647x1", 2**31 - 1, 1),
                       ("1x2147483647", 1, 2**31 - 1), ("70000x10", 70000, 10),
                       ("16385x1", 16385, 1)):
        path = os.path.join(tmp, f"claims-{name}.png")
        png_claiming(path, w, h)
        cases.append((f"PNG whose IHDR claims {name}", path, f"{w}x{h}"))
    for name, w, h in (("60000x60000", 60000, 60000), ("40000x40000", 40000, 40000),
                       ("65000x8", 65000, 8)):
        path = os.path.join(tmp, f"claims-{name}.jpg")
        with open(path, "wb") as f:
            f.write(tiny_jpeg(w, h))
        cases.append((f"JPEG whose SOF0 claims {name}", path, f"{w}x{h}"))
    for label, path, size in cases:
        code, err, rss = run_measured("upscale", "--model", model, "--image", path,
                                      "--output", out, "-q")
        check(f"{label}: exit 2, the engine's size message naming {size}", code == 2
              and f"the image is {size}: {TOO_LARGE}" in err, f"{code} {err}")
        check(f"{label}: peak RSS under 100 MB", rss < 100, f"{rss:.0f} MB")
    # As a mask too (the same loader).
    code, err, rss = run_measured("inpaint", "--model", os.path.join(INPAINT, "model.safetensors"),
                                  "--image", IMAGE, "--mask", cases[0][1], "--output", out, "-q")
    check("mask PNG claiming 60000x60000: exit 2, the size message, under 100 MB", code == 2
          and f"the mask is 60000x60000: {TOO_LARGE}" in err and rss < 100,
          f"{code} {rss:.0f} MB {err}")
    # The crafted JPEG is a real one: at 8x8 it is read (and upscaled to 32x32).
    small = os.path.join(tmp, "8x8.jpg")
    with open(small, "wb") as f:
        f.write(tiny_jpeg(8, 8))
    r = upscale(small, out)
    check("the same JPEG claiming 8x8: read and upscaled to 32x32", r.returncode == 0
          and png(out)[:2] == (32, 32), r.stderr)
    # Damaged headers: a clear message and exit 2, never a crash.
    damaged = os.path.join(tmp, "damaged.png")
    for label, kwargs in (("IHDR with a wrong CRC", {"ihdr_crc": 0x12345678}),
                          ("IHDR with width 0", {"width": 0}),
                          ("IHDR with bit depth 3", {"depth": 3})):
        args = {"width": 64, "height": 64, **kwargs}
        png_claiming(damaged, args.pop("width"), args.pop("height"), **args)
        code, err, rss = run_measured("upscale", "--model", model, "--image", damaged,
                                      "--output", out, "-q")
        check(f"PNG {label}: exit 2 with a message naming the file", code == 2
              and damaged in err and rss < 100, f"{code} {rss:.0f} MB {err}")
    with open(damaged, "wb") as f:
        f.write(tiny_jpeg(40000, 40000)[:30])  # cut inside the DQT
    code, err, rss = run_measured("upscale", "--model", model, "--image", damaged,
                                  "--output", out, "-q")
    check("JPEG cut inside its header: exit 2 with a message naming the file", code == 2
          and damaged in err and rss < 100, f"{code} {rss:.0f} MB {err}")


def main():
    if not os.path.isdir(INPAINT):
        print("fixtures not found: nothing to test")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        for part in (outputs_safety, deep_pixels, grey_and_masks, orientation, arguments,
                     huge_headers):
            sub = os.path.join(tmp, part.__name__)
            os.makedirs(sub)
            try:
                part(sub)
            except Exception as e:  # a missing or unreadable output: that part fails
                check(f"{part.__name__} ran to its end", False, repr(e))
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
