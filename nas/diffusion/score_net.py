"""DiffusionNAG's score network: a CATE-style transformer over the node-operation matrix (An et al., ICLR 2024,
official `models/cate.py`), and an exponential moving average of its weights.

Per node: Linear(n_types -> d) * sqrt(d), dropout, plus a sinusoidal positional encoding of the node's position, plus
a noise-level embedding (sinusoidal embedding of sigma itself, Linear(d -> 4d), SiLU, Linear(4d -> d)); the
positional encoding can be scaled (`position_scale`, ours; 1 in the official code). Then
`n_layers` pre-LayerNorm encoder blocks whose self-attention is masked by the DAG (node i attends to j where
mask[i, j] = 1; masked scores get -1e9, so a node without successors attends uniformly, as the official code).
Every block's output is LayerNorm'd and all are concatenated, and a 3-layer ELU MLP maps them to a per-node score of
shape (n_types,). Defaults are the published NB201 ones: d 64, 12 layers, 8 heads, d_ff 128, dropout 0.1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ScoreNetConfig:
    """Size of the score transformer (defaults: the official NB201 configuration)."""

    d_model: int = 64
    n_layers: int = 12
    n_heads: int = 8
    d_ff: int = 128
    dropout: float = 0.1
    #: divide the output by sigma (score SDE's NCSN++ `scale_by_sigma`): the network then predicts -z, an easier
    #: target for short CPU training; off in the official DiffusionNAG network, which outputs the score directly
    scale_by_sigma: bool = False
    #: factor on the positional encoding (official: 1). The node embedding is multiplied by sqrt(d_model), so at 1
    #: the positions are a small part of the input; a prior that must tell many positions apart (an MBConv space
    #: whose stages differ) learns them slowly, and sqrt(d_model) puts them on the embedding's scale (ours)
    position_scale: float = 1.0


def sinusoidal(values: Tensor, dim: int, max_positions: float = 10000.0) -> Tensor:
    """Transformer sinusoidal embedding of real `values` (B,) -> (B, dim): [sin, cos] halves."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=values.device, dtype=torch.float32)
                     * -(math.log(max_positions) / (half - 1)))
    arg = values.float()[:, None] * freq[None]
    return F.pad(torch.cat([arg.sin(), arg.cos()], dim=1), (0, dim % 2))


def positional_table(positions: Tensor, dim: int) -> Tensor:
    """Interleaved sin/cos positional encoding of integer positions (N,) -> (N, dim), as the official CATE one."""
    pos = positions.float()[:, None]
    div = 10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(len(positions), dim)
    table[:, 0::2] = torch.sin(pos / div)
    table[:, 1::2] = torch.cos(pos / div[: dim // 2])
    return table


class EncoderBlock(nn.Module):
    """Pre-LN block: x + drop(MHA(LN(x), mask)), then x + drop(FF(LN(x))) with a ReLU feed-forward."""

    def __init__(self, cfg: ScoreNetConfig) -> None:
        super().__init__()
        self.heads = cfg.n_heads
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.ReLU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.d_ff, cfg.d_model))
        self.dropout = nn.Dropout(cfg.dropout)
        self.p = cfg.dropout

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.p if self.training else 0.0)
        x = x + self.dropout(self.out(att.transpose(1, 2).reshape(b, n, d)))
        return x + self.dropout(self.ff(self.norm2(x)))


class ScoreTransformer(nn.Module):
    """s_theta(x_t, sigma) for node-operation matrices (B, N, n_types); `positions` (N,) index the positional
    encoding (NB201: 0..7; MBConv: layer index within the stage)."""

    def __init__(self, n_types: int, positions: Tensor, cfg: ScoreNetConfig = ScoreNetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Linear(n_types, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.register_buffer("pos", positional_table(positions, d) * cfg.position_scale)
        self.noise = nn.Sequential(nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d))
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(cfg.n_layers))
        width = cfg.n_layers * d
        self.head = nn.Sequential(nn.Linear(width, 2 * width), nn.ELU(), nn.Linear(2 * width, 2 * width), nn.ELU(),
                                  nn.Linear(2 * width, n_types))

    def forward(self, x: Tensor, sigma: Tensor, mask: Tensor) -> Tensor:
        """Score of shape like `x`; `mask` (N, N) or (B, N, N), 1 where attention is allowed."""
        h = self.drop(self.embed(x) * math.sqrt(self.cfg.d_model)) + self.pos
        h = h + self.noise(sinusoidal(sigma, self.cfg.d_model))[:, None]
        bias = torch.zeros(mask.shape, device=x.device).masked_fill(mask == 0, -1e9)
        bias = bias[None, None] if bias.dim() == 2 else bias[:, None]
        outs = []
        for block, norm in zip(self.blocks, self.norms):
            h = block(h, bias)
            outs.append(norm(h))
        score = self.head(torch.cat(outs, dim=-1))
        return score / sigma[:, None, None] if self.cfg.scale_by_sigma else score


class EMA:
    """Exponential moving average of a module's parameters, with the score-SDE warm-up
    decay_n = min(decay, (1 + n) / (10 + n)) (official `ExponentialMovingAverage`, use_num_updates=True)."""

    def __init__(self, model: nn.Module, decay: float = 0.9999) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in model.parameters()], 1 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into `model`."""
        for s, p in zip(self.shadow, model.parameters()):
            p.copy_(s)

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "updates": self.updates, "shadow": [s.cpu() for s in self.shadow]}

    def load_state_dict(self, state: dict[str, object], device: torch.device | None = None) -> None:
        self.decay = float(state["decay"])  # type: ignore[arg-type]
        self.updates = int(state["updates"])  # type: ignore[call-overload]
        self.shadow = [s.to(device) for s in state["shadow"]]  # type: ignore[attr-defined]
