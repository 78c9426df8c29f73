"""ldm_models.py: gimp-ldm's own PyTorch definitions of the two networks of a latent
diffusion model, written for training the built-in models.

The module tree is laid out so that state_dict() gives exactly the parameter names of the
CompVis checkpoints the C engine loads (core/nn/unet.c, core/nn/autoencoder.c):

  VQAutoencoder -> first_stage_model.*  (encoder.*, decoder.*, quant_conv, post_quant_conv,
                                         quantize.embedding.weight)
  UNet          -> model.diffusion_model.*  (time_embed, input_blocks, middle_block,
                                             output_blocks, out)

Semantics follow docs/the LDM paper and the facts in ../shared/notes/ldm-models.md:
GroupNorm(32) (eps 1e-6 in the autoencoder, 1e-5 in the U-Net), the autoencoder's downsample
pads (0,1,0,1) then a stride-2 3x3 conv, upsampling is nearest 2x then a 3x3 conv, the
timestep embedding is [cos | sin], attention heads are split head-major [q_h | k_h | v_h]
("legacy" order).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# First stage: VQ autoencoder
# --------------------------------------------------------------------------------------------

def ae_norm(c):
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class AEResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = ae_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = ae_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)
        else:
            self.nin_shortcut = None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        s = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return s + h


class AEAttention(nn.Module):
    """Single-head spatial self-attention with 1x1 convs q, k, v, proj_out."""

    def __init__(self, c):
        super().__init__()
        self.norm = ae_norm(c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)
        k = self.k(h).reshape(b, c, hh * ww).transpose(1, 2)
        v = self.v(h).reshape(b, c, hh * ww).transpose(1, 2)
        a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        a = a.transpose(1, 2).reshape(b, c, hh, ww)
        return x + self.proj_out(a)


class AEDownsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class AEUpsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    pass


class _Mid(nn.Module):
    pass


class AEEncoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, in_channels=3,
                 mid_attention=False):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = ch
        for i, m in enumerate(ch_mult):
            lvl = _Level()
            lvl.block = nn.ModuleList()
            cout = ch * m
            for _ in range(num_res_blocks):
                lvl.block.append(AEResBlock(cin, cout))
                cin = cout
            if i != len(ch_mult) - 1:
                lvl.downsample = AEDownsample(cin)
            self.down.append(lvl)
        self.mid = _Mid()
        self.mid.block_1 = AEResBlock(cin, cin)
        if mid_attention:
            self.mid.attn_1 = AEAttention(cin)
        self.mid.block_2 = AEResBlock(cin, cin)
        self.norm_out = ae_norm(cin)
        self.conv_out = nn.Conv2d(cin, z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for lvl in self.down:
            for b in lvl.block:
                h = b(h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        h = self.mid.block_1(h)
        if hasattr(self.mid, "attn_1"):
            h = self.mid.attn_1(h)
        h = self.mid.block_2(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AEDecoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z_channels, out_ch=3, mid_attention=False):
        super().__init__()
        cin = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, cin, 3, padding=1)
        self.mid = _Mid()
        self.mid.block_1 = AEResBlock(cin, cin)
        if mid_attention:
            self.mid.attn_1 = AEAttention(cin)
        self.mid.block_2 = AEResBlock(cin, cin)
        levels = [None] * len(ch_mult)
        for i in reversed(range(len(ch_mult))):
            lvl = _Level()
            lvl.block = nn.ModuleList()
            cout = ch * ch_mult[i]
            for _ in range(num_res_blocks + 1):
                lvl.block.append(AEResBlock(cin, cout))
                cin = cout
            if i != 0:
                lvl.upsample = AEUpsample(cin)
            levels[i] = lvl
        self.up = nn.ModuleList(levels)
        self.norm_out = ae_norm(cin)
        self.conv_out = nn.Conv2d(cin, out_ch, 3, padding=1)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid.block_1(h)
        if hasattr(self.mid, "attn_1"):
            h = self.mid.attn_1(h)
        h = self.mid.block_2(h)
        for i in reversed(range(len(self.up))):
            lvl = self.up[i]
            for b in lvl.block:
                h = b(h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Codebook lookup: nearest code by |z|^2 + |e|^2 - 2 z.e; straight-through gradient.
    The codebook is trained with exponential moving averages (kept in buffers that are not
    exported) when ema=True, else by the usual codebook loss."""

    def __init__(self, n_embed, embed_dim, ema=True, decay=0.99):
        super().__init__()
        self.n_embed, self.embed_dim, self.ema, self.decay = n_embed, embed_dim, ema, decay
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)
        if ema:
            self.embedding.weight.requires_grad_(False)
            self.register_buffer("ema_count", torch.ones(n_embed))
            self.register_buffer("ema_sum", self.embedding.weight.data.clone())
            self.register_buffer("usage", torch.zeros(n_embed))

    def indices(self, z):
        b, c, h, w = z.shape
        zf = z.permute(0, 2, 3, 1).reshape(-1, c)
        e = self.embedding.weight
        d = (zf ** 2).sum(1, keepdim=True) + (e ** 2).sum(1)[None] - 2 * zf @ e.t()
        return d.argmin(1)

    def forward(self, z):
        b, c, h, w = z.shape
        idx = self.indices(z)
        e = self.embedding.weight
        zq = e[idx].reshape(b, h, w, c).permute(0, 3, 1, 2)
        commit = F.mse_loss(z, zq.detach())
        codebook = zq.new_zeros(()) if self.ema else F.mse_loss(zq, z.detach())
        if self.training and self.ema:
            with torch.no_grad():
                zf = z.permute(0, 2, 3, 1).reshape(-1, c)
                onehot = F.one_hot(idx, self.n_embed).type(zf.dtype)
                cnt = onehot.sum(0)
                self.ema_count.mul_(self.decay).add_(cnt, alpha=1 - self.decay)
                self.ema_sum.mul_(self.decay).add_(onehot.t() @ zf, alpha=1 - self.decay)
                n = self.ema_count.sum()
                cnt_s = (self.ema_count + 1e-5) / (n + self.n_embed * 1e-5) * n
                self.embedding.weight.data.copy_(self.ema_sum / cnt_s[:, None])
                self.usage.mul_(0.99).add_(cnt, alpha=0.01)
                # Restart dead codes on random encoder outputs of this batch.
                dead = self.usage < 1e-3
                nd = int(dead.sum())
                if nd > 0:
                    pick = zf[torch.randint(0, zf.shape[0], (nd,), device=zf.device)]
                    pick = pick + 0.01 * torch.randn_like(pick)
                    self.embedding.weight.data[dead] = pick
                    self.ema_sum[dead] = pick
                    self.ema_count[dead] = 1.0
                    self.usage[dead] = 0.1
        zq = z + (zq - z).detach()
        return zq, commit, codebook, idx


class VQAutoencoder(nn.Module):
    """CompVis VQModel layout: encoder, decoder, quant_conv, post_quant_conv, quantize."""

    def __init__(self, ch=64, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=3, embed_dim=3,
                 n_embed=512, mid_attention=False, ema_codebook=True):
        super().__init__()
        self.cfg = dict(ch=ch, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks,
                        z_channels=z_channels, embed_dim=embed_dim, n_embed=n_embed,
                        mid_attention=mid_attention)
        self.encoder = AEEncoder(ch, ch_mult, num_res_blocks, z_channels,
                                 mid_attention=mid_attention)
        self.decoder = AEDecoder(ch, ch_mult, num_res_blocks, z_channels,
                                 mid_attention=mid_attention)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.quantize = VectorQuantizer(n_embed, embed_dim, ema=ema_codebook)

    def encode(self, x):
        """Continuous latent (what LDM inpainting uses as conditioning)."""
        return self.quant_conv(self.encoder(x))

    def decode(self, z, quantize=True):
        if quantize:
            z = self.quantize(z)[0]
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x):
        h = self.encode(x)
        zq, commit, codebook, idx = self.quantize(h)
        return self.decoder(self.post_quant_conv(zq)), commit, codebook, idx

    def export_state(self):
        """The CompVis parameters only (no EMA codebook statistics)."""
        return {k: v for k, v in self.state_dict().items()
                if not k.startswith("quantize.") or k == "quantize.embedding.weight"}


# --------------------------------------------------------------------------------------------
# Second stage: the openaimodel-style U-Net (no cross-attention)
# --------------------------------------------------------------------------------------------

def unet_norm(c):
    return nn.GroupNorm(32, c, eps=1e-5)


class _GN32(nn.GroupNorm):
    """GroupNorm computed in float32 (as the authors' GroupNorm32)."""

    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None].to(t.device)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepSequential(nn.Sequential):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, UResBlock) else layer(x)
        return x


class UResBlock(nn.Module):
    def __init__(self, cin, emb_ch, cout):
        super().__init__()
        self.in_layers = nn.Sequential(_GN32(32, cin, eps=1e-5), nn.SiLU(),
                                       nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, cout))
        self.out_layers = nn.Sequential(_GN32(32, cout, eps=1e-5), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(cout, cout, 3, padding=1))
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class UAttention(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.norm = _GN32(32, c, eps=1e-5)
        self.qkv = nn.Conv1d(c, 3 * c, 1)
        self.proj_out = nn.Conv1d(c, c, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x):
        b, c, hh, ww = x.shape
        t = hh * ww
        xf = x.reshape(b, c, t)
        qkv = self.qkv(self.norm(xf))
        # Legacy order: heads first, then [q | k | v] inside each head.
        dh = c // self.heads
        qkv = qkv.reshape(b, self.heads, 3 * dh, t)
        q, k, v = qkv.split(dh, dim=2)               # (b, H, dh, t)
        a = F.scaled_dot_product_attention(q.transpose(2, 3), k.transpose(2, 3),
                                           v.transpose(2, 3))   # (b, H, t, dh)
        a = a.transpose(2, 3).reshape(b, c, t)
        return (xf + self.proj_out(a)).reshape(b, c, hh, ww)


class UDownsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.op = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class UUpsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """UNetModel(dims 2, conv_resample, resblock_updown false, use_scale_shift_norm false,
    legacy attention, no class/context conditioning)."""

    def __init__(self, in_channels, out_channels=3, model_channels=64, channel_mult=(1, 2, 2),
                 num_res_blocks=2, attention_resolutions=(4,), num_heads=-1,
                 num_head_channels=32):
        super().__init__()
        self.cfg = dict(in_channels=in_channels, out_channels=out_channels,
                        model_channels=model_channels, channel_mult=list(channel_mult),
                        num_res_blocks=num_res_blocks,
                        attention_resolutions=list(attention_resolutions),
                        num_heads=num_heads, num_head_channels=num_head_channels)
        mc = model_channels
        ted = 4 * mc
        self.model_channels = mc

        def heads_for(c):
            return num_heads if num_head_channels == -1 else c // num_head_channels

        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        self.input_blocks = nn.ModuleList(
            [TimestepSequential(nn.Conv2d(in_channels, mc, 3, padding=1))])
        chans = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [UResBlock(ch, ted, mult * mc)]
                ch = mult * mc
                if ds in attention_resolutions:
                    layers.append(UAttention(ch, heads_for(ch)))
                self.input_blocks.append(TimestepSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepSequential(UDownsample(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepSequential(UResBlock(ch, ted, ch),
                                               UAttention(ch, heads_for(ch)),
                                               UResBlock(ch, ted, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                ich = chans.pop()
                layers = [UResBlock(ch + ich, ted, mc * mult)]
                ch = mc * mult
                if ds in attention_resolutions:
                    layers.append(UAttention(ch, heads_for(ch)))
                if level and i == num_res_blocks:
                    layers.append(UUpsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(_GN32(32, ch, eps=1e-5), nn.SiLU(),
                                 nn.Conv2d(mc, out_channels, 3, padding=1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(self, x, t):
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        hs = []
        h = x
        for blk in self.input_blocks:
            h = blk(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for blk in self.output_blocks:
            h = torch.cat([h, hs.pop()], dim=1)
            h = blk(h, emb)
        return self.out(h)


# --------------------------------------------------------------------------------------------
# Diffusion schedule and DDIM (the engine's procedures)
# --------------------------------------------------------------------------------------------

def linear_alphas_cumprod(linear_start, linear_end, timesteps=1000):
    betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps,
                           dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


@torch.no_grad()
def ddim_sample(unet, cond, alphas_cumprod, steps=20, eta=0.0, generator=None, x=None,
                parameterization="eps"):
    """DDIM as the authors run it: timesteps range(0, 1000, 1000 // steps) + 1, the last
    step's a_prev = alphas_cumprod[0]. cond is concatenated after x_t. With parameterization
    "v" the U-Net's v becomes eps = sqrt(a) v + sqrt(1 - a) x_t (SD 2's DDIM sampler)."""
    T = alphas_cumprod.shape[0]
    c = T // steps
    ts = list(range(0, T, c))
    ts = [t + 1 for t in ts]
    a = alphas_cumprod.float()
    b, _, h, w = cond.shape
    if x is None:
        x = torch.randn(b, 3, h, w, generator=generator)
    for i in reversed(range(len(ts))):
        t = ts[i]
        at = a[t]
        ap = a[ts[i - 1]] if i > 0 else a[0]
        e = unet(torch.cat([x, cond], 1), torch.full((b,), t, dtype=torch.long))
        if parameterization == "v":
            e = at.sqrt() * e + (1 - at).sqrt() * x
        x0 = (x - (1 - at).sqrt() * e) / at.sqrt()
        s = eta * ((1 - ap) / (1 - at) * (1 - at / ap)).sqrt()
        x = ap.sqrt() * x0 + (1 - ap - s ** 2).sqrt() * e
        if eta > 0:
            x = x + s * torch.randn(x.shape, generator=generator)
    return x
