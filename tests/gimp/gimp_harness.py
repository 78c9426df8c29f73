"""What the GIMP tests (test_plugin.py, test_brush.py) share: the build's paths, GIMP 3's
programs and a private GIMP folder (HOME) holding a link to the built plug-in, runs of SCM's
Script-Fu scenarios in headless GIMP (run_gimp) or in GIMP's GUI under its own Xvfb
(gimp_gui), the "LDM: key value" lines they print, PNG pixels, and the TAP report of the
checks. A test sets HOME and SCM before its first run when it wants others."""
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from pngutil import read_png  # noqa: E402

BUILD = os.environ["LDM_BUILD_DIR"]
SOURCE = os.environ["LDM_SOURCE_DIR"]
SHARED = os.environ["LDM_SHARED_DIR"]
LDM = os.environ["LDM_EXE"]
PLUGIN = os.environ["LDM_PLUGIN"]
# LDM_GIMP_HOME: another GIMP folder (a plug-in built elsewhere, run in this build's GIMP)
HOME = os.environ.get("LDM_GIMP_HOME") or os.path.join(BUILD, "tests", "gimp-home")
SCM = os.path.join(SOURCE, "tests", "gimp", "test_plugin.scm")
FIX = os.path.join(SHARED, "fixtures")
INPAINT_MODEL = os.path.join(FIX, "ldm-inpaint-tiny", "model.ckpt")
SR_MODEL = os.path.join(FIX, "ldm-sr-tiny", "model.ckpt")

results = []


def gimp_program(kind):
    """GIMP 3's `gimp-console` or `gimp` (kind): gimp-console-3 where the distribution has the
    major version's name (Debian), else the minor version's (GIMP 3.0 is gimp-console-3.0,
    3.2 is gimp-console-3.2). None when GIMP 3 is not installed."""
    for name in (f"{kind}-3", f"{kind}-3.2", f"{kind}-3.0"):
        path = shutil.which(name)
        if path:
            return path
    return None


GIMP_CONSOLE = gimp_program("gimp-console")
GIMP_GUI = gimp_program("gimp")


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))


def setup_home():
    """The private GIMP folder: plug-ins/gimp-ldm/{gimp-ldm, locale} link to the build."""
    folder = os.path.join(HOME, "plug-ins", "gimp-ldm")
    os.makedirs(folder, exist_ok=True)
    for name, target in (("gimp-ldm", PLUGIN), ("locale", os.path.join(BUILD, "po"))):
        link = os.path.join(folder, name)
        if os.path.islink(link) and os.readlink(link) == target:
            continue
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(target, link)
    gimprc = os.path.join(HOME, "gimprc")
    if not os.path.exists(gimprc):  # GIMP rewrites it; rewriting it re-queries all plug-ins
        with open(gimprc, "w") as f:
            f.write('(plug-in-path "%s:${gimp_plug_in_dir}/plug-ins")\n'
                    % os.path.join(HOME, "plug-ins"))
    # a crash leaves backups that make the next GUI start wait on a dialog
    shutil.rmtree(os.path.join(HOME, "backups"), ignore_errors=True)


def scheme_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def prelude(defines, scenarios):
    """The Script-Fu that defines DEFINES and SCENARIOS and loads SCM."""
    text = "".join("(define %s %s)\n" % (k, scheme_string(v)) for k, v in defines.items())
    text += "(define SCENARIOS '(%s))\n" % " ".join(scenarios)
    return text + "(load %s)\n" % scheme_string(SCM)


def gimp_env(env_extra=None, display=None):
    """GIMP's environment: the private folder, C locale, and DISPLAY (none: headless)."""
    env = dict(os.environ)
    env.update(GIMP3_DIRECTORY=HOME, XDG_CACHE_HOME=os.path.join(HOME, "xdg-cache"),
               XDG_DATA_HOME=os.path.join(HOME, "xdg-data"),
               XDG_CONFIG_HOME=os.path.join(HOME, "xdg-config"),
               # GIMP's own libraries leak at exit; that is not the plug-in's business
               ASAN_OPTIONS="detect_leaks=0", LANGUAGE="", LC_ALL="C.UTF-8")
    env.pop("DISPLAY", None)
    if display:
        env["DISPLAY"] = display
    env.update(env_extra or {})
    return env


def parse_values(text):
    """{"scenario/key": [values]} of the "LDM: key value" lines (a parasite's text: several
    lines)."""
    values = {}
    scenario, last = "", None
    for line in text.splitlines():
        if line.startswith("LDM: "):
            key, _, rest = line[5:].partition(" ")
            if key == "scenario":
                scenario = rest
            last = f"{scenario}/{key}" if key != "scenario" else key
            values.setdefault(last, []).append(rest)
        elif last and last.endswith("parasite"):
            values[last][-1] += "\n" + line
    return values


def run_gimp(defines, scenarios, env_extra=None):
    """Runs the scenarios in one GIMP; returns (exit code, {key: [values]}, output)."""
    cmd = [GIMP_CONSOLE, "-i", "-d", "-f", "--no-splash", "-c",
           "--batch-interpreter=plug-in-script-fu-eval", "-b", prelude(defines, scenarios),
           "--quit"]
    p = subprocess.run(cmd, env=gimp_env(env_extra), capture_output=True, text=True,
                       timeout=900)
    return p.returncode, parse_values(p.stdout), p.stdout + p.stderr


def can_run_gui():
    """Xvfb, xdotool and GIMP's GUI are there."""
    return bool(shutil.which("Xvfb") and shutil.which("xdotool") and GIMP_GUI)


class GimpGui:
    """GIMP's GUI running on its own display; xdo() drives it (no window manager: focus
    follows the pointer)."""

    def __init__(self, env, deadline):
        self.env, self.deadline = env, deadline
        self.gimp, self.output = None, ""

    def xdo(self, *args):
        return subprocess.run(["xdotool", *map(str, args)], env=self.env, capture_output=True,
                              text=True, timeout=30).stdout.split()

    def geometry(self, wid):
        """(x, y, width, height) of window WID (zeros when it is gone)."""
        g = dict(kv.split("=") for kv in self.xdo("getwindowgeometry", "--shell", wid)
                 if "=" in kv)
        return tuple(int(g.get(k, 0)) for k in ("X", "Y", "WIDTH", "HEIGHT"))

    def largest(self, windows):
        """The largest of WINDOWS (GIMP's image window among its others), None if none."""
        if not windows:
            return None
        return max(windows, key=lambda wid: self.geometry(wid)[2] * self.geometry(wid)[3])

    def running(self):
        """GIMP has not ended and the deadline has not passed."""
        return self.gimp.poll() is None and time.monotonic() < self.deadline


@contextlib.contextmanager
def gimp_gui(defines, scenarios, timeout, env_extra=None):
    """GIMP's GUI under its own Xvfb running SCENARIOS, for at most TIMEOUT s: yields a
    GimpGui to drive it. When the block ends GIMP is waited for until the deadline (killed
    then, or when an xdotool command hangs); gui.output is what it printed, gui.gimp its
    process (returncode)."""
    r, w = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x960x24",
                             "-nolisten", "tcp"], pass_fds=(w,), stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        display = ":" + f.readline().strip()
    env = gimp_env(env_extra, display)
    gui = GimpGui(env, time.monotonic() + timeout)
    gui.gimp = subprocess.Popen([GIMP_GUI, "-n", "-s", "-f", "-c",
                                 "--batch-interpreter=plug-in-script-fu-eval", "-b",
                                 prelude(defines, scenarios), "--quit"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            yield gui
            gui.output, _ = gui.gimp.communicate(
                timeout=max(gui.deadline - time.monotonic(), 30))
        except subprocess.TimeoutExpired:
            gui.gimp.kill()
            gui.output, _ = gui.gimp.communicate()
    finally:
        xvfb.terminate()
        xvfb.wait()


def one(values, key):
    v = values.get(key)
    return v[0] if v else None


def ints(text):
    return [int(x) for x in re.findall(r"-?\d+", text or "")]


def pixels(path):
    """(width, height, channels, rows, maxval)"""
    return read_png(path)


def px(img, x, y):
    c, rows = img[2], img[3]
    return rows[y][x * c:(x + 1) * c]


def check_scenarios_ran(values, names):
    for name in names:
        check(f"{name}: scenario ran to its end",
              f"{name}/scenario-end" in values and f"{name}/scenario-error" not in values,
              "see the GIMP output")


def report():
    """Prints the checks as TAP; the exit code (0: all passed)."""
    print(f"1..{len(results)}")
    for i, (name, ok, detail) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} {name}" + ("" if ok or not detail else f" # {detail}"))
    return 0 if all(ok for _, ok, _ in results) else 1
