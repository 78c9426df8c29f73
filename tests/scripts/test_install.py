"""`meson install` (into a temporary DESTDIR) puts the plug-in, its translations, `ldm`, the
built-in models (with their configs) and CLIP's merges in place, and the installed `ldm` inpaints with the
installed built-in model."""
import json
import os
import subprocess
import sys
import tempfile

BUILD = os.environ["LDM_BUILD_DIR"]
SOURCE = os.environ["LDM_SOURCE_DIR"]
MESON = os.environ.get("MESON", "meson")

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok' if ok else 'FAIL'}: {name}{': ' + str(detail) if detail and not ok else ''}")


def options(*names):
    opts = json.loads(subprocess.run([MESON, "introspect", "--buildoptions", BUILD],
                                     capture_output=True, text=True, check=True).stdout)
    values = {o["name"]: o["value"] for o in opts}
    return [values[n] for n in names]


def main():
    prefix, datadir = options("prefix", "datadir")
    with tempfile.TemporaryDirectory() as dest:
        r = subprocess.run([MESON, "install", "-C", BUILD, "--destdir", dest, "--no-rebuild",
                            "--quiet"], capture_output=True, text=True)
        check("meson install --destdir: exit 0", r.returncode == 0, r.stdout + r.stderr)
        if r.returncode:
            return 1
        installed = {os.path.relpath(os.path.join(d, f), dest)
                     for d, _, fs in os.walk(dest) for f in fs}
        plugin = [p for p in installed if p.endswith("/plug-ins/gimp-ldm/gimp-ldm")]
        check("the plug-in is installed in its own plug-ins/gimp-ldm folder", len(plugin) == 1,
              sorted(installed))
        if plugin:
            folder = os.path.dirname(plugin[0])
            for lang in ("de", "fr"):
                mo = os.path.join(folder, "locale", lang, "LC_MESSAGES", "gimp-ldm.mo")
                check(f"its {lang} translation is beside it", mo in installed)
        models = os.path.join(prefix, datadir, "gimp-ldm", "models").lstrip("/")
        for name in ("ldm-inpaint-builtin", "ldm-sr-builtin"):
            for ext in (".safetensors", ".yaml"):
                p = os.path.join(models, name + ext)
                ok = p in installed
                if ok:
                    with open(os.path.join(dest, p), "rb") as a, \
                            open(os.path.join(SOURCE, "data", "models", name + ext), "rb") as b:
                        ok = a.read() == b.read()
                check(f"{name}{ext} installed in {models}, identical", ok)
        ldm = os.path.join(prefix, "bin", "ldm").lstrip("/")
        check("ldm is installed", ldm in installed)
        if ldm not in installed:
            return 1
        tokenizers = os.path.join(prefix, datadir, "gimp-ldm", "tokenizers", "clip").lstrip("/")
        for name in ("bpe_simple_vocab_16e6.txt.gz", "LICENSE"):
            p = os.path.join(tokenizers, name)
            ok = p in installed
            if ok:
                with open(os.path.join(dest, p), "rb") as a, \
                        open(os.path.join(SOURCE, "data", "tokenizers", "clip", name), "rb") as b:
                    ok = a.read() == b.read()
            check(f"CLIP's {name} installed in {tokenizers}, identical", ok)
        r = subprocess.run([os.path.join(dest, ldm), "tokenize", "a photograph of an astronaut"],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, GIMP_LDM_TOKENIZER_DIR=os.path.join(dest, tokenizers)))
        check("the installed ldm tokenizes with the installed merges (SD's ids)",
              r.returncode == 0 and r.stdout.split()[:7] == "49406 320 8853 539 550 18376 49407"
              .split(), r.stdout + r.stderr)
        out = os.path.join(dest, "out.png")
        samples = os.path.join(SOURCE, "data", "samples")
        r = subprocess.run([os.path.join(dest, ldm), "inpaint", "--image",
                            os.path.join(samples, "chelsea.png"), "--mask",
                            os.path.join(samples, "chelsea-mask.png"), "--output", out,
                            "--steps", "2", "--seed", "3", "--quiet"],
                           capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, GIMP_LDM_MODEL_DIR=os.path.join(dest, models)))
        check("the installed ldm inpaints with the installed built-in model",
              r.returncode == 0 and os.path.getsize(out) > 0, r.stderr)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
