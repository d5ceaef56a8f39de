"""Compiled int8 DEPTHWISE_CONV_2D for narrow layers (C·dm = 1, 2, 4, 8 or 16 output channels, e.g.
48x48x8 3x3, or one input channel x depth multiplier 8): SEVERAL OUTPUT PIXELS SHARE ONE 16-LANE
VECTOR, four taps per AVX512-VNNI ``vpdpbusd``, the accumulators stay in a register across every tap
and are requantized in that register and stored as int8 (no int32 accumulator is ever stored).

Layout. OC = C·dm output channels divide 16: P = 16 / OC output pixels share a vector, lane
i = p·OC + oc (pixel ox + p, output channel oc, input channel ic = oc // dm). Per image, the padded
image (Hp, Wp, C) holds u = x + 128 as bytes with C channels (NOT repeated dm times: the
permutation below reads one input byte into the dm lanes of its channel, which is how depth
multiplier 8 from one channel broadcasts its input) and the pad byte outside the image; it is
filled with the pad byte once per call and only its interior is rewritten per image. A filter
row's taps kx = 4j .. 4j + 3 form quad j (J = ceil(KW / 4)). For P output pixels starting at ox,
quad (ky, j) loads the 64 bytes at padded pixel (oy·sh + ky·dh, ox·sw + 4j·dw) and one ``vpermb``
(AVX512-VBMI) with a per-layer index vector puts byte
    4i + k  <-  ((p·sw + k·dw)·C + ic)        (i = p·OC + oc; slot k of a tap past KW reads byte 0)
so one vpdpbusd multiplies it by the quad's packed weights (byte 4i + k = w[ky, 4j + k, oc], zero
past KW) and adds four products into each of the 16 int32 lanes. ``plan`` requires every index
of a real tap below 64 (((P - 1)·sw + min(KW - 1, 3)·dw + 1)·C <= 64) and OW >= P; the buffer has
64 bytes of slack so the last load stays inside it. The last group of a row starts at OW - P
(it recomputes, and rewrites with the same bytes, pixels of the group before it).

Why it equals TFLM byte for byte. TFLM forms, per output, ``int32 acc = bias + Σ w·(x + input_offset)``
over the taps inside the image, in int32 arithmetic that wraps (modulo 2^32, as the oracle's x86
does). With u = x + 128 (0..255, the int8 byte with its top bit flipped) and off = input_offset:

    Σ w·(x + off) = Σ w·u + (off - 128)·Σ w        (Σ over all KH·KW taps)

provided a tap outside the image holds the u whose x + off is 0, u = 128 - off = zero point + 128:
then its w·u + (off - 128)·w is 0, as TFLM skipping the tap adds nothing. ``plan`` refuses a zero
point outside -128..127 (a malformed model's), whose u would not be a byte, and filter values
outside int8. The zero-weight slots of a last quad add 0 whatever byte they read. Each lane's
accumulator starts at its channel's ``init = bias + (off - 128)·Σw`` taken modulo 2^32. vpdpbusd
(NOT vpdpbusds, the saturating form) forms each product u·w exactly (|u·w| <= 255·128), adds four
of them exactly (< 2^17 in magnitude) and adds that to the int32 lane modulo 2^32. So every
accumulator is congruent modulo 2^32 to TFLM's int32 value, i.e. equal to it as an int32, for
EVERY accumulator bound: no bound needs checking, and biases near ±2^31 wrap as C's do. (This is
ops/compiled/depthwise_vnni.py's argument; only which bytes land in which lane differs.)

The requantization is ops/compiled/lanes_ir.requantize_merged (depthwise.py's one-shift int64
form on the even and the odd lanes, with or without the left shift, the output offset folded into
the rounding constant by lanes_ir.fold_offset where its proof allows, else added before the int32
truncation); lanes_ir's docstring proves each step. Every per-channel constant is depthwise.plan's
(``requant``), repeated P times along the 16 lanes. No float operation anywhere.

The LLVM intrinsics llvm.x86.avx512.vpdpbusd.512 and llvm.x86.avx512.permvar.qi.512 are
x86-specific: ``available()`` requires that numba targets the host and the host has AVX512-VNNI,
AVX512-BW and AVX512-VBMI; else the caller keeps its other kernels. Only eval imports numba /
llvmlite; ``plan`` runs on numpy.

Measured (one thread, CPU time, median of 9 alternating rounds, ns per output, depthwise.py ->
this kernel, the same bytes): vww_96 op 1 (48x48x8 3x3/1, batch 64) 1.37 -> 0.47 (2.92x),
person_detect op 1 (the same shape, batch 128) 1.35 -> 0.41 (3.27x), person_detect op 0 (96x96x1
dm 8 3x3/2, batch 128) 2.19 -> 0.42 (5.23x). Of the ~0.4 ns, ~0.09 is the padded copy and ~0.31
the register blocks (3 vpermb + 3 vpdpbusd + ~18 requantization instructions per 16 outputs).
Two or four pixel groups per loop iteration (independent accumulators) measured the same as one.
A later run on a quieter machine: 1.32 -> 0.36 (3.68x), 1.31 -> 0.41 (3.17x), 2.20 -> 0.40 (5.53x).
Whole models, run_batch(128) on 2 threads, process CPU per sample, without -> with this kernel:
vww_96 0.133 -> 0.112 ms (1.19x), person_detect 0.165 -> 0.109 ms (1.52x).
Synthetic 3x3 layers (batch 64): 48x48 with 4, 2, 1 channels 2.13 / 3.21 / 5.29 -> 0.44 / 0.69 /
0.92, 96x96x1 dm 4 and dm 16 stride 2 4.27 / 1.55 -> 0.66 / 0.37, 48x48x16 dm 1 0.39 (= depthwise_vnni).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from . import depthwise, gemm_u8, lanes_ir, lazy_njit

__all__ = ["NarrowDepthwisePlan", "plan", "depthwise_conv", "available"]

LANES = 16
WINDOW = 64  # bytes one quad's load reads (the permutation's source)


@dataclass(frozen=True)
class NarrowDepthwisePlan(depthwise.DepthwiseLayer):
    """The narrow kernel's layout and its per-lane constants (depthwise.plan's, repeated P times)."""
    pixels_per_vector: int  # P = 16 / OC
    padded_hw: tuple  # (Hp, Wp): every row and column a real tap reads
    pad_byte: int  # u of a tap outside the image: zero point + 128 (0..255)
    quad_offsets: np.ndarray  # (KH·J,) int64: quad (ky, j)'s first byte relative to its group's first pixel
    permutation: np.ndarray  # (64,) uint8: the vpermb index (byte 4i + k of the operand <- window byte)
    packed: np.ndarray  # flat (KH·J, 64) int8: byte 4i + k = w[ky, 4j + k, i mod OC], 0 past KW
    lanes32: np.ndarray  # (3, 16) int32: init, multiplier, left shift per lane
    # (3, 2, 8) int64: rounding (+ output offset·2^right when folded), negative rounding, right
    # shift; [n, h, j] is lane 2j + h's.
    lanes64: np.ndarray
    # (9,) int64: input bytes per output pixel (sw·C), OC, P, OW, output offset, activation min and
    # max, whether any lane shifts left, whether the output offset is added after the shift.
    scalars: np.ndarray
    channels: int  # OC = C·dm


def available() -> bool:
    """The host runs vpdpbusd and vpermb and numba compiles for it (imports numba: eval time only)."""
    return gemm_u8.vbmi_available()


def _lanes(values, pixels: int) -> np.ndarray:
    return np.tile(np.asarray(values), pixels)


def plan(in_hwc, out_hw, stride, dilation, padding, depth_multiplier: int, input_offset: int,
         output_offset: int, activation_min: int, activation_max: int, weights: np.ndarray, bias, multiplier,
         shift) -> NarrowDepthwisePlan | None:
    """The plan for an int8 depthwise convolution whose C·dm output channels divide 16, or None
    where it does not apply (depthwise.plan's int8 refusals, a zero point or filter value outside
    int8, fewer than P output columns, a tap reach past one 64-byte window, a huge padded copy).
    ``weights`` (KH, KW, C·dm); ``bias`` (C·dm,) or None. numpy only: runs at prepare."""
    w = np.asarray(weights, np.int64)
    kh, kw, channels = w.shape
    if channels < 1 or LANES % channels:
        return None
    requant = depthwise.plan("INT8", in_hwc, out_hw, stride, dilation, padding, depth_multiplier, input_offset,
                             output_offset, activation_min, activation_max, weights, bias, multiplier, shift)
    if requant is None or not -128 <= -int(input_offset) <= 127:
        return None  # (the padded taps' u = zero point + 128 must be a byte)
    if int(w.min()) < -128 or int(w.max()) > 127 or channels % depth_multiplier:
        return None
    c = channels // depth_multiplier
    pixels = LANES // channels
    (oh, ow), (sh, sw), (dh, dw) = out_hw, stride, dilation
    if ow < pixels:
        return None
    reach = min(kw - 1, 3)  # the last real slot of the widest quad
    if ((pixels - 1) * sw + reach * dw + 1) * c > WINDOW:
        return None
    quads = -(-kw // 4)
    hp = (oh - 1) * sh + (kh - 1) * dh + 1
    wp = (ow - 1) * sw + (kw - 1) * dw + 1
    if hp * wp * c > 8 * (in_hwc[0] * in_hwc[1] * c + oh * ow * channels) + 4096:
        return None  # strides or dilations reaching far past the image: a huge padded copy
    lane = np.arange(LANES)
    p, oc = lane // channels, lane % channels
    permutation = np.zeros((LANES, 4), np.int64)
    packed = np.zeros((kh, quads, LANES, 4), np.int64)
    for k in range(4):
        permutation[:, k] = ((p * sw + k * dw) * c + oc // depth_multiplier)
        for j in range(quads):
            if 4 * j + k < kw:
                packed[:, j, :, k] = w[:, 4 * j + k, oc]
    # Slots past KW (zero weights) read byte 0; the real slots of every quad stay inside the window.
    permutation[:, min(kw, 4):] = 0
    assert int(permutation.max()) < WINDOW
    offsets = np.array([(ky * dh * wp + 4 * j * dw) * c for ky in range(kh) for j in range(quads)], np.int64)
    init = gemm_u8.u8_start(requant.bias, input_offset, w.sum(axis=(0, 1)))  # modulo 2^32, as int32
    lanes32 = np.stack([_lanes(init, pixels), _lanes(requant.multiplier, pixels),
                        _lanes(requant.left_shift, pixels)]).astype(np.int32)
    # The output offset folded into the rounding constant where lanes_ir's proof allows (else it is
    # added after the shift).
    off = int(requant.output_offset)
    folded = lanes_ir.fold_offset(requant.rounding, requant.right_shift, off)
    fold = folded is not None
    rounding = folded if fold else requant.rounding
    # (rounding, negative rounding, right shift) x (even lanes, odd lanes).
    lanes64 = np.ascontiguousarray(np.stack([_lanes(v, pixels).reshape(LANES // 2, 2).T for v in
                                             (rounding, requant.negative_rounding, requant.right_shift)]), np.int64)
    scalars = np.array([sw * c, channels, pixels, ow, off, requant.activation_min, requant.activation_max,
                        requant.left_shifts, not fold], np.int64)
    arrays = [np.ascontiguousarray(a) for a in (permutation.reshape(-1).astype(np.uint8),
                                                packed.reshape(-1).astype(np.int8), offsets, lanes32, lanes64, scalars)]
    for a in arrays:
        a.flags.writeable = False
    return NarrowDepthwisePlan(requant, tuple(int(v) for v in in_hwc), (int(oh), int(ow)), (int(sh), int(sw)),
                               (int(dh), int(dw)), (int(padding[0]), int(padding[1])), (int(kh), int(kw)),
                               int(depth_multiplier), pixels, (hp, wp), 128 - int(input_offset), arrays[2],
                               arrays[0], arrays[1], arrays[3], arrays[4], arrays[5], channels)


# --- the intrinsic ------------------------------------------------------------------------------

_row = None
_build_lock = threading.Lock()


def _intrinsics():
    global _row
    if _row is None:
        with _build_lock:
            if _row is None:
                _row = _make_row()


def _make_row():
    """An intrinsic ``row(image, out, row_base, out_base, offsets, permutation, packed, lanes32,
    lanes64, scalars)``: one output row. For group t < ceil(OW / P), first pixel
    ox = min(t·P, OW - P):
        acc = init + Σ_g vpdpbusd(vpermb(image[row_base + ox·sw·C + offsets[g] ..][:64], permutation),
                                  packed[g])                       (16 int32 lanes, modulo 2^32)
    requantized in registers (depthwise.py's one-shift form) and stored as 16 int8 at
    out[out_base + ox·OC]. image flat uint8 (64 bytes of slack), out flat int8, offsets int64
    (G >= 1), permutation (64,) uint8, packed (G·64,) int8, lanes32 (3, 16) int32, lanes64
    (3, 2, 8) int64, scalars (9,) int64 (see NarrowDepthwisePlan).

    The requantization runs on the even and the odd lanes as two vectors of 8 int64 (the int32
    lanes sign-extended in place, so LLVM multiplies with vpmuldq and needs no widening or
    narrowing shuffles), the two halves' low 32 bits interleaved back into 16 int32 lanes. The row
    loop exists in four copies (with / without the left shift, the output offset added after the
    shift or folded into the rounding constant), chosen once per call by the plan's flags."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    half = LANES // 2
    v32, h64 = ir.VectorType(i32, LANES), ir.VectorType(i64, half)
    bytes64, bytes16 = ir.VectorType(i8, WINDOW), ir.VectorType(i8, LANES)
    lane_sets = [ir.Constant(ir.VectorType(i32, half), list(range(h, LANES, 2))) for h in range(2)]
    splat = lanes_ir.splat

    def row(typingctx, image, out, row_base, out_base, offsets, permutation, packed, lanes32, lanes64, scalars):
        arrays = (image, out, offsets, permutation, packed, lanes32, lanes64, scalars)
        if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays):
            return None  # (the code below indexes their data as C-contiguous)
        if not (image.dtype == permutation.dtype == types.uint8 and out.dtype == packed.dtype == types.int8
                and offsets.dtype == lanes64.dtype == scalars.dtype == types.int64 and lanes32.dtype == types.int32
                and isinstance(row_base, types.Integer) and isinstance(out_base, types.Integer)):
            return None
        sig = types.void(image, out, row_base, out_base, offsets, permutation, packed, lanes32, lanes64, scalars)

        def codegen(context, builder, signature, args):
            (image_a, out_a, _, _, offsets_a, perm_a, packed_a, lanes32_a, lanes64_a, scalars_a) = \
                gemm_u8.array_arguments(context, builder, signature, args)
            dot, operand = gemm_u8.vpdpbusd(builder)
            permute = cgutils.get_or_insert_function(builder.module, ir.FunctionType(bytes64, [bytes64, bytes64]),
                                                     "llvm.x86.avx512.permvar.qi.512")
            row_base = context.cast(builder, args[2], signature.args[2], types.int64)
            out_base = context.cast(builder, args[3], signature.args[3], types.int64)
            image_data = builder.bitcast(image_a.data, i8.as_pointer())
            out_data = builder.bitcast(out_a.data, i8.as_pointer())
            packed_data = builder.bitcast(packed_a.data, i8.as_pointer())
            count = builder.extract_value(offsets_a.shape, 0)

            def scalar(n):
                return builder.load(builder.gep(scalars_a.data, [ir.Constant(i64, n)]))

            def lane_vector(array, n, vector_type, element):
                data = builder.bitcast(array.data, element.as_pointer())
                return builder.load(builder.bitcast(builder.gep(data, [ir.Constant(i64, vector_type.count * n)]),
                                                    vector_type.as_pointer()), align=element.width // 8)

            in_step, out_step, pixels, width = scalar(0), scalar(1), scalar(2), scalar(3)
            output_offset = splat(builder, scalar(4), half)
            act_min = splat(builder, builder.trunc(scalar(5), i32), LANES)
            act_max = splat(builder, builder.trunc(scalar(6), i32), LANES)
            index = builder.load(builder.bitcast(perm_a.data, bytes64.as_pointer()), align=1)
            init, multiplier, left = (lane_vector(lanes32_a, n, v32, i32) for n in range(3))
            # Per half h (lanes h, h + 2, ...): the multiplier sign-extended, rounding, negative
            # rounding and right shift.
            multiplier = [builder.sext(builder.shuffle_vector(multiplier, multiplier, lane_sets[h]), h64)
                          for h in range(2)]
            rounding, negative_rounding, right = ([lane_vector(lanes64_a, 2 * n + h, h64, i64) for h in range(2)]
                                                  for n in range(3))
            groups = builder.sdiv(builder.sub(builder.add(width, pixels), ir.Constant(i64, 1)), pixels)
            last = builder.sub(width, pixels)
            zero = ir.Constant(i64, 0)

            def requantize(acc, shifts_left, add_offset):
                """depthwise.py's requantization on the 16 lanes (lanes_ir.requantize_merged)."""
                return lanes_ir.requantize_merged(builder, acc, left if shifts_left else None, multiplier, rounding,
                                                  negative_rounding, right, output_offset if add_offset else None,
                                                  act_min, act_max, negative_first=True)

            done = builder.append_basic_block("narrow.done")

            def emit_loop(shifts_left, add_offset):
                entry = builder.block
                group_loop = builder.append_basic_block("narrow.group")
                quad_loop = builder.append_basic_block("narrow.quad")
                finish = builder.append_basic_block("narrow.finish")
                builder.branch(group_loop)

                builder.position_at_end(group_loop)
                t = builder.phi(i64)
                t.add_incoming(zero, entry)
                first = builder.mul(t, pixels)
                ox = builder.select(builder.icmp_signed("<", first, last), first, last)
                base = builder.add(row_base, builder.mul(ox, in_step))
                builder.branch(quad_loop)

                builder.position_at_end(quad_loop)
                g = builder.phi(i64)
                g.add_incoming(zero, group_loop)
                acc = builder.phi(v32)
                acc.add_incoming(init, group_loop)
                offset = builder.load(builder.gep(offsets_a.data, [g]))
                window = builder.load(builder.bitcast(builder.gep(image_data, [builder.add(base, offset)]),
                                                      bytes64.as_pointer()), align=1)
                u = builder.call(permute, [window, index])
                w = builder.load(builder.bitcast(builder.gep(packed_data, [builder.mul(g, ir.Constant(i64, WINDOW))]),
                                                 bytes64.as_pointer()), align=1)
                if operand != bytes64:
                    u, w = builder.bitcast(u, operand), builder.bitcast(w, operand)
                updated = builder.call(dot, [acc, u, w])
                g_next = builder.add(g, ir.Constant(i64, 1))
                g.add_incoming(g_next, quad_loop)
                acc.add_incoming(updated, quad_loop)
                builder.cbranch(builder.icmp_signed("<", g_next, count), quad_loop, finish)

                builder.position_at_end(finish)
                value = requantize(updated, shifts_left, add_offset)
                target = builder.gep(out_data, [builder.add(out_base, builder.mul(ox, out_step))])
                builder.store(value, builder.bitcast(target, bytes16.as_pointer()), align=1)
                t_next = builder.add(t, ir.Constant(i64, 1))
                t.add_incoming(t_next, finish)
                builder.cbranch(builder.icmp_signed("<", t_next, groups), group_loop, done)

            # One loop per (left shift, offset added) pair, chosen by the plan's flags.
            shifts_left = builder.icmp_signed("!=", scalar(7), zero)
            add_offset = builder.icmp_signed("!=", scalar(8), zero)
            variants = [builder.append_basic_block(f"narrow.variant{n}") for n in range(4)]
            choose_offset = [builder.append_basic_block(f"narrow.choose{n}") for n in range(2)]
            builder.cbranch(shifts_left, choose_offset[1], choose_offset[0])
            for n in range(2):
                builder.position_at_end(choose_offset[n])
                builder.cbranch(add_offset, variants[2 * n + 1], variants[2 * n])
            for n in range(4):
                builder.position_at_end(variants[n])
                emit_loop(bool(n >> 1), bool(n & 1))

            builder.position_at_end(done)
            return context.get_dummy_value()

        return sig, codegen

    row.__name__ = "depthwise_narrow_row"
    return intrinsic(row)


# --- the kernel ---------------------------------------------------------------------------------

@lazy_njit
def _kernel(x, image, out, offsets, permutation, packed, lanes32, lanes64, scalars, padded_height, padded_width,
            stride_h, pad_top, pad_left):
    """Per image: the interior of the padded image (u = x + 128; the border already holds the pad
    byte), then one ``_row`` per output row."""
    batches, height, width, channels = x.shape
    out_height = out.shape[1]
    row_out = out.shape[2] * out.shape[3]
    flat_out = out.reshape(-1)
    row_bytes = padded_width * channels
    # The input columns that land inside the padded image, and where. (1-D slices indexed by the
    # loop variable alone: the copy vectorises, and no per-row reshape is called.)
    first_x = max(0, -pad_left)
    stop_x = min(width, padded_width - pad_left)
    run = max(stop_x - first_x, 0) * channels
    flat_x = x.reshape(-1)
    for b in range(batches):
        for in_y in range(height):
            py = in_y + pad_top
            if run > 0 and 0 <= py < padded_height:
                source = ((b * height + in_y) * width + first_x) * channels
                src = flat_x[source:source + run]
                start = py * row_bytes + (first_x + pad_left) * channels
                dst = image[start:start + run]
                for i in range(run):
                    dst[i] = np.uint8(src[i] ^ -128)
        for oy in range(out_height):
            _row(image, flat_out, oy * stride_h * row_bytes, (b * out_height + oy) * row_out, offsets, permutation,
                 packed, lanes32, lanes64, scalars)


def depthwise_conv(p: NarrowDepthwisePlan, x: np.ndarray, out_dtype=np.int8) -> np.ndarray:
    """x (…, H, W, C) int8 (samples and the model's batch folded together) -> (N·B, OH, OW, C·dm)
    int8. Callers check ``available()`` first."""
    _intrinsics()
    h, w, c = p.in_hwc
    images = np.ascontiguousarray(x.reshape((-1, h, w, c)))
    (oh, ow), (hp, wp) = p.out_hw, p.padded_hw
    out = np.empty((images.shape[0], oh, ow, p.channels), out_dtype)
    image = np.full(hp * wp * c + WINDOW, p.pad_byte, np.uint8)
    _kernel(images, image, out, p.quad_offsets, p.permutation, p.packed, p.lanes32, p.lanes64, p.scalars, hp, wp,
            p.stride[0], p.padding[0], p.padding[1])
    return out
