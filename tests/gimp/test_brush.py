"""The Inpainting Brush (plug-in-ldm-inpaint-brush) in real, headless GIMP 3, without its window:
test_brush.scm paints strokes on the strokes layer and calls the procedure's "update" action,
which runs the window's session code for one look. Checks: the result layer changes only within
the strokes' reach (box + grow + blur: fast mode, 8 pixels) and every other pixel of the visible
image is the original's, bit for bit; an erased stroke gives the original pixels back exactly;
an unchanged layer inpaints nothing; Discard leaves the image bit for bit as before; with no
model the built-in one runs, and Apply leaves the result layer alone. Prints TAP.

Uses test_plugin.py's GIMP helpers with its own GIMP folder (tests/gimp-home-brush)."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_plugin as tp  # noqa: E402

tp.HOME = os.environ.get("LDM_GIMP_HOME") or os.path.join(tp.BUILD, "tests", "gimp-home-brush")
tp.SCM = os.path.join(tp.SOURCE, "tests", "gimp", "test_brush.scm")
check, one, pixels, px = tp.check, tp.one, tp.pixels, tp.px

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
          tp.ints(v("offsets")) == [10, 5, 10, 5], v("offsets"))
    check("grey image: the result layer is grey with alpha", v("grey") == "yes")
    check("offset grey: one region", v("regions") == "1", v("regions"))
    r = pixels(os.path.join(out, "grey-result.png"))
    check("offset grey: the result layer exports as grey + alpha", r[2] == 2, str(r[2]))
    # the export (copy, paste as new image) is the canvas's view of the layer: image coordinates
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


def main():
    if not tp.GIMP_CONSOLE:
        print("1..0 # SKIP gimp-console-3 is not installed")
        return 0
    tp.setup_home()
    tmp = tempfile.mkdtemp(prefix="gimp-ldm-brush-")
    output = ""
    try:
        defines = {
            "OUT": tmp,
            "PHOTO": os.path.join(tp.SOURCE, "data", "samples", "chelsea.png"),
            "INPAINT-MODEL": tp.INPAINT_MODEL,
            "PLUGIN-SCM": os.path.join(tp.SOURCE, "tests", "gimp", "test_plugin.scm"),
        }
        scenarios = ["brush", "builtin", "offset-grey", "refused"]
        code, values, output = tp.run_gimp(defines, scenarios)
        check("GIMP exits 0", code == 0, f"exit code {code}")
        tp.check_scenarios_ran(values, scenarios)
        for name, fn in (("brush", lambda: check_brush(values, tmp)),
                         ("builtin", lambda: check_builtin(values, tmp)),
                         ("offset-grey", lambda: check_offset_grey(values, tmp)),
                         ("refused", lambda: check_refused(values))):
            try:
                fn()
            except Exception as e:  # a missing export: report, go on
                check(f"{name}: checks could run", False, repr(e))
        if any(not r[1] for r in tp.results) or os.environ.get("LDM_KEEP_TEST_OUTPUT"):
            print("# GIMP output:\n" + "\n".join("# " + line
                                                  for line in output.splitlines()[-60:]))
    finally:
        if os.environ.get("LDM_KEEP_TEST_OUTPUT"):
            print(f"# exports kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"1..{len(tp.results)}")
    for i, (name, ok, detail) in enumerate(tp.results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} {name}"
              + ("" if ok or not detail else f" # {detail}"))
    return 0 if all(ok for _, ok, _ in tp.results) else 1


if __name__ == "__main__":
    sys.exit(main())
