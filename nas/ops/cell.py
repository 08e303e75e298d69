"""Ops for cell-based spaces, where one tensor feeds several layers (NAS-Bench-201, DARTS-style cells)."""
from __future__ import annotations

from dataclasses import dataclass

from nas.ops.core import Activation


@dataclass(frozen=True)
class ReLU(Activation):
    """A ReLU that leaves its input intact (`nn.ReLU(inplace=False)`).

    `Activation("relu")` renders an in-place ReLU, which is right after a BatchNorm whose output has one
    reader, but wrong on a cell node read by several edges (a skip edge would see the rectified tensor).
    """

    kind: str = "relu"

    def source(self) -> str:
        return "nn.ReLU()"
