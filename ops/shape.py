"""Data-movement operators: TFLM's reshape.cc/reshape_common.cc, squeeze.cc, expand_dims.cc,
transpose.cc/transpose_common.cc, concatenation.cc, strided_slice.cc/strided_slice_common.cc
(with reference/strided_slice.h and strided_slice_logic.h), split.cc, split_v.cc, pack.cc and
unpack.cc.

None of them does arithmetic: the values are copied bit for bit, so each is exact for every
element type TFLM's kernel accepts. What matters is mirroring TFLM's validation and its index
logic (STRIDED_SLICE especially).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .params import params_as_dict
from .parse_checks import check_parsed_options, converted_activation
from .registry import OpKernel, PrepareContext, expect_types, register

# Element types each kernel's Eval switch handles (anything else makes TFLM's Invoke fail).
ANY_COPYABLE = ("FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "BOOL", "INT16", "INT8", "UINT16",
                "UINT32", "UINT64", "FLOAT64", "COMPLEX64", "COMPLEX128", "INT4")
EXPAND_DIMS_TYPES = ("FLOAT32", "INT16", "INT8")
TRANSPOSE_TYPES = ("FLOAT32", "INT8", "INT16")
CONCATENATION_TYPES = ("FLOAT32", "INT8", "INT16", "INT32", "INT64", "BOOL")
STRIDED_SLICE_TYPES = ("FLOAT32", "INT8", "INT16", "INT32", "BOOL")
SPLIT_TYPES = ("FLOAT32", "INT8", "INT16", "INT32")
PACK_TYPES = ("FLOAT32", "INT8", "INT16", "INT32", "INT64")
UNPACK_TYPES = ("FLOAT32", "INT32", "INT16", "INT8")

CONCATENATION_MAX_INPUTS = 10  # kMaxInputNum in concatenation.cc
STRIDED_SLICE_MAX_RANK = 4  # kMaxDim in strided_slice_common.cc
TRANSPOSE_MAX_RANK = 5
SQUEEZE_MAX_RANK = 8
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# ---------------------------------------------------------------------------- shared helpers

def int32_words(sample: np.ndarray) -> np.ndarray:
    """Values read as int32 words, as GetTensorData<int32_t> reads a tensor whatever its type (an
    int64 tensor gives low word, high word, ...), widened to int64."""
    data = np.ascontiguousarray(sample)
    if data.dtype == np.int32:
        return data.reshape(-1).astype(np.int64)
    raw = data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
    return np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i4").astype(np.int64)


def int32_view(tensor) -> np.ndarray:
    """A constant tensor's bytes read as int32, as TFLM's GetTensorData<int32_t> does.

    TFLM does not check the type of paddings/begin/end/strides/perm tensors; an int64 tensor is
    reinterpreted word by word, and so it is here.
    """
    return int32_words(tensor.data).astype(np.int32)


def require_constant(ctx: PrepareContext, tensor, role: str):
    if tensor.data is None:
        ctx.fail(f"Non-constant >{role}< tensor is not supported (TFLM needs it in the flatbuffer)", tensor)


def common_sample_count(arrays) -> int:
    """N for a list of eval inputs: constants carry a sample axis of 1, activations of N."""
    return max(a.shape[0] for a in arrays)


def with_samples(a: np.ndarray, n: int) -> np.ndarray:
    return a if a.shape[0] == n else np.broadcast_to(a, (n,) + a.shape[1:])


def row_major_strides(shape) -> list[int]:
    """The flat stride of each dimension of a row-major (C order) shape."""
    return [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]


def flat_offsets(axis_offsets) -> np.ndarray:
    """The flat input offsets a kernel reads walking its output in C order, where each output axis k
    adds ``axis_offsets[k][i_k]`` (an index times the input stride it moves along): the outer sum,
    int64, flattened. The output's shape is the lengths of ``axis_offsets``."""
    rank = len(axis_offsets)
    offsets = np.zeros(tuple(len(o) for o in axis_offsets), dtype=np.int64)
    for k, o in enumerate(axis_offsets):
        axis_shape = [1] * rank
        axis_shape[k] = len(o)
        offsets = offsets + np.asarray(o, dtype=np.int64).reshape(axis_shape)
    return offsets.reshape(-1)


def check_types_equal(ctx: PrepareContext, a, b, what_a="input", what_b="output"):
    ctx.check(a.type_name == b.type_name,
              f"{what_a} type {a.type_name} differs from {what_b} type {b.type_name} "
              f"(TF_LITE_ENSURE_TYPES_EQ)")


# ---------------------------------------------------------------------------- prepared parameters
# TFLM keeps most of these in the builtin options or recomputes them in Eval; here Prepare fixes
# them once, with TFLM's names where a params struct (types.h) has them.

@dataclass(frozen=True)
class ReshapeParams:
    output_shape: tuple[int, ...]  # the output tensor's shape (Eval is a memcpy)


@dataclass(frozen=True)
class SqueezeParams:
    squeeze_dims: tuple[int, ...]  # the input dims removed (non-negative; all size-1 dims when unspecified)


@dataclass(frozen=True)
class ExpandDimsParams:
    axis: int                      # where the size-1 dim is inserted (non-negative)


@dataclass(frozen=True)
class TransposeParams:
    """types.h TransposeParams."""
    perm: tuple[int, ...]          # output dim k is input dim perm[k]


@dataclass(frozen=True)
class ConcatenationParams:
    """types.h ConcatenationParams (the int8 inputs share the output's scale: no rescaling)."""
    axis: int                      # non-negative
    inputs_count: int


@dataclass(frozen=True)
class StridedSliceParams:
    """types.h StridedSliceParams as the op gives them, plus the element indices Eval's loops
    visit per dim (TFLM's StartForAxis / StopForAxis, computed once here)."""
    start_indices: tuple[int, ...]  # the begin tensor
    stop_indices: tuple[int, ...]   # the end tensor
    strides: tuple[int, ...]
    begin_mask: int
    end_mask: int
    shrink_axis_mask: int
    indices: tuple[np.ndarray, ...]  # per input dim: the indices read, in order (read-only)
    ignored_by_tflm: dict = field(default_factory=dict)  # ellipsis_mask, new_axis_mask, offset: TFLM forces 0


@dataclass(frozen=True)
class SplitParams:
    """split.cc / split_v.cc have no OpData: the axis and the output sizes along it."""
    axis: int                      # non-negative
    sizes: tuple[int, ...]         # each output's extent along the axis (from the output tensors)


@dataclass(frozen=True)
class PackParams:
    """types.h PackParams."""
    axis: int                      # non-negative, in the output
    inputs_count: int              # values_count
    input_shape: tuple[int, ...]   # each input read as the output shape without the axis


@dataclass(frozen=True)
class UnpackParams:
    """types.h UnpackParams."""
    axis: int                      # non-negative, in the input
    num_split: int                 # num: the number of outputs


class _CopyKernel(OpKernel):
    """An op whose single output is its single activation input, reshaped."""

    def eval(self, inputs):
        x = inputs[0]
        return [x.reshape((x.shape[0],) + tuple(self.out_tensor.shape))]


# ---------------------------------------------------------------------------- RESHAPE

@register("RESHAPE")
class Reshape(_CopyKernel):
    """reshape_common.cc PrepareReshapeReference; Eval is a memcpy."""

    supported_types = "any type"
    notes = ""

    def prepare(self, ctx):
        check_parsed_options(ctx)
        ctx.check_io_counts((1, 2))
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        self.out_tensor = out
        if len(ctx.op.inputs) == 1 and tuple(out.shape) == (0,):
            ctx.unsupported("legacy [0]-shaped scalar output (TFLM reinterprets it as a scalar)", out)
        check_types_equal(ctx, x, out)
        expect_types(ctx, x, ANY_COPYABLE, "input")
        ctx.check(x.size == out.size,
                  f"input has {x.size} elements, output shape {list(out.shape)} has {out.size} "
                  f"(num_input_elements == num_output_elements)")
        self.params = ReshapeParams(output_shape=tuple(out.shape))

    def describe(self):
        return params_as_dict(self.params)


# ---------------------------------------------------------------------------- SQUEEZE

@register("SQUEEZE")
class Squeeze(_CopyKernel):
    """squeeze.cc SqueezePrepare / SqueezeEval (memcpy of equal byte lengths)."""

    supported_types = "any type"
    notes = ""

    def prepare(self, ctx):
        check_parsed_options(ctx)
        ctx.check_io_counts(1)
        x = ctx.require_input(0, "input")
        out = ctx.output(0)
        self.out_tensor = out
        rank = len(x.shape)
        ctx.check(rank <= SQUEEZE_MAX_RANK, f"input rank {rank} exceeds {SQUEEZE_MAX_RANK}")
        dims = list(ctx.options.get("squeeze_dims", []) or [])
        squeeze = [False] * rank
        if not dims:
            squeeze = [d == 1 for d in x.shape]
        else:
            for d in dims:
                axis = d + rank if d < 0 else d
                ctx.check(0 <= axis < rank and x.shape[axis] == 1,
                          f"squeeze dim {d} is out of range or not of size 1 for input shape {list(x.shape)}")
                squeeze[axis] = True
        kept = [s for s, q in zip(x.shape, squeeze) if not q]
        ctx.check(len(out.shape) >= len(kept) and all(o >= i for o, i in zip(out.shape, kept)),
                  f"output shape {list(out.shape)} is smaller than the squeezed input {kept}")
        expect_types(ctx, x, ANY_COPYABLE, "input")
        ctx.check(x.size * x.element_bytes == out.size * out.element_bytes,
                  f"input and output byte lengths differ ({x.size * x.element_bytes} vs "
                  f"{out.size * out.element_bytes})")
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output {out.type_name}")
        self.params = SqueezeParams(squeeze_dims=tuple(i for i, q in enumerate(squeeze) if q))

    def describe(self):
        return params_as_dict(self.params)


# ---------------------------------------------------------------------------- EXPAND_DIMS

@register("EXPAND_DIMS")
class ExpandDims(_CopyKernel):
    """expand_dims.cc ExpandDimsPrepare (VerifyTensorDim) / ExpandDimsEval."""

    supported_types = "int8, int16, float32"
    notes = ""

    def prepare(self, ctx):
        ctx.check_io_counts(2)
        x = ctx.require_input(0, "input")
        axis_t = ctx.require_input(1, "axis")
        out = ctx.output(0)
        self.out_tensor = out
        require_constant(ctx, axis_t, "axis")
        ctx.check(len(axis_t.shape) <= 1, "Axis has only one element for Expand_Dims.", axis_t)
        ctx.check(axis_t.type_name == "INT32",
                  f"Axis type {axis_t.type_name} not supported by Expand_Dims.", axis_t)
        axis = int(np.asarray(axis_t.data).reshape(-1)[0])
        rank = len(x.shape)
        if axis < 0:
            axis = rank + 1 + axis
        ctx.check(axis <= rank, f"axis {axis} exceeds the input rank {rank}")
        expected = tuple(x.shape[:axis]) + (1,) + tuple(x.shape[axis:])
        ctx.check(tuple(out.shape) == expected,
                  f"output shape {list(out.shape)} is not the input shape with a 1 inserted at "
                  f"axis {axis} ({list(expected)})")
        expect_types(ctx, x, EXPAND_DIMS_TYPES, "input")
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output {out.type_name}")
        self.params = ExpandDimsParams(axis=axis)

    def describe(self):
        return params_as_dict(self.params)


# ---------------------------------------------------------------------------- TRANSPOSE

@register("TRANSPOSE")
class Transpose(OpKernel):
    """transpose_common.cc TransposePrepare; reference/transpose.h."""

    supported_types = "int8, int16, float32"
    notes = ""

    def prepare(self, ctx):
        ctx.check_io_counts(2)
        x = ctx.require_input(0, "input")
        perm_t = ctx.require_input(1, "perm")
        out = ctx.output(0)
        self.out_tensor = out
        rank = len(x.shape)
        ctx.check(rank <= TRANSPOSE_MAX_RANK, "Transpose op only supports 1D-5D input arrays.")
        check_types_equal(ctx, x, out)
        require_constant(ctx, perm_t, "perm")
        ctx.check(len(perm_t.shape) == 1, f"perm must be 1-D, has shape {list(perm_t.shape)}", perm_t)
        ctx.check(perm_t.shape[0] == rank, f"perm has {perm_t.shape[0]} entries for a rank-{rank} input", perm_t)
        perm = [int(p) for p in int32_view(perm_t)[:rank]]
        ctx.check(all(0 <= p < rank for p in perm), "Transpose op permutations array is out of bounds.", perm_t)
        expect_types(ctx, x, TRANSPOSE_TYPES, "input")
        self.params = TransposeParams(perm=tuple(perm))
        self.gather = None  # the fast path's plan for a perm that is not a true transpose
        if sorted(perm) == list(range(rank)) and tuple(out.shape) == tuple(x.shape[p] for p in perm):
            return
        # Not a true transpose (a repeated axis, or an output shape that is not the permuted input
        # shape): TFLM still walks the output dims reading input element sum_k i_k * stride[perm[k]].
        if len(out.shape) != rank:
            ctx.unsupported(f"output rank {len(out.shape)} differs from input rank {rank}", out)
        in_strides = row_major_strides(x.shape)
        offsets = flat_offsets([np.arange(out.shape[k], dtype=np.int64) * in_strides[p] for k, p in enumerate(perm)])
        if offsets.size and offsets.max() >= x.size:
            ctx.unsupported(f"perm {perm} with output shape {list(out.shape)} reads past the input", perm_t)
        self.gather = offsets

    # A transpose whose innermost output axis is short and comes from a strided input axis (an
    # NCHW input made NHWC: 3 channels) is copied one index of that axis at a time: each copy
    # then reads runs of the input (numpy's one strided copy steps through the input by a whole
    # image per value: MobileNetV2-224's input at batch 8 1.47 -> 0.33 ms). Same bytes (data
    # movement). Tests force either way.
    SHORT_LAST_AXIS = 16

    def eval_reference(self, inputs):
        x = inputs[0]
        n = x.shape[0]
        if self.gather is not None:
            return [x.reshape(n, -1)[:, self.gather].reshape((n,) + tuple(self.out_tensor.shape))]
        return [np.ascontiguousarray(np.transpose(x, [0] + [p + 1 for p in self.params.perm]))]

    def eval(self, inputs):
        perm = self.params.perm
        if self.gather is not None or not perm or perm[-1] == len(perm) - 1 \
                or self.out_tensor.shape[-1] > self.SHORT_LAST_AXIS:
            return self.eval_reference(inputs)
        view = np.transpose(inputs[0], [0] + [p + 1 for p in perm])
        out = np.empty(view.shape, view.dtype)
        for j in range(view.shape[-1]):
            out[..., j] = view[..., j]
        return [out]

    def describe(self):
        return params_as_dict(self.params)


# ---------------------------------------------------------------------------- CONCATENATION

@register("CONCATENATION")
class Concatenation(OpKernel):
    """concatenation.cc ConcatenationPrepare; reference/concatenation.h."""

    supported_types = "int8, int16, int32, int64, float32, bool"
    notes = "int8/int16 inputs must have the output's quantization, as TFLM's Prepare requires"

    def prepare(self, ctx):
        opts = ctx.options
        x0 = ctx.require_input(0, "input 0")
        out = ctx.output(0)
        self.out_tensor = out
        # ConvertActivation turns codes past SIGN_BIT into NONE before this check sees them.
        activation = converted_activation(opts.get("fused_activation_function", 0))
        ctx.check(activation == 0, f"fused activation {activation} is not NONE (params->activation == kTfLiteActNone)")
        ctx.check(x0.type_name in CONCATENATION_TYPES,
                  f"input type {x0.type_name} is not one of {', '.join(CONCATENATION_TYPES)}", x0)
        check_types_equal(ctx, out, x0, "output", "input")
        n_inputs = len(ctx.op.inputs)
        ctx.check(n_inputs <= CONCATENATION_MAX_INPUTS,
                  f"{n_inputs} inputs is more than the {CONCATENATION_MAX_INPUTS} TFLM supports")
        out_q = out.quantization
        out_scale = out_q.scale if out_q is not None else 0.0
        out_zp = out_q.zero_point if out_q is not None else 0
        inputs = []
        for i in range(n_inputs):
            t = ctx.require_input(i, f"input {i}")
            ctx.check(t.type_name == x0.type_name,
                      f"input {i} type {t.type_name} differs from input 0 {x0.type_name}", t)
            ctx.check(len(t.shape) <= 6, f"input {i} has rank {len(t.shape)}; TFLM supports at most 6", t)
            q = t.quantization
            scale = q.scale if q is not None else 0.0
            zp = q.zero_point if q is not None else 0
            if t.type_name == "INT8":
                ctx.check(scale == out_scale,
                          f"input {i} scale {scale!r} differs from output scale {out_scale!r} "
                          "(int8 CONCATENATION does not rescale: input->params.scale == output->params.scale)", t)
                ctx.check(zp == out_zp,
                          f"input {i} zero point {zp} differs from output zero point {out_zp} "
                          "(input->params.zero_point == output->params.zero_point)", t)
            elif t.type_name == "INT16":
                ctx.check(zp == 0, f"int16 input {i} has zero point {zp} (must be 0)", t)
            inputs.append(t)
        if x0.type_name == "INT16":
            ctx.check(out_zp == 0, f"int16 output has zero point {out_zp} (must be 0)", out)
        rank = len(out.shape)
        axis = opts.get("axis", 0)
        axis = axis + rank if axis < 0 else axis
        ctx.check(0 <= axis < rank, f"axis {opts.get('axis', 0)} is out of range for output rank {rank}")
        total = 0
        for i, t in enumerate(inputs):
            same = len(t.shape) == rank and all(t.shape[d] == out.shape[d] for d in range(rank) if d != axis)
            ctx.check(same, f"input {i} shape {list(t.shape)} does not match output {list(out.shape)} "
                            f"outside axis {axis}", t)
            total += t.shape[axis]
        ctx.check(total == out.shape[axis],
                  f"inputs add up to {total} along axis {axis}, output has {out.shape[axis]}")
        self.params = ConcatenationParams(axis=axis, inputs_count=n_inputs)

    def eval(self, inputs):
        n = common_sample_count(inputs)
        parts = [with_samples(a, n) for a in inputs]
        return [np.concatenate(parts, axis=self.params.axis + 1)]

    def describe(self):
        return params_as_dict(self.params)


# ---------------------------------------------------------------------------- STRIDED_SLICE

def _clamp(v, lo, hi):
    return hi if hi < v else (lo if v < lo else v)


def _prepare_start(begin, stride, size, begin_masked):
    """strided_slice_logic.h StartForAxis (used by Prepare's output-size check)."""
    if size == 0:
        return 0
    start = begin
    if begin_masked:
        start = INT32_MIN if stride > 0 else INT32_MAX
    if start < 0:
        start += size
    return _clamp(start, 0, size) if stride > 0 else _clamp(start, -1, size - 1)


def _prepare_stop(end, stride, size, end_masked, shrink, start):
    """strided_slice_logic.h StopForAxis."""
    if size == 0:
        return 0
    if shrink:
        return start + 1
    stop = end
    if end_masked:
        stop = INT32_MAX if stride > 0 else INT32_MIN
    if stop < 0:
        stop += size
    return _clamp(stop, 0, size) if stride > 0 else _clamp(stop, -1, size - 1)


def _eval_start(begin, stride, size, begin_masked):
    """strided_slice_logic.h StridedSliceStartForAxis (used by the reference kernel's Eval)."""
    start = begin
    if start < 0:
        start += size
    start = _clamp(start, 0, size) if stride > 0 else _clamp(start, -1, size - 1)
    if begin_masked:
        start = 0 if stride > 0 else size - 1
    return start


def _eval_stop(end, stride, size, end_masked, shrink, start):
    """strided_slice_logic.h StridedSliceEndForAxis, with TFLM's offset forced to false."""
    if shrink:
        return start if start >= size else start + 1
    stop = end
    if stop < 0:
        stop += size
    stop = _clamp(stop, 0, size) if stride > 0 else _clamp(stop, -1, size - 1)
    if end_masked:
        stop = size if stride > 0 else -1
    return stop


@register("STRIDED_SLICE")
class StridedSlice(OpKernel):
    """strided_slice_common.cc StridedSlicePrepare (CheckOutputSize); reference/strided_slice.h.

    TFLM forces ellipsis_mask, new_axis_mask and offset to 0, so they are ignored here too.
    """

    supported_types = "int8, int16, int32, float32, bool"
    notes = ""

    def prepare(self, ctx):
        ctx.check_io_counts(4)
        x = ctx.require_input(0, "input")
        tensors = {role: ctx.require_input(i, role) for i, role in ((1, "begin"), (2, "end"), (3, "strides"))}
        out = ctx.output(0)
        self.out_tensor = out
        rank = len(x.shape)
        ctx.check(rank <= STRIDED_SLICE_MAX_RANK, f"input dim should not exceed 4 (input has rank {rank})")
        for role, t in tensors.items():
            require_constant(ctx, t, role)
        vals = {}
        for role, t in tensors.items():
            v = int32_view(t)
            ctx.check(v.size >= rank, f"{role} has {v.size} values for a rank-{rank} input", t)
            vals[role] = [int(e) for e in v[:rank]]
        opts = ctx.options
        begin_mask, end_mask = opts.get("begin_mask", 0), opts.get("end_mask", 0)
        shrink_mask = opts.get("shrink_axis_mask", 0)
        ignored = {k: opts.get(k, 0) for k in ("ellipsis_mask", "new_axis_mask", "offset") if opts.get(k, 0)}

        out_dims, eval_counts = [], []
        index = []
        for axis in range(rank):
            size = x.shape[axis]
            stride = vals["strides"][axis]
            ctx.check(stride != 0, "stride value has to be non-zero")
            bm, em, sh = (bool(m & (1 << axis)) for m in (begin_mask, end_mask, shrink_mask))
            # Prepare's output-size check.
            begin = _prepare_start(vals["begin"][axis], stride, size, bm)
            end = _prepare_stop(vals["end"][axis], stride, size, em, sh, begin)
            if sh:
                end = begin + 1
            dim = int(np.ceil(np.float32(end - begin) / np.float32(stride)))
            dim = max(dim, 0)
            if not sh:
                out_dims.append(dim)
            # Eval's loop bounds.
            start = _eval_start(vals["begin"][axis], stride, size, bm)
            stop = _eval_stop(vals["end"][axis], stride, size, em, sh, start)
            idx = np.arange(start, stop, stride, dtype=np.int64)
            idx.flags.writeable = False
            index.append(idx)
            eval_counts.append(idx.size)
        ctx.check(len(out.shape) == len(out_dims) and all(o == d for o, d in zip(out.shape, out_dims)),
                  f"output shape {list(out.shape)} differs from the slice shape {out_dims} TFLM computes")
        expect_types(ctx, out, STRIDED_SLICE_TYPES, "output")
        ctx.check(x.type_name == out.type_name, f"input type {x.type_name} differs from output {out.type_name}")
        if int(np.prod(eval_counts, dtype=np.int64)) != out.size:
            ctx.unsupported("TFLM's Eval writes fewer elements than the output holds (a shrink axis that "
                            "indexes past the end or has a negative stride), leaving the rest unwritten")
        for idx, size in zip(index, x.shape):
            if idx.size and (idx.min() < 0 or idx.max() >= size):
                ctx.unsupported("the slice reads outside the input")
        self.params = StridedSliceParams(
            start_indices=tuple(vals["begin"]), stop_indices=tuple(vals["end"]), strides=tuple(vals["strides"]),
            begin_mask=begin_mask, end_mask=end_mask, shrink_axis_mask=shrink_mask, indices=tuple(index),
            ignored_by_tflm=ignored)

    def eval(self, inputs):
        x = inputs[0]
        index = self.params.indices
        grid = np.ix_(*index) if index else ()
        y = x[(slice(None),) + tuple(grid)]
        return [np.ascontiguousarray(y).reshape((x.shape[0],) + tuple(self.out_tensor.shape))]

    def describe(self):
        return {**params_as_dict(self.params), "indices": [i.tolist() for i in self.params.indices]}


# ---------------------------------------------------------------------------- SPLIT / SPLIT_V

class _SplitBase(OpKernel):
    def prepare_split(self, ctx, x, axis_t):
        require_constant(ctx, axis_t, "axis")
        rank = len(x.shape)
        axis = int(int32_view(axis_t)[0])
        if axis < 0:
            axis += rank
        ctx.check(0 <= axis < rank, f"axis {axis} is out of range for input rank {rank}")
        outs = [ctx.output(i) for i in range(len(ctx.op.outputs))]
        ctx.check(len(outs) >= 1, "has no outputs")
        expect_types(ctx, x, SPLIT_TYPES, "input")
        sizes = []
        for i, o in enumerate(outs):
            ctx.check(o.type_name == x.type_name, f"output {i} type {o.type_name} differs from input {x.type_name}", o)
            same = len(o.shape) == rank and all(o.shape[d] == x.shape[d] for d in range(rank) if d != axis)
            ctx.check(same, f"output {i} shape {list(o.shape)} does not match input {list(x.shape)} "
                            f"outside axis {axis}", o)
            sizes.append(o.shape[axis])
        self.params = SplitParams(axis=axis, sizes=tuple(sizes))
        return sizes

    def eval(self, inputs):
        x = inputs[self.data_index]
        bounds = np.cumsum(self.params.sizes)[:-1]
        return [np.ascontiguousarray(p) for p in np.split(x, bounds, axis=self.params.axis + 1)]

    def describe(self):
        return params_as_dict(self.params)


@register("SPLIT")
class Split(_SplitBase):
    """split.cc SplitPrepare / SplitEval. Output sizes come from the output tensors."""

    supported_types = "int8, int16, int32, float32"
    notes = ""

    data_index = 1

    def prepare(self, ctx):
        axis_t = ctx.require_input(0, "axis")
        x = ctx.require_input(1, "input")
        sizes = self.prepare_split(ctx, x, axis_t)
        axis = self.params.axis
        ctx.check(all(s == sizes[0] for s in sizes) and sizes[0] * len(sizes) == x.shape[axis],
                  f"output sizes {sizes} along axis {axis} do not split the input's "
                  f"{x.shape[axis]} evenly")


@register("SPLIT_V")
class SplitV(_SplitBase):
    """split_v.cc SplitVPrepare / SplitVEval. Output sizes come from the output tensors."""

    supported_types = "int8, int16, int32, float32"
    notes = ""

    data_index = 0

    def prepare(self, ctx):
        ctx.check_io_counts(3, None)
        x = ctx.require_input(0, "input")
        axis_t = ctx.require_input(2, "axis")
        sizes = self.prepare_split(ctx, x, axis_t)
        axis = self.params.axis
        ctx.check(sum(sizes) == x.shape[axis],
                  f"output sizes {sizes} along axis {axis} do not add up to the input's {x.shape[axis]}")


# ---------------------------------------------------------------------------- PACK / UNPACK

@register("PACK")
class Pack(OpKernel):
    """pack.cc PackEval (TFLM has no Prepare for PACK)."""

    supported_types = "int8, int16, int32, int64, float32"
    notes = ""

    def prepare(self, ctx):
        out = ctx.output(0)
        self.out_tensor = out
        count = ctx.options.get("values_count", 0)
        rank = len(out.shape)
        axis = ctx.options.get("axis", 0)
        axis = axis + rank if axis < 0 else axis
        ctx.check(0 <= axis < rank, f"axis {ctx.options.get('axis', 0)} is out of range for output rank {rank}")
        ctx.check(count == len(ctx.op.inputs) and count == out.shape[axis],
                  f"values_count {count}, {len(ctx.op.inputs)} inputs and output dim {out.shape[axis]} "
                  "along the axis must agree")
        expect_types(ctx, out, PACK_TYPES, "output")
        # TFLM copies each input as outer_size blocks of copy_size elements (DCHECKed only).
        in_shape = tuple(out.shape[:axis]) + tuple(out.shape[axis + 1:])
        expected = int(np.prod(in_shape, dtype=np.int64))
        for i in range(count):
            t = ctx.require_input(i, f"input {i}")
            ctx.check(t.type_name == out.type_name, f"input {i} type {t.type_name} differs from output", t)
            ctx.check(t.size == expected,
                      f"input {i} has {t.size} elements; the output without axis {axis} holds {expected}", t)
        self.params = PackParams(axis=axis, inputs_count=count, input_shape=in_shape)

    def eval(self, inputs):
        p = self.params
        n = common_sample_count(inputs)
        parts = [with_samples(a, n).reshape((n,) + p.input_shape) for a in inputs]
        return [np.stack(parts, axis=p.axis + 1)]

    def describe(self):
        return params_as_dict(self.params)


@register("UNPACK")
class Unpack(OpKernel):
    """unpack.cc UnpackEval (TFLM has no Prepare for UNPACK)."""

    supported_types = "int8, int16, int32, float32"
    notes = ""

    def prepare(self, ctx):
        x = ctx.require_input(0, "input")
        rank = len(x.shape)
        axis = ctx.options.get("axis", 0)
        axis = axis + rank if axis < 0 else axis
        ctx.check(0 <= axis < rank, f"axis {ctx.options.get('axis', 0)} is out of range for input rank {rank}")
        num = ctx.options.get("num", 0)
        outs = [ctx.output(i) for i in range(len(ctx.op.outputs))]
        ctx.check(num == len(outs) == x.shape[axis],
                  f"num {num}, {len(outs)} outputs and input dim {x.shape[axis]} along the axis must agree")
        expect_types(ctx, x, UNPACK_TYPES, "input")
        expected = int(np.prod(tuple(x.shape[:axis]) + tuple(x.shape[axis + 1:]), dtype=np.int64))
        for i, o in enumerate(outs):
            ctx.check(o.type_name == x.type_name, f"output {i} type {o.type_name} differs from input", o)
            ctx.check(o.size == expected,
                      f"output {i} has {o.size} elements; the input without axis {axis} holds {expected}", o)
        self.params = UnpackParams(axis=axis, num_split=num)
        self.outs = outs

    def eval(self, inputs):
        x = inputs[0]
        n = x.shape[0]
        return [np.ascontiguousarray(np.take(x, i, axis=self.params.axis + 1)).reshape((n,) + tuple(o.shape))
                for i, o in enumerate(self.outs)]

    def describe(self):
        return params_as_dict(self.params)
