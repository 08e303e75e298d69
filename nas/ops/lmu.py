"""The LMU cell as one graph op (LMUFormer, Liu et al., ICLR 2024; module: `nas.ops.lmu_module.LMUCell`).

Parameters: W_u (input + 1), W_h ((memory + input) x hidden + hidden) and, spiking with `norm`, BatchNorm1d scale
and shift on u (1 channel), m (memory) and h (hidden). Abar, Bbar and the impulse response are fixed buffers, not
parameters.
Multiply-adds are the two linear layers per token (L x input and L x (memory + input) x hidden); the FFT
convolution and its spectrum product count zero, as in torch's FLOP counter.
"""
from __future__ import annotations

from dataclasses import dataclass

from nas.ops.core import Op, Shape, ShapeError


@dataclass(frozen=True)
class LMU(Op):
    """(input, L) -> (hidden, L); `seq_len` must equal L (the impulse response is computed for it)."""

    input_size: int
    hidden_size: int
    memory_size: int
    theta: float
    seq_len: int
    spiking: bool = False
    norm: bool = True  # spiking only: BN -> LIF on u, m, h (LMUFormer); False: LIF on u, h (psMNIST notebook)

    def out_shape(self, shapes: list[Shape]) -> Shape:
        if len(shapes[0]) != 2:
            raise ShapeError(f"LMU takes a (channels, length) sequence, got shape {shapes[0]}")
        c, n = shapes[0]
        if c != self.input_size or n != self.seq_len:
            raise ShapeError(f"LMU expects ({self.input_size}, {self.seq_len}), got {shapes[0]}")
        return (self.hidden_size, n)

    def params(self) -> int:
        linear = self.input_size + 1 + (self.memory_size + self.input_size + 1) * self.hidden_size
        return linear + (2 * (1 + self.memory_size + self.hidden_size) if self.spiking and self.norm else 0)

    def macs(self, shapes: list[Shape]) -> int:
        return self.seq_len * (self.input_size + (self.memory_size + self.input_size) * self.hidden_size)

    def source(self) -> str:
        return (f"LMUCell({self.input_size}, {self.hidden_size}, {self.memory_size}, {self.theta}, {self.seq_len}, "
                f"spiking={self.spiking}, norm={self.norm})")

    def needs(self) -> tuple[type, ...]:
        from nas.ops.lmu_module import LMUCell, MultiStepLIF, SigmoidSpike

        return (SigmoidSpike, MultiStepLIF, LMUCell)

    @property
    def label(self) -> str:
        return f"{'s' if self.spiking else ''}lmu_d{self.memory_size}"
