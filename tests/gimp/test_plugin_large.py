"""The plug-in in real, headless GIMP 3 on a 4096 x 4096 image (issue 15: "inpaint and
upscale finish or refuse with the budget's message; GIMP is never killed for memory"),
test_plugin.scm's scenario `large`:
- inpainting a 96 x 96 selection with the built-in model at the default region settings
  (context 64, working size 512), 2 steps: finishes, one new layer on the crop (within a
  few hundred pixels of the selection), every pixel of a 512 x 512 area around it outside
  that crop bit for bit as before;
- a 4x upscale (16384 x 16384) within a 4096 MB budget, as a new image and in place, and
  inpainting the whole image at full size (working size 8192) within 1024 MB: refused at once
  with the budget's message (the limit and what would fit), no layer, no image, the image's
  size as before.
GIMP exits 0 and answers after each call. Each plug-in process runs under a small recorder
(a wrapper in this test's own GIMP folder, build/tests/gimp-home-large) that logs its peak
RSS (wait4) and wall time: the inpaint's peak must stay under 1500 MB and each refusal's under
100 MB and 20 s: the plug-in asks core's plan (ldm_model_plan) from the layer's or crop's
size before it reads any pixel (measured 2026-12-03: 32 MB, 0.1 s each; when the plug-in read
the pixels first, the upscale refusals cost 177 MB and 0.4 s, 443 MB in an earlier build, and
the inpaint refusal 449 MB and 3.6 s; the image itself is 48 MB of 8-bit RGB). Skipped in a
sanitizer build (its RSS is not the plug-in's). Prints TAP."""
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import struct
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gimp_harness  # noqa: E402
from gimp_harness import (BUILD, GIMP_CONSOLE, PLUGIN, SOURCE, check, one,  # noqa: E402
                          pixels, px, results, run_gimp)
from checks import sanitized  # noqa: E402  (tests/lib, on the path gimp_harness set)

HOME = os.path.join(BUILD, "tests", "gimp-home-large")
MODELS = os.path.join(SOURCE, "data", "models")
SIDE = 4096
MEMORY_MB = 4096
INPAINT_MEMORY_MB = 1024  # test_plugin.scm's inpaint-full-size
REFUSAL_MB = 100          # a refusal's peak RSS: 32 MB measured (177-449 MB reading first)

WRAPPER = """#!/bin/sh
# Written by tests/gimp/test_plugin_large.py: the built plug-in, its peak RSS (KB), exit
# status and wall seconds appended to $GIMP_LDM_TEST_RSS_LOG. Built plug-in's mtime: {mtime}
# (a rebuilt plug-in rewrites this file, so that GIMP queries it again).
exec python3 -c '
import os, sys, time
start = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
log = os.environ.get("GIMP_LDM_TEST_RSS_LOG")
if log:
    with open(log, "a") as f:
        f.write("%d %d %.2f %s\\n" % (usage.ru_maxrss, os.waitstatus_to_exitcode(status),
                                      time.monotonic() - start, " ".join(sys.argv[2:])))
sys.exit(os.waitstatus_to_exitcode(status) & 255)
' {plugin} "$@"
"""


def setup_home():
    """plug-ins/gimp-ldm/gimp-ldm: the recorder (the plug-in finds its catalogs and models
    through its own path and GIMP_LDM_MODEL_DIR)."""
    folder = os.path.join(HOME, "plug-ins", "gimp-ldm")
    os.makedirs(folder, exist_ok=True)
    text = WRAPPER.format(plugin=shlex.quote(PLUGIN), mtime=os.stat(PLUGIN).st_mtime_ns)
    wrapper = os.path.join(folder, "gimp-ldm")
    old = open(wrapper).read() if os.path.exists(wrapper) else None
    if old != text:
        with open(wrapper + ".part", "w") as f:
            f.write(text)
        os.chmod(wrapper + ".part", 0o755)
        os.rename(wrapper + ".part", wrapper)
    gimprc = os.path.join(HOME, "gimprc")
    if not os.path.exists(gimprc):
        with open(gimprc, "w") as f:
            f.write('(plug-in-path "%s:${gimp_plug_in_dir}/plug-ins")\n'
                    % os.path.join(HOME, "plug-ins"))
    shutil.rmtree(os.path.join(HOME, "backups"), ignore_errors=True)


def write_large_png(path, side):
    """A side x side RGB PNG with detail everywhere (diagonal ramps and stripes: no two
    neighbouring rows alike), written row by row."""
    period = 3 * 256
    pattern = bytes((i * 37 + (i // 3) * 11) % 256 for i in range(3 * side + period * 8))
    comp = zlib.compressobj(1)
    body = []
    for y in range(side):
        off = ((y * 7) % 256) * 3
        body.append(comp.compress(b"\x00" + pattern[off:off + 3 * side]))
    body.append(comp.flush())
    data = b"".join(body)

    def chunk(kind, payload):
        c = kind + payload
        return struct.pack(">I", len(payload)) + c + struct.pack(">I", zlib.crc32(c))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", data))
        f.write(chunk(b"IEND", b""))


def main():
    if not GIMP_CONSOLE:
        print("1..0 # SKIP gimp-console-3 is not installed")
        return 0
    if sanitized(BUILD):
        print("1..0 # SKIP a sanitizer build: its RSS is not the plug-in's")
        return 0
    if not os.path.exists(os.path.join(MODELS, "ldm-inpaint-builtin.safetensors")):
        print("1..0 # SKIP the built-in models are not in data/models")
        return 0
    gimp_harness.HOME = HOME
    setup_home()
    tmp = tempfile.mkdtemp(prefix="gimp-ldm-large-")
    try:
        image = os.path.join(tmp, "large.png")
        write_large_png(image, SIDE)
        log = os.path.join(tmp, "rss.log")
        defines = {"OUT": tmp, "LARGE-IMAGE": image, "MEMORY-MB": str(MEMORY_MB)}
        start = time.monotonic()
        code, values, output = run_gimp(defines, ["large"], {
            "GIMP_LDM_MODEL_DIR": MODELS, "GIMP_LDM_TEST_RSS_LOG": log})
        seconds = time.monotonic() - start
        runs = []
        if os.path.exists(log):
            for line in open(log):
                kb, status, secs, args = line.split(" ", 3)
                if "-query" not in args and "-init" not in args:
                    runs.append((int(kb) / 1024, int(status), float(secs)))
        print(f"# GIMP exit {code} after {seconds:.0f} s; plug-in runs (peak RSS MB, exit, "
              f"s): " + ", ".join(f"{m:.0f} {s} {t:.1f}" for m, s, t in runs), flush=True)
        v = lambda k: one(values, "large/" + k)  # noqa: E731
        check("GIMP exits 0", code == 0, f"exit code {code}")
        check("the scenario ran to its end, GIMP answering after every call",
              "large/scenario-end" in values and "large/scenario-error" not in values
              and v("size-after") == f"{SIDE} {SIDE}", output[-3000:])
        check("the image is 4096 x 4096", v("size") == f"{SIDE} {SIDE}", v("size"))
        # inpaint
        check("inpaint: finishes with one new layer", v("inpaint-done") == "2",
              v("inpaint-done"))
        offsets = [int(t) for t in re.findall(r"-?\d+", v("offsets") or "")]
        size = [int(t) for t in re.findall(r"\d+", v("layer-size") or "")]
        crop_ok = len(offsets) == 2 and len(size) == 2 and \
            1792 <= offsets[0] <= 2000 and 1792 <= offsets[1] <= 2000 and \
            offsets[0] + size[0] <= 2304 and offsets[1] + size[1] <= 2304
        check("inpaint: the new layer is the crop around the selection (context 64, grow 4, "
              "blur 8), within the 512 x 512 area", crop_ok, f"{offsets} {size}")
        try:
            before = pixels(os.path.join(tmp, "large-before.png"))
            after = pixels(os.path.join(tmp, "large-after.png"))
            outside = changed = 0
            for y in range(512):
                for x in range(512):
                    ax, ay = 1792 + x, 1792 + y
                    inside = crop_ok and offsets[0] <= ax < offsets[0] + size[0] and \
                        offsets[1] <= ay < offsets[1] + size[1]
                    differs = px(before, x, y) != px(after, x, y)
                    if inside:
                        changed += differs
                    else:
                        outside += differs
            check("inpaint: every pixel outside the new layer's crop as before", outside == 0,
                  f"{outside} differ")
            check("inpaint: the selection was filled (pixels changed within the crop)",
                  changed > 96 * 96 // 2, f"{changed} changed")
        except (OSError, ValueError) as e:
            check("inpaint: the exports could be read", False, repr(e))
        if runs:
            check("inpaint: the plug-in's peak RSS under 1500 MB", runs[0][0] < 1500,
                  f"{runs[0][0]:.0f} MB")
        # the refusals
        for name, limit in (("upscale-new-image", MEMORY_MB), ("upscale-in-place", MEMORY_MB),
                            ("inpaint-full-size", INPAINT_MEMORY_MB)):
            m = next((line.partition(" ")[2] for line in values.get("large/message", [])
                      if line.startswith(name + " ")), "")
            print(f"# {name}: {m}", flush=True)
            check(f"{name}: refused", name in values.get("large/rejected", []),
                  "accepted" if name in values.get("large/accepted", []) else "no result")
            check(f"{name}: the budget's message (the limit, what would fit)",
                  f"memory limit of {limit} MB" in m
                  and ("at most about" in m or "raise the memory limit" in m), m)
            check(f"{name}: image, layers and images as before",
                  f"{name} yes" in values.get("large/unchanged", []),
                  repr(values.get("large/unchanged")))
        check("the refusals: no layer and no image added",
              v("layers-after-upscale") == v("layers-before-upscale") == "2"
              and v("images-after-upscale") == v("images-before-upscale"),
              f"{v('layers-before-upscale')} -> {v('layers-after-upscale')}, "
              f"{v('images-before-upscale')} -> {v('images-after-upscale')}")
        check("each call ran its own plug-in process and exited normally",
              len(runs) == 4 and all(s == 0 for _, s, _ in runs), repr(runs))
        for i, name in ((1, "upscale-new-image"), (2, "upscale-in-place"),
                        (3, "inpaint-full-size")):
            if len(runs) > i:
                check(f"{name}: refused at once (under 20 s) with peak RSS under "
                      f"{REFUSAL_MB} MB (before reading the pixels)",
                      runs[i][2] < 20 and runs[i][0] < REFUSAL_MB,
                      f"{runs[i][2]:.1f} s, {runs[i][0]:.0f} MB")
        check("GIMP was not killed: no crash", not re.search(
            r"crashed|GLib-ERROR|Segmentation|Killed|failed to allocate", output),
            output[-3000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not all(ok for _, ok, _ in results):
        print("# GIMP output:\n" + "\n".join("#   " + line
                                              for line in output.splitlines()[-40:]))
    print(f"1..{len(results)}")
    for i, (name, ok, detail) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} {name}"
              + ("" if ok or not detail else " # " + " ".join(detail.split())[:2000]))
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
