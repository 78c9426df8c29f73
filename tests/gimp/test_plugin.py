"""The GIMP plug-in in real, headless GIMP 3 (gimp-console-3), driven by test_plugin.scm.

GIMP runs with a private config folder in the build folder (kept between runs: a fresh one
costs GIMP 10-20 s to set up), whose plug-in folder holds a link to the built plug-in. Few
GIMP runs: one for the main scenarios, one for cancel + last values. Exports go to a temp
folder. Prints TAP."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gimp_harness import (FIX, GIMP_CONSOLE, HOME, INPAINT_MODEL, LDM, SOURCE,  # noqa: E402
                          SR_MODEL, can_run_gui, check, check_scenarios_ran, gimp_gui, ints,
                          one, parse_values, pixels, px, report, results, run_gimp,
                          setup_home)
from pngutil import write_png_grey  # noqa: E402  (tests/lib, on the path gimp_harness set)


def cpu_has_bf16():
    """Whether the kernel lists AVX512-BF16 or AMX-BF16 (where precision auto runs bf16)."""
    with open("/proc/cpuinfo") as f:
        return bool(set(f.read().split()) & {"avx512_bf16", "amx_bf16"})


def same_pixels(a, b):
    """(whether the PNGs A and B hold the same pixels, why not when one cannot be read)"""
    try:
        return pixels(a) == pixels(b), ""
    except (OSError, ValueError) as e:
        return False, repr(e)


def check_preview(values, done, tmp, shot_off, shot_on):
    """The dialog's Preview in the GUI run (scenario preview-cancel): on, the canvas (left of
    the dialog) changes within the selection's screen area; after Cancel no layer is added, the
    image is bit for bit as before and still clean, and one Ctrl+Z undoes the selection."""
    check("preview: the driver turned Preview on, cancelled, and pressed Ctrl+Z", done == 5,
          f"{done} of 5 actions")
    try:
        off, on = pixels(shot_off), pixels(shot_on)
        changed = sum(px(off, x, y) != px(on, x, y)
                      for y in range(0, off[1]) for x in range(0, 600))
    except (OSError, ValueError) as e:
        changed = repr(e)
    # the 120 x 110 ellipse at 100 %: about 10000 screen pixels, most of them repainted
    check("preview: with Preview on the canvas shows the fill (thousands of screen pixels)",
          isinstance(changed, int) and 3000 < changed < 40000, str(changed))
    check("preview: after Cancel the image keeps its one layer",
          one(values, "preview-cancel/layers-after") == "1",
          one(values, "preview-cancel/layers-after"))
    check("preview: after Cancel the image is still clean (nothing to save)",
          one(values, "preview-cancel/dirty-after") == "no",
          one(values, "preview-cancel/dirty-after"))
    check("preview: after Cancel the image is bit for bit what it was",
          *same_pixels(os.path.join(tmp, "preview-before.png"),
                       os.path.join(tmp, "preview-after.png")))
    check("preview: the undo stack is as before: one Ctrl+Z undoes the selection, no layer "
          "comes back", one(values, "preview-cancel/selection-undone") == "yes"
          and one(values, "preview-cancel/layers-after-undo") == "1",
          f"{one(values, 'preview-cancel/selection-undone')} "
          f"{one(values, 'preview-cancel/layers-after-undo')}")


def run_gimp_gui(defines, scenarios, actions, env_extra=None, timeout=400):
    """The GIMP GUI under Xvfb running the scenarios, while the driver plays `actions` in
    order: ("file", PATH, keys) waits for PATH to exist, then sends the keys (xdotool names)
    to the largest GIMP window; ("window", TITLE-REGEX, keys) waits for that window and sends
    the keys to it. A key "!move X Y" moves the window there, "!sleep S" waits S seconds,
    "!shot PATH" saves a screenshot of the screen. Returns (exit code, values, output, actions done), or None when Xvfb or
    xdotool is missing."""
    if not can_run_gui():
        return None
    done = 0

    def send(wid, keys):
        # no window manager: focus follows the pointer
        gui.xdo("mousemove", "--window", wid, "20", "20")
        gui.xdo("windowfocus", "--sync", wid)
        for key in keys:
            command, _, arg = key.partition(" ")
            if command == "!move":
                gui.xdo("windowmove", "--sync", wid, *arg.split())
                gui.xdo("mousemove", "--window", wid, "20", "20")
            elif command == "!sleep":
                time.sleep(float(arg))
            elif command == "!shot":
                subprocess.run(["import", "-window", "root", arg], env=gui.env, timeout=60)
            else:
                gui.xdo("key", key)

    with gimp_gui(defines, scenarios, timeout, env_extra) as gui:
        for kind, target, keys in actions:
            wid = None
            while gui.running() and not wid:
                if kind == "file" and os.path.exists(target):
                    time.sleep(1.0)  # the export finishes; the display catches up
                    wid = gui.largest(gui.xdo("search", "--onlyvisible", "--name", "GIMP"))
                elif kind == "window":
                    wid = gui.largest(gui.xdo("search", "--onlyvisible", "--name", target))
                    if wid:
                        time.sleep(1.0)  # mapped and drawn
                if not wid:
                    time.sleep(0.2)
            if not wid:
                break
            send(wid, keys)
            done += 1
    return gui.gimp.returncode, parse_values(gui.output), gui.output, done


# ------------------------------------------------------------------ checks

def check_inpaint(values, out):
    v = lambda k: one(values, "inpaint/" + k)  # noqa: E731
    check("inpaint: exactly one new layer", v("layers-before") == "1" and v("layers-after") == "2",
          f"{v('layers-before')} -> {v('layers-after')}")
    check("inpaint: the new layer is above the drawable",
          v("top-is-new") == "yes" and v("base-position") == "1")
    check("inpaint: the new layer has a layer mask", v("has-mask") == "yes")
    x1, y1, x2, y2 = ints(v("bounds"))
    ox, oy = ints(v("offsets"))
    w, h = ints(v("size"))
    # crop = selection bounds + context 16 (grow 0, blur 0), clamped to the 451 x 300 photo
    want = (max(x1 - 16, 0), max(y1 - 16, 0), min(x2 + 16, 451), min(y2 + 16, 300))
    check("inpaint: layer offsets and size are the crop around the selection",
          (ox, oy, ox + w, oy + h) == want, f"{(ox, oy, ox + w, oy + h)} != {want}")
    check("inpaint: layer name says model, seed and steps",
          v("name") == "Inpainted (model.ckpt, seed 7, 2 steps)", v("name"))
    check("inpaint: the seed is returned", v("seed") == "7", v("seed"))
    parasite = " ".join(values.get("inpaint/parasite", []))
    check("inpaint: parameters attached as a parasite",
          all(s in parasite for s in ("procedure=plug-in-ldm-inpaint", "seed=7", "steps=2",
                                      "sampler=ddim", "context-padding=16", "mask-grow=0",
                                      "keep-known=false", "match-colors=true",
                                      "color-fix=true")),
          parasite)

    before = pixels(os.path.join(out, "inpaint-before.png"))
    after = pixels(os.path.join(out, "inpaint-after.png"))
    sel = pixels(os.path.join(out, "inpaint-selection.png"))
    mask = pixels(os.path.join(out, "inpaint-mask.png"))
    check("inpaint: the flattened image keeps its size", before[:2] == after[:2] == sel[:2])
    outside_changed = inside = inside_changed = 0
    for y in range(before[1]):
        for x in range(before[0]):
            s = px(sel, x, y)[0]
            same = px(before, x, y)[:3] == px(after, x, y)[:3]
            if s == 0:
                outside_changed += not same
            elif s == sel[4]:
                inside += 1
                inside_changed += not same
    check("inpaint: every pixel outside the selection unchanged (flattened export)",
          outside_changed == 0, f"{outside_changed} changed")
    check("inpaint: pixels inside the selection changed",
          inside > 100 and inside_changed > 0.9 * inside, f"{inside_changed} of {inside}")
    # GIMP exports the selection as 8-bit and a layer mask as 16-bit (through the image's
    # TRC): equal means one strictly increasing mapping between the two, pixel for pixel.
    mapping, consistent = {}, mask[:2] == (w, h)
    for y in range(h if consistent else 0):
        for x in range(w):
            s_value, m_value = px(sel, ox + x, oy + y)[0], px(mask, x, y)[0]
            consistent &= mapping.setdefault(s_value, m_value) == m_value
    keys = sorted(mapping)
    consistent &= all(mapping[a] < mapping[b] for a, b in zip(keys, keys[1:]))
    check("inpaint: the layer mask is the selection on the crop (soft edge included)",
          consistent and len(keys) > 50 and mapping.get(0) == 0, f"{len(keys)} levels")


def unchanged_outside(out, before, after, selection):
    """(pixels outside the selection that changed, fully selected pixels that changed, of)"""
    b, a, sel = (pixels(os.path.join(out, f)) for f in (before, after, selection))
    outside = inside = inside_changed = 0
    for y in range(b[1]):
        for x in range(b[0]):
            s = px(sel, x, y)[0]
            same = px(b, x, y) == px(a, x, y)
            if s == 0:
                outside += not same
            elif s == sel[4]:
                inside += 1
                inside_changed += not same
    return outside, inside_changed, inside


def check_prompt(values, out):
    """A Stable Diffusion model with a prompt from Script-Fu (issue 14)."""
    v = lambda k: one(values, "prompt/" + k)  # noqa: E731
    check("prompt: the SD model adds one layer",
          v("layers-before") == "1" and v("layers-after") == "2",
          f"{v('layers-before')} -> {v('layers-after')}")
    check("prompt: the layer name starts with the prompt, shortened",
          v("name") == "Inpainted: a photograph of an astronaut riding a h\u2026 "
                       "(model.safetensors, seed 3, 2 steps)", v("name"))
    parasite = "\n".join(values.get("prompt/parasite", []))
    check("prompt: prompt, negative prompt and guidance in the parasite",
          all(s in parasite for s in ("prompt=a photograph of an astronaut riding a horse",
                                      "negative-prompt=blurry", "guidance=7.5",
                                      "sampler=dpmpp-2m-karras")), parasite)
    outside, changed, inside = unchanged_outside(out, "prompt-before.png", "prompt-after.png",
                                                 "prompt-selection.png")
    check("prompt: every pixel outside the selection unchanged, exactly", outside == 0,
          f"{outside} changed")
    check("prompt: the selection is filled", inside == 30 * 24 and changed > 0.9 * inside,
          f"{changed} of {inside}")
    check("prompt: guidance 31 is refused, the image unchanged",
          one(values, "prompt/rejected") == "guidance"
          and "guidance yes" in values.get("prompt/unchanged", []),
          f"{values.get('prompt/rejected')} {values.get('prompt/unchanged')}")


def check_variants(values, out):
    ox, oy, w, h = ints(one(values, "variants/offset-layer"))
    # the layer spans (10, 5)-(58, 69) on a 48 x 64 canvas; selection x 2-32, y 20-50
    check("offset layer: the crop lies inside both the layer and the canvas",
          ox >= 10 and oy >= 5 and ox + w <= 48 and oy + h <= 64 and (ox, oy) == (10, 14),
          f"{(ox, oy, w, h)}")
    outside, changed, inside = unchanged_outside(out, "offset-before.png", "offset-after.png",
                                                 "offset-selection.png")
    check("offset layer: nothing outside the selection changed, the inside did",
          outside == 0 and changed > 0.5 * inside, f"{outside} outside, {changed}/{inside}")
    check("grey image: the new layer is greyscale",
          one(values, "variants/grey-layer-is-grey") == "yes")
    outside, changed, inside = unchanged_outside(out, "grey-before.png", "grey-after.png",
                                                 "grey-selection.png")
    check("grey image: nothing outside the selection changed, the inside did",
          outside == 0 and changed > 0.5 * inside, f"{outside} outside, {changed}/{inside}")


def check_upscale(values, out):
    v = lambda k: one(values, "upscale/" + k)  # noqa: E731
    check("upscale: a new image, 4x", v("new-image") == "yes" and v("new-size") == "96 64",
          f"{v('new-image')} {v('new-size')}")
    check("upscale: the new image has one layer", v("new-layers") == "1")
    check("upscale: the source image is untouched",
          v("source-size") == "24 16" and v("source-layers") == "1")
    check("upscale: name and seed", v("seed") == "3"
          and v("name") == "Upscaled 4x (model.ckpt, seed 3, 2 steps)", v("name"))
    check("upscale in place: the image scaled 4x with a new 4x layer",
          v("in-place-same-image") == "yes" and v("in-place-size") == "96 64"
          and v("in-place-layers") == "2" and v("in-place-layer-size") == "96 64")
    with tempfile.TemporaryDirectory() as tmp:
        cli = os.path.join(tmp, "cli.png")
        r = subprocess.run([LDM, "upscale", "--model", SR_MODEL, "--image",
                            os.path.join(FIX, "ldm-sr-tiny", "lowres.png"), "--output", cli,
                            "--steps", "2", "--seed", "3", "--sampler", "ddim", "--eta", "1",
                            "--quiet"], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            check("upscale: equals `ldm upscale`", False, r.stderr)
            return
        a, b = pixels(os.path.join(out, "upscale.png")), pixels(cli)
        same = a[:2] == b[:2] and all(px(a, x, y)[:3] == px(b, x, y)[:3]
                                      for y in range(a[1]) for x in range(a[0]))
        check("upscale: the new image equals `ldm upscale` with the same seed", same)
        # color-fix FALSE = `ldm upscale --no-color-fix`, and differs from the default
        nofix = os.path.join(tmp, "nofix.png")
        r = subprocess.run([LDM, "upscale", "--model", SR_MODEL, "--image",
                            os.path.join(FIX, "ldm-sr-tiny", "lowres.png"), "--output", nofix,
                            "--steps", "2", "--seed", "3", "--sampler", "ddim", "--eta", "1",
                            "--no-color-fix", "--quiet"], capture_output=True, text=True,
                           timeout=300)
        c = pixels(os.path.join(out, "upscale-nofix.png"))
        d = pixels(nofix) if r.returncode == 0 else None
        check("upscale color-fix FALSE: equals `ldm upscale --no-color-fix`", d is not None
              and c[:2] == d[:2] and all(px(c, x, y)[:3] == px(d, x, y)[:3]
                                         for y in range(c[1]) for x in range(c[0])), r.stderr)
        check("upscale color-fix FALSE: differs from the default", c[:2] == a[:2] and any(
            px(c, x, y)[:3] != px(a, x, y)[:3] for y in range(c[1]) for x in range(c[0])))
        check("upscale color-fix FALSE: in the parasite",
              "color-fix=false" in " ".join(values.get("upscale/nofix-parasite", [])))


def check_equal(values, out):
    check("equal: the layer covers the whole image", one(values, "equal/offsets") == "(0 0)",
          one(values, "equal/offsets"))
    with tempfile.TemporaryDirectory() as tmp:
        cli = os.path.join(tmp, "cli.png")
        # the selection as an 8-bit mask (GIMP exports channels as 16-bit)
        sel = pixels(os.path.join(out, "equal-mask.png"))
        mask = os.path.join(tmp, "mask.png")
        write_png_grey(mask, sel[0], sel[1],
                       [[255 if 2 * v[0] >= sel[4] else 0 for v in
                         (px(sel, x, y) for x in range(sel[0]))] for y in range(sel[1])])
        check("equal: the selection is hard-edged (only 0 and 100 %)",
              all(v in (0, sel[4]) for row in sel[3] for v in row))
        r = subprocess.run([LDM, "inpaint", "--model", INPAINT_MODEL, "--image",
                            os.path.join(FIX, "ldm-inpaint-tiny", "image.png"), "--mask",
                            mask, "--output", cli,
                            "--steps", "3", "--seed", "42", "--sampler", "dpmpp-2m", "--quiet",
                            # the plug-in's defaults
                            "--keep-known", "--match-colors", "--color-fix",
                            # the scenario's region: the whole image, a hard edge
                            "--context-padding", "4096", "--mask-grow", "0", "--mask-blur", "0"],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            check("equal: plug-in result equals `ldm inpaint`", False, r.stderr)
            return
        a, b = pixels(os.path.join(out, "equal-plugin.png")), pixels(cli)
        diff = sum(px(a, x, y)[:3] != px(b, x, y)[:3] for y in range(a[1]) for x in range(a[0]))
        check("equal: plug-in result equals `ldm inpaint` with the same seed, bit for bit",
              a[:2] == b[:2] and diff == 0, f"{diff} pixels differ")
        # init fill, strength 0.5: the same as ldm's --init fill --strength 0.5
        r = subprocess.run([LDM, "inpaint", "--model", INPAINT_MODEL, "--image",
                            os.path.join(FIX, "ldm-inpaint-tiny", "image.png"), "--mask",
                            mask, "--output", cli, "--steps", "4", "--seed", "42",
                            "--sampler", "ddim", "--init", "fill", "--strength", "0.5",
                            "--context-padding", "4096", "--mask-grow", "0", "--mask-blur", "0",
                            "--quiet"], capture_output=True, text=True, timeout=300)
        a, b = pixels(os.path.join(out, "equal-plugin-fill.png")), pixels(cli)
        diff = sum(px(a, x, y)[:3] != px(b, x, y)[:3] for y in range(a[1]) for x in range(a[0]))
        check("equal: init fill strength 0.5 equals `ldm inpaint --init fill --strength 0.5`",
              r.returncode == 0 and a[:2] == b[:2] and diff == 0, f"{diff} pixels differ "
              + r.stderr)
        parasite = " ".join(values.get("equal/fill-parasite", []))
        check("equal: init and strength in the parasite",
              "init=fill" in parasite and "strength=0.5" in parasite, parasite)
        # Euler a: the same as ldm's --sampler euler-a, and named in the parasite
        r = subprocess.run([LDM, "inpaint", "--model", INPAINT_MODEL, "--image",
                            os.path.join(FIX, "ldm-inpaint-tiny", "image.png"), "--mask",
                            mask, "--output", cli, "--steps", "3", "--seed", "42",
                            "--sampler", "euler-a", "--context-padding", "4096",
                            "--mask-grow", "0", "--mask-blur", "0", "--quiet",
                            "--precision", "fp32"],
                           capture_output=True, text=True, timeout=300)
        a, b = pixels(os.path.join(out, "equal-plugin-euler.png")), pixels(cli)
        diff = sum(px(a, x, y)[:3] != px(b, x, y)[:3] for y in range(a[1]) for x in range(a[0]))
        check("equal: sampler euler-a, precision fp32 equals `ldm inpaint --sampler euler-a "
              "--precision fp32`",
              r.returncode == 0 and a[:2] == b[:2] and diff == 0, f"{diff} pixels differ "
              + r.stderr)
        parasite = " ".join(values.get("equal/euler-parasite", []))
        check("equal: the sampler and the precision in the parasite",
              "sampler=euler-a" in parasite and "precision=fp32" in parasite, parasite)
        parasite = " ".join(values.get("equal/fill-parasite", []))
        want = "precision=bf16" if cpu_has_bf16() else "precision=fp32"
        check(f"equal: precision auto runs {want[10:]} here (/proc/cpuinfo), in the parasite",
              want in parasite, parasite)


def message(values, scenario, name):
    """The error message expect-error printed for the call NAME of SCENARIO ('' if none)."""
    for line in values.get(f"{scenario}/message", []):
        key, _, text = line.partition(" ")
        if key == name:
            return text
    return ""


def check_errors(values, out, output, defines):
    for name in ("missing-model", "folder-model", "folder-model-upscale", "device-model",
                 "text-model",
                 "sr-model-for-inpaint", "steps-0", "bogus-sampler", "bogus-sampler-upscale",
                 "bogus-init", "bogus-precision", "no-builtin-model",
                 "inpaint-model-for-upscale", "steps-1001", "mask-grow-negative",
                 "working-size-0", "empty-model-path", "channel", "other-image",
                 "other-image-upscale", "empty-selection", "memory-limit-1",
                 "memory-limit-inpaint-1"):
        check(f"error: {name} is rejected", one(values, "errors/rejected") is not None
              and name in values.get("errors/rejected", []))
        check(f"error: {name} leaves the image unchanged",
              f"{name} yes" in values.get("errors/unchanged", []))
    for text in ("is not a model file gimp-ldm can read", "is not an inpainting model",
                 "The built-in model ldm-inpaint-builtin.safetensors is not installed",
                 "There is no selection", "is not a 4x super-resolution model"):
        check(f"error message: {text!r}", text in output or text.lower() in output.lower())
    # the message names the file and says what is wrong with it (GIMP's own check of a file
    # argument would only say "<not transformable to string> ... out of range")
    for name, path, text in (("missing-model", defines["MISSING-MODEL"], "does not exist"),
                             ("folder-model", defines["FOLDER-MODEL"], "is a folder"),
                             ("folder-model-upscale", defines["FOLDER-MODEL"], "is a folder"),
                             ("device-model", "/dev/null", "is not a regular file")):
        m = message(values, "errors", name)
        check(f"error message: {name} names the file and says {text!r}",
              path in m and text in m and "not transformable" not in m, m)
    # an unknown sampler was replaced by the default (a GLib-CRITICAL) and the run went on
    for name, sampler in (("bogus-sampler", "bogus"), ("bogus-sampler-upscale", "DDIM")):
        m = message(values, "errors", name)
        check(f"error message: {name} names the sampler and the valid ones",
              f'"{sampler}"' in m and all(s in m for s in ("dpmpp-2m", "ddim", "ddpm")), m)
    for name in ("memory-limit-1", "memory-limit-inpaint-1"):
        m = message(values, "errors", name)
        check(f"error message: {name} is the budget's, naming the limit",
              "memory limit of 1 MB" in m and "raise the memory limit" in m, m)
    m = message(values, "errors", "bogus-init")
    check("error message: bogus-init names the start and the valid ones",
          '"bogus"' in m and all(s in m for s in ("noise", "fill", "original")), m)
    m = message(values, "errors", "bogus-precision")
    check("error message: bogus-precision names it and the valid ones",
          '"half"' in m and all(s in m for s in ("auto", "fp32", "bf16")), m)
    # out-of-range numbers: GIMP's own check names the value and the range
    for name, text in (("steps-1001", "value 1001 out of range: 1 to 1000"),
                       ("mask-grow-negative", "value -1 out of range: 0 to 256"),
                       ("working-size-0", "value 0 out of range: 32 to 8192"),
                       # "" is no file: the built-in model, here not installed
                       ("empty-model-path", "The built-in model ldm-inpaint-builtin"),
                       ("channel", "select a layer, not a channel"),
                       ("other-image", "belongs to another image"),
                       ("other-image-upscale", "belongs to another image")):
        m = message(values, "errors", name)
        check(f"error message: {name} says {text!r}", text in m, m)
    check("other image: its layer stays in it, unscaled",
          one(values, "errors/other-image-untouched") == "yes")
    check("errors: no GLib-CRITICAL about the sampler",
          "for property 'sampler'" not in output)
    a = pixels(os.path.join(out, "errors-before.png"))
    b = pixels(os.path.join(out, "errors-after.png"))
    check("errors: the image is bit for bit what it was", a == b)

    for name in ("indexed", "indexed-upscale"):
        check(f"error: {name} is rejected", name in values.get("errors/rejected", []))
        check(f"error: {name} leaves the image unchanged",
              f"{name} yes" in values.get("errors/unchanged", []))
        m = message(values, "errors", name)
        check(f"error message: {name} says the image is indexed and to convert it",
              "indexed" in m and "Image > Mode > RGB" in m, m)
    check("indexed: the image is still indexed",
          one(values, "errors/indexed-still-indexed") == "yes")
    a = pixels(os.path.join(out, "indexed-before.png"))
    b = pixels(os.path.join(out, "indexed-after.png"))
    check("indexed: the image is bit for bit what it was", a == b)


def main():
    if not GIMP_CONSOLE:
        print("1..0 # SKIP gimp-console-3 is not installed")
        return 0
    setup_home()
    tmp = tempfile.mkdtemp(prefix="gimp-ldm-test-")
    try:
        text_model = os.path.join(tmp, "notes.ckpt")
        with open(text_model, "w") as f:
            f.write("this is a text file, not a model\n")
        empty = os.path.join(tmp, "no-models")
        os.makedirs(empty)
        folder_model = os.path.join(tmp, "ldm-inpaint-tiny")  # a model's folder, not its file
        os.makedirs(folder_model)
        defines = {
            "OUT": tmp,
            "PHOTO": os.path.join(SOURCE, "data", "samples", "chelsea.png"),
            "FIXTURE-IMAGE": os.path.join(FIX, "ldm-inpaint-tiny", "image.png"),
            "LOWRES": os.path.join(FIX, "ldm-sr-tiny", "lowres.png"),
            "INPAINT-MODEL": INPAINT_MODEL,
            "SR-MODEL": SR_MODEL,
            "MISSING-MODEL": os.path.join(tmp, "missing.ckpt"),
            "FOLDER-MODEL": folder_model,
            "TEXT-MODEL": text_model,
            "SD-IMAGE": os.path.join(FIX, "sd-inpaint-clip-tiny", "image.png"),
            "SD-MODEL": os.path.join(FIX, "sd-inpaint-clip-tiny", "model.safetensors"),
        }
        main_scenarios = ["inpaint", "variants", "upscale", "equal", "errors", "prompt"]
        code, values, output = run_gimp(defines, main_scenarios, {"GIMP_LDM_MODEL_DIR": empty})
        check("GIMP batch 1 exits 0", code == 0, f"exit code {code}")
        check_scenarios_ran(values, main_scenarios)
        for name, fn in (("inpaint", lambda: check_inpaint(values, tmp)),
                         ("variants", lambda: check_variants(values, tmp)),
                         ("upscale", lambda: check_upscale(values, tmp)),
                         ("equal", lambda: check_equal(values, tmp)),
                         ("errors", lambda: check_errors(values, tmp, output, defines)),
                         ("prompt", lambda: check_prompt(values, tmp))):
            try:
                fn()
            except Exception as e:  # a missing export: report, go on
                check(f"{name}: checks could run", False, repr(e))

        # Batch 2: cancel, and WITH-LAST-VALS from the settings of an "earlier session",
        # with the built-in model found through GIMP_LDM_MODEL_DIR.
        builtin = os.path.join(tmp, "models")
        os.makedirs(builtin)
        os.symlink(os.path.join(FIX, "ldm-inpaint-tiny", "model.safetensors"),
                   os.path.join(builtin, "ldm-inpaint-builtin.safetensors"))
        os.symlink(os.path.join(FIX, "ldm-inpaint-tiny", "config.yaml"),
                   os.path.join(builtin, "ldm-inpaint-builtin.yaml"))
        settings = os.path.join(HOME, "plug-in-settings")
        os.makedirs(settings, exist_ok=True)
        for f in os.listdir(settings):  # an interactive run of the tests' own GIMP
            if "ldm-inpaint" in f:
                os.remove(os.path.join(settings, f))
        with open(os.path.join(settings, "GimpProcedureConfigRun-plug-in-ldm-inpaint.last"),
                  "w") as f:
            f.write("# settings\n(steps 2)\n(seed 1234)\n(sampler \"ddim\")\n(eta 0)\n"
                    "(context-padding 8)\n(working-size 256)\n(mask-grow 1)\n(mask-blur 2)\n"
                    "# end of settings\n")
        code, values, output = run_gimp(defines, ["cancel", "last-values"],
                                        {"GIMP_LDM_CANCEL_AT_STEP": "3",
                                         "GIMP_LDM_MODEL_DIR": builtin})
        check("GIMP batch 2 exits 0", code == 0, f"exit code {code}")
        check_scenarios_ran(values, ["cancel", "last-values"])
        # a cancelled run returns GIMP_PDB_CANCEL: Script-Fu gets no layer back
        check("cancel: the run ends cancelled, with no layer",
              one(values, "cancel/cancel-result") == "(#f)", one(values, "cancel/cancel-result"))
        check("cancel: the image is unchanged",
              "cancelled yes" in values.get("cancel/unchanged", []))
        check("last values: seed, steps and model from the saved settings",
              one(values, "last-values/name") ==
              "Inpainted (ldm-inpaint-builtin.safetensors, seed 1234, 2 steps)",
              one(values, "last-values/name"))
        parasite = " ".join(values.get("last-values/parasite", []))
        check("last values: the region settings too",
              "context-padding=8" in parasite and "mask-blur=2" in parasite
              and "sampler=ddim" in parasite, parasite)
        # Batch 3, the GUI under Xvfb: one Ctrl+Z undoes the whole run; then the dialog of an
        # interactive run (OK), and Cancel (Escape) in its progress window stops the model.
        with open(os.path.join(settings, "GimpProcedureConfigRun-plug-in-ldm-inpaint.last"),
                  "w") as f:  # what the dialog opens with: many steps, so Cancel comes first
            f.write("# settings\n(steps 1000)\n(seed 5)\n(sampler \"ddim\")\n"
                    "# end of settings\n")
        # Then the dialog's Preview (Alt+V), shown on the canvas (the dialog moved off it), and
        # Cancel; one Ctrl+Z afterwards undoes the selection made before the dialog.
        shot_off, shot_on = (os.path.join(tmp, "preview-screen-off.png"),
                             os.path.join(tmp, "preview-screen-on.png"))
        gui = run_gimp_gui(defines, ["undo", "interactive-cancel", "preview-cancel"],
                           [("file", os.path.join(tmp, "undo-ready.png"), ["ctrl+z"]),
                            ("window", "^Inpaint Selection$", ["Return"]),
                            ("window", "^Inpainting$", ["Escape"]),
                            ("window", "^Inpaint Selection$",
                             ["!move 613 0", "!sleep 2", "!shot " + shot_off, "alt+v",
                              "!sleep 30", "!shot " + shot_on, "Escape"]),
                            ("file", os.path.join(tmp, "preview-after.png"), ["ctrl+z"])],
                           {"GIMP_LDM_MODEL_DIR": builtin})
        if gui is None:
            check("GUI: # SKIP no Xvfb/xdotool", True)
        else:
            code, values, output, done = gui
            check("GUI: the driver saw the image, the dialog and the progress window",
                  done >= 3, f"{done} of 3")
            check_scenarios_ran(values, ["undo", "interactive-cancel", "preview-cancel"])
            check("undo: the run added one layer", one(values, "undo/layers-after-run") == "2")
            check("undo: one Ctrl+Z removes it", one(values, "undo/layers-after-undo") == "1",
                  one(values, "undo/layers-after-undo"))
            check("undo: the selection made before the run is still there",
                  one(values, "undo/selection-kept") == "yes")
            check("undo: after one undo the image is bit for bit what it was",
                  *same_pixels(os.path.join(tmp, "undo-before.png"),
                               os.path.join(tmp, "undo-after.png")))
            check("interactive cancel: the run ends cancelled, with no layer",
                  one(values, "interactive-cancel/result") == "(#f)",
                  one(values, "interactive-cancel/result"))
            check("interactive cancel: the image keeps its one layer",
                  one(values, "interactive-cancel/layers-after") == "1")
            check("interactive cancel: the image is bit for bit what it was",
                  *same_pixels(os.path.join(tmp, "cancel-before.png"),
                               os.path.join(tmp, "cancel-after.png")))
            check_preview(values, done, tmp, shot_off, shot_on)

        failed = [r for r in results if not r[1]]
        if failed or os.environ.get("LDM_KEEP_TEST_OUTPUT"):
            print("# GIMP output of the last batch:\n" + "\n".join(
                "# " + line for line in output.splitlines()[-60:]))
    finally:
        if os.environ.get("LDM_KEEP_TEST_OUTPUT"):  # for debugging: keep the exports
            print(f"# exports kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    return report()


if __name__ == "__main__":
    sys.exit(main())
