#!/usr/bin/env python3
"""Export a trained built-in model in the CompVis layout for the engine (and the authors' code).

  tools/in-env python3 tools/train/export.py --task inpaint [--name ldm-inpaint-builtin]
  tools/in-env python3 tools/train/export.py --task sr      [--name ldm-sr-builtin]

Writes data/models/<name>.safetensors (fp16: model.diffusion_model.* = the EMA weights of the
U-Net, exported as the plain weights; first_stage_model.* = the frozen VQ autoencoder, latent
normalisation folded in) and data/models/<name>.yaml (a CompVis config.yaml; use_ema false
because the file holds the EMA weights as its only U-Net weights), then data/models/SHA256SUMS.

The autoencoder's decoder (post_quant_conv, decoder.*) is replaced by the EMA decoder of the
newest train_decoder.py checkpoint (tools/train/checkpoints/decoder.pt or the cache copy) when
that was trained for the same frozen encoder and codebook (fingerprint); --decoder PATH picks
a checkpoint, --decoder none keeps the U-Net checkpoint's own (stage-1) decoder.
"""
import argparse
import hashlib
import json
import os
import sys

import torch
import yaml
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from train_decoder import frozen_fingerprint  # noqa: E402
from train_unet import TASKS  # noqa: E402

DEFAULT_NAMES = {"inpaint": "ldm-inpaint-builtin", "sr": "ldm-sr-builtin"}
OUT = os.path.join(common.TOP, "data", "models")


def config_yaml(task, ck):
    spec = TASKS[task]
    u = ck["unet_config"]
    a = ck["ae_config"]
    unet = dict(image_size=32, in_channels=u["in_channels"], out_channels=u["out_channels"],
                model_channels=u["model_channels"],
                attention_resolutions=list(u["attention_resolutions"]),
                num_res_blocks=u["num_res_blocks"], channel_mult=list(u["channel_mult"]))
    if u["num_head_channels"] == -1:
        unet["num_heads"] = u["num_heads"]
    else:
        unet["num_head_channels"] = u["num_head_channels"]
    unet.update(resblock_updown=False, use_scale_shift_norm=False, legacy=True)
    ddconfig = dict(double_z=False, z_channels=a["z_channels"], resolution=256, in_channels=3,
                    out_ch=3, ch=a["ch"], ch_mult=list(a["ch_mult"]),
                    num_res_blocks=a["num_res_blocks"], attn_resolutions=[], dropout=0.0,
                    attn_type="vanilla" if a["mid_attention"] else "none")
    # the checkpoint's own schedule and target (a task's may have changed since it was
    # written; checkpoints before session 8 do not store the schedule)
    params = dict(linear_start=ck.get("linear_start", spec["linear_start"]),
                  linear_end=ck.get("linear_end", spec["linear_end"]),
                  log_every_t=100, timesteps=1000, loss_type=ck.get("loss", spec["loss"]),
                  first_stage_key="image",
                  cond_stage_key="masked_image" if task == "inpaint" else "LR_image",
                  image_size=32, channels=3, concat_mode=True, use_ema=False,
                  scale_factor=1.0)
    parameterization = ck.get("parameterization", "eps")
    if parameterization != "eps":
        params["parameterization"] = parameterization
    if task == "sr":
        params["cond_stage_trainable"] = False
    params["unet_config"] = dict(target="ldm.modules.diffusionmodules.openaimodel.UNetModel",
                                 params=unet)
    params["first_stage_config"] = dict(
        target="ldm.models.autoencoder.VQModelInterface",
        params=dict(embed_dim=a["embed_dim"], n_embed=a["n_embed"], monitor="val/rec_loss",
                    ddconfig=ddconfig, lossconfig=dict(target="torch.nn.Identity")))
    params["cond_stage_config"] = ("__is_first_stage__" if task == "inpaint"
                                   else dict(target="torch.nn.Identity"))
    return dict(model=dict(base_learning_rate=2.0e-4,
                           target="ldm.models.diffusion.ddpm.LatentDiffusion", params=params))


def fine_tuned_decoder(ae_state, decoder):
    """(EMA decoder state, its checkpoint) for the autoencoder ae_state, or (None, None)."""
    if decoder == "none":
        return None, None
    explicit = bool(decoder)
    if explicit:
        dk = torch.load(decoder, map_location="cpu", weights_only=False)
    else:
        dk, decoder = common.load_resume("decoder")
        if dk is None:
            return None, None
    fp = frozen_fingerprint(ae_state)
    if dk["fingerprint"] != fp:
        msg = (f"{decoder} was trained for another encoder/codebook ({dk['fingerprint']}, "
               f"this model's: {fp})")
        if not explicit:
            common.log("not using the fine-tuned decoder:", msg)
            return None, None
        sys.exit(msg)
    return dk, decoder


def export(task, name, src=None, out=OUT, decoder=None):
    if src:
        ck = torch.load(src, map_location="cpu", weights_only=False)
    else:
        ck, src = common.load_resume(task)
        if ck is None:
            sys.exit(f"no {task} checkpoint")
    tensors = {}
    for k, v in ck["ema"].items():
        tensors["model.diffusion_model." + k] = v.half().contiguous()
    ae_state = dict(ck["ae"])
    dk, dsrc = fine_tuned_decoder(ae_state, decoder)
    if dk is not None:
        for k, v in dk["ema"].items():
            assert k in ae_state and ae_state[k].shape == v.shape, k
            ae_state[k] = v
        common.log(f"decoder: EMA of {dsrc} (step {dk['step']})")
    for k, v in ae_state.items():
        if k.startswith("quantize.") and k != "quantize.embedding.weight":
            continue
        tensors["first_stage_model." + k] = v.half().contiguous()
    meta = {"format": "pt", "gimp-ldm-task": task, "step": str(ck["step"]),
            "train-hours": f"{ck.get('seconds', 0) / 3600:.2f}",
            "autoencoder-step": str(ck["ae_step"]),
            "latent-norm": json.dumps(ck["latent_norm"]),
            "weights": "EMA of the U-Net weights, stored as the plain weights"}
    if dk is not None:
        meta.update({"decoder-step": str(dk["step"]),
                     "decoder-train-hours": f"{dk.get('seconds', 0) / 3600:.2f}"})
    os.makedirs(out, exist_ok=True)
    st = os.path.join(out, name + ".safetensors")
    save_file(tensors, st + ".tmp", metadata=meta)
    os.replace(st + ".tmp", st)
    cfg = config_yaml(task, ck)
    with open(os.path.join(out, name + ".yaml"), "w") as f:
        f.write(f"# gimp-ldm built-in model {name}: trained by tools/train (step {ck['step']})\n")
        yaml.safe_dump(cfg, f, sort_keys=False)
    n = sum(v.numel() for k, v in tensors.items() if k.startswith("model."))
    common.log(f"{src} (step {ck['step']}) -> {st}: {os.path.getsize(st) / 1e6:.1f} MB, "
               f"U-Net {n / 1e6:.2f} M parameters")
    write_sums(out)


def write_sums(out):
    lines = []
    for fn in sorted(os.listdir(out)):
        if fn.endswith((".safetensors", ".yaml")):
            with open(os.path.join(out, fn), "rb") as f:
                lines.append(f"{hashlib.sha256(f.read()).hexdigest()}  {fn}\n")
    with open(os.path.join(out, "SHA256SUMS"), "w") as f:
        f.writelines(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--name")
    ap.add_argument("--checkpoint", help="a stage-2 checkpoint (default: the newest)")
    ap.add_argument("--out", default=OUT, help="output folder (default data/models)")
    ap.add_argument("--decoder", help="a train_decoder.py checkpoint (default: the newest, "
                                      "when it fits), or none for the stage-1 decoder")
    args = ap.parse_args()
    export(args.task, args.name or DEFAULT_NAMES[args.task], args.checkpoint, args.out,
           args.decoder)


if __name__ == "__main__":
    main()
