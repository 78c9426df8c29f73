"""The test scripts' checks: one line per check ("ok: NAME" or "FAIL: NAME: DETAIL"), a closing
"N passed, M failed" line (.ci/run adds those up) and the exit status meson reads."""
import json
import os

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok' if ok else 'FAIL'}: {name}{': ' + str(detail) if detail and not ok else ''}",
          flush=True)


def report():
    """Prints the summary line; returns the script's exit status."""
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def sanitized(build_dir):
    """Whether the build folder was configured with -Db_sanitize (ASan's shadow memory makes
    RSS figures meaningless)."""
    path = os.path.join(build_dir, "meson-info", "intro-buildoptions.json")
    try:
        with open(path) as f:
            options = {o["name"]: o["value"] for o in json.load(f)}
    except OSError:
        return False
    return options.get("b_sanitize", "none") not in ("none", "", [])
