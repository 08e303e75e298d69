"""Primitive layers of architecture graphs (see `nas.ops.core`)."""
from nas.ops.core import (ACTIVATIONS, Activation, Add, AvgPool2d, BatchNorm1d, BatchNorm2d, Concat, Conv2d, Dropout,
                          Flatten, GlobalAvgPool, Identity, Linear, MaxPool2d, Mul, Op, Shape, ShapeError, Zero)

__all__ = ["ACTIVATIONS", "Activation", "Add", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Concat", "Conv2d", "Dropout",
           "Flatten", "GlobalAvgPool", "Identity", "Linear", "MaxPool2d", "Mul", "Op", "Shape", "ShapeError", "Zero"]
