"""More data-movement operators: TFLM's batch_to_space_nd.cc, space_to_batch_nd.cc,
depth_to_space.cc, space_to_depth.cc, broadcast_args.cc, broadcast_to.cc, fill.cc, shape.cc,
slice.cc, mirror_pad.cc, reverse.cc and dynamic_update_slice.cc (with their reference_ops
headers). GATHER, GATHER_ND and EMBEDDING_LOOKUP are in ops/gather.py.

No arithmetic: every output element is a bit-for-bit copy of an input element (or a fill
value), so what matters is TFLM's validation and its index logic, mirrored exactly:

* Parameter tensors (block shapes, crops, paddings, begin/size, axes, start indices, shapes) need
  not be constant: TFLM reads most of them at every Eval. A constant one is resolved at load
  into a flat *read map* (for each output element the flat input index it copies); a computed
  one is resolved at run time, per sample.
* Where TFLM's Eval fails (an axis it cannot reverse) or aborts (BROADCAST_ARGS on
  unbroadcastable shapes, a division by a zero block width), a constant parameter makes microref
  refuse the model at load, as TFLM refuses at its first Invoke; a computed one makes ``run``
  raise :class:`InvokeError` naming the operator.
* Where TFLM's result is undefined (it would read outside its input tensor, or leave output
  elements unwritten, holding whatever the arena held), microref refuses in the same two ways:
  it never returns a value TFLM does not define.
* Where TFLM's behaviour is defined but surprising, it is mirrored: SLICE and MIRROR_PAD address
  the input through flat offsets, so an index past the end of one dimension reads the next row
  (as long as it stays inside the tensor); SPACE_TO_BATCH_ND pads with zero bytes (its
  ``output_offset`` lives in an OpData TFLM never initialises; in a fresh arena it is 0) — a
  0.0 or an int8 0, not the zero point; MIRROR_PAD with a paddings tensor of a type other than
  int32/int64 pads by nothing.

Several TFLM kernels (DEPTH_TO_SPACE, SPACE_TO_DEPTH, GATHER, GATHER_ND, EMBEDDING_LOOKUP) write
the output shape they compute over the model's; microref needs the model to declare that shape.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from interp.errors import InvokeError

from ..registry import OpKernel, PrepareContext, expect_types, register
from ..shape import ANY_COPYABLE, INT32_MAX, INT32_MIN, require_constant

SPACE_BATCH_TYPES = ("FLOAT32", "INT8")  # BatchToSpaceNDEval / SpaceToBatchNDEval switches
DEPTH_SPACE_TYPES = ("FLOAT32", "INT8")  # checked in Prepare (TF_LITE_ENSURE)
# BroadcastTo copies TfLiteTypeGetSize(type) bytes per element; int4 has no byte size (0).
BROADCAST_TO_TYPES = tuple(t for t in ANY_COPYABLE if t != "INT4")
BROADCAST_TO_MAX_RANK = 5  # kMaxDims
FILL_VALUE_TYPES = ("FLOAT32", "INT32", "INT8")  # FillEval switch
FILL_DIMS_TYPES = ("INT8", "INT16", "INT32", "INT64")  # EnsureEq switch
SLICE_TYPES = ("FLOAT32", "INT32", "INT8", "INT16", "BOOL")
SLICE_MAX_RANK = 5  # kMaxDim
MIRROR_PAD_TYPES = ("FLOAT32", "INT8")
REVERSE_TYPES = ("INT32", "FLOAT32", "UINT8", "INT8", "INT16", "INT64", "BOOL")
MAX_SMALL_RANK = 6  # RuntimeShape::kMaxSmallSize (REVERSE_V2, DYNAMIC_UPDATE_SLICE)
DYNAMIC_UPDATE_SLICE_TYPES = ("FLOAT32", "INT8", "INT16", "INT32")


class Refusal(Exception):
    """Raised by the map builders: ``undefined`` is True where TFLM's result is undefined (read
    outside a tensor, unwritten output), False where TFLM fails or aborts."""

    def __init__(self, message: str, undefined: bool):
        super().__init__(message)
        self.undefined = undefined


def refuse_at_load(ctx: PrepareContext, refusal: Refusal, tensor=None):
    """A Refusal met with constant parameters: the model is refused when loaded."""
    if refusal.undefined:
        ctx.unsupported(f"{refusal} (TFLM's result is undefined)", tensor)
    ctx.fail(f"{refusal} (TFLM fails at Invoke)", tensor)


def raise_at_run(location: str, refusal: Refusal):
    what = "TFLM's result is undefined" if refusal.undefined else "TFLM's Invoke fails"
    raise InvokeError(f"{location}: {refusal} ({what})") from None


# ---------------------------------------------------------------------------- shared helpers

def c_div(a, b):
    """C++ integer division (truncates toward zero), elementwise on int64 arrays or ints."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def c_mod(a, b):
    """C++ ``%``: the remainder takes the sign of the dividend."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    return a - c_div(a, b) * b


def wrap_int32(values) -> np.ndarray:
    """C's int64 -> int32 conversion (keeps the low 32 bits)."""
    return np.asarray(values, np.int64).astype(np.int32).astype(np.int64)


def int32_words(sample: np.ndarray) -> np.ndarray:
    """One sample of a parameter tensor read as int32 words, as GetTensorData<int32_t> reads it
    whatever the tensor's type (an int64 tensor gives low word, high word, ...)."""
    data = np.ascontiguousarray(sample)
    if data.dtype == np.int32:
        return data.reshape(-1).astype(np.int64)
    raw = data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
    return np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i4").astype(np.int64)


def check_int32(what: str, *arrays):
    """Refuse arithmetic TFLM does in int whose results leave the int32 range (signed overflow
    is undefined behaviour in C++)."""
    for a in arrays:
        a = np.asarray(a)
        if a.size and (a.min() < INT32_MIN or a.max() > INT32_MAX):
            raise Refusal(f"{what} overflows int32", undefined=True)


def constant_sample(tensor) -> np.ndarray | None:
    """A constant tensor's values (no sample axis), or None for an activation."""
    return None if tensor is None or tensor.data is None else np.asarray(tensor.data).reshape(tensor.shape)


def parameter_groups(n: int, params: list[np.ndarray]):
    """Samples grouped by equal parameter values: [(sample indices, [one sample of each param])].

    Parameter inputs carry a sample axis of 1 (constant or computed once) or n.
    """
    if all(p.shape[0] == 1 for p in params):
        return [(np.arange(n), [p[0] for p in params])]
    groups: dict[tuple, tuple[list, list]] = {}
    for s in range(n):
        values = [p[s if p.shape[0] > 1 else 0] for p in params]
        key = tuple(v.tobytes() for v in values)
        groups.setdefault(key, (values, []))[1].append(s)
    return [(np.asarray(samples), values) for values, samples in groups.values()]


def gather_flat(x: np.ndarray, read_map: np.ndarray, out_shape, fill=None) -> np.ndarray:
    """out[s].flat[i] = x[s].flat[read_map[i]]; where read_map is -1, ``fill``."""
    n = x.shape[0]
    flat = x.reshape(n, -1)
    if fill is None:
        y = flat[:, read_map]
    else:
        fill = np.asarray(fill, dtype=x.dtype)
        y = np.where(read_map < 0, fill, flat[:, np.maximum(read_map, 0)]) if flat.shape[1] else \
            np.full((n, read_map.size), fill, dtype=x.dtype)
    return y.reshape((n,) + tuple(out_shape))


def apply_read_maps(kernel, x: np.ndarray, params: list[np.ndarray], build, out_shape, fill=None):
    """Eval of a map-driven kernel: the prepared map if its parameters are constant, otherwise
    one map per distinct parameter sample (a Refusal becomes an InvokeError)."""
    if kernel.params.read_map is not None:
        return gather_flat(x, kernel.params.read_map, out_shape, fill)
    n = max([x.shape[0]] + [p.shape[0] for p in params])
    x = np.broadcast_to(x, (n,) + x.shape[1:])
    y = np.empty((n,) + tuple(out_shape), dtype=x.dtype)
    for samples, values in parameter_groups(n, params):
        try:
            read_map = build(*values)
        except Refusal as r:
            raise_at_run(kernel.location, r)
        y[samples] = gather_flat(x[samples], read_map, out_shape, fill)
    return y


def last_writes(out_positions: np.ndarray, in_positions: np.ndarray, out_size: int) -> np.ndarray:
    """The read map of a loop that writes out[out_positions[k]] = in[in_positions[k]] in order k:
    the last write to a position wins; -1 where nothing is written."""
    read_map = np.full(out_size, -1, dtype=np.int64)
    if out_positions.size:
        rev_out, rev_in = out_positions[::-1], in_positions[::-1]
        unique, first = np.unique(rev_out, return_index=True)
        read_map[unique] = rev_in[first]
    return read_map


def expand_depth(pixel_map: np.ndarray, depth: int) -> np.ndarray:
    """A map over pixels (-1 = fill) widened to the ``depth`` elements each pixel holds."""
    d = np.arange(depth, dtype=np.int64)
    return np.where(pixel_map[:, None] < 0, -1, pixel_map[:, None] * depth + d).reshape(-1)


def check_reads_inside(read_map: np.ndarray, size: int, what: str):
    valid = read_map[read_map >= 0] if read_map.size else read_map
    if valid.size and valid.max() >= size:
        raise Refusal(f"{what} reads element {int(valid.max())} of an input of {size}", undefined=True)
    if read_map.size and read_map.min() < -1:
        raise Refusal(f"{what} reads element {int(read_map.min())} of the input", undefined=True)


def same_type(ctx, a, b, what_a="input", what_b="output"):
    ctx.check(a.type_name == b.type_name,
              f"{what_a} type {a.type_name} differs from {what_b} type {b.type_name} (TF_LITE_ENSURE_TYPES_EQ)")


def describe_params(params) -> dict:
    out = {}
    for k, v in asdict(params).items():
        if isinstance(v, np.ndarray):
            v = v.tolist() if v.size <= 64 else f"array of {v.size} (shape {list(v.shape)})"
        out[k] = v
    return out


class _MapKernel(OpKernel):
    def describe(self):
        return describe_params(self.params)


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


class _SpaceBatch(_MapKernel):
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
        same_type(ctx, x, out)
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
            try:
                read_map = self.build(block_c, pads_c)
            except Refusal as r:
                refuse_at_load(ctx, r)
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
        same_type(ctx, x, out)
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


# ---------------------------------------------------------------------------- BROADCAST_ARGS

def broadcast_args(shape1: np.ndarray, shape2: np.ndarray, out_len: int) -> np.ndarray:
    """reference_ops::BroadcastArgs: shapes aligned at the end, missing dims read as 1; the values
    pass through C ``int`` (an int64 value keeps its low 32 bits). Mismatches abort (CHECK_EQ)."""
    s1, s2 = wrap_int32(shape1.reshape(-1)), wrap_int32(shape2.reshape(-1))
    out = np.empty(out_len, dtype=np.int64)
    for i in range(out_len):  # i counts from the end
        a = int(s1[s1.size - 1 - i]) if i < s1.size else 1
        b = int(s2[s2.size - 1 - i]) if i < s2.size else 1
        if a == 1:
            out[out_len - 1 - i] = b
        elif b == 1:
            out[out_len - 1 - i] = a
        else:
            if a != b:
                raise Refusal(f"shapes {s1.tolist()} and {s2.tolist()} do not broadcast ({a} vs {b}); "
                              "TFLM aborts (TFLITE_CHECK_EQ)", undefined=False)
            out[out_len - 1 - i] = a
    return out


@dataclass(frozen=True)
class BroadcastArgsParams:
    output: np.ndarray | None  # the result when both shapes are constant


@register("BROADCAST_ARGS")
class BroadcastArgs(OpKernel):
    """broadcast_args.cc BroadcastArgsPrepare; reference/broadcast_args.h."""

    supported_types = "int32, int64"
    notes = ("values pass through C `int`; shapes that do not broadcast abort TFLM: refused at load if constant, "
             "an `InvokeError` at run if computed")

    def prepare(self, ctx):
        ctx.check_io_counts(2)
        s1, s2 = ctx.require_input(0, "shape1"), ctx.require_input(1, "shape2")
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        ctx.check(s1.type_name in ("INT32", "INT64"), f"shape1 type {s1.type_name} is not INT32 or INT64", s1)
        ctx.check(s2.type_name == s1.type_name, f"shape2 type {s2.type_name} differs from shape1 {s1.type_name}", s2)
        ctx.check(out.type_name == s1.type_name, f"output type {out.type_name} differs from shape1 {s1.type_name}", out)
        for t, role in ((s1, "shape1"), (s2, "shape2"), (out, "output")):
            ctx.check(len(t.shape) == 1, f"{role} has rank {len(t.shape)}, must be 1", t)
        c1, c2 = constant_sample(s1), constant_sample(s2)
        value = None
        if c1 is not None and c2 is not None:
            try:
                value = broadcast_args(c1, c2, out.size).astype(out.dtype)
            except Refusal as r:
                refuse_at_load(ctx, r)
        self.params = BroadcastArgsParams(value)

    def eval(self, inputs):
        if self.params.output is not None:
            return [self.params.output[None]]
        s1, s2 = inputs
        n = max(s1.shape[0], s2.shape[0])
        y = np.empty((n, self.out_tensor.size), dtype=self.out_tensor.dtype)
        for samples, (a, b) in parameter_groups(n, [s1, s2]):
            try:
                y[samples] = broadcast_args(a, b, self.out_tensor.size)
            except Refusal as r:
                raise_at_run(self.location, r)
        return [y]

    def describe(self):
        return {"output": None if self.params.output is None else self.params.output.tolist()}


# ---------------------------------------------------------------------------- BROADCAST_TO

@dataclass(frozen=True)
class BroadcastToParams:
    shape: tuple  # the (constant) shape input, as TFLM reads it (int64 values cast to int32)


@register("BROADCAST_TO")
class BroadcastTo(OpKernel):
    """broadcast_to.cc BroadcastToPrepare / ValidateOutputTensor; reference/broadcast_to.h
    (BroadcastTo<5>, numpy's broadcast once the shapes are validated)."""

    supported_types = "every type with a byte size (not int4)"
    notes = "constant int32/int64 shape"

    def prepare(self, ctx):
        ctx.check_io_counts(2)
        x, shape_t = ctx.require_input(0, "input"), ctx.require_input(1, "shape")
        out = ctx.output(0)
        self.out_tensor = out
        ctx.check(len(x.shape) <= BROADCAST_TO_MAX_RANK, "BroadcastTo only supports 1-5D tensor.", x)
        ctx.check(shape_t.type_name in ("INT32", "INT64"), f"shape type {shape_t.type_name} is not INT32 or INT64",
                  shape_t)
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output type {out.type_name}")
        ctx.check(x.type_name != "STRING", "string input")
        require_constant(ctx, shape_t, "shape")
        ctx.check(len(shape_t.shape) == 1, f"shape has rank {len(shape_t.shape)}, must be 1", shape_t)
        in_rank, out_rank = len(x.shape), len(out.shape)
        ctx.check(out_rank == shape_t.shape[0], "Output must match with the expected shape dimension.", out)
        ctx.check(in_rank <= out_rank, "Output shape must be broadcastable from input shape.", out)
        ctx.check(out_rank <= BROADCAST_TO_MAX_RANK, "BroadcastTo only supports 1-5D tensor.", out)
        values = wrap_int32(np.asarray(shape_t.data).reshape(-1))
        extend = out_rank - in_rank
        for i, d in enumerate(x.shape):
            ctx.check(d == 1 or d == values[extend + i], "Output shape must be broadcastable from input shape.", x)
        for i, d in enumerate(out.shape):
            ctx.check(d == values[i], f"output dim {i} is {d}, the shape input says {int(values[i])}", out)
        expect_types(ctx, x, BROADCAST_TO_TYPES, "input")
        self.params = BroadcastToParams(tuple(int(v) for v in values))

    def eval(self, inputs):
        x = inputs[0]
        n = x.shape[0]
        shape = (n,) + tuple(self.out_tensor.shape)
        # Leading 1s for the missing dims, then numpy's broadcast (what BroadcastImpl's copies do).
        x = x.reshape((n,) + (1,) * (len(shape) - x.ndim) + x.shape[1:])
        return [np.ascontiguousarray(np.broadcast_to(x, shape))]

    def describe(self):
        return asdict(self.params)


# ---------------------------------------------------------------------------- FILL

@register("FILL")
class Fill(OpKernel):
    """fill.cc FillPrepare (EnsureEq) / FillEval; reference/fill.h."""

    supported_types = "int8, int32, float32 (int8/16/32/64 dims)"
    notes = "constant dims; the value is copied raw (no requantization)"

    def prepare(self, ctx):
        dims = ctx.require_input(0, "dims")
        value = ctx.require_input(1, "value")
        out = ctx.output(0)
        self.out_tensor = out
        ctx.check(len(value.shape) == 0, f"NumDimensions(value) is {len(value.shape)}, must be 0", value)
        ctx.check(value.type_name == out.type_name,
                  f"value type {value.type_name} differs from output type {out.type_name}", value)
        require_constant(ctx, dims, "dims")
        ctx.check(len(dims.shape) == 1, f"NumDimensions(dims) is {len(dims.shape)}, must be 1", dims)
        ctx.check(dims.shape[0] == len(out.shape),
                  f"dims has {dims.shape[0]} values for a rank-{len(out.shape)} output", dims)
        ctx.check(dims.type_name in FILL_DIMS_TYPES, f"cannot compare int array to tensor of type {dims.type_name}",
                  dims)
        values = [int(v) for v in np.asarray(dims.data).reshape(-1)]
        for i, (d, v) in enumerate(zip(out.shape, values)):
            ctx.check(d == v, f"output dim {i} is {d}, dims says {v}", dims)
        expect_types(ctx, value, FILL_VALUE_TYPES, "value")

    def eval(self, inputs):
        value = inputs[1]
        n = value.shape[0]
        shape = (n,) + tuple(self.out_tensor.shape)
        return [np.ascontiguousarray(np.broadcast_to(value.reshape((n,) + (1,) * (len(shape) - 1)), shape))]


# ---------------------------------------------------------------------------- SHAPE

@register("SHAPE")
class Shape(OpKernel):
    """shape.cc ShapePrepare / ShapeEval (ExtractShape writes rank int32 values)."""

    supported_types = "any input → int32"
    notes = ""

    def prepare(self, ctx):
        ctx.check_io_counts(1)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        self.out_tensor = out
        expect_types(ctx, out, ("INT32",), "output")
        rank = len(x.shape)
        if out.size != rank:
            ctx.unsupported(f"output holds {out.size} values; TFLM writes the input's rank, {rank} "
                            f"({'past its end' if out.size < rank else 'leaving the rest unwritten'})", out)
        self.value = np.asarray(x.shape, dtype=np.int32).reshape(out.shape)

    def eval(self, inputs):
        return [self.value[None]]

    def describe(self):
        return {"shape": self.value.reshape(-1).tolist()}


# ---------------------------------------------------------------------------- SLICE

@dataclass(frozen=True)
class SliceParams:
    """tflite::SliceParams as SliceEval fills it (5 entries, leading dims begin 0 size 1)."""

    begin: tuple | None  # None: computed per run
    size: tuple | None
    read_map: np.ndarray | None = field(default=None, repr=False)


def slice_map(in_shape, out_size: int, begin_sample: np.ndarray, size_sample: np.ndarray):
    """SliceEval + reference_ops::Slice: (begin, size, read map)."""
    rank = len(in_shape)
    ext = (1,) * (SLICE_MAX_RANK - rank) + tuple(in_shape)
    begin = [0] * SLICE_MAX_RANK
    size = [1] * SLICE_MAX_RANK
    offset = SLICE_MAX_RANK - rank
    b_vals = wrap_int32(begin_sample.reshape(-1)[:rank])  # int32_t begins[] / sizes[]
    s_vals = wrap_int32(size_sample.reshape(-1)[:rank])
    for i in range(rank):
        begin[offset + i], size[offset + i] = int(b_vals[i]), int(s_vals[i])
    start = begin
    stop = [ext[i] if size[i] == -1 else begin[i] + size[i] for i in range(SLICE_MAX_RANK)]
    check_int32("begin + size", stop)
    counts = [max(0, e - s) for s, e in zip(start, stop)]
    writes = int(np.prod(counts, dtype=np.int64))
    if writes != out_size:
        raise Refusal(f"begin {b_vals.tolist()} and size {s_vals.tolist()} write {writes} elements into an output "
                      f"of {out_size} ({'past its end' if writes > out_size else 'leaving the rest unwritten'})",
                      undefined=True)
    # Offset(ext_shape, i0..i4): flat addressing, each index walked from start to stop.
    strides = [int(np.prod(ext[i + 1:], dtype=np.int64)) for i in range(SLICE_MAX_RANK)]
    read_map = np.zeros(tuple(counts), dtype=np.int64)
    for i in range(SLICE_MAX_RANK):
        axis = [1] * SLICE_MAX_RANK
        axis[i] = counts[i]
        read_map = read_map + (np.arange(start[i], stop[i], dtype=np.int64) * strides[i]).reshape(axis)
    read_map = read_map.reshape(-1)
    if read_map.size and (read_map.min() < 0 or read_map.max() >= int(np.prod(ext, dtype=np.int64))):
        raise Refusal(f"begin {b_vals.tolist()} and size {s_vals.tolist()} read outside the input "
                      f"{list(in_shape)}", undefined=True)
    return tuple(begin), tuple(size), read_map


@register("SLICE")
class Slice(_MapKernel):
    """slice.cc SlicePrepare / SliceEval; reference/slice.h (the SliceParams overload).

    TFLM validates nothing here (its Prepare only DCHECKs); what it leaves undefined — begin/size
    of other types than each other, too few of them, reads outside the input, a write count
    that differs from the output's — is refused.
    """

    supported_types = "int8, int16, int32, float32, bool (int32/int64 begin and size)"
    notes = ("begin/size constant or computed; size -1; TFLM addresses the input flat, so a begin past the end of "
             "a row reads the next row (mirrored) — a read outside the tensor is refused")

    def prepare(self, ctx):
        ctx.check_io_counts(3)
        x = ctx.require_input(0, "input")
        begin_t, size_t = ctx.require_input(1, "begin"), ctx.require_input(2, "size")
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        self.in_shape = tuple(x.shape)
        rank = len(x.shape)
        if rank > SLICE_MAX_RANK:
            ctx.unsupported(f"input rank {rank} exceeds {SLICE_MAX_RANK} (kMaxDim)", x)
        expect_types(ctx, begin_t, ("INT32", "INT64"), "begin")
        if size_t.type_name != begin_t.type_name:
            ctx.unsupported(f"size type {size_t.type_name} differs from begin type {begin_t.type_name} "
                            "(TFLM reads both as begin's type)", size_t)
        for t, role in ((begin_t, "begin"), (size_t, "size")):
            if t.size < rank:
                ctx.unsupported(f"{role} has {t.size} values; TFLM reads {rank} (the input rank)", t)
        expect_types(ctx, x, SLICE_TYPES, "input")
        if out.type_name != x.type_name:
            ctx.unsupported(f"output type {out.type_name} differs from input type {x.type_name}", out)
        b, s = constant_sample(begin_t), constant_sample(size_t)
        params = SliceParams(None, None)
        if b is not None and s is not None:
            try:
                params = SliceParams(*self.build(b, s))
            except Refusal as r:
                refuse_at_load(ctx, r)
        self.params = params

    def build(self, begin_sample, size_sample):
        return slice_map(self.in_shape, self.out_tensor.size, begin_sample, size_sample)

    def eval(self, inputs):
        x, begin, size = inputs
        return [apply_read_maps(self, x, [begin, size], lambda b, s: self.build(b, s)[2], self.out_tensor.shape)]


# ---------------------------------------------------------------------------- MIRROR_PAD

@dataclass(frozen=True)
class OpDataMirrorPad:
    input_dims: int
    output_size: int
    offset: int  # 1 for REFLECT, 0 for SYMMETRIC
    paddings: tuple | None  # ((left, right), ...) as read (None: computed per run)
    read_map: np.ndarray | None = field(default=None, repr=False)


def get_input_dimension(padded, left_pad: int, right_pad: int, input_dim_size: int, offset: int):
    """mirror_pad.cc GetInputDimension, on an int64 array of padded coordinates."""
    padded = np.asarray(padded, np.int64)
    original_left = left_pad + offset - 1
    from_left = original_left - np.minimum(padded, original_left - offset)
    p = padded - left_pad
    original_right = input_dim_size - (1 + offset)
    from_right = original_right - np.minimum(p - input_dim_size, original_right)
    return np.where(padded < left_pad, from_left, np.where(p >= input_dim_size, from_right, p))


def mirror_pad_map(in_shape, out_shape, offset: int, padding_sample: np.ndarray, padding_type: str):
    """MirrorPad's read map: per output element the flat index GetFlatIndex computes."""
    rank = len(in_shape)
    if padding_type in ("INT32", "INT64"):
        pads = wrap_int32(padding_sample.reshape(-1)[: 2 * rank]).reshape(rank, 2)
    else:
        # GetPadding is skipped for other types: left_pad / right_pad stay 0.
        pads = np.zeros((rank, 2), dtype=np.int64)
    in_strides = [int(np.prod(in_shape[i + 1:], dtype=np.int64)) for i in range(rank)]
    read_map = np.zeros(tuple(out_shape), dtype=np.int64)
    for i in range(rank):
        idx = get_input_dimension(np.arange(out_shape[i]), int(pads[i, 0]), int(pads[i, 1]), in_shape[i], offset)
        check_int32("the mirrored index", idx, idx * in_strides[i])
        axis = [1] * rank
        axis[i] = out_shape[i]
        read_map = read_map + (idx * in_strides[i]).reshape(axis)
    read_map = read_map.reshape(-1)
    size = int(np.prod(in_shape, dtype=np.int64))
    if read_map.size and (read_map.min() < 0 or read_map.max() >= size):
        raise Refusal(f"paddings {pads.tolist()} make TFLM read outside the input {list(in_shape)} (a pad "
                      "wider than the input allows)", undefined=True)
    return tuple(map(tuple, pads.tolist())), read_map


@register("MIRROR_PAD")
class MirrorPad(_MapKernel):
    """mirror_pad.cc MirrorPadPrepare / MirrorPadEval (GetFlatIndex / GetInputDimension)."""

    supported_types = "int8, float32 (int32/int64 paddings; other types read as 0)"
    notes = ("REFLECT, SYMMETRIC; paddings constant or computed; a right pad wider than the input clamps as TFLM's "
             "does; a left one that would read outside the input is refused")

    def prepare(self, ctx):
        x = ctx.require_input(0, "input")
        pad_t = ctx.require_input(1, "paddings")
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        ctx.check(len(pad_t.shape) == 2, f"NumDimensions(padding_matrix) is {len(pad_t.shape)}, must be 2", pad_t)
        rank = len(x.shape)
        ctx.check(pad_t.shape[0] == rank, f"paddings has {pad_t.shape[0]} rows for a rank-{rank} input", pad_t)
        # offset = mode != kTfLiteMirrorPaddingReflect ? 0 : 1. MirrorPadMode REFLECT is 0; an unknown
        # mode, or no options table (params left zero: kTfLiteMirrorPaddingUnknown), pads symmetrically.
        has_options = ctx.op.options_type not in (None, "NONE")
        offset = 1 if has_options and ctx.options.get("mode", 0) == 0 else 0
        self.padding_type = pad_t.type_name
        # Two scratch buffers of input_dims ints: output then input dims_num_elements.
        self.scratch_bytes += [4 * rank, 4 * rank]
        expect_types(ctx, out, MIRROR_PAD_TYPES, "output")
        if x.type_name != out.type_name:
            ctx.unsupported(f"input type {x.type_name} differs from output type {out.type_name}", x)
        if len(out.shape) != rank:
            ctx.unsupported(f"output rank {len(out.shape)} differs from input rank {rank}", out)
        if self.padding_type in ("INT32", "INT64") and pad_t.shape[1] < 2:
            ctx.unsupported(f"paddings shape {list(pad_t.shape)}: TFLM reads two values per row", pad_t)
        self._in_shape = tuple(x.shape)
        self._offset = offset
        pads_c = constant_sample(pad_t)
        shown, read_map = None, None
        if pads_c is not None or self.padding_type not in ("INT32", "INT64"):
            try:
                shown, read_map = self.build(pads_c if pads_c is not None else np.zeros(0))
            except Refusal as r:
                refuse_at_load(ctx, r)
        self.params = OpDataMirrorPad(rank, out.size, offset, shown, read_map)

    def build(self, padding_sample):
        return mirror_pad_map(self._in_shape, tuple(self.out_tensor.shape), self._offset, padding_sample,
                              self.padding_type)

    def eval(self, inputs):
        x, pads = inputs
        return [apply_read_maps(self, x, [pads], lambda p: self.build(p)[1], self.out_tensor.shape)]


# ---------------------------------------------------------------------------- REVERSE_V2

def reverse_axes(axis_sample: np.ndarray, rank: int) -> tuple[int, ...]:
    """ReverseV2Eval: normalise, range-check, sort, require contiguous axes."""
    axes = [int(a) for a in np.asarray(axis_sample).reshape(-1)]
    for i, a in enumerate(axes):
        if a < 0:
            axes[i] = a + rank
        if not 0 <= axes[i] < rank:
            raise Refusal(f"axis {a} is out of range for a rank-{rank} input", undefined=False)
    axes.sort()
    if any(axes[i - 1] + 1 != axes[i] for i in range(1, len(axes))):
        raise Refusal(f"axes {sorted(axes)} are not contiguous (\"Non-contiguous `axes` not supported\")",
                      undefined=False)
    return tuple(axes)


@dataclass(frozen=True)
class ReverseParams:
    axes: tuple | None  # sorted, non-negative (None: computed per run)


@register("REVERSE_V2")
class ReverseV2(OpKernel):
    """reverse.cc ReverseV2Prepare / ReverseV2Eval; reference/reverse.h (reversing the contiguous
    block of axes min..max as one flattened dimension = reversing each of them)."""

    supported_types = "int8, uint8, int16, int32, int64, float32, bool"
    notes = ("contiguous axes, constant or computed (others: refused at load / `InvokeError` at run, as TFLM's "
             "Invoke fails)")

    def prepare(self, ctx):
        ctx.check_io_counts(2)
        x = ctx.require_input(0, "input")
        axis_t = ctx.require_input(1, "axis")
        out = ctx.output(0)
        self.out_tensor = out
        self.location = ctx.location()
        ctx.check(len(axis_t.shape) == 1, f"NumDimensions(axis) is {len(axis_t.shape)}, must be 1", axis_t)
        rank = len(x.shape)
        ctx.check(rank <= MAX_SMALL_RANK, f"input rank {rank} exceeds {MAX_SMALL_RANK}", x)
        ctx.check(rank >= axis_t.size, f"{axis_t.size} axes for a rank-{rank} input", axis_t)
        ctx.check(x.type_name in REVERSE_TYPES, f"Type '{x.type_name}' is not supported by reverse.", x)
        ctx.check(axis_t.type_name == "INT32", f"Axis Type '{axis_t.type_name}' is not supported by reverse.", axis_t)
        same_type(ctx, x, out)
        ctx.check(axis_t.size > 0, "the axis tensor is empty: TFLM's Reverse then reads axes[-1] "
                  "(undefined behaviour; the wheel crashes)", axis_t)
        if out.size != x.size:
            ctx.unsupported(f"output holds {out.size} elements; TFLM writes the input's {x.size}", out)
        self.rank = rank
        axes = None
        c = constant_sample(axis_t)
        if c is not None:
            try:
                axes = reverse_axes(c, rank)
            except Refusal as r:
                refuse_at_load(ctx, r, axis_t)
        self.params = ReverseParams(axes)

    def eval(self, inputs):
        x, axis = inputs
        out_shape = tuple(self.out_tensor.shape)
        if self.params.axes is not None:
            y = np.flip(x, [a + 1 for a in self.params.axes])
            return [np.ascontiguousarray(y).reshape((x.shape[0],) + out_shape)]
        n = max(x.shape[0], axis.shape[0])
        x = np.broadcast_to(x, (n,) + x.shape[1:])
        y = np.empty((n,) + out_shape, dtype=x.dtype)
        for samples, (a,) in parameter_groups(n, [axis]):
            try:
                axes = reverse_axes(a, self.rank)
            except Refusal as r:
                raise_at_run(self.location, r)
            y[samples] = np.flip(x[samples], [v + 1 for v in axes]).reshape((len(samples),) + out_shape)
        return [y]

    def describe(self):
        return asdict(self.params)


# ---------------------------------------------------------------------------- DYNAMIC_UPDATE_SLICE

def clamped_start_indices(indices_sample: np.ndarray, operand_shape, update_shape) -> tuple[int, ...]:
    """CalculateClampedStartIndices: min(max(0, index), operand_dim - update_dim), in int64."""
    raw = np.asarray(indices_sample).astype(np.int64).reshape(-1)
    return tuple(int(min(max(0, int(raw[i])), operand_shape[i] - update_shape[i]))
                 for i in range(len(operand_shape)))


@dataclass(frozen=True)
class DynamicUpdateSliceParams:
    start: tuple | None  # clamped start indices (None: computed per run)
    whole: bool  # update has the operand's element count: the output is the update's bytes


@register("DYNAMIC_UPDATE_SLICE")
class DynamicUpdateSlice(OpKernel):
    """dynamic_update_slice.cc Prepare / Eval (EvalImpl, UpdateSliceRecursive)."""

    supported_types = "int8, int16, int32, float32 (int32/int64 start indices)"
    notes = "start indices clamped as TFLM clamps them, constant or computed"

    def prepare(self, ctx):
        ctx.check_io_counts(3)
        operand = ctx.require_input(0, "operand")
        update = ctx.require_input(1, "update")
        idx_t = ctx.require_input(2, "start_indices")
        out = ctx.output(0)
        self.out_tensor = out
        same_type(ctx, operand, update, "operand", "update")
        ctx.check(idx_t.type_name in ("INT32", "INT64"),
                  "start_indices->type == kTfLiteInt32 || start_indices->type == kTfLiteInt64 was not true", idx_t)
        ctx.check(len(idx_t.shape) == 1, f"NumDimensions(start_indices) is {len(idx_t.shape)}, must be 1", idx_t)
        rank = len(operand.shape)
        ctx.check(idx_t.shape[0] == rank, f"start_indices has {idx_t.shape[0]} values for a rank-{rank} operand",
                  idx_t)
        ctx.check(len(update.shape) == rank, f"update rank {len(update.shape)} differs from operand rank {rank}",
                  update)
        for i in range(rank):
            ctx.check(update.shape[i] <= operand.shape[i],
                      f"SizeOfDimension(update, {i}) = {update.shape[i]} > operand's {operand.shape[i]}", update)
        expect_types(ctx, operand, DYNAMIC_UPDATE_SLICE_TYPES, "operand")
        if rank > MAX_SMALL_RANK:
            ctx.unsupported(f"rank {rank} exceeds the {MAX_SMALL_RANK} entries of TFLM's index arrays", operand)
        if out.type_name != operand.type_name or out.size != operand.size:
            ctx.unsupported(f"output {out.type_name}{list(out.shape)} is not the operand's type and size "
                            f"({operand.type_name}, {operand.size} elements): TFLM copies the operand's bytes", out)
        self.operand_shape, self.update_shape = tuple(operand.shape), tuple(update.shape)
        whole = operand.size == update.size
        c = constant_sample(idx_t)
        start = clamped_start_indices(c, self.operand_shape, self.update_shape) if c is not None else None
        self.params = DynamicUpdateSliceParams(start, whole)

    def eval(self, inputs):
        operand, update, indices = inputs
        n = max(operand.shape[0], update.shape[0], indices.shape[0])
        out_shape = (n,) + tuple(self.out_tensor.shape)
        if self.params.whole:
            return [np.ascontiguousarray(np.broadcast_to(update, (n,) + update.shape[1:])).reshape(out_shape)]
        y = np.array(np.broadcast_to(operand, (n,) + operand.shape[1:]))
        if update.size == 0:
            return [y.reshape(out_shape)]
        update = np.broadcast_to(update, (n,) + update.shape[1:])
        if self.params.start is not None:
            groups = [(np.arange(n), self.params.start)]
        else:
            groups = [(samples, clamped_start_indices(v, self.operand_shape, self.update_shape))
                      for samples, (v,) in parameter_groups(n, [indices])]
        for samples, start in groups:
            block = tuple(slice(s, s + u) for s, u in zip(start, self.update_shape))
            y[(samples,) + block] = update[samples]
        return [y.reshape(out_shape)]

    def describe(self):
        return asdict(self.params)
