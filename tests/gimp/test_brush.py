"""The Inpainting Brush (plug-in-ldm-inpaint-brush) in real, headless GIMP 3, without its window:
test_brush.scm paints strokes on the strokes layer and calls the procedure's "update" action,
which runs the window's session code for one look. Checks: the result layer changes only within
the strokes' reach (box + grow + blur: fast mode, 8 pixels) and every other pixel of the visible
image is the original's, bit for bit; an erased stroke gives the original pixels back exactly;
an unchanged layer inpaints nothing; Discard leaves the image bit for bit as before; with no
model the built-in one runs, and Apply leaves the result layer alone. Prints TAP.

Uses gimp_harness.py with its own GIMP folder (tests/gimp-home-brush)."""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gimp_harness as gh  # noqa: E402

gh.HOME = os.environ.get("LDM_GIMP_HOME") or os.path.join(gh.BUILD, "tests", "gimp-home-brush")
gh.SCM = os.path.join(gh.SOURCE, "tests", "gimp", "test_brush.scm")
check, one, pixels, px = gh.check, gh.one, gh.pixels, gh.px

REACH = 8  # fast mode: mask grow 4 + blur 4 (ldm_brush_params_init)
A = (30, 30, 14, 14)    # x, y, w, h of the strokes (image = layer coordinates)
B = (110, 70, 12, 10)


def grown(r, d):
    x, y, w, h = r
    return (x - d, y - d, x + w + d, y + h + d)  # x0, y0, x1, y1 (exclusive)


def inside(p, box):
    return box[0] <= p[0] < box[2] and box[1] <= p[1] < box[3]


def alpha_outside(img, boxes):
    """(pixels with alpha > 0 outside every box, with alpha > 0 inside one)"""
    out = inn = 0
    for y in range(img[1]):
        for x in range(img[0]):
            if px(img, x, y)[-1]:  # alpha: the last sample (RGBA or grey + alpha)
                if any(inside((x, y), b) for b in boxes):
                    inn += 1
                else:
                    out += 1
    return out, inn


def differences(a, b, boxes):
    """(pixels that differ outside every box, inside one)"""
    out = inn = 0
    for y in range(a[1]):
        for x in range(a[0]):
            if px(a, x, y) != px(b, x, y):
                if any(inside((x, y), bx) for bx in boxes):
                    inn += 1
                else:
                    out += 1
    return out, inn


def check_brush(values, out):
    v = lambda k: one(values, "brush/" + k)  # noqa: E731
    check("start: two layers added, the strokes layer selected",
          v("layers-before") == "1" and v("layers-started") == "3"
          and v("strokes-selected") == "yes", f"{v('layers-started')} {v('strokes-selected')}")
    check("start: strokes above result above the layer", v("order") == "yes")
    check("start: the layers' names", v("names") == "Brush strokes / Brush result", v("names"))
    before = pixels(os.path.join(out, "before.png"))
    r0 = pixels(os.path.join(out, "result-0.png"))
    check("start: the result layer is the layer's size and transparent",
          r0[:2] == before[:2] and alpha_outside(r0, []) == (0, 0), f"{r0[:2]}")

    check("update 1: one region", v("regions-1") == "1", v("regions-1"))
    r1 = pixels(os.path.join(out, "result-1.png"))
    o, i = alpha_outside(r1, [grown(A, REACH)])
    check("update 1: the result layer has pixels only within the stroke's reach",
          o == 0 and i >= 14 * 14, f"{o} outside, {i} inside")
    check("update 1: opaque in the stroke's middle", px(r1, 37, 37)[3] == r1[4])
    v1 = pixels(os.path.join(out, "visible-1.png"))
    o, i = differences(before, v1, [grown(A, REACH)])
    check("update 1: every pixel outside the reach unchanged, the stroke's inside changed",
          o == 0 and i > 100, f"{o} outside, {i} inside")

    check("update 2: two regions (the erased stroke and the new one)", v("regions-2") == "2",
          v("regions-2"))
    r2 = pixels(os.path.join(out, "result-2.png"))
    o, i = alpha_outside(r2, [grown(B, REACH)])
    check("update 2: the erased stroke's area is transparent again, B's reach has pixels",
          o == 0 and i >= 12 * 10, f"{o} outside B, {i} inside")
    v2 = pixels(os.path.join(out, "visible-2.png"))
    o, i = differences(before, v2, [grown(B, REACH)])
    check("update 2: erasing restored the original pixels bit for bit; only B's reach differs",
          o == 0 and i > 60, f"{o} outside, {i} inside")
    check("update 3: nothing changed, nothing inpainted", v("regions-3") == "0", v("regions-3"))

    check("discard: the image has its one layer again, selected",
          v("layers-discarded") == "1" and v("base-selected") == "yes")
    after = pixels(os.path.join(out, "discarded.png"))
    check("discard: the image bit for bit as before", after == before)


def check_builtin(values, out):
    v = lambda k: one(values, "builtin/" + k)  # noqa: E731
    check("built-in model: one region", v("regions") == "1", v("regions"))
    before = pixels(os.path.join(out, "builtin-before.png"))
    vis = pixels(os.path.join(out, "builtin-visible.png"))
    o, i = differences(before, vis, [grown((60, 40, 16, 16), REACH)])
    check("built-in model: only the stroke's reach changed", o == 0 and i > 100,
          f"{o} outside, {i} inside")
    check("apply: the strokes layer gone, the result layer on top",
          v("layers-applied") == "2" and v("top-is-result") == "yes"
          and v("strokes-gone") == "yes",
          f"{v('layers-applied')} {v('top-is-result')} {v('strokes-gone')}")
    applied = pixels(os.path.join(out, "builtin-applied.png"))
    check("apply: the image shows the result", applied == vis)


def check_offset_grey(values, out):
    v = lambda k: one(values, "offset-grey/" + k)  # noqa: E731
    check("offset layer: the brush's layers at the layer's offsets",
          gh.ints(v("offsets")) == [10, 5, 10, 5], v("offsets"))
    check("grey image: the result layer is grey with alpha", v("grey") == "yes")
    check("offset grey: one region", v("regions") == "1", v("regions"))
    r = pixels(os.path.join(out, "grey-result.png"))
    check("offset grey: the result layer exports as grey + alpha", r[2] == 2, str(r[2]))
    # export-layer-on-canvas: the canvas's view of the layer, in image coordinates
    o, i = alpha_outside(r, [grown((40, 30, 12, 12), REACH)])
    check("offset grey: the result only within the stroke's reach",
          o == 0 and i >= 12 * 12, f"{o} outside, {i} inside")
    before = pixels(os.path.join(out, "grey-before.png"))
    after = pixels(os.path.join(out, "grey-visible.png"))
    o, i = differences(before, after, [grown((40, 30, 12, 12), REACH)])  # image coordinates
    check("offset grey: the visible image unchanged outside the reach, changed inside",
          o == 0 and i > 50, f"{o} outside, {i} inside")


def check_refused(values):
    for name, text in (("update-without-start", "no brush layers"),
                       ("open-without-window", "interactive"),
                       ("bad-action", "Unknown action"),
                       ("bad-mode", "Unknown mode")):
        message = " ".join(m for m in values.get("refused/message", [])
                           if m.startswith(name + " "))
        check(f"refused: {name}, with a message, the image unchanged",
              f"{name}" in (values.get("refused/rejected") or [])
              and text in message
              and f"{name} yes" in (values.get("refused/unchanged") or []), message)


def run_gui(defines):
    """GIMP's GUI under Xvfb running the 'gui' scenario: waits for the brush window, paints a
    stroke across the canvas's middle with the paintbrush (xdotool), waits for the region,
    undoes the stroke (Ctrl+Z), waits, and clicks Apply (the window's right-most button). Returns (exit code, values, output, what the
    driver did), or None without Xvfb, xdotool or GIMP's GUI."""
    if not gh.can_run_gui():
        return None
    did = []
    with gh.gimp_gui(defines, ["gui"], 300) as gui:
        xdo = gui.xdo
        brush = None
        while not brush and gui.running():
            found = xdo("search", "--onlyvisible", "--name", "^Inpainting Brush$")
            brush = found[0] if found else None
            time.sleep(0.3)
        if brush:
            did.append("window")
            time.sleep(1.5)
            image = gui.largest(xdo("search", "--onlyvisible", "--name", "GIMP"))
            x, y, width, height = gui.geometry(image)
            # no window manager: the brush window beside GIMP's, off the canvas
            xdo("windowmove", brush, x + width + 4, y)
            cx, cy = x + width // 2 - 100, y + height // 2
            xdo("mousemove", cx, cy)
            time.sleep(0.5)
            xdo("key", "p")  # the paintbrush; focus follows the pointer
            time.sleep(0.5)
            # one xdotool call: motion events 20 ms apart, not a process start apart
            moves = []
            for i in range(0, 64, 4):
                moves += ["mousemove", cx - 30 + i, cy + i // 8, "sleep", "0.02"]
            xdo("mousemove", cx - 30, cy, "mousedown", 1, *moves, "mouseup", 1)
            did.append("stroke")
            time.sleep(20)  # settle (0.1-0.15 s), the tiny model's 2 steps, the write
            # Ctrl+Z on the canvas: undoes the stroke (the live write made no undo step), so
            # the session sees it erased and writes the original back: a second region
            xdo("mousemove", cx, cy + 40)
            time.sleep(0.3)
            xdo("key", "ctrl+z")
            did.append("undo")
            time.sleep(20)
            bx, by, bw, bh = gui.geometry(brush)
            xdo("mousemove", bx + bw - 60, by + bh - 28, "click", 1)  # Apply
            did.append("apply")
    return gui.gimp.returncode, gh.parse_values(gui.output), gui.output, did


def check_gui(result, out):
    if result is None:
        check("gui: skipped (no Xvfb, xdotool or GIMP GUI)", True)
        return
    code, values, output, did = result
    check("gui: the brush window appeared, a stroke was painted and undone, Apply clicked",
          did == ["window", "stroke", "undo", "apply"], str(did))
    check("gui: two regions written: the stroke's, then the original back after Ctrl+Z "
          "(the undo took the stroke, not a live write)",
          one(values, "gui/regions") == "2", one(values, "gui/regions"))
    check("gui: the brush returned after Apply: 2 layers, the result on top",
          one(values, "gui/layers-after") == "2"
          and one(values, "gui/top-name") == "Brush result",
          f"{one(values, 'gui/layers-after')} {one(values, 'gui/top-name')}")
    before = pixels(os.path.join(out, "gui-before.png"))
    after = pixels(os.path.join(out, "gui-after.png"))
    changed = sum(px(before, x, y) != px(after, x, y)
                  for y in range(before[1]) for x in range(before[0]))
    check("gui: after the undone stroke and Apply the image is bit for bit as before",
          before[:2] == after[:2] and changed == 0, f"{changed} pixels differ")
    return output


def main():
    if not gh.GIMP_CONSOLE:
        print("1..0 # SKIP gimp-console-3 is not installed")
        return 0
    gh.setup_home()
    tmp = tempfile.mkdtemp(prefix="gimp-ldm-brush-")
    output = ""
    try:
        defines = {
            "OUT": tmp,
            "PHOTO": os.path.join(gh.SOURCE, "data", "samples", "chelsea.png"),
            "INPAINT-MODEL": gh.INPAINT_MODEL,
            "PLUGIN-SCM": os.path.join(gh.SOURCE, "tests", "gimp", "test_plugin.scm"),
        }
        scenarios = ["brush", "builtin", "offset-grey", "refused"]
        code, values, output = gh.run_gimp(defines, scenarios)
        check("GIMP exits 0", code == 0, f"exit code {code}")
        gh.check_scenarios_ran(values, scenarios)
        for name, fn in (("brush", lambda: check_brush(values, tmp)),
                         ("builtin", lambda: check_builtin(values, tmp)),
                         ("offset-grey", lambda: check_offset_grey(values, tmp)),
                         ("refused", lambda: check_refused(values))):
            try:
                fn()
            except Exception as e:  # a missing export: report, go on
                check(f"{name}: checks could run", False, repr(e))
        gui = run_gui(defines)
        try:
            gui_output = check_gui(gui, tmp)
        except Exception as e:
            check("gui: checks could run", False, repr(e))
            gui_output = gui[2] if gui else ""
        output += "\n# --- GUI run:\n" + (gui_output or "")
        if any(not r[1] for r in gh.results) or os.environ.get("LDM_KEEP_TEST_OUTPUT"):
            print("# GIMP output:\n" + "\n".join("# " + line
                                                  for line in output.splitlines()[-60:]))
    finally:
        if os.environ.get("LDM_KEEP_TEST_OUTPUT"):
            print(f"# exports kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return gh.report()


if __name__ == "__main__":
    sys.exit(main())
