"""`ldm inpaint` under address-space limits (prlimit --as, RLIMIT_AS): at every limit it either
succeeds or exits with "not enough memory for ...", never a GLib-ERROR, an abort or a signal.

1. The full-size LDM inpainting model (inpainting_big: 387 M U-Net + 53 M first-stage
   parameters, 1.76 GB of F32) with random weights, made once by make-random-model from
   ../shared/model-configs/ldm_inpainting_big.yaml and kept in the build folder
   (memory-limit/inpainting_big.safetensors), on a 64x64 image for one step, at 1.5 to 3.5 GB
   and without a limit. Loading needs the mapped file plus the engine's float32 copy.
2. The tiny fixture model on a 512x512 image (its activations, attention scores and oneDNN
   scratchpads are what runs out), at 200 MB to 700 MB.

Skipped in a sanitizer build (ASan reserves terabytes of address space). By hand:
LDM_MEMORY_LIMITS_MB="1500 2000 ..." replaces the limits of part 1 and LDM_TINY_LIMITS_MB
those of part 2."""
import os
import resource
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import pngutil  # noqa: E402
from checks import check, report, sanitized  # noqa: E402

LDM = os.environ["LDM_EXE"]
MAKE_RANDOM_MODEL = os.environ["LDM_MAKE_RANDOM_MODEL"]
BUILD = os.environ["LDM_BUILD_DIR"]
SHARED = os.environ.get("LDM_SHARED_DIR", "")
CONFIG = os.path.join(SHARED, "model-configs", "ldm_inpainting_big.yaml")
TINY = os.path.join(SHARED, "fixtures", "ldm-inpaint-tiny", "model.safetensors")

def write_images(folder, size):
    """An RGB gradient and a mask with a white square in the middle."""
    image = os.path.join(folder, f"image{size}.png")
    mask = os.path.join(folder, f"mask{size}.png")
    rows = [bytes((x * 4 + y * 3 + c * 50) % 256 for x in range(size) for c in range(3))
            for y in range(size)]
    pngutil.write_png(image, size, size, 3, rows)
    q = size // 4
    rows = [bytes(255 if q <= x < 3 * q and q <= y < 3 * q else 0 for x in range(size))
            for y in range(size)]
    pngutil.write_png(mask, size, size, 1, rows)
    return image, mask


def run_limited(limit_mb, model, image, mask, output):
    """ldm inpaint (1 step) with RLIMIT_AS = limit_mb (None: no limit)."""
    def limit():
        if limit_mb is not None:
            b = limit_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (b, b))
    if os.path.exists(output):
        os.unlink(output)
    return subprocess.run([LDM, "inpaint", "--model", model, "--image", image, "--mask", mask,
                           "--output", output, "--steps", "1", "--seed", "1", "--quiet"],
                          capture_output=True, text=True, timeout=600, preexec_fn=limit)


def check_limits(what, limits, model, image, mask, output):
    for limit_mb in limits:
        r = run_limited(limit_mb, model, image, mask, output)
        name = f"{what} at {limit_mb} MB" if limit_mb else f"{what} without a limit"
        err = r.stderr.strip()
        crashed = (r.returncode < 0 or r.returncode >= 128 or "GLib-ERROR" in r.stderr
                   or "failed to allocate" in r.stderr or "terminate called" in r.stderr)
        if r.returncode == 0:
            ok = os.path.exists(output) and not crashed
            print(f"# {name}: succeeded", flush=True)
            check(name, ok, f"exit 0 but no output or a crash message: {err}")
        else:
            ok = not crashed and "not enough memory for " in r.stderr
            print(f"# {name}: exit {r.returncode}: {err.splitlines()[-1] if err else ''}",
                  flush=True)
            check(name, ok, f"exit {r.returncode}, stderr: {err[-2000:]}")
        if limit_mb is None:
            check(f"{what} runs without a limit", r.returncode == 0, err)


def limits_from(variable, default):
    text = os.environ.get(variable)
    return [int(v) for v in text.split()] if text else default


def big_model():
    """The full-size random inpainting_big, made once into the build folder (also used by
    test_plugin_memory). Raises RuntimeError when make-random-model fails."""
    cache = os.path.join(BUILD, "memory-limit")
    os.makedirs(cache, exist_ok=True)
    big = os.path.join(cache, "inpainting_big.safetensors")
    if not os.path.exists(big):
        # meson runs this and test_plugin_memory side by side: each writes its own part
        part = f"{big}.{os.getpid()}.part"
        r = subprocess.run([MAKE_RANDOM_MODEL, CONFIG, part], capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError("make-random-model inpainting_big: " + r.stderr)
        os.replace(part, big)
    return big


def main():
    if sanitized(BUILD):
        print("skipped: a sanitizer build reserves far more address space than any limit")
        return 77
    if not os.path.exists(CONFIG) or not os.path.exists(TINY):
        print(f"skipped: {CONFIG} or {TINY} not found")
        return 77
    try:
        big = big_model()
    except RuntimeError as e:
        check("make-random-model inpainting_big", False, str(e))
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        output = os.path.join(tmp, "out.png")
        image, mask = write_images(tmp, 64)
        check_limits("inpainting_big, 64x64",
                     limits_from("LDM_MEMORY_LIMITS_MB", [1536, 2048, 2560, 3072, 3584]) + [None],
                     big, image, mask, output)
        image, mask = write_images(tmp, 512)
        check_limits("tiny model, 512x512",
                     limits_from("LDM_TINY_LIMITS_MB", [200, 300, 500, 700]), TINY, image, mask,
                     output)
    return report()


if __name__ == "__main__":
    sys.exit(main())
