"""`ldm bench` on the tiny fixtures (never timed: no assertion on a time): --json prints one
object with every key the benchmark promises, of the right types; the U-Net's batch is the
CFG pair for SD and 1 for LDM; the image is the latent times the autoencoder's factor; --dump
writes each part's output with as many floats as its shape says (their values are checked
against PyTorch by tools/bench/compare, not here); the FLOP counts grow at least 4x with a
latent of twice the side (arch/flops.h's values are test_flops'); bad arguments exit 2."""
import json
import math
import os
import subprocess
import sys
import tempfile

LDM = os.environ["LDM_EXE"]
SHARED = os.environ.get("LDM_SHARED_DIR", "")
SD = os.path.join(SHARED, "fixtures", "sd-inpaint-clip-tiny", "model.safetensors")
LDM_INPAINT = os.path.join(SHARED, "fixtures", "ldm-inpaint-tiny", "model.safetensors")
KEYS = ["unet_s", "encode_s", "decode_s", "peak_rss_mb", "unet_gflops", "peak_gflops",
        "unet_gflop", "encode_gflop", "decode_gflop", "threads", "latent", "image", "unet_batch"]

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'ok' if ok else 'FAIL'}: {name}{': ' + str(detail) if detail and not ok else ''}")


def bench(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([LDM, "bench", *args], capture_output=True, timeout=300, env=env)


def bench_json(model, latent, dump=None):
    args = ["--model", model, "--latent", latent, "--repeat", "1", "--json"]
    if dump:
        args += ["--dump", dump]
    r = bench(*args)
    if r.returncode != 0:
        check(f"bench {model} {latent} runs", False, r.stderr.decode())
        return None
    lines = r.stdout.decode().strip().splitlines()
    check(f"{os.path.basename(os.path.dirname(model))} {latent}: one line of output",
          len(lines) == 1, lines)
    try:
        return json.loads(lines[0])
    except (ValueError, IndexError) as e:
        check("the output parses as JSON", False, e)
        return None


def positive(v):
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def main():
    with tempfile.TemporaryDirectory() as tmp:
        sd = bench_json(SD, "8x8", tmp)
        if sd:
            missing = [k for k in KEYS + ["text_s", "text_gflop"] if k not in sd]
            check("SD: every promised key", not missing, missing)
            check("SD: times, GFLOP/s, peak and RSS are positive numbers",
                  all(positive(sd[k]) for k in KEYS if k in sd and k not in
                      ("latent", "image")), sd)
            check("SD: the U-Net runs the CFG batch", sd.get("unet_batch") == 2)
            check("SD: latent 8x8, image 64x64 (f8)",
                  sd.get("latent") == [8, 8] and sd.get("image") == [64, 64])
            check("SD: unet_gflops = unet_gflop / unet_s",
                  abs(sd["unet_gflops"] - sd["unet_gflop"] / sd["unet_s"])
                  <= 0.02 * sd["unet_gflops"] + 0.01)
            for part in ("unet", "encode", "decode", "text"):
                shape = sd.get(part + "_shape")
                path = os.path.join(tmp, part + ".f32")
                n = math.prod(shape) if shape else -1
                size = os.path.getsize(path) if os.path.exists(path) else -2
                check(f"SD: --dump {part}.f32 holds its shape's floats ({shape})",
                      size == 4 * n, f"{size} bytes")
            check("SD: U-Net output is 2 x 4 x 8 x 8", sd.get("unet_shape") == [2, 4, 8, 8])
            check("SD: encode gives the KL moments (8 channels at 8x8)",
                  sd.get("encode_shape") == [1, 8, 8, 8])
            check("SD: decode gives 3 x 64 x 64", sd.get("decode_shape") == [1, 3, 64, 64])
        small = bench_json(LDM_INPAINT, "8x8")
        big = bench_json(LDM_INPAINT, "16x16")
        if small and big:
            check("LDM: no text part", "text_s" not in small)
            check("LDM: a batch of 1", small.get("unet_batch") == 1)
            check("LDM: latent 16x16, image 64x64 (f4)", big.get("image") == [64, 64])
            # convolutions scale with the pixels, attention products faster
            for part in ("unet", "encode", "decode"):
                ratio = big[part + "_gflop"] / small[part + "_gflop"]
                check(f"LDM: {part} GFLOP at least x4 for twice the side", 3.999 <= ratio < 5,
                      ratio)
    r = bench("--model", LDM_INPAINT, "--latent", "8x8", "--repeat", "1", "--json", "--only",
              "unet,decode")
    only = json.loads(r.stdout.decode()) if r.returncode == 0 else {}
    check("--only unet,decode runs those parts alone",
          "unet_s" in only and "decode_s" in only and "encode_s" not in only, only)
    for args, what in [(["--model", LDM_INPAINT, "--only", "unet,bogus"], "an unknown part"),
                       (["--model", LDM_INPAINT, "--latent", "7x8"], "latent not a multiple"),
                       (["--model", LDM_INPAINT, "--latent", "axb"], "latent not a size"),
                       (["--model", LDM_INPAINT, "--repeat", "0"], "repeat 0"),
                       (["--latent", "8x8"], "no model"),
                       (["--model", "/nonexistent.safetensors"], "a missing model")]:
        r = bench(*args)
        check(f"bad use exits 2: {what}", r.returncode == 2, r.returncode)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
