"""A vision space whose stages choose their token mixer: MBConv, self-attention, WaveMix or LS convolution.

The skeleton is LSNet's (Wang et al., CVPR 2025): a stem of three 3x3 conv-BN layers, four stages, a stride-2
depthwise + pointwise conv-BN down-sampling before stages 2-4, and a pool / BatchNorm1d / Linear head (the
builders of `search_spaces.lsnet`). Each stage chooses its mixer, width and depth; block j of a stage is:
- "lsconv": LSNet's block (`add_lsnet_block`): RepVGG-DW + SE at even j, the LS convolution at odd j, each followed
  by LSNet's residual FFN;
- "attention": LSNet's stage-4 block: RepVGG-DW + SE at even j, residual multi-head self-attention with its bias
  table at odd j (key width 16), each followed by the FFN. Attention alternates with a convolutional block as in
  LSNet, the only published network here that puts attention in a stage of this skeleton;
- "wavemix": a level-1 WaveMix block (`add_wavemix_block`: 1x1 reduction, Haar DWT, MLP with expansion 2,
  transposed-conv up-sampling, BN, residual), as WaveMix-Lite stacks them;
- "mbconv": MobileNetV2's inverted residual (`inverted_residual`: 1x1 expand x6, 3x3 depthwise, ReLU6, linear
  1x1 projection, identity shortcut).

Presets: "paper" (224x224, 1000 classes, LSNet-T/S/B as named members, whose mixers are lsconv, lsconv, lsconv,
attention: they rebuild to LSNet's 11,409,832 / 16,146,304 / 23,313,608 parameters) and "small" (default: the
built-in 8x8 digits resized to 16x16, or 28x28 Fashion-MNIST, with a stride-1 stem). The published WaveMix and
MBConv networks are single-stage or MobileNet skeletons, not members of this one: they are named in the `wavemix`
and `mbconv` spaces. The mixer is part of each stage's supernet candidate (slot "s{i}", variant
"{mixer}_w{width}"), so different mixers never share weights.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

from nas.graph import ArchGraph, GraphBuilder
from nas.registry import register_space
from nas.space import ArchitectureError, Choice, Value, one_of
from search_spaces.lsnet import NUM_STAGES, LSNetPreset, LSNetSpace, add_lsnet_block, lsnet_graph, stage_values
from search_spaces.mbconv import FAMILIES, inverted_residual
from search_spaces.wavemix import add_wavemix_block

MIXERS = ("mbconv", "attention", "wavemix", "lsconv")
MBCONV_EXPAND = 6  # MobileNetV2's expansion
MBCONV_KERNEL = 3


def add_mixer_block(g: GraphBuilder, prefix: str, x: str, mixer: str, index: int, heads: int) -> str:
    """Block `index` of a stage whose token mixer is `mixer` (module docstring); returns its output node."""
    if mixer == "lsconv":
        return add_lsnet_block(g, prefix, x, index, "ls", heads)
    if mixer == "attention":
        return add_lsnet_block(g, prefix, x, index, "attention", heads)
    if mixer == "wavemix":
        return add_wavemix_block(g, prefix, x)
    if mixer == "mbconv":
        width = g.shape(x)[0]
        return inverted_residual(g, prefix, x, width, MBCONV_KERNEL, MBCONV_EXPAND, 1, "relu6", False,
                                 FAMILIES["mobilenet_v2"])
    raise ArchitectureError(f"token mixer {mixer!r} is not one of {one_of(MIXERS)}")


LSNET_MIXERS = ("lsconv", "lsconv", "lsconv", "attention")
PRESETS: dict[str, LSNetPreset] = {
    "paper": LSNetPreset(
        doc="stage-wise token mixers at 224x224 in LSNet's skeleton; LSNet-T/S/B are members",
        resolution=224, fixed=True, channels=3, classes=1000, stem_strides=(2, 2, 2),
        widths=((64, 96, 128), (128, 192, 256), (256, 320, 384), (384, 448, 512)),
        depths=((0, 1, 2, 3, 4), (2, 4, 6), (6, 8, 10), (8, 10, 12)), heads=4,
        references={"lsnet_t": stage_values((64, 128, 256, 384), (0, 2, 8, 10), LSNET_MIXERS),
                    "lsnet_s": stage_values((96, 192, 320, 448), (1, 2, 8, 10), LSNET_MIXERS),
                    "lsnet_b": stage_values((128, 256, 384, 512), (4, 6, 8, 10), LSNET_MIXERS)}),
    "small": LSNetPreset(
        doc="stage-wise token mixers for 8x8 digits / 28x28 Fashion-MNIST on a CPU: widths 16-64, stride-1 stem",
        resolution=16, fixed=False, channels=1, classes=10, stem_strides=(1, 1, 1),
        widths=((16, 24), (24, 32), (32, 48), (48, 64)), depths=((0, 1, 2), (1, 2), (1, 2, 3), (1, 2)), heads=2,
        references={"small_lsnet": stage_values((16, 32, 48, 64), (0, 2, 2, 2), LSNET_MIXERS)}),
}


@register_space("mixer")
class MixerSpace(LSNetSpace):
    """Stage-wise token mixers (MBConv, self-attention, WaveMix, LS conv) in LSNet's four-stage skeleton."""

    name = "mixer"
    PRESETS = PRESETS
    default_preset = "small"

    @cached_property
    def _choices(self) -> list[Choice]:
        out = []
        for i in range(1, NUM_STAGES + 1):
            slot = f"s{i}"
            out += [Choice(f"s{i}_mixer", MIXERS, doc=f"stage {i} token mixer", slot=slot),
                    Choice(f"s{i}_width", self.spec.widths[i - 1], "ordinal", doc=f"stage {i} width", slot=slot),
                    Choice(f"s{i}_depth", self.spec.depths[i - 1], "ordinal", doc=f"blocks in stage {i}")]
        return out

    def graph(self, arch: Mapping[str, Value], input_shape: tuple[int, ...] | None = None,
              num_classes: int | None = None) -> ArchGraph:
        stages = [(arch[f"s{i}_mixer"], arch[f"s{i}_width"], arch[f"s{i}_depth"]) for i in range(1, NUM_STAGES + 1)]
        return lsnet_graph(tuple(input_shape or self.default_input), num_classes or self.default_classes,
                           self.spec.stem_strides, self.spec.heads, stages, add_mixer_block)
