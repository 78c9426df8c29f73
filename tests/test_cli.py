"""The `ldm` program's interface: `ldm info` on every fixture model (both file formats),
`ldm tensors`, exit codes and messages for bad use."""
import os
import subprocess
import sys
import tempfile

LDM = os.environ["LDM_EXE"]
SHARED = os.environ.get("LDM_SHARED_DIR", "")
FIXTURES = {
    # fixture: (kind as `ldm info` names it, U-Net parameter count as a substring)
    "ldm-inpaint-tiny": "inpaint",
    "ldm-sr-tiny": "super-resolution",
    "sd-inpaint-tiny": "Stable Diffusion",
}

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok' if ok else 'FAIL'}: {name}{': ' + detail if detail and not ok else ''}")


def ldm(*args):
    return subprocess.run([LDM, *args], capture_output=True, text=True, timeout=120)


def main():
    r = ldm("help")
    check("help exits 0 and lists info", r.returncode == 0 and "info" in r.stdout, r.stderr)
    r = ldm()
    check("no command: exit 2 with usage", r.returncode == 2 and "usage" in r.stderr)
    r = ldm("frobnicate")
    check("unknown command: exit 2", r.returncode == 2 and "frobnicate" in r.stderr)
    r = ldm("info")
    check("info without a file: exit 2", r.returncode == 2 and "usage" in r.stderr)
    r = ldm("info", "/nonexistent/model.ckpt")
    check("missing file: exit 2 naming it",
          r.returncode == 2 and "/nonexistent/model.ckpt" in r.stderr, r.stderr)

    if not os.path.isdir(os.path.join(SHARED, "fixtures")):
        print("fixtures not found: skipping fixture checks")
    else:
        for fixture, kind in FIXTURES.items():
            outputs = {}
            for fname in ("model.ckpt", "model.safetensors"):
                path = os.path.join(SHARED, "fixtures", fixture, fname)
                r = ldm("info", path)
                check(f"info {fixture}/{fname}: exit 0", r.returncode == 0, r.stderr)
                check(f"info {fixture}/{fname}: kind", kind.lower() in r.stdout.lower(), r.stdout)
                check(f"info {fixture}/{fname}: config source named",
                      "config.yaml" in r.stdout, r.stdout)
                check(f"info {fixture}/{fname}: EMA weights used", "EMA" in r.stdout, r.stdout)
                outputs[fname] = [l for l in r.stdout.splitlines()
                                  if "parameters" in l.lower()]
            check(f"info {fixture}: both formats give the same parameter counts",
                  outputs["model.ckpt"] == outputs["model.safetensors"] and outputs["model.ckpt"],
                  repr(outputs))

            path = os.path.join(SHARED, "fixtures", fixture, "model.safetensors")
            r = ldm("tensors", path)
            names = [l.split()[0] for l in r.stdout.splitlines()]
            check(f"tensors {fixture}: lists them", r.returncode == 0 and
                  "model.diffusion_model.input_blocks.0.0.weight" in names, r.stderr)
            r = ldm("tensors", path, "model.diffusion_model.input_blocks.0.0.weight")
            check(f"tensors {fixture}: stats of one", r.returncode == 0 and
                  "non-finite 0" in r.stdout, r.stdout + r.stderr)
            r = ldm("tensors", path, "no.such.tensor")
            check(f"tensors {fixture}: unknown name exit 2", r.returncode == 2 and
                  "no.such.tensor" in r.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "notes.txt")
        with open(text, "w") as f:
            f.write("this is not a model, just some words long enough\n")
        r = ldm("info", text)
        check("a text file: exit 2 naming it", r.returncode == 2 and text in r.stderr, r.stderr)

    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
