"""Parameter work shared by many kernels: activation clamps, padding, requantization."""
from __future__ import annotations

import math
import threading
import weakref

import numpy as np

from interp.model import Tensor

from . import compiled
from . import fixedpoint as fp
from .c_semantics import float_to_int32_x86_scalar
from .compiled import requantize as compiled_requantize

ACTIVATION_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}

TYPE_RANGES = {
    "INT8": (-128, 127),
    "UINT8": (0, 255),
    "INT16": (-32768, 32767),
    "INT32": (fp.INT32_MIN, fp.INT32_MAX),
}


def type_range(tensor: Tensor) -> tuple[int, int]:
    return TYPE_RANGES[tensor.type_name]


_ACTIVATION_BOUNDS = {1: (0.0,), 3: (0.0, 6.0), 2: (-1.0, 1.0)}


def _rounded_quotient(f: float, scale) -> float:
    """roundf(float32(f) / float32(scale)) as a Python float (the float32 value, exactly), for a
    scale with 1e-30 < |scale| < 1e30: then float32(scale) is a normal number and |f / scale| <= 6e30
    a finite float32, so no floating-point exception can occur and no np.errstate is needed.

    roundf in Python on the exact float32 quotient q: trunc(q) and q - trunc(q) are exact; when the
    fraction is nonzero |q| < 2^23, so trunc(q) ± 1 is a float32 too (fp.tflite_round's value)."""
    q = float(np.float32(f) / np.float32(scale))
    t = float(math.trunc(q))
    return t + math.copysign(1.0, q) if abs(q - t) >= 0.5 else t


def activation_range_quantized(activation: int, output: Tensor, ctx=None) -> tuple[int, int]:
    """TFLM CalculateActivationRangeQuantized: the integer clamp for a fused activation.

    The clamp is applied after the output zero point is added. TANH, SIGN_BIT and unknown codes
    clamp to the type range only, as in TFLM. TFLM's Quantize helper fails Prepare when
    roundf(bound / scale) does not fit an int32 (no_integer_overflow_from_quantization); with a
    ``ctx`` that becomes a ModelError naming the operator.
    """
    qmin, qmax = type_range(output)
    bounds = _ACTIVATION_BOUNDS.get(activation)
    if bounds is None:
        return qmin, qmax
    q = output.quantization
    scale, zp = (q.scale, q.zero_point) if q is not None else (0.0, 0)
    if 1e-30 < abs(scale) < 1e30:  # the usual scales: Python floats, no np.errstate (~2 µs to enter)
        rounded = [_rounded_quotient(f, scale) for f in bounds]
    else:  # zero, tiny, huge or NaN scales: numpy's float32 division, quietly giving inf or NaN
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rounded = [float(fp.tflite_round(np.float32(np.float32(f) / np.float32(scale)))) for f in bounds]
    for f, r in zip(bounds, rounded):
        if not -(2.0 ** 31) <= r <= 2.0 ** 31:
            message = (f"fused activation bound {f} / output scale {scale:g} does not fit an int32 "
                       "(TF_LITE_ENSURE no_integer_overflow_from_quantization)")
            if ctx is not None:
                ctx.fail(message, output)
            raise ValueError(message)
    # zero_point + int(rounded), the int32 sum wrapping as C's does (float_to_int32_x86: a rounded
    # bound of exactly 2^31 converts to INT32_MIN).
    quantized = [((int(zp) + float_to_int32_x86_scalar(r) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31) for r in rounded]
    if activation == 1:
        return max(qmin, quantized[0]), qmax
    return max(qmin, quantized[0]), min(qmax, quantized[1])


def activation_range_float(activation: int) -> tuple[float, float]:
    """TFLM CalculateActivationRange<float>."""
    if activation == 1:
        return 0.0, float(np.finfo(np.float32).max)
    if activation == 3:
        return 0.0, 6.0
    if activation == 2:
        return -1.0, 1.0
    return float(-np.finfo(np.float32).max), float(np.finfo(np.float32).max)


def clamp_float(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """TFLM ActivationFunctionWithMinMax: std::min(std::max(x, lo), hi), in x's float type.

    std::max(x, lo) is ``x < lo ? lo : x``: NaN passes through and -0.0 stays -0.0, which
    np.maximum does not guarantee.
    """
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
    lo, hi = dtype.type(lo), dtype.type(hi)
    x = np.where(x < lo, lo, x)
    return np.where(hi < x, hi, x).astype(dtype, copy=False)


def apply_float_activation(x: np.ndarray, activation: int) -> np.ndarray:
    """The float fused activation; NONE still clamps to ±FLT_MAX as TFLM's range does (±inf)."""
    lo, hi = activation_range_float(activation)
    return clamp_float(x, lo, hi)


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _out_size_checked(padding: int, image: int, filter_size: int, stride: int, dilation: int):
    """TFLM ComputeOutSizeChecked: the output size, or None where TFLM reports an error."""
    if padding not in (0, 1) or image < 0 or filter_size <= 0 or stride <= 0 or dilation <= 0:
        return None
    effective = (filter_size - 1) * dilation + 1
    value = _c_div(image + stride - 1, stride) if padding == 0 else _c_div(image + stride - effective, stride)
    if value < 0 or value >= (1 << 31):
        return None
    return value


def _padding_checked(stride: int, dilation: int, image: int, filter_size: int, out_size: int):
    """TFLM ComputePaddingWithOffsetChecked: the padding before (the odd pixel goes after), or None."""
    if image < 0 or filter_size <= 0 or out_size < 0 or stride <= 0 or dilation <= 0:
        return None
    effective = (filter_size - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - image, 0)
    half = total // 2
    return half if half < (1 << 31) else None


def padding_and_output_size(padding: int, in_size: int, filter_size: int, stride: int, dilation: int):
    """One spatial dim of TFLM's padding computation: (output size or 0, padding before)."""
    out = _out_size_checked(padding, in_size, filter_size, stride, dilation)
    if out is None:
        return 0, 0
    pad = _padding_checked(stride, dilation, in_size, filter_size, out)
    return out, (pad if pad is not None else 0)


def compute_padding_height_width(padding: int, in_hw, filter_hw, stride_hw, dilation_hw=(1, 1)) -> tuple[int, int]:
    """TFLM ComputePaddingHeightWidth: (pad_top, pad_left) as the kernels get them.

    padding: 0 = SAME, 1 = VALID. TFLM ignores the status of the checked helpers: on invalid
    arguments (e.g. a stride of 0) the values computed so far stay and the rest are 0 — the
    kernel then runs with those. The output sizes computed here are not used by the kernels,
    which loop over the output tensor's own dims.
    """
    (ih, iw), (fh, fw), (sh, sw), (dh, dw) = in_hw, filter_hw, stride_hw, dilation_hw
    out_w = _out_size_checked(padding, iw, fw, sw, dw)
    if out_w is None:
        return 0, 0
    out_h = _out_size_checked(padding, ih, fh, sh, dh)
    if out_h is None:
        return 0, 0
    pad_h = _padding_checked(sh, dh, ih, fh, out_h)
    if pad_h is None:
        return 0, 0
    pad_w = _padding_checked(sw, dw, iw, fw, out_w)
    return pad_h, (pad_w if pad_w is not None else 0)


def requantize(acc, multiplier, shift, zero_point: int, act_min: int, act_max: int, numerics=None):
    """clamp(MultiplyByQuantizedMultiplier(acc, M, shift) + zero_point, act_min, act_max)."""
    if numerics is not None and numerics.rounding == "single":
        scaled = fp.multiply_by_quantized_multiplier_single_rounding(acc, multiplier, shift)
    else:
        scaled = fp.multiply_by_quantized_multiplier(acc, multiplier, shift)
    # C adds the zero point in int32, which wraps on x86 (a zero point near ±2^31 does it).
    # np.minimum/np.maximum: np.clip costs several times more on small arrays.
    return np.minimum(np.maximum(fp.wrap_int32(scaled + zero_point), act_min), act_max)


def real_multiplier(numerics, *factors: float, divisor: float) -> float:
    """Product of float32 scales over a divisor, in double (the wheel) or float32 (older TFLM)."""
    if numerics is not None and numerics.scale_precision == "float32":
        p = np.float32(1.0)
        for f in factors:
            p = np.float32(p * np.float32(f))
        return float(np.float32(p / np.float32(divisor)))
    p = 1.0
    for f in factors:
        p *= float(f)
    if float(divisor) == 0.0:  # C's double division: ±inf, or NaN for 0/0 (no exception)
        return math.copysign(math.inf, p) if p != 0.0 else math.nan
    return p / float(divisor)


def quantize_channel_multipliers(real: np.ndarray):
    """Vector of (M, shift) from QuantizeMultiplier for each real multiplier, as int64 arrays."""
    pairs = [fp.quantize_multiplier(float(r)) for r in np.asarray(real, dtype=np.float64).ravel()]
    return (np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64))


class ExactIntegerMatmul:
    """x @ W for integer x and W, exact, through the fastest BLAS type that is provably exact.

    A float dot product of integers is exact while every partial sum stays below 2^24 (float32)
    or 2^53 (float64) in magnitude; the bound max_o Σ_k |W[k,o]| · max|x| is computed once here
    (prepare time). Beyond 2^53 numpy's int64 matmul is used.
    """

    def __init__(self, weights: np.ndarray, max_abs_input: int):
        w = np.asarray(weights, dtype=np.int64)
        self.bound = int(np.abs(w).sum(axis=0).max(initial=0)) * int(max_abs_input)
        if self.bound < (1 << 24):
            self.dtype = np.float32
        elif self.bound < (1 << 53):
            self.dtype = np.float64
        else:
            self.dtype = np.int64
        self.weights = np.ascontiguousarray(w.astype(self.dtype))

    def use_dtype(self, dtype):
        """Compute in a wider type than needed (e.g. to share one type across conv groups)."""
        self.dtype = dtype
        self.weights = np.ascontiguousarray(self.weights.astype(dtype))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The exact product as int64."""
        y = self.raw(x)
        return y if self.dtype is np.int64 else y.astype(np.int64)

    def into(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The exact product written into ``out`` (of the arithmetic type)."""
        return np.matmul(x.astype(self.dtype, copy=False), self.weights, out=out)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The exact product in the arithmetic type (integer-valued floats, or int64)."""
        return x.astype(self.dtype, copy=False) @ self.weights


def sliding_windows(x: np.ndarray, out_hw: tuple[int, int], kernel_hw: tuple[int, int],
                    stride_hw: tuple[int, int], dilation_hw: tuple[int, int], pad_tl: tuple[int, int],
                    fill=0) -> np.ndarray:
    """Every (KH, KW) receptive field of an NHWC batch, as an array (N, OH, OW, KH, KW, C).

    Taps outside the image read ``fill``; for convolutions that is the input zero point, so the tap
    adds w·(zp - zp) = 0, which is what skipping out-of-image taps (as TFLM does) amounts to.
    Normally a strided view of the padded input; when the strides or dilations reach far beyond the
    image (padding would be huge), the taps are gathered with clipped indices instead.
    """
    n, h, w, c = x.shape
    (oh, ow), (kh, kw), (sh, sw), (dh, dw), (pt, pl) = out_hw, kernel_hw, stride_hw, dilation_hw, pad_tl
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    pb = max(0, need_h - h - pt)
    pr = max(0, need_w - w - pl)
    padded_elements = n * (h + pt + pb) * (w + pl + pr) * c
    if min(sh, sw, dh, dw) <= 0 or min(pt, pl) < 0 or padded_elements > 4 * (x.size + n * oh * ow * kh * kw * c) + 4096:
        return _gathered_windows(x, out_hw, kernel_hw, stride_hw, dilation_hw, pad_tl, fill)
    if pt or pl or pb or pr:
        padded = np.full((n, h + pt + pb, w + pl + pr, c), fill, dtype=x.dtype)
        padded[:, pt:pt + h, pl:pl + w, :] = x
    else:
        padded = np.ascontiguousarray(x)
    s = padded.strides
    return np.lib.stride_tricks.as_strided(
        padded, shape=(n, oh, ow, kh, kw, c),
        strides=(s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]), writeable=False)


def _gathered_windows(x, out_hw, kernel_hw, stride_hw, dilation_hw, pad_tl, fill):
    n, h, w, c = x.shape
    (oh, ow), (kh, kw), (sh, sw), (dh, dw), (pt, pl) = out_hw, kernel_hw, stride_hw, dilation_hw, pad_tl
    rows = np.arange(oh, dtype=np.int64)[:, None] * sh - pt + np.arange(kh, dtype=np.int64)[None, :] * dh
    cols = np.arange(ow, dtype=np.int64)[:, None] * sw - pl + np.arange(kw, dtype=np.int64)[None, :] * dw
    # Index h (resp. w) is one extra row (column) of fill; every out-of-image tap reads it.
    rows = np.where((rows >= 0) & (rows < h), rows, h)
    cols = np.where((cols >= 0) & (cols < w), cols, w)
    padded = np.full((n, h + 1, w + 1, c), fill, dtype=x.dtype)
    padded[:, :h, :w, :] = x
    return padded[:, rows[:, None, :, None], cols[None, :, None, :], :]


_workspace = threading.local()
# The buffers of threads that have ended, handed to the next threads that need some: run_batch
# starts its worker threads per call, and buffers that died with them would be page-faulted in
# afresh by every call (measured on vww_96 at batch 32 on two threads: 2,300 page faults and 13%
# of the CPU time in the kernel per call). At most MAX_SPARE_WORKSPACES sets are kept.
_spare_workspaces: list[dict] = []
_spare_lock = threading.Lock()
MAX_SPARE_WORKSPACES = 8


class _WorkspaceHolder:
    """A thread's buffers; when the thread ends (its thread-local data is dropped), they go to
    the spare list."""

    __slots__ = ("buffers", "__weakref__")

    def __init__(self, buffers: dict):
        self.buffers = buffers


def _return_workspace(buffers: dict) -> None:
    with _spare_lock:
        if len(_spare_workspaces) < MAX_SPARE_WORKSPACES:
            _spare_workspaces.append(buffers)


def _thread_buffers() -> dict:
    holder = getattr(_workspace, "holder", None)
    if holder is None:
        with _spare_lock:
            buffers = _spare_workspaces.pop() if _spare_workspaces else {}
        holder = _workspace.holder = _WorkspaceHolder(buffers)
        weakref.finalize(holder, _return_workspace, buffers)
    return holder.buffers


def workspace(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A reusable per-thread scratch array for kernel temporaries.

    Blocked kernels create same-sized temporaries over and over; for arrays of a megabyte or so
    glibc hands out fresh mmap'd pages each time, and the page faults cost more than the
    arithmetic (measured: 11 ns vs 4 ns per requantized element). Contents are undefined; never
    return a workspace array from eval. A set of buffers belongs to one thread at a time (a
    thread that ends passes its set on to a later thread).
    """
    buffers = _thread_buffers()
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    buf = buffers.get((name, dtype))
    if buf is None or buf.size < size:
        buf = buffers[(name, dtype)] = np.empty(max(size, 1), dtype)
    return buf[:size].reshape(shape)


# Elements per block when a kernel processes a large tensor piecewise: small enough that every
# temporary stays in cache and is recycled by the allocator instead of page-faulted in fresh.
BLOCK_ELEMENTS = 1 << 17


def blocks(count: int, elements_per_item: int, target: int | None = None):
    """Slices that split ``count`` items into runs of about ``target`` elements each
    (BLOCK_ELEMENTS, read at call time so that tests can force blocking on small tensors)."""
    if target is None:
        target = BLOCK_ELEMENTS
    step = max(1, target // max(1, elements_per_item))
    for start in range(0, count, step):
        yield slice(start, min(count, start + step))


# _prepare_levels' tables by (act_min, act_max, nb, step, output type): the few activation ranges,
# zero points and shifts a process meets, prepared once instead of per operator (~10 µs each).
# Read-only arrays; a race only builds the same table twice.
_LEVELS_CACHE: dict = {}
MAX_CACHED_LEVELS = 1024


class Requantizer:
    """clamp(MultiplyByQuantizedMultiplier(acc + bias, M_c, shift_c) + zero_point, act_min, act_max).

    Prepared once per op. TFLM rounds twice: h = floor(q / 2^31) with q = (acc + bias)·M + 2^30
    (SaturatingRoundingDoublingHighMul), then r = floor((h + 2^(e-1) - [h < 0]) / 2^e)
    (RoundingDivideByPOT, e = -shift > 0; r = h when e = 0). Two float64 evaluations of that are
    exact, and the prepared accumulator bound picks the first that applies:

    * ``single``: since floor(floor(X / a) / b) = floor(X / ab) for integers, and h < 0 exactly
      when q < 0, both roundings are one, r = floor(q·2^-(31+e) + 1/2 - [q < 0]·2^-e), exact
      while |q| + 2^(31+e) < 2^53.
    * ``split``: for huge biases or shifts (channels whose scale is nearly zero), the constant
      part C = bias·M + 2^30 of q is split as C_h·2^31 + C_l with 0 <= C_l < 2^31; then
      h = C_h + floor((acc·M + C_l)·2^-31), exact while |acc·M| + 2^31 < 2^53, and the second
      rounding is done on h as TFLM does it.

    Otherwise (left shifts, accumulators that may wrap int32, numerics variants) the int64
    primitives are used.

    With compiled kernels enabled (ops.compiled) and the default double rounding, calls on more
    than ``compiled_elements`` values instead run TFLM's integer arithmetic itself in one compiled
    pass (ops/compiled/requantize.py), whatever the mode; from_scaled's rounding of a scaled
    accumulator likewise runs _finish's float64 steps in one compiled pass.
    """

    def __init__(self, multiplier, shift, zero_point: int, act_min: int, act_max: int, out_dtype,
                 acc_bound: int | None, numerics=None, bias=None):
        self.bias = None if bias is None else np.asarray(bias, np.int64)
        raw_bound = acc_bound
        if acc_bound is not None and self.bias is not None:
            acc_bound += int(np.abs(self.bias).max(initial=0))
        # C accumulates in int32 and wraps; only an accumulator that may leave int32 needs it.
        self.may_wrap = acc_bound is None or acc_bound >= (1 << 31)
        self.multiplier = np.asarray(multiplier, np.int64)
        self.shift = np.asarray(shift, np.int64)
        self.zero_point, self.act_min, self.act_max = int(zero_point), int(act_min), int(act_max)
        self.out_dtype = out_dtype
        self.numerics = numerics
        # The float modes carry the zero point inside their constants, so they clamp to the
        # activation range itself and the floor writes the output type's values directly.
        self.low, self.high = np.float64(self.act_min), np.float64(self.act_max)
        # RoundingDivideByPOT's extra step down for q < 0 only ever moves a result that is <= 0
        # already; when act_min - zero_point >= 0 (a fused ReLU puts act_min at the zero point)
        # the clamp takes every such result to the bound either way, so it can be skipped.
        self.negative_step_matters = self.act_min - self.zero_point < 0
        self.mode = None
        # The float modes' per-channel constants, each a Python float when uniform: single mode
        # (scale, offset, negative_below, negative_step), split mode (scale, offset,
        # shifted_high, threshold, inverse). The first two are always the scale and the offset.
        self.constants: tuple = ()
        self.thresholds = self.levels = None  # single mode's step thresholds (see _prepare_levels)
        self._tile_cache: dict = {}
        self._columns = None
        # Built on the first compiled call (see _compiled_arguments / _compiled_finish).
        self._compiled_args = self._python_args = False
        self._compiled_tiled = self._finish_constants = None
        # Per-channel when any of multiplier, shift or bias is (a per-tensor scale with a bias).
        self.channels = int(np.broadcast(self.multiplier, self.shift,
                                         self.bias if self.bias is not None else 0).size)
        if (numerics is not None and numerics.rounding != "double") or acc_bound is None or self.may_wrap:
            return
        right = -self.shift
        if right.ndim == 0 and self.multiplier.ndim == 0:  # per-tensor: Python integers, no ufunc calls
            e_max, m_max = int(right), max(int(self.multiplier), 0)
            if not 0 <= e_max <= 31:
                return
        else:
            m_max = int(self.multiplier.max(initial=0))
            if not bool(np.all((right >= 0) & (right <= 31))):
                return
            e_max = int(right.max(initial=0))
        zp = abs(self.zero_point)
        # C adds the zero point to the int32 result of MultiplyByQuantizedMultiplier, wrapping on
        # overflow (zero points near ±2^31); the float modes add it exactly, so they are used only
        # where that sum provably fits (|result| <= (acc_bound·M + 2^30) / 2^31 + 1).
        if ((acc_bound * m_max + (1 << 30)) >> 31) + 1 + zp >= (1 << 31):
            return
        if acc_bound * m_max + (1 << 30) + ((1 + zp) << (31 + e_max)) < (1 << 53):
            self._prepare_single(right)
        elif raw_bound * m_max + (1 << 31) < (1 << 53) and (acc_bound * m_max >> 31) + ((2 + zp) << e_max) < (1 << 52):
            self._prepare_split(right)

    @property
    def use_float(self) -> bool:
        return self.mode is not None

    def _prepare_single(self, right):
        self.mode = "single"
        bias = self.bias if self.bias is not None else np.zeros(1, np.int64)
        if right.ndim == 0 and self.multiplier.ndim == 0:
            # Per-tensor multiplier and shift: the same float64 operations on Python floats (IEEE
            # doubles, exact here as below), then carried as np.float64 scalars; only the offset
            # is per channel, and only with a bias.
            e, m = int(right), int(self.multiplier)
            total = -(31 + e)
            scale = math.ldexp(float(m), total)
            half = 0.5 if e > 0 else 0.0
            if self.bias is None:
                offset = math.ldexp(0.0 * float(m) + (1 << 30), total) + half + self.zero_point
            else:
                offset = np.ldexp(bias.astype(np.float64) * np.float64(m) + (1 << 30), total) + half + self.zero_point
            negative_step = math.ldexp(1.0, -e) if e > 0 else 0.0
            negative_below = half + self.zero_point
            shape = np.shape(offset) if self.bias is not None else (1,)
        else:
            total = -(31 + right)
            scale = np.ldexp(self.multiplier.astype(np.float64), total)  # M·2^-(31+e), exact
            half = np.where(right > 0, 0.5, 0.0)
            # (bias·M + 2^30)·2^-(31+e) + 1/2 + zero_point: the rest of q, scaled, the rounding half
            # and the zero point (an integer: floor(x + zp) = floor(x) + zp).
            offset = np.ldexp(bias.astype(np.float64) * self.multiplier + (1 << 30), total) + half + self.zero_point
            negative_step = np.where(right > 0, np.ldexp(1.0, -right), 0.0)
            # q < 0 exactly when t < 1/2 + zero_point (one scalar when every shift is a right shift).
            negative_below = half + self.zero_point
            shape = np.broadcast(scale, offset).shape
        self.constants = tuple(_uniform_constant(c, shape) for c in (scale, offset, negative_below, negative_step))
        _assert_float64(self.constants)
        self._prepare_levels()

    def _prepare_levels(self):
        """The single mode's output as a step function of the scaled accumulator t, for small tensors.

        After the scaling, single mode computes y = clamp(floor(t - s·[t < nb]), act_min, act_max)
        with nb = 1/2 + zero_point (or zero_point when there is no right shift) and s = 2^-e (0
        without a right shift). That is nondecreasing in t, so y = act_min + #{k : t >= θ_k} over
        k = act_min+1 .. act_max, where θ_k is the least t with floor(t - s·[t < nb]) >= k:
        k + s when k + s < nb (below nb the step applies: floor(t - s) >= k iff t >= k + s), else
        max(k, nb) (at or above nb, floor(t) >= k iff t >= k). Every θ_k is an integer plus a power
        of two >= 2^-31 or 1/2: exact in float64, and the comparisons with the exact t are exact.
        One np.searchsorted then replaces the five to seven passes of _finish; it costs a binary
        search per value, so it is used below ``small_elements`` values only. The thresholds depend
        on nb and s only (the per-channel scale and offset are applied before): one table when
        every channel has the same shift, for at most 256 output levels.
        """
        self.levels = self.thresholds = None
        _, _, nb, step = self.constants
        if not (isinstance(nb, np.float64) and isinstance(step, np.float64)) \
                or not 0 <= self.act_max - self.act_min <= 255:
            return
        key = (self.act_min, self.act_max, float(nb), float(step), np.dtype(self.out_dtype))
        got = _LEVELS_CACHE.get(key)
        if got is None:
            k = np.arange(self.act_min + 1, self.act_max + 1, dtype=np.float64)
            thresholds = np.where(k + step < nb, k + step, np.maximum(k, nb))
            if np.any(np.diff(thresholds) <= 0):
                raise AssertionError("requantizer thresholds are not increasing")
            levels = np.arange(self.act_min, self.act_max + 1, dtype=np.int64).astype(self.out_dtype)
            thresholds.flags.writeable = levels.flags.writeable = False  # shared by every requantizer of the key
            got = (thresholds, levels)
            if len(_LEVELS_CACHE) < MAX_CACHED_LEVELS:
                _LEVELS_CACHE[key] = got
        self.thresholds, self.levels = got

    # Tensors of at most this many values go through the thresholds (when there are any) instead of
    # _finish's passes. A class attribute so that tests can force either path.
    small_elements = 256

    def _prepare_split(self, right):
        self.mode = "split"
        bias = self.bias if self.bias is not None else np.zeros(1, np.int64)
        constant = [int(b) * int(m) + (1 << 30) for b, m in
                    zip(*np.broadcast_arrays(np.atleast_1d(bias), self.multiplier))]  # (a 0-d bias cannot be zipped)
        high = np.array([c >> 31 for c in constant], np.float64)
        low = np.array([c - ((c >> 31) << 31) for c in constant], np.float64)
        scale = np.ldexp(self.multiplier.astype(np.float64), -31)
        offset = np.ldexp(low, -31)
        # v = h + 2^(e-1) + zp·2^e (the zero point, added before the division by 2^e); h < 0
        # exactly when v < 2^(e-1) + zp·2^e; a zero shift has no rounding step.
        rounding = np.where(right > 0, np.ldexp(1.0, right - 1), 0.0) + np.ldexp(float(self.zero_point), right)
        threshold = np.where(right > 0, rounding, -np.inf)
        shape = np.broadcast(scale, high).shape
        self.constants = tuple(_uniform_constant(c, shape)
                               for c in (scale, offset, high + rounding, threshold, np.ldexp(1.0, -right)))
        _assert_float64(self.constants)

    # Calls on more values than this take the compiled kernels of ops.compiled.requantize when they
    # are enabled. A compiled call costs ~2.4 µs + 0.4–0.6 ns per value, against numpy's ~7 µs +
    # 1.5–2.5 ns (the thresholds: ~2.8 µs + 9 ns), so per call it wins at any size; the threshold
    # is there for the first call, which imports numba and loads the kernels (~0.4 s): models whose
    # requantizations are all small never pay that. At batch 32, 95–100% of the benchmark models'
    # requantized values come in calls above it. A class attribute so that tests can force either path.
    compiled_elements = 4096

    def compiled_for(self, size: int) -> bool:
        """Whether a call on ``size`` values takes the compiled kernel. Then the plain accumulator
        (a float32 GEMM) is the cheaper input: with compiled kernels on, a float64 GEMM through
        scaled_weights followed by from_scaled was measured 15–45% slower than the float32 GEMM
        followed by this requantization, on the convolutions that use it (depth <= 16)."""
        return self._use_compiled(size)

    def _integer_steps_apply(self) -> bool:
        """Whether TFLM's integer steps can run as written (compiled, or in Python integers): the
        default double rounding, multipliers within int32 and right shifts of at most 31 (which
        quantize_multiplier always gives; other values are left to the numpy path)."""
        m = self.multiplier
        return (self.numerics is None or self.numerics.rounding == "double") \
            and bool(np.all((m >= fp.INT32_MIN) & (m <= fp.INT32_MAX))) and bool(np.all(-self.shift <= 31))

    def _compiled_arguments(self):
        """The compiled kernels' per-channel int64 parameters, or None where the numpy path must
        run (a numerics variant: single rounding; multipliers beyond int32 or right shifts beyond
        31, which quantize_multiplier never produces). Built on first use (prepare stays cheap);
        building it twice from two threads gives the same tuple."""
        got = self._compiled_args
        if got is not False:
            return got
        got = None
        m, shift = self.multiplier, self.shift
        right = np.maximum(-shift, 0)
        if self._integer_steps_apply():
            c = self.channels
            left = np.maximum(shift, 0) & 31  # C's 1 << shift on x86: the count masked to 5 bits
            per_channel = tuple(np.ascontiguousarray(np.broadcast_to(np.asarray(v, np.int64), (c,))) for v in (
                self.bias if self.bias is not None else 0, m, left, right))
            got = per_channel + (np.int64(self.zero_point), np.int64(self.act_min), np.int64(self.act_max),
                                 bool(self.may_wrap), bool(np.any(left)))
        self._compiled_args = got
        return got

    def _use_compiled(self, size: int) -> bool:
        return size > self.compiled_elements and compiled.enabled() and self._compiled_arguments() is not None

    def _compiled_last_axis(self, acc: np.ndarray) -> np.ndarray | None:
        """The compiled requantization of a (…, C) accumulator, or None when its layout does not
        match the channels (the numpy path broadcasts; this kernel does not)."""
        c = self.channels
        if acc.ndim == 0 or c > 1 and acc.shape[-1] != c:
            return None
        out = np.empty(acc.shape, self.out_dtype)
        args = self._compiled_arguments()
        if c == 1:  # per-tensor: one long row, whatever the layout
            compiled_requantize.requantize_channel_major(
                np.ascontiguousarray(acc).reshape(1, 1, -1), *args, out.reshape(1, 1, -1))
        else:
            tiled = self._compiled_tiled
            if tiled is None:  # rows of ~512 values: short rows of a few channels do not vectorise
                k = max(1, 512 // c)
                tiled = self._compiled_tiled = tuple(np.tile(v, k) for v in args[:4]) + args[4:]
            compiled_requantize.requantize_last_axis(np.ascontiguousarray(acc).reshape(-1), *tiled, out.reshape(-1))
        return out

    def __call__(self, acc: np.ndarray) -> np.ndarray:
        """Requantize an accumulator (integer-valued, any numeric dtype); the bias is added here."""
        if self.thresholds is not None and acc.size <= self.small_elements:
            return self.from_levels(self._scaled(acc, self.constants))
        if self._use_compiled(acc.size):
            out = self._compiled_last_axis(acc)
            if out is not None:
                return out
        if self.mode is None:
            if acc.size <= self.python_elements:
                out = self._python_call(acc)
                if out is not None:
                    return out
            a = acc.astype(np.int64)
            if self.bias is not None:
                a += self.bias
            if self.may_wrap:
                a = fp.wrap_int32(a)
            return requantize(a, self.multiplier, self.shift, self.zero_point, self.act_min, self.act_max,
                              self.numerics).astype(self.out_dtype)
        shape = acc.shape
        acc, constants = self._rows(acc)
        return self._finish(self._scaled(acc, constants), constants).reshape(shape)

    # Calls of at most this many values on the int64 path (mode None) compute in Python integers:
    # a dozen numpy calls on a few int64 values cost ~20 µs (micro_speech's last FULLY_CONNECTED,
    # 4 values), Python's arithmetic ~1 µs per value. A class attribute so that tests can force
    # either path (-1: never; a large value: always).
    python_elements = 16

    def _python_arguments(self):
        """Per channel (bias, M, left shift, right shift) as Python ints, or None where the numpy
        path must run: single rounding, multipliers beyond int32, right shifts beyond 31, a zero
        point beyond int32 (its int64 arithmetic is then not C's), parameters of more than one
        axis. Built on first use (prepare stays cheap); two threads building it build the same."""
        got = self._python_args
        if got is not False:
            return got
        got = None
        m, shift = self.multiplier, self.shift
        right = np.maximum(-shift, 0)
        if self._integer_steps_apply() and fp.INT32_MIN <= self.zero_point <= fp.INT32_MAX:
            per_channel = np.broadcast_arrays(*(np.asarray(v, np.int64) for v in (
                self.bias if self.bias is not None else 0, m, np.maximum(shift, 0) & 31, right)))
            if per_channel[0].ndim <= 1:
                c = self.channels
                got = tuple(zip(*(np.broadcast_to(v, (c,)).tolist() for v in per_channel)))
        self._python_args = got
        return got

    def _python_call(self, acc: np.ndarray) -> np.ndarray | None:
        """The int64 path (bias, int32 wrap, requantize, clamp) on a few values in Python integers,
        each step as ops/fixedpoint.py computes it; None when the numpy path must run (see
        _python_arguments, or a layout whose last axis is not the channels).

        Per value, as C's int32 arithmetic: a = acc + bias (wrapped to int32 when it may leave
        it); x = a << left, wrapped (left shifts are masked to 5 bits, as x86 does);
        SaturatingRoundingDoublingHighMul h = (x·M + 2^30) >> 31, INT32_MAX for INT32_MIN·INT32_MIN;
        RoundingDivideByPOT r = (h + 2^(e-1) - [h < 0]) >> e for e > 0; then r + zero_point
        wrapped to int32 and clamped. Python's >> floors, as numpy's arithmetic shift does, and no
        intermediate leaves int64 (|x|, |M| <= 2^31), so every value is the numpy path's."""
        params = self._python_arguments()
        if params is None:
            return None
        c = len(params)
        if acc.ndim == 0 or c > 1 and acc.shape[-1] != c:
            return None
        wrap, zp, lo, hi = self.may_wrap, self.zero_point, self.act_min, self.act_max
        out = []
        for i, v in enumerate(acc.reshape(-1).tolist()):
            b, m, left, e = params[i % c]
            a = int(v) + b
            if wrap:
                a = ((a + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            if left:
                a = (((a << left) + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            h = 0x7FFFFFFF if a == m == -0x80000000 else (a * m + 0x40000000) >> 31
            if e:
                h = (h + (1 << (e - 1)) - (h < 0)) >> e
            r = ((h + zp + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            r = lo if r < lo else r  # np.minimum(np.maximum(r, lo), hi), also when lo > hi
            out.append(hi if r > hi else r)
        return np.array(out, np.int64).astype(self.out_dtype).reshape(acc.shape)

    def from_levels(self, t: np.ndarray) -> np.ndarray:
        """The output for a scaled accumulator t (single mode) through the step thresholds of
        _prepare_levels."""
        return self.levels.take(self.thresholds.searchsorted(t, side="right"))

    def channel_major(self, acc: np.ndarray) -> np.ndarray:
        """Requantize a (…, C, L) accumulator whose channel axis is second to last.

        Channel-major kernels (depthwise over wide images) produce this layout; requantizing it
        there, with each channel's constants applied to a whole row of L values, costs about
        half as much as going through a transposed view, and leaves the caller a narrow array
        to transpose.
        """
        if self._use_compiled(acc.size) and acc.ndim >= 2 and (self.channels == 1 or acc.shape[-2] == self.channels) \
                and not (self.thresholds is not None and acc.size <= self.small_elements):
            out = np.empty(acc.shape, self.out_dtype)
            # (B, C, L); per-tensor: one row (-1 cannot stand for B in an empty tensor).
            shape = ((math.prod(acc.shape[:-2]), self.channels, acc.shape[-1]) if self.channels > 1
                     else (1, 1, acc.size))
            compiled_requantize.requantize_channel_major(np.ascontiguousarray(acc).reshape(shape),
                                                         *self._compiled_arguments(), out.reshape(shape))
            return out
        if self.mode is None:
            return np.swapaxes(self(np.swapaxes(acc, -1, -2)), -1, -2)
        if self._columns is None:
            self._columns = tuple(v.reshape(-1, 1) if isinstance(v, np.ndarray) else v for v in self.constants)
        if self.thresholds is not None and acc.size <= self.small_elements:
            return self.from_levels(self._scaled(acc, self._columns))
        return self._finish(self._scaled(acc, self._columns), self._columns)

    # Tensors of more elements than this go through reused workspaces (and np.clip); smaller ones
    # through plain temporaries. A class attribute so that tests can force either path.
    large_elements = 2048

    def _scaled(self, acc: np.ndarray, constants) -> np.ndarray:
        """acc·scale + offset in float64 (in a workspace for all but small tensors, where plain
        temporaries are cheaper than the workspace lookups).

        The product must be computed in float64 (its exactness bound is 2^53): ``dtype=`` says
        so explicitly, since an ``out=`` buffer alone does not set the loop's type — a float32
        accumulator times a Python-float scale runs a float32 loop under numpy 2's promotion
        rules (NEP 50) and only then widens (the 1-LSB errors of issue 12).
        """
        scale, offset = constants[:2]
        if acc.size > self.large_elements:
            t = np.multiply(acc, scale, out=workspace("requantize", acc.shape, np.float64), dtype=np.float64)
        else:
            t = np.multiply(acc, scale, dtype=np.float64)
        t += offset
        return t

    def scaled_weights(self, weights: np.ndarray) -> np.ndarray | None:
        """(K+1, C) float64 weights whose product with [x, 1] is the scaled accumulator, or None.

        Column c of the (K, C) integer weights is multiplied by the mode's scale (M_c·2^-(31+e_c)
        or M_c·2^-31) and the mode's offset is appended as a last row. Every product x·w·M is an
        integer below 2^45 and every partial sum, in any order, a multiple of the scale's power
        of two bounded by the same accumulator bound that makes the mode exact: so a float64
        GEMM with these weights does the accumulation, the bias and the scaling in one exact pass.
        """
        if self.mode is None:
            return None
        scale, offset = (np.broadcast_to(c, (self.channels,)) for c in self.constants[:2])
        rows = np.asarray(weights, np.float64) * scale
        return np.ascontiguousarray(np.vstack([rows, offset[None, :]]))

    def from_scaled(self, t: np.ndarray) -> np.ndarray:
        """The output from the product of [x, 1] with scaled_weights; ``t`` is clobbered."""
        if self.thresholds is not None and t.size <= self.small_elements:
            return self.from_levels(t)
        if t.size > self.compiled_elements and compiled.enabled() and t.ndim \
                and (self.channels == 1 or t.shape[-1] == self.channels):
            return self._compiled_finish(t)
        shape = t.shape
        t, constants = self._rows(t)
        return self._finish(t, constants).reshape(shape)

    def _compiled_finish(self, t: np.ndarray) -> np.ndarray:
        """_finish of a (…, C) scaled accumulator by one compiled pass (the same float64
        operations in the same order, value by value)."""
        tiled = self._finish_constants
        if tiled is None:  # each channel's constants repeated to rows of ~512 values (they vectorise)
            c = self.channels
            tiled = self._finish_constants = tuple(
                np.tile(np.broadcast_to(np.asarray(v, np.float64), (c,)), max(1, 512 // c)) for v in self.constants[2:])
        out = np.empty(t.shape, self.out_dtype)
        kernel = (compiled_requantize.finish_single_last_axis if self.mode == "single"
                  else compiled_requantize.finish_split_last_axis)
        kernel(np.ascontiguousarray(t).reshape(-1), *tiled, self.negative_step_matters, self.low, self.high,
               out.reshape(-1))
        return out

    def _rows(self, a: np.ndarray):
        """``a`` with rows of k·C elements and the constants repeated to match.

        numpy broadcasts a length-C constant over a (…, C) array in inner loops of C elements,
        about twice as slow per element as over rows of hundreds when C is small.
        """
        c = self.channels
        if c > 1 and a.flags.c_contiguous and a.ndim and a.shape[-1] == c:
            tiles = self._tiles(a.size // c)
            if tiles is not None:
                width, constants = tiles
                return a.reshape(-1, width), constants
        return a, self.constants

    def _tiles(self, pixels: int):
        """The constants repeated k times, for k dividing ``pixels`` with k·C near 512."""
        if pixels <= 1:
            return None
        cache = self._tile_cache
        got = cache.get(pixels, False)
        if got is not False:
            return got
        c = self.channels
        k = next(k for k in range(min(max(1, 512 // c), pixels), 0, -1) if pixels % k == 0)
        got = None if k == 1 else (k * c, tuple(np.tile(np.broadcast_to(v, (c,)), k) if isinstance(v, np.ndarray)
                                                else v for v in self.constants))
        if len(cache) < 64:
            cache[pixels] = got
        return got

    def _finish(self, t: np.ndarray, constants) -> np.ndarray:
        """Rounding, clamp and narrowing of the scaled accumulator t (clobbered)."""
        large = t.size > self.large_elements
        if self.mode == "single":
            if self.negative_step_matters:
                # q < 0  <=>  t < 1/2 + zero_point; there RoundingDivideByPOT rounds down by 2^-e
                # more. (A masked ufunc, where=, is several times slower than this.)
                _, _, negative_below, negative_step = constants
                if large:
                    negative = np.less(t, negative_below, out=workspace("requantize-mask", t.shape, np.bool_))
                    t -= np.multiply(negative, negative_step, out=workspace("requantize-fix", t.shape, np.float64))
                else:
                    t -= (t < negative_below) * negative_step
        else:
            _, _, shifted_high, threshold, inverse = constants
            np.floor(t, out=t)  # the low part of h
            t += shifted_high  # v = h + 2^(e-1) + zp·2^e
            if self.negative_step_matters:
                if large:
                    t -= np.less(t, threshold, out=workspace("requantize-mask", t.shape, np.bool_))
                else:
                    t -= t < threshold
            t *= inverse
        # Clamping before the floor is the same (the bounds are integers); the floor then writes
        # the output type directly.
        if large:
            np.clip(t, self.low, self.high, out=t)
        else:  # np.clip's Python-level dispatch costs more than two ufuncs on small tensors
            np.maximum(t, self.low, out=t)
            np.minimum(t, self.high, out=t)
        out = np.empty(t.shape, self.out_dtype)
        np.floor(t, out=out, casting="unsafe")
        return out


def _assert_float64(constants) -> None:
    """The float modes' exactness bounds are float64 bounds: every constant must carry that type
    itself, so no operation it takes part in can run in a narrower one."""
    for c in constants:
        if np.asarray(c).dtype != np.float64 or isinstance(c, float) and not isinstance(c, np.float64):
            raise AssertionError(f"requantizer constant {c!r} is not a float64 scalar or array")


def _uniform_constant(value, shape: tuple[int, ...]):
    """``value`` broadcast to ``shape`` as a float64 constant: an np.float64 scalar when every
    entry is the same (per-tensor constants broadcast fastest), else a float64 array of ``shape``.

    np.float64, never a Python float: numpy 2 treats a Python float as a weak scalar that takes
    the other operand's type, so float32 · 0.0013 would be computed in float32. A scalar
    ``value`` (Python or numpy) costs no numpy call beyond its conversion; an empty ``shape``
    (no channels) gives an empty array, as broadcasting it does.
    """
    if np.ndim(value) == 0 and math.prod(shape):
        return np.float64(value)
    values = np.asarray(value, np.float64)
    if values.shape != shape:
        values = np.broadcast_to(values, shape)
    if values.size:
        first = values.flat[0]
        if (values == first).all():
            return first
    return values
