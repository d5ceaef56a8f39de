"""Compiled int8 x int8 direct convolution for CONV_2D (int8 input and filter): the dot products run
on unsigned-byte x signed-byte multiply-adds (AVX512-VNNI vpdpbusd: four products per int32 lane,
twice the multiply-accumulates of ops/compiled/gemm.py's int16 vpdpwssd per instruction, and half
the bytes moved).

The identity. vpdpbusd multiplies UNSIGNED bytes by signed bytes, and the input is int8. With
u = x + 128 (0..255, the input's bytes with the top bit flipped) and the filter w (int8):

    Σ w·x = Σ w·u - 128·Σ w        (Σ over every tap of the filter, padded taps included)

The padded image holds u of the input zero point, zp + 128, where ops/compiled/gemm.py holds zp
(``plan`` refuses a zero point outside -128..127, which a malformed model may carry: the int16
kernel takes those). So the sum over the padded image is the same Σ w·x gemm.py's accumulator is
(padded taps add w·zp, which the caller's folded bias, input_offset·Σw, cancels), and the caller
hands it to the same Requantizer. -128·Σw is a per-output-channel constant of the filter: the
accumulators START at it (``init``), so no pass is added.

Exactness: wraparound modulo 2^32, not bounded partial sums. vpdpbusd (NOT vpdpbusds, the
saturating form, and no vpmaddubsw, which saturates to int16) forms each byte product exactly
(|u·w| <= 255·128), adds four of them exactly (< 2^18) and adds that to the int32 lane modulo
2^32; the other operations are int32 additions modulo 2^32. So each accumulator is congruent to
-128·Σw + Σ w·u = Σ w·x modulo 2^32, whatever the partial sums did on the way (Σ w·u alone can
reach 255·Σ|w|, past 2^31 where Σ w·x cannot). ``plan`` proves |Σ w·x| <= max_o Σ|w| · max|x| < 2^31
(ops.common.ExactIntegerMatmul's bound, max|x| covering the zero point, as gemm.weights_plan
does) or refuses, and an int32 congruent to an integer below 2^31 in magnitude IS that integer.
The start value itself is exact: 128·|Σw| <= Σ|w|·max|x| < 2^31.

Layout (as ops/compiled/small_conv.py, bytes instead of int16 pairs): the padded image keeps C
channels (not rounded up), so with dilation_w = 1 a filter row's KW·C bytes are consecutive and
one "run" of the reduction; each run is split into quads of four bytes (the last one reads up to
three bytes past the run — the next pixel's, or the buffer's slack — against zero weights). With
dilation_w > 1 the runs are the taps' C channels. Weights packed (runs, quads, OCp, 4) int8, OCp a
multiple of 16·V. The register block, R output pixels x V·16 output channels, broadcasts each
pixel's quad (one 32-bit load) to the 16 lanes and issues one vpdpbusd per (pixel, vector).

The LLVM intrinsic llvm.x86.avx512.vpdpbusd.512 is x86-specific (LLVM does not select vpdpbusd from
generic IR: zext/sext/mul/add of bytes became vpmovzxbd + vpmaddwd chains in LLVM 22), so
``available()`` checks that numba targets the host and the host has AVX512-VNNI; else the
caller keeps ops/compiled/gemm.py. Only eval imports numba / llvmlite; ``plan`` runs on numpy.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import gemm, lazy_njit

__all__ = ["U8ConvPlan", "plan", "conv", "buffer_shape", "available"]

LANES = 16
# (rows R, channel vectors V, output-channel step) by OCp: % 64 -> (4, 4), % 32 -> (8, 2), else (8, 1).
BLOCKS = ((4, 4, 64), (8, 2, 32), (8, 1, 16))
_INT32_LIMIT = 1 << 31


@dataclass(frozen=True)
class U8ConvPlan:
    """Geometry and packed weights of one int8 CONV_2D (groups 1, default numerics)."""
    in_hwc: tuple
    out_hw: tuple
    stride: tuple
    padding: tuple  # (top, left), >= 0
    pad_byte: int  # the input zero point + 128 (0..255): u of a padded tap
    padded_hw: tuple  # (Hp, Wp): every row and column an output reaches
    runs: np.ndarray  # (R,) int64: each run's byte offset in the padded image, in TFLM's (ky, kx) order
    quads: int  # ceil(run length / 4)
    packed: np.ndarray  # flat (R, quads, OCp, 4) int8, zeros past each run and past OC; read-only
    init: np.ndarray  # (OCp,) int32: -128·Σw per output channel (zeros in the padding)
    channels: int  # OC
    padded_channels: int  # OCp
    block: int  # index into BLOCKS
    bound: int  # max_o Σ|w| · max|x| (< 2^31): |Σ w·x| never exceeds it


def plan(in_hwc, out_hw, kernel_hw, stride, dilation, padding, pad_value: int, weights: np.ndarray,
         max_abs_input: int) -> U8ConvPlan | None:
    """The plan, or None where it does not apply: gemm.conv_plan's refusals (non-positive strides
    or dilations, negative padding, a padded image far larger than input and output), a zero point
    outside int8, a weight outside int8, the bound max_o Σ|w|·max_abs_input at or above 2^31.
    ``weights``: (KH·KW·C, OC) integers in TFLM's order (ky, kx, c); the input must be int8."""
    if not -128 <= int(pad_value) <= 127:
        return None
    geometry = gemm.conv_plan(in_hwc, out_hw, kernel_hw, stride, dilation, padding, pad_value)
    if geometry is None:
        return None
    w = np.asarray(weights, np.int64)
    depth, channels = w.shape
    c, (kh, kw), (dh, dw) = geometry.in_hwc[2], geometry.kernel_hw, geometry.dilation
    if depth != kh * kw * c or channels == 0 or int(w.min()) < -128 or int(w.max()) > 127:
        return None
    if not 128 <= max_abs_input:
        return None
    bound = int(np.abs(w).sum(axis=0).max()) * int(max_abs_input)
    if bound >= _INT32_LIMIT:
        return None
    hp, wp, _ = geometry.padded_hwc
    runs, run, quads = filter_runs((kh, kw), (dh, dw), wp, c)
    padded = -(-channels // LANES) * LANES
    block = 0 if padded % 64 == 0 else 1 if padded % 32 == 0 else 2
    packed = np.zeros((len(runs), 4 * quads, padded), np.int8)
    packed[:, :run, :channels] = w.reshape(len(runs), run, channels)
    packed = np.ascontiguousarray(packed.reshape(len(runs), quads, 4, padded).transpose(0, 1, 3, 2)).reshape(-1)
    packed.flags.writeable = False
    init = np.zeros(padded, np.int32)
    sums = w.sum(axis=0)
    assert int(np.abs(128 * sums).max()) < _INT32_LIMIT  # 128·|Σw| <= Σ|w|·max|x| = bound
    init[:channels] = -128 * sums
    init.flags.writeable = False
    runs = np.array(runs, np.int64)
    runs.flags.writeable = False
    return U8ConvPlan(geometry.in_hwc, geometry.out_hw, geometry.stride, geometry.padding, int(pad_value) + 128,
                      (hp, wp), runs, quads, packed, init, channels, padded, block, bound)


def u8_start(bias, input_offset: int, weight_sums) -> np.ndarray:
    """The accumulators' start when the bytes u = x + 128 are multiplied (the identity above):
    bias + (input_offset - 128)·Σw, exact in int64, then modulo 2^32 as an int32 value (int64)."""
    start = np.asarray(bias, np.int64) + (int(input_offset) - 128) * np.asarray(weight_sums, np.int64)
    return (start + (1 << 31)) % (1 << 32) - (1 << 31)


def filter_runs(kernel_hw, dilation, padded_width: int, depth: int) -> tuple[list, int, int]:
    """The reduction's runs in TFLM's (ky, kx) order: each run's byte offset in a padded (Hp, Wp, C)
    image relative to the output pixel's window, a run's length in bytes and the quads of four
    bytes it spans. With dilation_w 1 a filter row's KW·C bytes are consecutive (one run per filter
    row), else each tap's C channels are a run."""
    (kh, kw), (dh, dw), wp, c = kernel_hw, dilation, padded_width, depth
    if dw == 1:
        runs, run = [ky * dh * wp * c for ky in range(kh)], kw * c
    else:
        runs, run = [(ky * dh * wp + kx * dw) * c for ky in range(kh) for kx in range(kw)], c
    return runs, run, -(-run // 4)


def buffer_shape(p: U8ConvPlan, images: int) -> tuple:
    """The flat uint8 padded-image buffer for ``images`` images: four bytes of slack at the end for
    the last run's quad."""
    return (images * p.padded_hw[0] * p.padded_hw[1] * p.in_hwc[2] + 4,)


# --- the intrinsic ------------------------------------------------------------------------------

_available = None
_blocks = None
_block_4x4 = _block_8x2 = _block_8x1 = None
_build_lock = threading.Lock()


def available() -> bool:
    """Whether numba compiles for this host and the host has AVX512-VNNI (imports numba: eval
    time only)."""
    global _available
    if _available is None:
        try:
            from llvmlite import binding
            from numba.core import config

            features = binding.get_host_cpu_features()
            _available = (not config.CPU_NAME or config.CPU_NAME == "host") and not config.CPU_FEATURES \
                and bool(features.get("avx512vnni")) and bool(features.get("avx512bw"))
        except Exception:  # pragma: no cover - numba or llvmlite without host queries
            _available = False
    return _available


_vbmi = None


def vbmi_available() -> bool:
    """``available()`` and the host also has AVX512-VBMI (vpermb, vpermi2b: the byte permutations
    of first_conv's row blocks and depthwise_narrow). Imports numba: eval time only."""
    global _vbmi
    if not available():
        return False
    if _vbmi is None:
        try:
            from llvmlite import binding

            _vbmi = bool(binding.get_host_cpu_features().get("avx512vbmi"))
        except Exception:  # pragma: no cover - llvmlite without host queries
            _vbmi = False
    return _vbmi


def _intrinsics():
    global _blocks, _block_4x4, _block_8x2, _block_8x1
    if _blocks is not None:
        return
    with _build_lock:
        if _blocks is None:
            made = [_make_block(r, v) for r, v, _ in BLOCKS]
            _block_4x4, _block_8x2, _block_8x1 = made
            _blocks = made


def array_arguments(context, builder, signature, args) -> list:
    """An intrinsic's arguments as numba array structures (``.data``, ``.shape``), None for scalars."""
    from numba import types

    return [context.make_array(t)(context, builder, v) if isinstance(t, types.Array) else None
            for t, v in zip(signature.args, args)]


def vpdpbusd(builder):
    """``(dot, operand)``: the declaration of llvm.x86.avx512.vpdpbusd.512 in the builder's module,
    ``dot(acc, u, w)`` with acc <16 x i32> and the byte operands of type ``operand`` (LLVM 22's
    <64 x i8>, older releases' <16 x i32>: bitcast 64 bytes to it). Imports llvmlite: eval time
    only (ops/compiled/depthwise_vnni.py builds its blocks on it)."""
    from llvmlite import binding, ir
    from numba.core import cgutils

    accumulator = ir.VectorType(ir.IntType(32), LANES)
    operand = ir.VectorType(ir.IntType(8), 4 * LANES) if binding.llvm_version_info >= (22,) else accumulator
    dot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
        accumulator, [accumulator, operand, operand]), "llvm.x86.avx512.vpdpbusd.512")
    return dot, operand


def run_quad_loops(builder, name: str, run_count, quad_count, starts, run_body, quad_body):
    """IR for the reduction of the register blocks here and in first_conv: for run < run_count,
    ``state = run_body(run)``, then for q < quad_count, ``sums = quad_body(state, q, sums)``, the
    accumulators (vector phis, starting at ``starts``) carried through both loops. Both loops test
    at the bottom: the counts (i64 values) must be >= 1. Returns the final accumulators, the builder
    positioned after the loops (block ``name.done``)."""
    from llvmlite import ir

    i64 = ir.IntType(64)
    entry = builder.block
    run_loop = builder.append_basic_block(f"{name}.run")
    quad_loop = builder.append_basic_block(f"{name}.quad")
    run_end = builder.append_basic_block(f"{name}.run_end")
    done = builder.append_basic_block(f"{name}.done")
    builder.branch(run_loop)

    def head(values, before):
        """The loop's counter and carried values as phis, entered from ``before`` at 0 / ``values``."""
        phis = []
        for value in [ir.Constant(i64, 0)] + list(values):
            phi = builder.phi(value.type)
            phi.add_incoming(value, before)
            phis.append(phi)
        return phis[0], phis[1:]

    def latch(counter, phis, values, count, loop, after):
        """Back edge from the current block: counter + 1 and ``values`` into the phis; on while < count."""
        following = builder.add(counter, ir.Constant(i64, 1))
        counter.add_incoming(following, builder.block)
        for phi, value in zip(phis, values):
            phi.add_incoming(value, builder.block)
        builder.cbranch(builder.icmp_signed("<", following, count), loop, after)

    builder.position_at_end(run_loop)
    run, run_sums = head(starts, entry)
    state = run_body(run)
    builder.branch(quad_loop)

    builder.position_at_end(quad_loop)
    q, sums = head(run_sums, run_loop)
    updated = quad_body(state, q, sums)
    latch(q, sums, updated, quad_count, quad_loop, run_end)

    builder.position_at_end(run_end)
    latch(run, run_sums, updated, run_count, run_loop, done)

    builder.position_at_end(done)
    return updated


def pixel_block_reduction(builder, runs, run_count, quads, quad_stride, column, weight_data, operand, dot, starts,
                          rows: int, row_operand):
    """``run_quad_loops`` for a register block of ``rows`` operands x V = len(starts) weight vectors
    (the accumulator k = r·V + v starts at starts[v]): per run, its byte offset in the image
    (``runs``, an i64 array) and its first weight row; per quad q, the V weight vectors at
    weight_data[(run·quads + q)·quad_stride + 4·column + 64·v] (int8 bytes) and, per row r, the
    operand ``row_operand(r, run offset + 4q)``, each row times each weight vector in one ``dot``
    (vpdpbusd). Returns the R·V accumulators."""
    from llvmlite import ir

    i64 = ir.IntType(64)
    vectors = len(starts)

    def run_body(run):
        run_offset = builder.load(builder.gep(runs.data, [run]))
        run_weights = builder.add(builder.mul(builder.mul(run, quads), quad_stride),
                                  builder.mul(column, ir.Constant(i64, 4)))
        return run_offset, run_weights

    def quad_body(state, q, sums):
        run_offset, run_weights = state
        weight_row = builder.add(run_weights, builder.mul(q, quad_stride))
        ws = []
        for v in range(vectors):
            address = builder.gep(weight_data, [builder.add(weight_row, ir.Constant(i64, 4 * LANES * v))])
            ws.append(builder.load(builder.bitcast(address, operand.as_pointer()), align=1))
        quad_offset = builder.add(run_offset, builder.mul(q, ir.Constant(i64, 4)))
        updated = []
        for r in range(rows):
            x = row_operand(r, quad_offset)
            for v in range(vectors):
                updated.append(builder.call(dot, [sums[r * vectors + v], x, ws[v]]))
        return updated

    return run_quad_loops(builder, "block", run_count, quads, [starts[k % vectors] for k in range(rows * vectors)],
                          run_body, quad_body)


def _make_block(rows: int, vectors: int):
    """An intrinsic ``block(image, pixels, runs, quads, weights, init, acc, acc_rows, column)``:
    for r < rows and output channels oc in column .. column + 16·vectors,
        acc[acc_rows[r], oc] = init[oc] + Σ_run Σ_q Σ_{i<4} image[pixels[r] + runs[run] + 4q + i]
                                                      · weights[((run·quads + q)·OCp + oc)·4 + i]
    (int32, modulo 2^32); image: flat uint8; weights: flat int8; init: (OCp,) int32; pixels,
    acc_rows: (rows,) int64; runs: (R,) int64, R >= 1; quads >= 1; acc: 2-D int32 (…, OCp)."""
    from llvmlite import binding, ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    accumulator = ir.VectorType(i32, LANES)
    # LLVM 22's signature takes the byte operands as <64 x i8> (older ones <16 x i32>; the newer
    # releases upgrade that form).
    byte_form = binding.llvm_version_info >= (22,)
    operand = ir.VectorType(i8, 4 * LANES) if byte_form else accumulator
    zeros = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)

    def block(typingctx, image, pixels, runs, quads, weights, init, acc, acc_rows, column):
        arrays = (image, pixels, runs, weights, init, acc, acc_rows)
        if not all(isinstance(a, types.Array) for a in arrays):
            return None
        if not (image.dtype == types.uint8 and weights.dtype == types.int8 and acc.dtype == init.dtype == types.int32
                and pixels.dtype == runs.dtype == acc_rows.dtype == types.int64
                and isinstance(quads, types.Integer) and isinstance(column, types.Integer)):
            return None
        sig = types.void(image, pixels, runs, quads, weights, init, acc, acc_rows, column)

        def codegen(context, builder, signature, args):
            (image_a, pixels_a, runs_a, _, weights_a, init_a, acc_a, rows_a, _) = array_arguments(
                context, builder, signature, args)
            dot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                accumulator, [accumulator, operand, operand]), "llvm.x86.avx512.vpdpbusd.512")
            quads_v = context.cast(builder, args[3], signature.args[3], types.int64)
            column_v = context.cast(builder, args[8], signature.args[8], types.int64)
            run_count = builder.extract_value(runs_a.shape, 0)
            width = builder.extract_value(acc_a.shape, 1)  # OCp
            image_data = builder.bitcast(image_a.data, i8.as_pointer())
            weight_data = builder.bitcast(weights_a.data, i8.as_pointer())
            init_data = builder.bitcast(init_a.data, i32.as_pointer())
            pixel_base = [builder.load(builder.gep(pixels_a.data, [ir.Constant(i64, r)])) for r in range(rows)]
            quad_stride = builder.mul(width, ir.Constant(i64, 4))  # bytes per (run, quad) row
            starts = [builder.load(builder.bitcast(builder.gep(init_data, [builder.add(
                column_v, ir.Constant(i64, LANES * v))]), accumulator.as_pointer()), align=4)
                for v in range(vectors)]

            def row_operand(r, quad_offset):  # pixel r's quad in all 16 lanes
                address = builder.gep(image_data, [builder.add(pixel_base[r], quad_offset)])
                word = builder.load(builder.bitcast(address, i32.as_pointer()), align=1)
                one = builder.insert_element(ir.Constant(accumulator, None), word, ir.Constant(i32, 0))
                spread = builder.shuffle_vector(one, one, zeros)
                return builder.bitcast(spread, operand) if byte_form else spread

            updated = pixel_block_reduction(builder, runs_a, run_count, quads_v, quad_stride, column_v, weight_data,
                                            operand, dot, starts, rows, row_operand)
            acc_data = builder.bitcast(acc_a.data, i32.as_pointer())
            for r in range(rows):
                row = builder.load(builder.gep(rows_a.data, [ir.Constant(i64, r)]))
                start = builder.add(builder.mul(row, width), column_v)
                for v in range(vectors):
                    address = builder.gep(acc_data, [builder.add(start, ir.Constant(i64, LANES * v))])
                    builder.store(updated[r * vectors + v], builder.bitcast(address, accumulator.as_pointer()),
                                  align=4)
            return context.get_dummy_value()

        return sig, codegen

    block.__name__ = f"block_u8_{rows}x{vectors}"
    return intrinsic(block)


# --- the kernel ---------------------------------------------------------------------------------

@lazy_njit
def _u8_conv_kernel(images, oh, ow, sh, sw, hp, wp, channels, flat, runs, quads, weights, init, acc, block):
    """Direct convolution of the padded uint8 images ``flat`` (images·Hp·Wp·C + slack) into acc
    (images·OH·OW, OCp) int32, rows in (image, oy, ox) order, in blocks of consecutive output
    pixels (the last block repeats the last pixel: the same row written again with the same
    values)."""
    plane = hp * wp * channels
    total = images * oh * ow
    if block == 0:
        rows, step = 4, 64
    elif block == 1:
        rows, step = 8, 32
    else:
        rows, step = 8, 16
    pixels = np.empty(rows, np.int64)
    acc_rows = np.empty(rows, np.int64)
    n = 0
    oy = 0
    ox = 0
    for first in range(0, total, rows):
        for r in range(rows):
            if first + r < total:
                pixels[r] = n * plane + (oy * sh * wp + ox * sw) * channels
                acc_rows[r] = first + r
                ox += 1
                if ox == ow:
                    ox = 0
                    oy += 1
                    if oy == oh:
                        oy = 0
                        n += 1
            else:
                pixels[r] = pixels[r - 1]
                acc_rows[r] = acc_rows[r - 1]
        for column in range(0, acc.shape[1], step):
            if block == 0:
                _block_4x4(flat, pixels, runs, quads, weights, init, acc, acc_rows, column)
            elif block == 1:
                _block_8x2(flat, pixels, runs, quads, weights, init, acc, acc_rows, column)
            else:
                _block_8x1(flat, pixels, runs, quads, weights, init, acc, acc_rows, column)


def conv(p: U8ConvPlan, x: np.ndarray, flat: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """The exact int32 accumulators Σ w·x (B·OH·OW, OC) of the int8 images x (B, H, W, C), padded
    with the zero point. ``flat`` (buffer_shape) uint8 and ``acc`` (B·OH·OW, OCp) int32: the
    caller's scratch buffers (contents undefined); the result is a view of ``acc``. Callers check
    ``available()`` first."""
    _intrinsics()
    (oh, ow), (sh, sw), (pt, pl), (hp, wp) = p.out_hw, p.stride, p.padding, p.padded_hw
    (h, w, c), images = p.in_hwc, x.shape[0]
    # u = x + 128: the int8 bytes with the top bit flipped, written into the padded copy (numpy);
    # the zero point's u around it (conv_plan: Hp >= H + pt, Wp >= W + pl) and in the slack.
    end = images * hp * wp * c
    image = flat[:end].reshape(images, hp, wp, c)
    np.bitwise_xor(x.view(np.uint8), np.uint8(0x80), out=image[:, pt:pt + h, pl:pl + w])
    for region in (image[:, :pt], image[:, pt + h:], image[:, pt:pt + h, :pl], image[:, pt:pt + h, pl + w:]):
        if region.size:
            region.fill(p.pad_byte)
    flat[end:] = p.pad_byte
    _u8_conv_kernel(images, oh, ow, sh, sw, hp, wp, c, flat, p.runs, p.quads, p.packed, p.init, acc, p.block)
    return acc[:, :p.channels]
