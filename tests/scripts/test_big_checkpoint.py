"""A 1.5 GB checkpoint is mapped, not read: opening it must not raise the peak memory of the
process by more than the tensors it actually converts.

The checkpoint is written sparse (holes) by tests/lib/torchzip_writer.py, so it costs no disk.
Peak memory is the child's ru_maxrss (kernel-measured high-water mark of its resident set).
"""
import os
import resource
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import torchzip_writer as tzw  # noqa: E402

LDM = os.environ["LDM_EXE"]
MIB = 1 << 20
TENSOR_MIB = 96           # each tensor: 96 MiB of float32
N_TENSORS = 16            # 16 x 96 MiB = 1.5 GiB


def peak_rss_mib(args):
    """Runs `ldm ARGS` in a fresh process and returns (its peak RSS in MiB, stdout)."""
    code = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "sys.stdout.write(r.stdout)\n"
            "sys.stderr.write(r.stderr)\n"
            "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "sys.exit(r.returncode)\n")
    r = subprocess.run([sys.executable, "-c", code, LDM] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"ldm {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    lines = r.stdout.splitlines()
    peak_kib = int(lines[-1].split()[1])
    return peak_kib / 1024, "\n".join(lines[:-1])


def main():
    results = []

    def check(name, ok, detail):
        results.append(ok)
        print(f"{'ok' if ok else 'FAIL'}: {name}: {detail}")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.ckpt")
        numel = TENSOR_MIB * MIB // 4
        storages = [tzw.Storage(str(i), "FloatStorage", numel) for i in range(N_TENSORS)]
        state = {f"model.diffusion_model.block{i}.weight": tzw.Tensor(s, 0, [numel // 1024, 1024])
                 for i, s in enumerate(storages)}
        tzw.write(path, {"state_dict": state, "global_step": 1}, storages, compute_crc=False)
        size_mib = os.path.getsize(path) / MIB
        check("file size", size_mib >= 1500, f"{size_mib:.0f} MiB")

        baseline, _ = peak_rss_mib(["help"])
        listed, out = peak_rss_mib(["tensors", path])
        check("all tensors listed", out.count("\n") + 1 == N_TENSORS, f"{out.count(chr(10)) + 1} lines")
        check("listing a 1.5 GB checkpoint converts nothing and maps lazily",
              listed - baseline < 32, f"peak {listed:.1f} MiB vs {baseline:.1f} MiB for `ldm help`")

        one, out = peak_rss_mib(["tensors", path, "model.diffusion_model.block3.weight"])
        # One tensor converted: its source pages are touched (96 MiB) and a float32 copy is
        # made (96 MiB); nothing else may be.
        check("converting one tensor costs about that tensor",
              one - baseline < 2 * TENSOR_MIB + 32 and "min 0 max 0" in out,
              f"peak {one:.1f} MiB (limit {baseline + 2 * TENSOR_MIB + 32:.0f}); {out.strip()}")

    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
