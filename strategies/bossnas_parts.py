"""Building blocks of BossNAS's ensemble bootstrapping (Li et al. 2021): the target momentum schedule and EMA,
batched view augmentation, the per-block projector/predictor heads, the ensemble target and the loss (LARS is
in `nas.optim`, BN recalibration in `nas.train`).

Deviations from the official code (changlin31/BossNAS), named here:
- Views are made by batched tensor ops on small in-memory images (random resized crop with aspect jitter,
  horizontal flip where the data allows it, brightness/contrast jitter with p 0.8, grayscale p 0.2 for
  colour images, a 3x3 Gaussian blur with p 1.0 / 0.1 on views 1 / 2) instead of the PIL BYOL pipeline;
  solarisation (p 0 / 0.2) is left out because the images are standardised, not in [0, 1].
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


def momentum_at(step: int, total: int, base: float) -> float:
    """BYOL's target momentum: a cosine from `base` at step 0 to 1.0 at step `total` (restarted per block)."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(step, total) / max(1, total)) + 1.0) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameters only (as the official code)."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """3x3 Gaussian blur with a per-sample sigma, as a depthwise convolution over the batch."""
    n, c, h, w = x.shape
    taps = torch.tensor([-1.0, 0.0, 1.0], device=x.device)
    k1 = torch.exp(-(taps[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)
    k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, 0)[:, None]
    out = F.conv2d(F.pad(x.reshape(1, n * c, h, w), (1, 1, 1, 1), mode="replicate"), k2, groups=n * c)
    return out.reshape(n, c, h, w)


def augment_views(x: torch.Tensor, generator: torch.Generator, flip: bool, blur_p: float,
                  scale: tuple[float, float] = (0.08, 1.0)) -> torch.Tensor:
    """One random BYOL-style view of every image in `x` (N, C, H, W), all in batched tensor ops."""
    n, c = x.shape[:2]

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(x.device)

    area = scale[0] + (scale[1] - scale[0]) * rand(n)
    ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * rand(n))
    sx, sy = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    tx, ty = (2 * rand(n) - 1) * (1 - sx), (2 * rand(n) - 1) * (1 - sy)
    mirror = torch.where(rand(n) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=x.device)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * mirror, tx, sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    jitter = (rand(n) < 0.8)[:, None, None, None]
    brightness = (0.8 * rand(n) - 0.4)[:, None, None, None]
    contrast = (0.6 + 0.8 * rand(n))[:, None, None, None]
    mean = v.mean((1, 2, 3), keepdim=True)
    v = torch.where(jitter, (v - mean) * contrast + mean + brightness, v)
    if c == 3:
        gray = (rand(n) < 0.2)[:, None, None, None]
        v = torch.where(gray, v.mean(1, keepdim=True).expand_as(v), v)
    blurred = (rand(n) < blur_p)[:, None, None, None]
    return torch.where(blurred, _blur(v, 0.1 + 1.9 * rand(n)), v)


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """FC (bias) -> BN1d -> ReLU -> FC (bias), no last BN: BYOL's projector / predictor shape."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim))


def shape_key(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


class Adapter(nn.Module):
    """Maps a block output (C, H, W) to the common (D, h, w): depthwise conv with kernel = stride = H / h
    (skipped when equal), 1x1 conv to D, BN; as the official HyTra neck's `fix_channels`."""

    def __init__(self, shape: tuple[int, ...], width: int, size: int) -> None:
        super().__init__()
        c, h = shape[0], shape[1]
        factor = max(1, h // size)
        layers: list[nn.Module] = []
        if factor > 1:
            layers.append(nn.Conv2d(c, c, factor, factor, groups=c, bias=False))
        layers += [nn.Conv2d(c, width, 1, bias=False), nn.BatchNorm2d(width)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BlockNeck(nn.Module):
    """Adapters for every output shape a block's candidates can have, global average pool, projector."""

    def __init__(self, shapes: Iterable[tuple[int, ...]], hidden: int, out_dim: int) -> None:
        super().__init__()
        shapes = sorted(set(tuple(s) for s in shapes))
        self.width = max(s[0] for s in shapes)
        size = min(s[1] for s in shapes)
        self.adapters = nn.ModuleDict({shape_key(s): Adapter(s, self.width, size) for s in shapes})
        self.projector = mlp(self.width, hidden, out_dim)
        for m in self.projector.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapters[shape_key(tuple(x.shape[1:]))](x)
        return self.projector(x.mean((2, 3)))


def predictor(dim: int, hidden: int) -> nn.Sequential:
    """The online predictor, initialised normal(0, 0.01) as the official LatentPredictHead."""
    head = mlp(dim, hidden, dim)
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
    return head


def ensemble_target(projections: Iterable[torch.Tensor]) -> torch.Tensor:
    """The ensemble bootstrapping target: the mean over paths of L2-normalised target projections."""
    normed = [F.normalize(p, dim=1) for p in projections]
    return torch.stack(normed).mean(0)


def cosine_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-2 * cos(prediction, target), averaged over the batch (the official LatentPredictHead)."""
    return -2.0 * (F.normalize(prediction, dim=1) * F.normalize(target, dim=1)).sum(1).mean()
