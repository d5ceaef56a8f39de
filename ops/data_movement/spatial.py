"""BATCH_TO_SPACE_ND, SPACE_TO_BATCH_ND (TFLM's batch_to_space_nd.cc, space_to_batch_nd.cc) and
DEPTH_TO_SPACE, SPACE_TO_DEPTH (depth_to_space.cc, space_to_depth.cc), with their reference_ops
headers: pixels moved between the batch, spatial and depth dimensions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..registry import OpKernel, expect_types, register
from ..shape import check_types_equal, int32_words
from .common import (
    MapKernel,
    Refusal,
    apply_read_maps,
    at_load,
    c_div,
    c_mod,
    check_int32,
    constant_sample,
    expand_depth,
    last_writes,
)

SPACE_BATCH_TYPES = ("FLOAT32", "INT8")  # BatchToSpaceNDEval / SpaceToBatchNDEval switches
DEPTH_SPACE_TYPES = ("FLOAT32", "INT8")  # checked in Prepare (TF_LITE_ENSURE)


# ---------------------------------------------------------------------------- BATCH_TO_SPACE_ND / SPACE_TO_BATCH_ND

def extend_nhc(shape) -> tuple[int, int, int, int]:
    """ExtendShapeBatchToSpace / ExtendShapeSpaceToBatch: a 3-D NHC shape becomes NH1C."""
    shape = tuple(int(d) for d in shape)
    return shape if len(shape) == 4 else (shape[0], shape[1], 1, shape[2])


def spatial_words(rank: int, block_words: np.ndarray, pad_words: np.ndarray, role: str):
    """The block and crop/padding words the reference kernels read: block_shape[0] (and [1] for
    4-D), crops/paddings[0] (and [2] for 4-D)."""
    need_block, need_pad = (2, 3) if rank == 4 else (1, 1)
    if block_words.size < need_block or pad_words.size < need_pad:
        raise Refusal(f"block_shape holds {block_words.size} and {role} {pad_words.size} int32 words; a "
                      f"rank-{rank} input reads {need_block} and {need_pad}", undefined=True)
    bh = int(block_words[0])
    bw = int(block_words[1]) if rank == 4 else 1
    top = int(pad_words[0])
    left = int(pad_words[2]) if rank == 4 else 0
    return bh, bw, top, left


@dataclass(frozen=True)
class SpaceBatchParams:
    """What both kernels read from their inputs, plus the resolved read map."""

    input_shape: tuple  # extended to NHWC (3-D inputs get W = 1)
    output_shape: tuple  # extended likewise
    block_shape: tuple | None  # (height, width) read from block_shape (None: computed per run)
    crops_or_paddings: tuple | None  # (top, left): crops[0], crops[2] / paddings[0], paddings[2]
    read_map: np.ndarray | None = field(default=None, repr=False)  # flat input index per output element


def batch_to_space_map(rank, in4, out4, block_sample, crops_sample) -> np.ndarray:
    """reference_ops::BatchToSpaceND as a read map (loops in_batch, in_h, in_w; later writes win)."""
    bh, bw, top, left = spatial_words(rank, int32_words(block_sample), int32_words(crops_sample), "crops")
    in_b, in_h, in_w, depth = in4
    out_b, out_h, out_w, _ = out4
    if in_b and out_b == 0:
        raise Refusal("output batch 0: TFLM divides by it (in_batch % output_batch_size)", undefined=False)
    if bw == 0 and in_b and in_h:
        raise Refusal("block width 0: TFLM divides by it (spatial_offset / block_shape_width)", undefined=False)
    batch = np.arange(in_b, dtype=np.int64)
    out_batch = batch % max(out_b, 1)
    spatial_offset = batch // max(out_b, 1)
    bw_safe = bw if bw else 1
    oh = (np.arange(in_h, dtype=np.int64)[None, :] * bh + c_div(spatial_offset, bw_safe)[:, None] - top)
    ow = (np.arange(in_w, dtype=np.int64)[None, :] * bw + c_mod(spatial_offset, bw_safe)[:, None] - left)
    check_int32("out_h / out_w", oh, ow)
    ok = ((oh >= 0) & (oh < out_h))[:, :, None] & ((ow >= 0) & (ow < out_w))[:, None, :]
    out_pos = ((out_batch[:, None, None] * out_h + oh[:, :, None]) * out_w + ow[:, None, :])
    in_pos = np.arange(in_b * in_h * in_w, dtype=np.int64).reshape(in_b, in_h, in_w)
    # C order of (in_batch, in_h, in_w) is TFLM's write order.
    pixel_map = last_writes(out_pos[ok], in_pos[ok], out_b * out_h * out_w)
    if (pixel_map < 0).any():
        raise Refusal(f"{int((pixel_map < 0).sum())} of {pixel_map.size} output pixels are never written "
                      "(the output shape does not match input, block_shape and crops)", undefined=True)
    return expand_depth(pixel_map, depth)


def space_to_batch_map(rank, in4, out4, block_sample, pad_sample) -> np.ndarray:
    """reference_ops::SpaceToBatchND as a read map; -1 marks padding."""
    bh, bw, top, left = spatial_words(rank, int32_words(block_sample), int32_words(pad_sample), "paddings")
    in_b, in_h, in_w, depth = in4
    out_b, out_h, out_w, _ = out4
    if out_b == 0:
        return np.zeros(0, dtype=np.int64)
    if in_b == 0:
        raise Refusal("input batch 0: TFLM divides by it (out_b % input_batch_size)", undefined=False)
    if bw == 0:
        raise Refusal("block width 0: TFLM divides by it ((out_b / input_batch_size) % block_shape_width)",
                      undefined=False)
    b = np.arange(out_b, dtype=np.int64)
    input_batch = b % in_b
    shift_w = c_mod(b // in_b, bw)
    shift_h = c_div(b // in_b, bw)
    hp = np.arange(out_h, dtype=np.int64)[None, :] * bh + shift_h[:, None]
    wp = np.arange(out_w, dtype=np.int64)[None, :] * bw + shift_w[:, None]
    check_int32("the padded position", hp, wp)
    inside = ((hp >= top) & (hp < top + in_h))[:, :, None] & ((wp >= left) & (wp < left + in_w))[:, None, :]
    src = (input_batch[:, None, None] * in_h + (hp - top)[:, :, None]) * in_w + (wp - left)[:, None, :]
    pixel_map = np.where(inside, src, -1).reshape(-1)
    return expand_depth(pixel_map, depth)


class _SpaceBatch(MapKernel):
    pad_role = ""

    def prepare(self, ctx):
        ctx.check_io_counts(3)
        x = ctx.require_input(0, "input")
        block = ctx.require_input(1, "block_shape")
        pads = ctx.require_input(2, self.pad_role)
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        for t, role in ((x, "input"), (out, "output")):
            ctx.check(3 <= len(t.shape) <= 4, f"{role} rank {len(t.shape)} is not 3 or 4 "
                      "(kInputOutputMinDimensionNum..kInputOutputMaxDimensionNum)", t)
        check_types_equal(ctx, x, out)
        expect_types(ctx, x, SPACE_BATCH_TYPES, "input")
        if len(x.shape) != len(out.shape):
            ctx.unsupported(f"input rank {len(x.shape)} differs from output rank {len(out.shape)} "
                            "(TFLM's reference kernel assumes they match)", out)
        self.rank = len(x.shape)
        in4, out4 = extend_nhc(x.shape), extend_nhc(out.shape)
        if in4[3] != out4[3]:
            ctx.unsupported(f"input depth {in4[3]} differs from output depth {out4[3]} (TFLM copies input-depth "
                            "runs into the output's rows)", out)
        self.in4, self.out4 = in4, out4
        block_c, pads_c = constant_sample(block), constant_sample(pads)
        read_map = shown_block = shown_pads = None
        if block_c is not None and pads_c is not None:
            read_map = at_load(ctx, None, self.build, block_c, pads_c)
            bh, bw, top, left = spatial_words(self.rank, int32_words(block_c), int32_words(pads_c), self.pad_role)
            shown_block, shown_pads = (bh, bw), (top, left)
        self.params = SpaceBatchParams(in4, out4, shown_block, shown_pads, read_map)

    def build(self, block_sample, pad_sample):
        raise NotImplementedError

    def eval(self, inputs):
        x, block, pads = inputs
        return [apply_read_maps(self, x, [block, pads], self.build, self.out_tensor.shape, self.fill)]


@register("BATCH_TO_SPACE_ND")
class BatchToSpaceNd(_SpaceBatch):
    """batch_to_space_nd.cc BatchToSpaceNDPrepare; reference/batch_to_space_nd.h."""

    supported_types = "int8, float32 (3-D and 4-D)"
    notes = ("block_shape/crops constant or computed (read as int32 words, as TFLM reads them whatever their "
             "type); output pixels it would leave unwritten are refused")

    pad_role = "crops"
    fill = None

    def build(self, block_sample, crops_sample):
        return batch_to_space_map(self.rank, self.in4, self.out4, block_sample, crops_sample)


@register("SPACE_TO_BATCH_ND")
class SpaceToBatchNd(_SpaceBatch):
    """space_to_batch_nd.cc SpaceToBatchNDPrepare; reference/space_to_batch_nd.h.

    The padding is memset(out, params.output_offset, ...) with an output_offset TFLM never sets
    (its OpData comes from AllocatePersistentBuffer): zero bytes in a fresh arena, so 0.0 / 0.
    """

    supported_types = "int8, float32 (3-D and 4-D)"
    notes = ("block_shape/paddings constant or computed (read as int32 words, as TFLM reads them whatever their "
             "type); pads with zero bytes — 0, not the zero point (TFLM's pad value is an OpData field it never "
             "sets)")

    pad_role = "paddings"
    fill = 0

    def build(self, block_sample, pad_sample):
        return space_to_batch_map(self.rank, self.in4, self.out4, block_sample, pad_sample)


# ---------------------------------------------------------------------------- DEPTH_TO_SPACE / SPACE_TO_DEPTH

@dataclass(frozen=True)
class DepthSpaceParams:
    block_size: int


class _DepthSpace(OpKernel):
    def prepare_common(self, ctx):
        ctx.check_io_counts(1)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        self.out_tensor = out
        ctx.check(len(x.shape) == 4, f"NumDimensions(input) is {len(x.shape)}, must be 4", x)
        ctx.check(out.type_name in DEPTH_SPACE_TYPES,
                  f"output type {out.type_name} is not FLOAT32 or INT8", out)
        check_types_equal(ctx, x, out)
        block = int(ctx.options.get("block_size", 0))
        ctx.check(block > 0, f"block_size {block} is not > 0")
        self.params = DepthSpaceParams(block)
        return x, out, block

    def require_shape(self, ctx, out, expected):
        # TFLM writes the shape it computes over the output's (CreateWritableTensorDimsWithCopy).
        if tuple(out.shape) != tuple(expected):
            ctx.unsupported(f"output declared {list(out.shape)}; TFLM computes {list(expected)} and "
                            "overwrites the declared shape", out)

    def describe(self):
        return asdict(self.params)


@register("DEPTH_TO_SPACE")
class DepthToSpace(_DepthSpace):
    """depth_to_space.cc CalculateOpData; reference/depth_to_space.h.

    in_d = out_d + ((out_h % bs) * bs + out_w % bs) * output_depth: the input channel splits as
    (row in block, column in block, output channel).
    """

    supported_types = "int8, float32"
    notes = "block_size > 0"

    def prepare(self, ctx):
        x, out, bs = self.prepare_common(ctx)
        b, h, w, c = x.shape
        out_c = c // bs // bs
        ctx.check(c == out_c * bs * bs, f"input_channels {c} != output_channels {out_c} * block_size^2")
        self.require_shape(ctx, out, (b, h * bs, w * bs, out_c))

    def eval(self, inputs):
        x = inputs[0]
        n, b, h, w, c = x.shape
        bs = self.params.block_size
        y = x.reshape(n, b, h, w, bs, bs, c // (bs * bs)).transpose(0, 1, 2, 4, 3, 5, 6)
        return [np.ascontiguousarray(y).reshape((n,) + tuple(self.out_tensor.shape))]


@register("SPACE_TO_DEPTH")
class SpaceToDepth(_DepthSpace):
    """space_to_depth.cc Prepare (the wheel also requires block_size > 0); reference/space_to_depth.h.

    out_d = in_d + ((in_h % bs) * bs + in_w % bs) * input_depth.
    """

    supported_types = "int8, float32"
    notes = "block_size > 0"

    def prepare(self, ctx):
        x, out, bs = self.prepare_common(ctx)
        b, h, w, c = x.shape
        ctx.check(h == (h // bs) * bs, f"input_height {h} != output_height {h // bs} * block_size {bs}")
        ctx.check(w == (w // bs) * bs, f"input_width {w} != output_width {w // bs} * block_size {bs}")
        self.require_shape(ctx, out, (b, h // bs, w // bs, c * bs * bs))

    def eval(self, inputs):
        x = inputs[0]
        n, b, h, w, c = x.shape
        bs = self.params.block_size
        y = x.reshape(n, b, h // bs, bs, w // bs, bs, c).transpose(0, 1, 2, 4, 3, 5, 6)
        return [np.ascontiguousarray(y).reshape((n,) + tuple(self.out_tensor.shape))]
