"""Torch-only module classes behind the attention ops (export inlines them with `inspect.getsource`)."""
import torch
from torch import nn


class MultiHeadSelfAttention2d(nn.Module):
    """All-to-all multi-head self-attention over the H*W positions of a feature map (BoTNet / BossNAS).

    A bias-free 1x1 conv gives q, k, v (`heads` x `dim_head` channels each); logits are q^T k scaled by
    dim_head^-0.5, softmaxed over keys. `untransposed=True` reproduces the BossNAS search-phase op, which
    multiplies v by the attention matrix without transposing it; the retrained BossNet uses the standard
    v @ attn^T. No positional term: HyTra encodes position with a depthwise conv before this module.
    """

    def __init__(self, channels: int, heads: int, dim_head: int, untransposed: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head ** -0.5
        self.untransposed = untransposed
        self.to_qkv = nn.Conv2d(channels, 3 * heads * dim_head, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.to_qkv(x).reshape(b, 3 * self.heads, self.dim_head, h * w).chunk(3, dim=1)
        attn = ((q * self.scale).transpose(-2, -1) @ k).softmax(dim=-1)
        out = v @ attn if self.untransposed else v @ attn.transpose(-2, -1)
        return out.reshape(b, self.heads * self.dim_head, h, w)
