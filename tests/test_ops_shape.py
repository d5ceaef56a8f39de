"""RESHAPE, SQUEEZE, EXPAND_DIMS, TRANSPOSE, CONCATENATION, STRIDED_SLICE, SPLIT, SPLIT_V, PACK,
UNPACK (ops/shape.py) and PAD, PADV2 (ops/pad.py).

These ops copy values without arithmetic; what the tests pin is TFLM's index logic and its
validation. Pinned values are hand-derived (and each is checked against TFLM as well); the
differential tests compare many parameterisations with TFLM.
"""
import numpy as np
import pytest
from diff_support import check_model, random_inputs, tflm_run

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder
from interp.errors import UnsupportedOpError

QUANTIZED = ("INT8", "INT16")


def quant(dtype, scale=0.1, zero_point=3):
    if dtype not in QUANTIZED:
        return {}
    return dict(scale=scale, zero_point=zero_point if dtype == "INT8" else 0)


def one_op(op, inputs, outputs, **options):
    """inputs/outputs: (name, shape, dtype, quant dict) or ("const", array, dtype, quant dict)."""
    b = ModelBuilder()
    ins = []
    for kind, value, dtype, q in inputs:
        if kind == "const":
            ins.append(b.constant(f"c{len(ins)}", value, dtype, **q))
        else:
            ins.append(b.input(kind, value, dtype, **q))
    outs = [b.tensor(name, shape, dtype, **q) for name, shape, dtype, q in outputs]
    b.op(op, ins, outs, **options)
    b.output(*outs)
    return b.build()


def run(data, *xs):
    """microref's outputs, after checking that TFLM gives the same bytes."""
    got = Interpreter.from_bytes(data).run(list(xs))
    verdict, payload = tflm_run(data, [list(xs)])
    assert verdict == "ok", payload
    for g, w in zip(got, payload[0]):
        assert g.shape == w.shape and g.tobytes() == w.tobytes(), (g, w)
    return got


def int8_input(shape, name="x"):
    return (name, shape, "INT8", quant("INT8"))


def int32_const(values):
    return ("const", np.array(values, np.int32), "INT32", {})


def arange(shape, dtype=np.int8):
    return (np.arange(int(np.prod(shape))) % 251 - 125).astype(dtype).reshape(shape)


# ---------------------------------------------------------------------------------- STRIDED_SLICE

def strided_slice(shape, begin, end, strides, out_shape, dtype="INT8", **masks):
    i32 = lambda v: np.array(v, np.int32)  # noqa: E731
    return one_op("STRIDED_SLICE",
                  [("x", shape, dtype, quant(dtype)), ("const", i32(begin), "INT32", {}),
                   ("const", i32(end), "INT32", {}), ("const", i32(strides), "INT32", {})],
                  [("y", out_shape, dtype, quant(dtype))], **masks)


def test_strided_slice_negative_strides_follow_python_slicing():
    x = arange([6, 5])
    data = strided_slice([6, 5], [-2, 4], [0, -10], [-2, -3], [2, 2])
    np.testing.assert_array_equal(run(data, x)[0], x[-2:0:-2, 4::-3])


def test_strided_slice_masks_and_shrink_axis():
    x = arange([3, 4, 5])
    # begin_mask on axis 0, end_mask on axis 2, shrink axis 1 at index -1.
    data = strided_slice([3, 4, 5], [2, -1, 1], [3, 0, 2], [1, 1, 2], [3, 2],
                         begin_mask=1, end_mask=4, shrink_axis_mask=2)
    np.testing.assert_array_equal(run(data, x)[0], x[:3, -1, 1::2])


def test_strided_slice_ignores_ellipsis_new_axis_and_offset():
    x = arange([4, 6])
    plain = strided_slice([4, 6], [1, 1], [3, 5], [1, 2], [2, 2])
    odd = strided_slice([4, 6], [1, 1], [3, 5], [1, 2], [2, 2], ellipsis_mask=1, new_axis_mask=2, offset=True)
    np.testing.assert_array_equal(run(odd, x)[0], run(plain, x)[0])


def test_strided_slice_rejects_rank_above_four_and_zero_stride():
    with pytest.raises(ModelError, match="exceed 4"):
        Interpreter.from_bytes(strided_slice([1, 2, 2, 2, 2], [0] * 5, [1] * 5, [1] * 5, [1, 1, 1, 1, 1]))
    with pytest.raises(ModelError, match="non-zero"):
        Interpreter.from_bytes(strided_slice([4], [0], [3], [0], [3]))


def test_strided_slice_rejects_an_output_shape_tflm_would_not_compute():
    with pytest.raises(ModelError, match="slice shape"):
        Interpreter.from_bytes(strided_slice([4], [0], [3], [1], [2]))


def test_strided_slice_shrink_past_the_end_is_unsupported():
    # Prepare sizes the axis as 1, but Eval writes nothing for it: TFLM leaves the output unset.
    data = strided_slice([3, 4], [3, 0], [4, 4], [1, 1], [4], shrink_axis_mask=1)
    with pytest.raises(UnsupportedOpError, match="unwritten"):
        Interpreter.from_bytes(data)


# ---------------------------------------------------------------------------------- CONCATENATION

def concat(shapes, axis, out_shape, dtype="INT8", qs=None, qo=None, activation="NONE"):
    qs = qs or [quant(dtype)] * len(shapes)
    return one_op("CONCATENATION", [(f"x{i}", s, dtype, q) for i, (s, q) in enumerate(zip(shapes, qs))],
                  [("y", out_shape, dtype, qo if qo is not None else quant(dtype))],
                  axis=axis, fused_activation_function=activation)


@pytest.mark.parametrize("q_in, q_out, message", [
    ((0.1, 3), (0.1, 4), "zero point"),
    ((0.1, 3), (0.1000001, 3), "scale"),   # exact comparison: no tolerance, no rescaling
])
def test_int8_concatenation_requires_identical_quantization(q_in, q_out, message):
    data = concat([[2, 3], [2, 3]], 1, [2, 6], qs=[dict(scale=q_out[0], zero_point=q_out[1]),
                                                   dict(scale=q_in[0], zero_point=q_in[1])],
                  qo=dict(scale=q_out[0], zero_point=q_out[1]))
    with pytest.raises(ModelError, match=message):
        Interpreter.from_bytes(data)


def test_int16_concatenation_requires_zero_points_of_zero_but_not_equal_scales():
    scales = [dict(scale=0.1, zero_point=0), dict(scale=0.3, zero_point=0)]
    x0, x1 = arange([2, 3], np.int16), arange([2, 2], np.int16) * 100
    out = run(concat([[2, 3], [2, 2]], -1, [2, 5], "INT16", qs=scales, qo=dict(scale=0.2, zero_point=0)), x0, x1)
    np.testing.assert_array_equal(out[0], np.concatenate([x0, x1], axis=1))
    with pytest.raises(ModelError, match="zero point"):
        Interpreter.from_bytes(concat([[2, 3], [2, 3]], 1, [2, 6], "INT16", qs=[dict(scale=0.1, zero_point=1)] * 2,
                                      qo=dict(scale=0.1, zero_point=0)))


def test_concatenation_rejects_activation_and_more_than_ten_inputs():
    with pytest.raises(ModelError, match="activation"):
        Interpreter.from_bytes(concat([[2, 3], [2, 3]], 1, [2, 6], activation="RELU"))
    with pytest.raises(ModelError, match="10"):
        Interpreter.from_bytes(concat([[1, 2]] * 11, 0, [11, 2]))


def test_concatenation_with_a_constant_input_repeats_it_for_every_sample():
    b = ModelBuilder()
    x = b.input("x", [1, 3], "INT8", scale=0.1, zero_point=3)
    c = b.constant("c", np.array([[5, -7]], np.int8), scale=0.1, zero_point=3)
    y = b.tensor("y", [1, 5], "INT8", scale=0.1, zero_point=3)
    b.op("CONCATENATION", [x, c], [y], axis=1)
    b.output(y)
    xs = np.array([[[1, 2, 3]], [[4, 5, 6]]], np.int8)
    got = Interpreter.from_bytes(b.build()).run_batch([xs])[0]
    np.testing.assert_array_equal(got, [[[1, 2, 3, 5, -7]], [[4, 5, 6, 5, -7]]])


# ---------------------------------------------------------------------------------- PAD / PADV2

def pad_model(shape, paddings, out_shape, dtype="INT8", qi=None, qo=None, constant=None, qc=None,
              paddings_dtype=np.int32):
    inputs = [("x", shape, dtype, qi if qi is not None else quant(dtype)),
              ("const", np.array(paddings, paddings_dtype), "INT32" if paddings_dtype == np.int32 else "INT64", {})]
    if constant is not None:
        inputs.append(("const", np.array(constant), dtype, qc if qc is not None else quant(dtype)))
    return one_op("PADV2" if constant is not None else "PAD", inputs,
                  [("y", out_shape, dtype, qo if qo is not None else quant(dtype))])


def test_int8_pad_fills_with_the_output_zero_point():
    x = np.array([[1, 2]], np.int8)
    data = pad_model([1, 2], [[1, 0], [0, 1]], [2, 3], qi=dict(scale=0.1, zero_point=5),
                     qo=dict(scale=0.2, zero_point=-9))
    np.testing.assert_array_equal(run(data, x)[0], [[-9, -9, -9], [1, 2, -9]])


def test_int16_and_float_pad_fill_with_zero():
    for dtype, npt in (("INT16", np.int16), ("FLOAT32", np.float32), ("INT32", np.int32)):
        x = np.array([[7, 8]], npt)
        np.testing.assert_array_equal(run(pad_model([1, 2], [[0, 1], [1, 0]], [2, 3], dtype), x)[0],
                                      np.array([[0, 7, 8], [0, 0, 0]], npt))


def test_padv2_copies_the_raw_constant_and_requires_the_output_quantization():
    x = np.array([[1, 2]], np.int8)
    data = pad_model([1, 2], [[0, 0], [1, 1]], [1, 4], constant=[-100])
    np.testing.assert_array_equal(run(data, x)[0], [[-100, 1, 2, -100]])
    with pytest.raises(ModelError, match="constant_values"):
        Interpreter.from_bytes(pad_model([1, 2], [[0, 0], [1, 1]], [1, 4], constant=[-100],
                                         qc=dict(scale=0.1, zero_point=4)))


def test_negative_paddings_copy_the_input_in_order_like_tflm():
    # TFLM's loop writes input elements sequentially into the non-padded cells; with a negative
    # padding that is not a crop: the interior takes the input's leading elements.
    x = arange([3, 4])
    got = run(pad_model([3, 4], [[0, -1], [-1, 1]], [2, 4]), x)[0]
    np.testing.assert_array_equal(got, [[x.flat[0], x.flat[1], x.flat[2], 3], [x.flat[3], x.flat[4], x.flat[5], 3]])


def test_pad_reads_int64_paddings_as_int32_words():
    # [[1, 0], [0, 0]] as int64 is read as int32 words 1, 0, 0, 0 -> paddings [[1, 0], [0, 0]].
    x = arange([2, 2])
    np.testing.assert_array_equal(run(pad_model([2, 2], [[1, 0], [0, 0]], [3, 2], paddings_dtype=np.int64), x)[0],
                                  np.vstack([[3, 3], x]))
    # [[0, 0], [1, 0]] as int64 is read as 0, 0, 0, 0: the output shape then does not match.
    with pytest.raises(ModelError, match="paddings"):
        Interpreter.from_bytes(pad_model([2, 2], [[0, 0], [1, 0]], [2, 3], paddings_dtype=np.int64))


def test_pad_rejects_non_constant_paddings_and_rank_above_five():
    b = ModelBuilder()
    x = b.input("x", [2, 2], "INT8", scale=0.1, zero_point=0)
    p = b.input("p", [2, 2], "INT32")
    y = b.tensor("y", [4, 2], "INT8", scale=0.1, zero_point=0)
    b.op("PAD", [x, p], [y])
    b.output(y)
    with pytest.raises(ModelError, match="Non-constant"):
        Interpreter.from_bytes(b.build())
    with pytest.raises(ModelError, match="rank 6"):
        Interpreter.from_bytes(pad_model([1] * 6, [[0, 0]] * 6, [1] * 6))


# ---------------------------------------------------------------------------------- the others

def test_transpose_permutes_and_rejects_rank_six():
    x = arange([1, 3, 4, 5])
    data = one_op("TRANSPOSE", [int8_input([1, 3, 4, 5]), int32_const([0, 2, 3, 1])], [int8_input([1, 4, 5, 3], "y")])
    np.testing.assert_array_equal(run(data, x)[0], x.transpose(0, 2, 3, 1))
    rank6 = one_op("TRANSPOSE", [int8_input([1] * 6), int32_const(range(6))], [int8_input([1] * 6, "y")])
    with pytest.raises(ModelError, match="1D-5D"):
        Interpreter.from_bytes(rank6)


def test_transpose_with_a_repeated_axis_reads_like_tflm():
    # TFLM only range-checks perm; [1, 1] walks the input with the same stride on both axes.
    x = arange([3, 3])
    data = one_op("TRANSPOSE", [int8_input([3, 3]), int32_const([1, 1])], [int8_input([3, 3], "y")])
    expected = x.reshape(-1)[(np.arange(3)[:, None] + np.arange(3)[None, :])]
    np.testing.assert_array_equal(run(data, x)[0], expected)


def test_transpose_does_not_support_int32():
    data = one_op("TRANSPOSE", [("x", [2, 3], "INT32", {}), ("const", np.array([1, 0], np.int32), "INT32", {})],
                  [("y", [3, 2], "INT32", {})])
    with pytest.raises(UnsupportedOpError, match="INT32"):
        Interpreter.from_bytes(data)


def test_reshape_squeeze_expand_dims_keep_the_bytes():
    x = arange([2, 1, 3])
    reshape = one_op("RESHAPE", [int8_input([2, 1, 3]), int32_const([3, 2])], [int8_input([3, 2], "y")])
    np.testing.assert_array_equal(run(reshape, x)[0], x.reshape(3, 2))
    # (Vector options such as squeeze_dims are left out: ModelBuilder cannot write them yet.)
    squeeze = one_op("SQUEEZE", [int8_input([2, 1, 3])], [int8_input([2, 3], "y")])
    np.testing.assert_array_equal(run(squeeze, x)[0], x.reshape(2, 3))
    expand = one_op("EXPAND_DIMS", [int8_input([2, 1, 3]), int32_const([-1])], [int8_input([2, 1, 3, 1], "y")])
    np.testing.assert_array_equal(run(expand, x)[0], x[..., None])


def test_reshape_rejects_a_different_element_count():
    with pytest.raises(ModelError, match="elements"):
        Interpreter.from_bytes(one_op("RESHAPE", [int8_input([2, 3])], [int8_input([7], "y")]))


def test_split_sizes_come_from_the_output_tensors():
    x = arange([2, 6])
    split_v = one_op("SPLIT_V", [int8_input([2, 6]), int32_const([1, 3, 2]), int32_const([-1])],
                     [int8_input([2, s], f"y{i}") for i, s in enumerate([1, 3, 2])], num_splits=3)
    outs = run(split_v, x)
    for got, want in zip(outs, np.split(x, [1, 4], axis=1)):
        np.testing.assert_array_equal(got, want)
    split = one_op("SPLIT", [("const", np.array(0, np.int32), "INT32", {}), int8_input([2, 6])],
                   [int8_input([1, 6], f"y{i}") for i in range(2)], num_splits=2)
    a, b = run(split, x)
    np.testing.assert_array_equal(np.vstack([a, b]), x)


def test_pack_and_unpack_along_inner_axes():
    a, b = arange([2, 3]), arange([2, 3]) // 2
    pack = one_op("PACK", [("a", [2, 3], "INT8", quant("INT8")), ("b", [2, 3], "INT8", quant("INT8"))],
                  [("y", [2, 3, 2], "INT8", quant("INT8"))], values_count=2, axis=-1)
    np.testing.assert_array_equal(run(pack, a, b)[0], np.stack([a, b], axis=-1))
    unpack = one_op("UNPACK", [("x", [2, 3, 2], "INT8", quant("INT8"))],
                    [(f"y{i}", [2, 2], "INT8", quant("INT8")) for i in range(3)], num=3, axis=1)
    x = arange([2, 3, 2])
    for i, got in enumerate(run(unpack, x)):
        np.testing.assert_array_equal(got, x[:, i])


# ---------------------------------------------------------------------------------- against TFLM

TYPES = ["INT8", "INT16", "FLOAT32", "INT32", "BOOL"]


def _slice_case(rng):
    rank = int(rng.integers(1, 5))
    shape = [int(rng.integers(1, 7)) for _ in range(rank)]
    begin, end, strides, out = [], [], [], []
    masks = dict(begin_mask=0, end_mask=0, shrink_axis_mask=0)
    for a, n in enumerate(shape):
        stride = int(rng.choice([1, 1, 2, 3, -1, -2, -3]))
        b, e = int(rng.integers(-n - 2, n + 3)), int(rng.integers(-n - 2, n + 3))
        if rng.random() < 0.2:
            masks["begin_mask"] |= 1 << a
        if rng.random() < 0.2:
            masks["end_mask"] |= 1 << a
        if rng.random() < 0.15:
            masks["shrink_axis_mask"] |= 1 << a
            b, stride = int(rng.integers(-n, n)), 1
        else:
            s = slice(None if masks["begin_mask"] >> a & 1 else b, None if masks["end_mask"] >> a & 1 else e, stride)
            out.append(len(range(n)[s]))
        begin.append(b), end.append(e), strides.append(stride)
    return shape, begin, end, strides, out, masks


@pytest.mark.parametrize("seed", range(40))
def test_strided_slice_matches_tflm(seed):
    rng = np.random.default_rng(seed)
    for _ in range(5):
        shape, begin, end, strides, out, masks = _slice_case(rng)
        if 0 in out:
            continue  # TFLM refuses zero-sized tensors ("dynamic tensor"), a graph-level rule
        dtype = TYPES[seed % len(TYPES)]
        data = strided_slice(shape, begin, end, strides, out, dtype, **masks)
        xs = random_inputs(rng, shape, np.bool_ if dtype == "BOOL" else dtype.lower(), 4) if dtype != "BOOL" \
            else rng.integers(0, 2, (4,) + tuple(shape)).astype(bool)
        assert check_model(data, [xs], label=f"STRIDED_SLICE {dtype}").compared


@pytest.mark.parametrize("seed", range(30))
def test_pad_matches_tflm(seed):
    rng = np.random.default_rng(100 + seed)
    rank = int(rng.integers(1, 6))
    shape = [int(rng.integers(1, 5)) for _ in range(rank)]
    paddings = rng.integers(0, 4, (rank, 2))
    out = [int(s + p.sum()) for s, p in zip(shape, paddings)]
    dtype = ["INT8", "INT16", "FLOAT32", "INT32"][seed % 4]
    zp = int(rng.integers(-128, 128)) if dtype == "INT8" else 0
    q = dict(scale=0.05, zero_point=zp) if dtype in QUANTIZED else {}
    constant = None if seed % 3 == 0 else random_inputs(rng, [1], dtype.lower(), 1)[0]
    data = pad_model(shape, paddings, out, dtype, qi=q, qo=q, constant=constant, qc=q)
    xs = random_inputs(rng, shape, dtype.lower(), 4, zero_point=zp)
    assert check_model(data, [xs], label=f"PAD {dtype}").compared


@pytest.mark.parametrize("dtype", ["INT8", "INT16", "FLOAT32"])
@pytest.mark.parametrize("shape, perm", [([1, 3, 5, 7], [0, 3, 1, 2]), ([2, 3, 4], [2, 0, 1]), ([4, 5], [1, 0]),
                                         ([2, 3, 4, 5, 2], [4, 2, 0, 3, 1]), ([3], [0])], ids=str)
def test_transpose_matches_tflm(dtype, shape, perm):
    data = one_op("TRANSPOSE", [("x", shape, dtype, quant(dtype)), ("const", np.array(perm, np.int32), "INT32", {})],
                  [("y", [shape[p] for p in perm], dtype, quant(dtype))])
    xs = random_inputs(np.random.default_rng(len(shape)), shape, dtype.lower(), 4)
    assert check_model(data, [xs], label=f"TRANSPOSE {dtype}").compared


@pytest.mark.parametrize("dtype", ["INT8", "INT16", "FLOAT32", "INT32"])
@pytest.mark.parametrize("shapes, axis", [([[1, 4, 4, 3], [1, 4, 4, 5]], 3), ([[2, 3], [2, 3], [2, 1]], -1),
                                          ([[1, 3], [4, 3]], 0), ([[2, 2, 2]] * 10, 1)], ids=str)
def test_concatenation_matches_tflm(dtype, shapes, axis):
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    rng = np.random.default_rng(len(shapes))
    xs = [random_inputs(rng, s, dtype.lower(), 4) for s in shapes]
    assert check_model(concat(shapes, axis, out, dtype), xs, label=f"CONCATENATION {dtype}").compared


@pytest.mark.parametrize("dtype", ["INT8", "INT16", "FLOAT32", "INT32"])
@pytest.mark.parametrize("shape, axis, n", [([3, 4], 0, 2), ([3, 4], 1, 3), ([3, 4], 2, 2), ([3, 4], -1, 4)], ids=str)
def test_pack_unpack_match_tflm(dtype, shape, axis, n):
    rank = len(shape) + 1
    packed = list(shape)
    packed.insert(axis % rank, n)
    rng = np.random.default_rng(n)
    pack = one_op("PACK", [(f"x{i}", shape, dtype, quant(dtype)) for i in range(n)],
                  [("y", packed, dtype, quant(dtype))], values_count=n, axis=axis)
    xs = [random_inputs(rng, shape, dtype.lower(), 3) for _ in range(n)]
    assert check_model(pack, xs, label=f"PACK {dtype}").compared
    unpack = one_op("UNPACK", [("x", packed, dtype, quant(dtype))],
                    [(f"y{i}", shape, dtype, quant(dtype)) for i in range(n)], num=n, axis=axis)
    assert check_model(unpack, [random_inputs(rng, packed, dtype.lower(), 3)], label=f"UNPACK {dtype}").compared
