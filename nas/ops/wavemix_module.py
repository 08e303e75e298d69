"""Torch-only module classes behind the WaveMix ops (export inlines them with `inspect.getsource`)."""
import torch
from torch import nn


class HaarDWT2d(nn.Module):
    """One-level 2D Haar DWT (db1, orthonormal, mode 'zero') as in WaveMix's embedded pytorch_wavelets copy.

    Output (N, 4C, H/2, W/2) = [LL; highs]: LL takes the first C channels, then input channel c's three detail
    bands at 3c, 3c+1, 3c+2 in pytorch_wavelets' order LH, HL, HH (low-pass along W and high-pass along H, then
    high along W and low along H, then high along both), as WaveMix's `reshape` of the (N, C, 3, H/2, W/2) highs
    lays them out. Pure slicing arithmetic on the 2x2 pixel blocks (LL = sum / 2): no parameters, no buffers, so it
    follows the input's dtype and device (the official DWT objects are module globals built on cuda:0). H and W
    must be even; mode 'zero' pads nothing for even sizes, so this equals the official transform there.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]  # even rows: even / odd columns
        c, d = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]  # odd rows
        ll = (a + b + c + d) * 0.5
        lh = (a + b - c - d) * 0.5
        hl = (a - b + c - d) * 0.5
        hh = (a - b - c + d) * 0.5
        return torch.cat((ll, torch.stack((lh, hl, hh), dim=2).flatten(1, 2)), dim=1)
