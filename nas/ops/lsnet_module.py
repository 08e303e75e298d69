"""Torch-only module classes behind the LSNet ops (`nas.ops.lsnet`); export inlines them with `inspect.getsource`,
so each class is self-contained (torch, nn, F only)."""
import torch
import torch.nn.functional as F
from torch import nn


class SmallKernelAggregation(nn.Module):
    """LSNet's SKA (Wang et al., CVPR 2025): a per-pixel dynamic depthwise 3x3 with zero padding 1.

    `forward(x, w)`: x is (B, C, H, W), w is (B, 9 * C / groups, H, W), read as (B, C / groups, 9, H, W): one
    3x3 kernel per pixel for each of C / groups weight channels; channel c uses kernel c mod (C / groups), so
    each kernel is shared by `groups` interleaved channels (c, c + C / groups, ...). The official kernel is
    Triton (CUDA only); this is plain PyTorch with nine shifted slices of the padded input, which on the CPU
    ran 2-3x faster forward than `F.unfold` (and no slower forward + backward). Its multiply-adds are
    element-wise, so torch's FLOP counter counts none.
    """

    def __init__(self, groups: int = 8) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, c, h, width = x.shape
        wc = c // self.groups
        w = w.reshape(b, 1, wc, 9, h, width)
        xp = F.pad(x, (1, 1, 1, 1)).reshape(b, self.groups, wc, h + 2, width + 2)
        out = xp[:, :, :, :h, :width] * w[:, :, :, 0]
        for k in range(1, 9):
            i, j = k // 3, k % 3
            out = out + xp[:, :, :, i:i + h, j:j + width] * w[:, :, :, k]
        return out.reshape(b, c, h, width)


class LSNetAttention(nn.Module):
    """LSNet's stage-4 multi-head self-attention (official `Attention`, LeViT style), without its residual.

    A 1x1 conv-BN gives q, k (`key_dim` per head) and v (`dim // heads` per head); q alone gets a depthwise 3x3
    conv-BN. Logits are (q^T k) * key_dim^-0.5 plus a learned per-head bias indexed by the absolute offset
    (|dy|, |dx|) between the two positions of the `height` x `width` map (height * width entries per head);
    softmax over keys; out = v attn^T, then ReLU and a 1x1 conv-BN (BN scale initialised to 0). `fused`: the
    deploy form, each conv-BN folded into a biased conv.
    """

    attention_bias_idxs: torch.Tensor

    def __init__(self, dim: int, heads: int, key_dim: int, height: int, width: int, fused: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.key_dim = key_dim
        self.scale = key_dim ** -0.5
        self.nh_kd = key_dim * heads
        self.dh = dim // heads * heads
        self.qkv = self.conv_bn(dim, self.dh + 2 * self.nh_kd, 1, 1, fused, False)
        self.dw = self.conv_bn(self.nh_kd, self.nh_kd, 3, self.nh_kd, fused, False)
        self.proj = self.conv_bn(self.dh, dim, 1, 1, fused, True)
        self.attention_biases = nn.Parameter(torch.zeros(heads, height * width))
        ys, xs = torch.arange(height).repeat_interleave(width), torch.arange(width).repeat(height)
        idxs = (ys[:, None] - ys[None, :]).abs() * width + (xs[:, None] - xs[None, :]).abs()
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)

    @staticmethod
    def conv_bn(cin: int, cout: int, kernel: int, groups: int, fused: bool, zero_init: bool) -> nn.Sequential:
        """Conv (biased when fused) followed, unless fused, by BN (scale 0 when `zero_init`)."""
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=fused)]
        if not fused:
            bn = nn.BatchNorm2d(cout)
            if zero_init:
                nn.init.zeros_(bn.weight)
            layers.append(bn)
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        n = h * w
        q, k, v = self.qkv(x).split([self.nh_kd, self.nh_kd, self.dh], dim=1)
        q = self.dw(q)
        q = q.reshape(b, self.heads, self.key_dim, n)
        k = k.reshape(b, self.heads, self.key_dim, n)
        v = v.reshape(b, self.heads, self.dh // self.heads, n)
        attn = (q.transpose(-2, -1) @ k) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        out = (v @ attn.softmax(dim=-1).transpose(-2, -1)).reshape(b, self.dh, h, w)
        return self.proj(torch.relu(out))
