"""Elastic layers: one largest weight tensor serving every smaller layer of the same node (Once-for-All).

Cai et al., "Once-for-All: Train One Network and Specialize it for Efficient Deployment" (ICLR 2020): a layer
of an elastic supernet holds the largest kernel and widths any architecture asks for; a smaller layer uses
the leading output and input channels and the centre of the kernel. Between the kernel sizes of a depthwise
convolution, OFA learns one kernel transformation matrix per size step (shared by the channels, initialised
to the identity): the k x k kernel is the centre of the next larger (transformed) kernel, multiplied by the
matrix for that step. BatchNorm uses the leading channels of its affine parameters and running statistics.
Deviation: OFA re-sorts channels by importance before shrinking widths; here the leading channels are used
as they are.

Each elastic module runs one concrete op (`run(x, op)`) and gives the stand-alone weights of that op
(`state_for(op)`), keyed as the op's own module (`nas.build.construct(op)`) names them.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from nas.ops import BatchNorm2d, Conv2d, Linear, Op
from nas.space import NASError


def _same(ops: Sequence[Op], *fields: str) -> None:
    for name in fields:
        values = {getattr(op, name) for op in ops}
        if len(values) > 1:
            raise NASError(f"elastic layers of one node must share {name}, got {sorted(values, key=str)}")


class Elastic(Protocol):
    """What every elastic module has: `run(x, op)` and `state_for(op)` for its node's concrete ops."""

    def run(self, x: torch.Tensor, op: Any) -> torch.Tensor: ...

    def state_for(self, op: Any) -> dict[str, torch.Tensor]: ...


def _depthwise(op: Conv2d) -> bool:
    return op.groups > 1 and op.groups == op.in_ch == op.out_ch


class ElasticConv2d(nn.Module):
    """The largest of a node's Conv2d ops; dense (groups 1) or depthwise, never mixed."""

    def __init__(self, ops: Sequence[Conv2d], kernel_transform: bool = True) -> None:
        super().__init__()
        _same(ops, "stride", "bias", "dilation")
        depthwise = {_depthwise(op) for op in ops}
        if len(depthwise) > 1 or not depthwise.pop() and any(op.groups != 1 for op in ops):
            raise NASError("an elastic Conv2d node must be dense (groups 1) or depthwise in every architecture")
        self.depthwise = _depthwise(ops[0])
        self.kernels = sorted({op.kernel for op in ops})
        in_ch, out_ch = max(op.in_ch for op in ops), max(op.out_ch for op in ops)
        if self.depthwise:
            in_ch = out_ch = max(in_ch, out_ch)
        groups = out_ch if self.depthwise else 1
        self.conv = nn.Conv2d(in_ch, out_ch, self.kernels[-1], ops[0].stride, bias=ops[0].bias, groups=groups,
                              dilation=ops[0].dilation)
        self.transforms = nn.ParameterDict()
        if kernel_transform and self.depthwise:
            for small, large in zip(self.kernels, self.kernels[1:]):
                self.transforms[f"{large}to{small}"] = nn.Parameter(torch.eye(small * small))

    def weight_for(self, op: Conv2d) -> torch.Tensor:
        in_ch = 1 if self.depthwise else op.in_ch
        weight = self.conv.weight[:op.out_ch, :in_ch]
        for large in reversed(self.kernels):  # step down through the kernel sizes, transforming each time
            if large <= op.kernel:
                break
            small = self.kernels[self.kernels.index(large) - 1]
            start = (large - small) // 2
            weight = weight[:, :, start:start + small, start:start + small]
            matrix = self.transforms[f"{large}to{small}"] if f"{large}to{small}" in self.transforms else None
            if matrix is not None:
                shape = weight.shape
                weight = (weight.reshape(-1, small * small) @ matrix.t()).reshape(shape)
        return weight

    def run(self, x: torch.Tensor, op: Conv2d) -> torch.Tensor:
        bias = self.conv.bias[:op.out_ch] if self.conv.bias is not None else None
        return F.conv2d(x, self.weight_for(op), bias, op.stride, op.pad, op.dilation, op.groups)

    def state_for(self, op: Conv2d) -> dict[str, torch.Tensor]:
        state = {"weight": self.weight_for(op)}
        if self.conv.bias is not None:
            state["bias"] = self.conv.bias[:op.out_ch]
        return state


class ElasticBatchNorm2d(nn.Module):
    """The widest of a node's BatchNorm2d ops; narrower ones use the leading channels."""

    def __init__(self, ops: Sequence[BatchNorm2d]) -> None:
        super().__init__()
        _same(ops, "eps", "momentum")
        self.bn = nn.BatchNorm2d(max(op.channels for op in ops), eps=ops[0].eps, momentum=ops[0].momentum)
        if any(op.zero_init for op in ops):
            nn.init.zeros_(self.bn.weight)

    def _statistics(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The running mean, variance and batch count (this BatchNorm2d always tracks them)."""
        bn = self.bn
        if bn.running_mean is None or bn.running_var is None or bn.num_batches_tracked is None:
            raise NASError("an elastic BatchNorm2d needs its running statistics (track_running_stats)")
        return bn.running_mean, bn.running_var, bn.num_batches_tracked

    def run(self, x: torch.Tensor, op: BatchNorm2d) -> torch.Tensor:
        bn, c = self.bn, op.channels
        if c == bn.num_features:
            return bn(x)
        running_mean, running_var, num_batches_tracked = self._statistics()
        factor = 0.0
        if bn.training and bn.track_running_stats:  # as nn.BatchNorm2d: cumulative average when momentum is None
            num_batches_tracked.add_(1)
            factor = 1.0 / float(num_batches_tracked) if bn.momentum is None else bn.momentum
        # slices of the running statistics are views: training updates them in place
        return F.batch_norm(x, running_mean[:c], running_var[:c], bn.weight[:c], bn.bias[:c],
                            bn.training or bn.running_mean is None, factor, bn.eps)

    def state_for(self, op: BatchNorm2d) -> dict[str, torch.Tensor]:
        c = op.channels
        running_mean, running_var, num_batches_tracked = self._statistics()
        return {"weight": self.bn.weight[:c], "bias": self.bn.bias[:c], "running_mean": running_mean[:c],
                "running_var": running_var[:c], "num_batches_tracked": num_batches_tracked}


class ElasticLinear(nn.Module):
    """The largest of a node's Linear ops; smaller ones use the leading features."""

    def __init__(self, ops: Sequence[Linear]) -> None:
        super().__init__()
        _same(ops, "bias")
        self.linear = nn.Linear(max(op.in_features for op in ops), max(op.out_features for op in ops),
                                bias=ops[0].bias)

    def run(self, x: torch.Tensor, op: Linear) -> torch.Tensor:
        bias = self.linear.bias[:op.out_features] if self.linear.bias is not None else None
        return F.linear(x, self.linear.weight[:op.out_features, :op.in_features], bias)

    def state_for(self, op: Linear) -> dict[str, torch.Tensor]:
        state = {"weight": self.linear.weight[:op.out_features, :op.in_features]}
        if self.linear.bias is not None:
            state["bias"] = self.linear.bias[:op.out_features]
        return state


ELASTIC: dict[type, type[nn.Module]] = {Conv2d: ElasticConv2d, BatchNorm2d: ElasticBatchNorm2d, Linear: ElasticLinear}


class ElasticCall:
    """An elastic module bound to one concrete op: called like the op's own module."""

    __slots__ = ("module", "op")

    def __init__(self, module: Elastic, op: Op) -> None:
        self.module, self.op = module, op

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.run(x, self.op)
