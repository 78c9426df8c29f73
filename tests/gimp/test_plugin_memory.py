"""The plug-in in real, headless GIMP 3 with a model too large for its memory (issue 11): the
call fails with "not enough memory for ...", the image is unchanged and GIMP itself runs on
and exits normally; with ample memory the same call succeeds.

Only the plug-in's process is limited: GIMP runs plug-ins by path, so the private GIMP folder
(build/tests/gimp-home-memory, kept between runs like test_plugin's) holds, in
plug-ins/gimp-ldm/, an executable script gimp-ldm (GIMP 3: folder name = executable name)
that runs `exec prlimit --as=$GIMP_LDM_TEST_AS_LIMIT -- BUILT_PLUGIN "$@"` (RLIMIT_AS, address
space). The model is test_memory_limit's full-size random inpainting_big (1.76 GB of F32,
made once into build/memory-limit/), on a 64x64 image, 1 step. Two GIMP runs: one at
LDM_PLUGIN_LOW_MB (default 2048: the plug-in maps the file and cannot make its float32 copy),
one at LDM_PLUGIN_AMPLE_MB (default 8192; "none": no limit). Measured like ldm's: refused at
1536 (the mapping), 2048, 2560, 3072 (a U-Net parameter); succeeds at 3584 and 4096. About
30-40 s in all. The plug-in of 4ba0e95 (before the fix) fails it: "failed to allocate" (a
GLib ERROR), GIMP says "Plug-in crashed" and Script-Fu gets "returned no return values".

Skipped in a sanitizer build (ASan reserves terabytes of address space). Prints TAP."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
# test_memory_limit (tests/scripts) makes the full-size model both memory tests use
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from pngutil import read_png  # noqa: E402
from checks import sanitized  # noqa: E402
from gimp_harness import GIMP_CONSOLE, SCM, scheme_string  # noqa: E402
from test_memory_limit import CONFIG, big_model, write_images  # noqa: E402

BUILD = os.environ["LDM_BUILD_DIR"]
PLUGIN = os.environ["LDM_PLUGIN"]
HOME = os.path.join(BUILD, "tests", "gimp-home-memory")
LOW_MB = os.environ.get("LDM_PLUGIN_LOW_MB", "2048")
AMPLE_MB = os.environ.get("LDM_PLUGIN_AMPLE_MB", "8192")

results = []


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))


WRAPPER = """#!/bin/sh
# Written by tests/gimp/test_plugin_memory.py: the built plug-in under RLIMIT_AS =
# $GIMP_LDM_TEST_AS_LIMIT bytes (unset: no limit). Built plug-in's mtime: {mtime}
# (a rebuilt plug-in rewrites this file, so that GIMP queries it again).
if [ -n "$GIMP_LDM_TEST_AS_LIMIT" ]; then
    exec prlimit --as="$GIMP_LDM_TEST_AS_LIMIT" -- {plugin} "$@"
fi
exec {plugin} "$@"
"""


def setup_home():
    """plug-ins/gimp-ldm/gimp-ldm: the wrapper (the plug-in looks for its catalogs beside the
    built executable, and runs in C.UTF-8 here anyway)."""
    folder = os.path.join(HOME, "plug-ins", "gimp-ldm")
    os.makedirs(folder, exist_ok=True)
    text = WRAPPER.format(plugin="'" + PLUGIN.replace("'", "'\\''") + "'",
                          mtime=os.stat(PLUGIN).st_mtime_ns)
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


# test_plugin.scm (loaded with no scenarios) gives say, load-image, export-visible and
# expect-error; NAME, EXPECT ("fail" or "succeed"), IMAGE, MODEL and OUT come from the driver.
SCENARIO = """
(run-scenario 'memory
  (lambda ()
    (let* ((img (load-image IMAGE))
           (base (first-layer img))
           (inpaint (lambda ()
                      (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                           #:drawables (vector base) #:model MODEL
                                           #:steps 1 #:seed 1))))
      (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 16 16 32 32)
      (say "layers-before" (layer-count img))
      (export-visible img (out "before.png"))
      (if (string=? EXPECT "fail")
          (expect-error NAME img inpaint)
          (say "result" (inpaint)))
      (say "layers-after" (layer-count img))
      (export-visible img (out "after.png"))
      (say "still-alive" (gimp-image-get-width img))
      (gimp-image-delete img))))
"""


def run_gimp(defines, limit_mb):
    """One headless GIMP run of the scenario, the plug-in limited to limit_mb (None: no
    limit). Returns (exit code, {key: [values]}, output, seconds)."""
    prelude = "".join("(define %s %s)\n" % (k, scheme_string(v)) for k, v in defines.items())
    prelude += "(define SCENARIOS '())\n(load %s)\n" % scheme_string(SCM)
    prelude += "(define SCENARIOS '(memory))\n" + SCENARIO
    env = dict(os.environ)
    env.update(GIMP3_DIRECTORY=HOME, XDG_CACHE_HOME=os.path.join(HOME, "xdg-cache"),
               XDG_DATA_HOME=os.path.join(HOME, "xdg-data"),
               XDG_CONFIG_HOME=os.path.join(HOME, "xdg-config"),
               LANGUAGE="", LC_ALL="C.UTF-8")
    env.pop("DISPLAY", None)
    env.pop("GIMP_LDM_TEST_AS_LIMIT", None)
    if limit_mb is not None:
        env["GIMP_LDM_TEST_AS_LIMIT"] = str(limit_mb << 20)
    cmd = [GIMP_CONSOLE, "-i", "-d", "-f", "--no-splash", "-c",
           "--batch-interpreter=plug-in-script-fu-eval", "-b", prelude, "--quit"]
    start = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    values = {}
    for line in p.stdout.splitlines():
        if line.startswith("LDM: "):
            key, _, rest = line[5:].partition(" ")
            values.setdefault(key, []).append(rest)
    return p.returncode, values, p.stdout + p.stderr, seconds


def one(values, key):
    v = values.get(key)
    return v[0] if v else None


def limit_from(text):
    return None if text in ("", "none") else int(text)


def run_case(what, limit_mb, expect, image, model, tmp):
    out = os.path.join(tmp, what)
    os.makedirs(out)
    defines = {"OUT": out, "IMAGE": image, "MODEL": model, "NAME": what, "EXPECT": expect}
    code, values, output, seconds = run_gimp(defines, limit_mb)
    at = f"{limit_mb} MB" if limit_mb is not None else "no limit"
    print(f"# {what} ({at}): GIMP exit {code} after {seconds:.0f} s", flush=True)
    for line in output.splitlines():
        if re.search(r"not enough memory|crashed|Calling error|LDM: result", line):
            print(f"#   {line}", flush=True)
    check(f"{what} ({at}): GIMP exits 0", code == 0, f"exit code {code}")
    check(f"{what}: the scenario ran to its end, GIMP answering after the call",
          "scenario-end" in values and "scenario-error" not in values
          and one(values, "still-alive") == "64", "see the GIMP output")
    layers = (one(values, "layers-before"), one(values, "layers-after"))
    try:
        before = read_png(os.path.join(out, "before.png"))
        after = read_png(os.path.join(out, "after.png"))
    except (OSError, ValueError) as e:
        before, after = None, repr(e)
    if expect == "fail":
        m = next((line.partition(" ")[2] for line in values.get("message", [])
                  if line.startswith(what + " ")), "")
        check(f"{what}: plug-in-ldm-inpaint fails", what in values.get("rejected", []),
              "accepted" if what in values.get("accepted", []) else "no result")
        check(f"{what}: the error says 'not enough memory for'",
              "not enough memory for " in m and "plug-in-ldm-inpaint" in m, m)
        # (GIMP says a plug-in "crashed" when its process dies; wire_read EOFs and a
        # g_object_unref CRITICAL of GIMP's own come in every headless run)
        check(f"{what}: the plug-in does not crash", not re.search(
            r"crashed|GLib-ERROR|terminate called|Segmentation|Aborted|failed to allocate",
            output), output[-3000:])
        check(f"{what}: the image keeps its one layer", layers == ("1", "1"), repr(layers))
        check(f"{what}: the image is bit for bit what it was",
              before is not None and before == after, "" if before is None else "differs")
    else:
        check(f"{what}: plug-in-ldm-inpaint returns a layer",
              re.match(r"\(\d+ ", one(values, "result") or "") is not None,
              f"result {one(values, 'result')}; " + output[-3000:])
        check(f"{what}: one new layer", layers == ("1", "2"), repr(layers))
        check(f"{what}: the selection is filled (the image changed)",
              before is not None and before[:2] == after[:2] and before[3] != after[3])
    if not all(ok for _, ok, _ in results):
        print("# GIMP output:\n" + "\n".join("#   " + line
                                              for line in output.splitlines()[-40:]))


def main():
    if not GIMP_CONSOLE:
        print("1..0 # SKIP gimp-console-3 is not installed")
        return 0
    if sanitized(BUILD):
        print("1..0 # SKIP a sanitizer build reserves far more address space than any limit")
        return 0
    if not os.path.exists(CONFIG):
        print(f"1..0 # SKIP {CONFIG} not found")
        return 0
    if not shutil.which("prlimit"):
        print("1..0 # SKIP prlimit (util-linux) is not installed")
        return 0
    model = big_model()
    setup_home()
    tmp = tempfile.mkdtemp(prefix="gimp-ldm-memory-")
    try:
        image, _ = write_images(tmp, 64)
        run_case("low", limit_from(LOW_MB), "fail", image, model, tmp)
        run_case("ample", limit_from(AMPLE_MB), "succeed", image, model, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"1..{len(results)}")
    for i, (name, ok, detail) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} {name}"
              + ("" if ok or not detail else " # " + " ".join(detail.split())[:2000]))
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
