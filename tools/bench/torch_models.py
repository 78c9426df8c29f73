"""torch_models.py: gimp-ldm's own PyTorch definitions of the networks the benchmark compares
the engine with (tools/bench/compare): the CompVis U-Net in general (legacy attention blocks or
SpatialTransformers with cross-attention, resblock_updown), the first stages (VQ-f4, KL-f8,
from tools/train/ldm_models.py) and the CLIP text transformer of Stable Diffusion 1.x.

Module names give exactly the parameter names of the checkpoints (CompVis
model.diffusion_model.* / first_stage_model.*, Hugging Face CLIPTextModel under
cond_stage_model.transformer.text_model.*), so a state dict loads with strict=True.
Semantics from ../shared/notes/ldm-models.md; written for this project, not copied.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
from ldm_models import AEDecoder, AEEncoder, timestep_embedding  # noqa: E402


# ------------------------------------------------------------------ the presets (presets.c)

PRESETS = {
    "inpainting_big": dict(
        unet=dict(in_channels=7, out_channels=3, model_channels=256, channel_mult=(1, 2, 3, 4),
                  num_res_blocks=2, attention_resolutions=(8, 4, 2), num_heads=8,
                  num_head_channels=-1, resblock_updown=True),
        ae=dict(kind="vq", ch=128, ch_mult=(1, 2, 4), num_res_blocks=2, z_channels=3,
                embed_dim=3, mid_attention=False)),
    "bsr_sr": dict(
        unet=dict(in_channels=6, out_channels=3, model_channels=160, channel_mult=(1, 2, 2, 4),
                  num_res_blocks=2, attention_resolutions=(16, 8), num_heads=-1,
                  num_head_channels=32, resblock_updown=False),
        ae=dict(kind="vq", ch=128, ch_mult=(1, 2, 4), num_res_blocks=2, z_channels=3,
                embed_dim=3, mid_attention=True)),
    "sd-v1-5-inpainting": dict(
        unet=dict(in_channels=9, out_channels=4, model_channels=320, channel_mult=(1, 2, 4, 4),
                  num_res_blocks=2, attention_resolutions=(4, 2, 1), num_heads=8,
                  num_head_channels=-1, resblock_updown=False, context_dim=768,
                  transformer_depth=1, legacy=False),
        ae=dict(kind="kl", ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=4,
                embed_dim=4, mid_attention=True),
        text=dict(width=768, layers=12, heads=12, mlp=3072, vocab=49408, positions=77)),
}


# ------------------------------------------------------------------------------ the U-Net

class GroupNorm32(nn.GroupNorm):
    def __init__(self, c, eps=1e-5):
        super().__init__(32, c, eps=eps)


class ResBlock(nn.Module):
    """in_layers (GN, SiLU, [resample], conv), emb_layers (SiLU, Linear), out_layers (GN, SiLU,
    Dropout, conv), skip (identity or 1x1; resampled too in up/down blocks)."""

    def __init__(self, cin, emb_ch, cout, resample=None):
        super().__init__()
        self.resample = resample
        self.in_layers = nn.Sequential(GroupNorm32(cin), nn.SiLU(),
                                       nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, cout))
        self.out_layers = nn.Sequential(GroupNorm32(cout), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def _resample(self, x):
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x, emb):
        h = self.in_layers[1](self.in_layers[0](x))
        h = self.in_layers[2](self._resample(h))
        x = self._resample(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Legacy QKV attention: qkv split head-major [q_h | k_h | v_h], scale 1/sqrt(ch)."""

    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.norm = GroupNorm32(c)
        self.qkv = nn.Conv1d(c, 3 * c, 1)
        self.proj_out = nn.Conv1d(c, c, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        xf = x.reshape(b, c, hh * ww)
        qkv = self.qkv(self.norm(xf)).reshape(b, self.heads, 3 * (c // self.heads), hh * ww)
        q, k, v = qkv.split(c // self.heads, dim=2)
        a = F.scaled_dot_product_attention(q.transpose(2, 3), k.transpose(2, 3),
                                           v.transpose(2, 3))
        a = a.transpose(2, 3).reshape(b, c, hh * ww)
        return (xf + self.proj_out(a)).reshape(b, c, hh, ww)


class CrossAttention(nn.Module):
    """to_q/to_k/to_v without bias, to_out.0 with bias; heads x dim_head inner width."""

    def __init__(self, dim, context_dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x, context=None):
        context = x if context is None else context
        b, t, _ = x.shape

        def split(y):
            return y.reshape(b, y.shape[1], self.heads, -1).transpose(1, 2)

        a = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(context)),
                                           split(self.to_v(context)))
        return self.to_out(a.transpose(1, 2).reshape(b, t, -1))


class GEGLU(nn.Module):
    def __init__(self, dim, out):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * out)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim))

    def forward(self, x):
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, context_dim):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """GN (eps 1e-6), proj_in 1x1 conv (SD 1.x), the blocks on (h w) tokens, proj_out, residual."""

    def __init__(self, c, heads, dim_head, depth, context_dim):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(32, c, eps=1e-6)
        self.proj_in = nn.Conv2d(c, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)])
        self.proj_out = nn.Conv2d(inner, c, 1)

    def forward(self, x, context):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x))
        h = h.reshape(b, -1, hh * ww).transpose(1, 2)
        for blk in self.transformer_blocks:
            h = blk(h, context)
        h = h.transpose(1, 2).reshape(b, -1, hh, ww)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.op = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Sequential(nn.ModuleList):
    """TimestepEmbedSequential: ResBlocks get the embedding, transformers the context."""

    def forward(self, x, emb, context):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNet(nn.Module):
    """openaimodel.UNetModel: dims 2, conv_resample, use_scale_shift_norm false."""

    def __init__(self, in_channels, out_channels, model_channels, channel_mult, num_res_blocks,
                 attention_resolutions, num_heads=-1, num_head_channels=-1,
                 resblock_updown=False, context_dim=0, transformer_depth=1, legacy=True):
        super().__init__()
        mc, ted = model_channels, 4 * model_channels
        self.model_channels = mc

        def attention(ch):
            if num_head_channels == -1:
                heads, dim_head = num_heads, ch // num_heads
            else:
                heads, dim_head = ch // num_head_channels, num_head_channels
            if context_dim:
                return SpatialTransformer(ch, heads, dim_head, transformer_depth, context_dim)
            return AttentionBlock(ch, heads)

        def down(ch):
            return ResBlock(ch, ted, ch, "down") if resblock_updown else Downsample(ch)

        def up(ch):
            return ResBlock(ch, ted, ch, "up") if resblock_updown else Upsample(ch)

        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        self.input_blocks = nn.ModuleList([Sequential([nn.Conv2d(in_channels, mc, 3, padding=1)])])
        chans, ch, ds = [mc], mc, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, ted, mult * mc)]
                ch = mult * mc
                if ds in attention_resolutions:
                    layers.append(attention(ch))
                self.input_blocks.append(Sequential(layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(Sequential([down(ch)]))
                chans.append(ch)
                ds *= 2
        self.middle_block = Sequential([ResBlock(ch, ted, ch), attention(ch),
                                        ResBlock(ch, ted, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), ted, mc * mult)]
                ch = mc * mult
                if ds in attention_resolutions:
                    layers.append(attention(ch))
                if level and i == num_res_blocks:
                    layers.append(up(ch))
                    ds //= 2
                self.output_blocks.append(Sequential(layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(mc, out_channels, 3,
                                                                       padding=1))

    def forward(self, x, t, context=None):
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        hs, h = [], x
        for blk in self.input_blocks:
            h = blk(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)


# ------------------------------------------------------------------------ first stages

class Autoencoder(nn.Module):
    """VQModel (no quantisation here: the benchmark decodes the latent as given) or
    AutoencoderKL (double_z: the encoder gives 2 z_channels, quant_conv the moments)."""

    def __init__(self, kind, ch, ch_mult, num_res_blocks, z_channels, embed_dim, mid_attention):
        super().__init__()
        double = 2 if kind == "kl" else 1
        self.encoder = AEEncoder(ch, ch_mult, num_res_blocks, double * z_channels,
                                 mid_attention=mid_attention)
        self.decoder = AEDecoder(ch, ch_mult, num_res_blocks, z_channels,
                                 mid_attention=mid_attention)
        self.quant_conv = nn.Conv2d(double * z_channels, double * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        if kind == "vq":
            self.quantize = nn.Module()
            self.quantize.embedding = nn.Embedding(8192, embed_dim)

    def encode(self, x):
        return self.quant_conv(self.encoder(x))

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


# ---------------------------------------------------------------------- CLIP text model

class CLIPAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x):
        b, t, w = x.shape

        def split(y):
            return y.reshape(b, t, self.heads, -1).transpose(1, 2)

        a = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)),
                                           split(self.v_proj(x)), is_causal=True)
        return self.out_proj(a.transpose(1, 2).reshape(b, t, w))


class CLIPMLP(nn.Module):
    def __init__(self, width, mlp):
        super().__init__()
        self.fc1 = nn.Linear(width, mlp)
        self.fc2 = nn.Linear(mlp, width)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # quick GELU


class CLIPLayer(nn.Module):
    def __init__(self, width, heads, mlp):
        super().__init__()
        self.self_attn = CLIPAttention(width, heads)
        self.layer_norm1 = nn.LayerNorm(width)
        self.mlp = CLIPMLP(width, mlp)
        self.layer_norm2 = nn.LayerNorm(width)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPText(nn.Module):
    """The text tower: token + position embeddings, causal pre-LN layers, final LayerNorm;
    the last hidden state (all 77 positions) is the U-Net's context."""

    def __init__(self, width, layers, heads, mlp, vocab, positions):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.token_embedding = nn.Embedding(vocab, width)
        self.embeddings.position_embedding = nn.Embedding(positions, width)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([CLIPLayer(width, heads, mlp) for _ in range(layers)])
        self.final_layer_norm = nn.LayerNorm(width)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding.weight[:t]
        for layer in self.encoder.layers:
            x = layer(x)
        return self.final_layer_norm(x)


# --------------------------------------------------------------------- loading a model

def sub_state(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_part(module, state, prefix):
    """Loads the tensors under `prefix` into `module` (strict), sharing their storage."""
    part = sub_state(state, prefix)
    part.pop("embeddings.position_ids", None)
    module.load_state_dict(part, strict=True, assign=True)
    return module.eval()

