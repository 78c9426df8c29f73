"""Times the same U-Net in PyTorch (the project's own CompVis-layout model definition in
tools/train/ldm_models.py) on the same weights as bench-unet, and prints one output value
summary so the two engines can be compared.

    python3 tools/bench/unet_torch.py MODEL.safetensors LATENT_SIDE RUNS
Supports the bsr_sr layout (no resblock up/down): in 6, mc 160, mult 1 2 2 4, attention at 16 8.
"""
import os
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
from ldm_models import UNet  # noqa: E402


def main():
    path, side, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    state = {k[len("model.diffusion_model."):]: v.float() for k, v in load_file(path).items()
             if k.startswith("model.diffusion_model.")}
    unet = UNet(in_channels=6, out_channels=3, model_channels=160, channel_mult=(1, 2, 2, 4),
                num_res_blocks=2, attention_resolutions=(16, 8), num_head_channels=32)
    unet.load_state_dict(state, strict=True)
    unet.eval()
    # the same deterministic input as bench-unet: sin(0.001 * NCHW index)
    x = torch.sin(0.001 * torch.arange(6 * side * side, dtype=torch.float32)).reshape(1, 6, side, side)
    t = torch.tensor([500.0])
    with torch.no_grad():
        for i in range(runs + 1):
            start = time.time()
            out = unet(x, t)
            s = time.time() - start
            print(f"pytorch {'first' if i == 0 else 'steady'} forward at {side}x{side}: {s:.3f} s",
                  flush=True)
    print(f"output mean {out.mean().item():.6f} std {out.std().item():.6f}")


if __name__ == "__main__":
    main()
