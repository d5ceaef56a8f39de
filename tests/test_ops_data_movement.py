"""Edge values of the data-movement ops in ops/data_movement/ and ops/gather.py, without TFLM.

Every pinned value here was derived by hand from TFLM's kernels and confirmed once on the pinned
wheel (tflite-micro 0.dev20261023182759); the differential tests (test_diff_data_movement*.py)
compare many more parameterisations with TFLM itself. These protect users who run without the
wheel.
"""
import numpy as np
import pytest

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder
from interp.errors import InputError, InvokeError, UnsupportedOpError
from interp.model import Operator, Tensor
from ops.data_movement.mirror import ReverseV2
from ops.registry import PrepareContext


def model(op, inputs, out_shape, out_type, out_quant=None, **options):
    """A one-op model. ``inputs``: ("in", name, shape, type[, quant]) or ("const", name, array, type[, quant])."""
    b = ModelBuilder()
    ids = []
    for entry in inputs:
        q = entry[4] if len(entry) > 4 else {}
        if entry[0] == "in":
            ids.append(b.input(entry[1], entry[2], entry[3], **q))
        else:
            ids.append(b.constant(entry[1], entry[2], entry[3], **q))
    y = b.tensor("y", out_shape, out_type, **(out_quant or {}))
    b.op(op, ids, [y], **options)
    b.output(y)
    return Interpreter.from_bytes(b.build())


X34 = np.arange(12, dtype=np.float32).reshape(3, 4)


def test_invoke_error_is_an_input_error():
    assert issubclass(InvokeError, InputError)


# ---------------------------------------------------------------------------------- space <-> batch
def test_batch_to_space_with_crops():
    it = model("BATCH_TO_SPACE_ND", [("in", "x", [4, 2, 2, 1], "FLOAT32"),
                                     ("const", "b", np.array([2, 2], np.int32), "INT32"),
                                     ("const", "c", np.array([[1, 0], [0, 1]], np.int32), "INT32")],
               [1, 3, 3, 1], "FLOAT32")
    x = np.arange(1, 17, dtype=np.float32).reshape(4, 2, 2, 1)
    assert it.run([x])[0].reshape(3, 3).tolist() == [[9, 13, 10], [3, 7, 4], [11, 15, 12]]


def test_batch_to_space_refuses_an_output_it_would_leave_unwritten():
    # Output 5x5 from 4x4 worth of pixels: TFLM leaves the last row and column as the arena was.
    with pytest.raises(UnsupportedOpError, match="never written"):
        model("BATCH_TO_SPACE_ND", [("in", "x", [4, 2, 2, 1], "FLOAT32"),
                                    ("const", "b", np.array([2, 2], np.int32), "INT32"),
                                    ("const", "c", np.zeros((2, 2), np.int32), "INT32")], [1, 5, 5, 1], "FLOAT32")


def test_batch_to_space_computed_crops_that_leave_pixels_unwritten_raise_invoke_error():
    it = model("BATCH_TO_SPACE_ND", [("in", "x", [4, 2, 2, 1], "FLOAT32"),
                                     ("const", "b", np.array([2, 2], np.int32), "INT32"),
                                     ("in", "c", [2, 2], "INT32")], [1, 4, 4, 1], "FLOAT32")
    x = np.ones((4, 2, 2, 1), np.float32)
    assert it.run([x, np.zeros((2, 2), np.int32)])[0].sum() == 16
    with pytest.raises(InvokeError, match=r"BATCH_TO_SPACE_ND.*never written"):
        it.run([x, np.array([[-1, 1], [0, 0]], np.int32)])


def test_space_to_batch_pads_with_zero_bytes_whatever_the_zero_point():
    q = dict(scale=0.5, zero_point=-7)
    it = model("SPACE_TO_BATCH_ND", [("in", "x", [1, 2, 2, 1], "INT8", q),
                                     ("const", "b", np.array([2, 2], np.int32), "INT32"),
                                     ("const", "p", np.array([[1, 1], [1, 1]], np.int32), "INT32")],
               [4, 2, 2, 1], "INT8", q)
    y = it.run([np.full((1, 2, 2, 1), 5, np.int8)])[0]
    assert y.reshape(4, 4).tolist() == [[0, 0, 0, 5], [0, 0, 5, 0], [0, 5, 0, 0], [5, 0, 0, 0]]


def test_space_to_batch_3d_input_uses_block_height_only():
    it = model("SPACE_TO_BATCH_ND", [("in", "x", [1, 4, 1], "FLOAT32"),
                                     ("const", "b", np.array([2], np.int32), "INT32"),
                                     ("const", "p", np.zeros((1, 2), np.int32), "INT32")], [2, 2, 1], "FLOAT32")
    assert it.run([np.array([[[1], [2], [3], [4]]], np.float32)])[0].reshape(-1).tolist() == [1, 3, 2, 4]


def test_space_to_batch_block_width_zero_is_refused():
    # (out_b / input_batch_size) % 0: TFLM dies of SIGFPE.
    with pytest.raises(ModelError, match="block width 0"):
        model("SPACE_TO_BATCH_ND", [("in", "x", [1, 4, 4, 1], "FLOAT32"),
                                    ("const", "b", np.array([2, 0], np.int32), "INT32"),
                                    ("const", "p", np.zeros((2, 2), np.int32), "INT32")], [4, 2, 2, 1], "FLOAT32")


def test_space_batch_types():
    with pytest.raises(UnsupportedOpError, match="INT16"):
        model("SPACE_TO_BATCH_ND", [("in", "x", [1, 4, 4, 1], "INT16"),
                                    ("const", "b", np.array([2, 2], np.int32), "INT32"),
                                    ("const", "p", np.zeros((2, 2), np.int32), "INT32")], [4, 2, 2, 1], "INT16")


# ---------------------------------------------------------------------------------- depth <-> space
def test_depth_to_space_and_back():
    d2s = model("DEPTH_TO_SPACE", [("in", "x", [1, 1, 1, 4], "FLOAT32")], [1, 2, 2, 1], "FLOAT32", block_size=2)
    assert d2s.run([np.array([[[[1, 2, 3, 4]]]], np.float32)])[0].reshape(2, 2).tolist() == [[1, 2], [3, 4]]
    s2d = model("SPACE_TO_DEPTH", [("in", "x", [1, 2, 2, 1], "FLOAT32")], [1, 1, 1, 4], "FLOAT32", block_size=2)
    assert s2d.run([np.array([[1, 2], [3, 4]], np.float32).reshape(1, 2, 2, 1)])[0].reshape(-1).tolist() == \
        [1, 2, 3, 4]
    x = np.random.default_rng(0).integers(-128, 128, (2, 4, 6, 3)).astype(np.int8)
    s2d = model("SPACE_TO_DEPTH", [("in", "x", [2, 4, 6, 3], "INT8")], [2, 2, 3, 12], "INT8", block_size=2)
    d2s = model("DEPTH_TO_SPACE", [("in", "x", [2, 2, 3, 12], "INT8")], [2, 4, 6, 3], "INT8", block_size=2)
    assert np.array_equal(d2s.run([s2d.run([x])[0]])[0], x)


@pytest.mark.parametrize("op", ["DEPTH_TO_SPACE", "SPACE_TO_DEPTH"])
def test_depth_space_block_size_must_be_positive(op):
    with pytest.raises(ModelError, match="block_size 0"):
        model(op, [("in", "x", [1, 2, 2, 4], "FLOAT32")], [1, 2, 2, 4], "FLOAT32", block_size=0)


def test_depth_to_space_needs_the_shape_tflm_computes():
    with pytest.raises(UnsupportedOpError, match="TFLM computes"):
        model("DEPTH_TO_SPACE", [("in", "x", [1, 2, 2, 4], "FLOAT32")], [1, 2, 8, 1], "FLOAT32", block_size=2)


# ---------------------------------------------------------------------------------- broadcast, fill, shape
def test_broadcast_args_int64_values_pass_through_c_int():
    it = model("BROADCAST_ARGS", [("in", "a", [2], "INT64"),
                                  ("const", "c", np.array([2 ** 32 + 5, 1, 7], np.int64), "INT64")], [3], "INT64")
    assert it.run([np.array([5, 2 ** 33 + 7], np.int64)])[0].tolist() == [5, 5, 7]


def test_broadcast_args_pads_and_truncates_to_the_output_length():
    it = model("BROADCAST_ARGS", [("in", "a", [2], "INT32"), ("const", "c", np.array([1], np.int32), "INT32")],
               [4], "INT32")
    assert it.run([np.array([2, 3], np.int32)])[0].tolist() == [1, 1, 2, 3]
    it = model("BROADCAST_ARGS", [("in", "a", [2], "INT32"), ("const", "c", np.array([7, 5], np.int32), "INT32")],
               [1], "INT32")
    assert it.run([np.array([1, 5], np.int32)])[0].tolist() == [5]


def test_broadcast_args_mismatch_is_an_invoke_error_not_a_value():
    it = model("BROADCAST_ARGS", [("in", "a", [2], "INT32"), ("const", "c", np.array([3, 3], np.int32), "INT32")],
               [2], "INT32")
    with pytest.raises(InvokeError, match=r"operator 0 \(BROADCAST_ARGS\).*do not broadcast"):
        it.run([np.array([2, 3], np.int32)])
    # run_batch too, and the good samples alone still run.
    batch = np.array([[1, 3], [2, 3]], np.int32)
    with pytest.raises(InvokeError):
        it.run_batch([batch])
    assert it.run([batch[0]])[0].tolist() == [3, 3]


def test_broadcast_to():
    it = model("BROADCAST_TO", [("in", "x", [3, 1], "INT16", dict(scale=1.0, zero_point=0)),
                                ("const", "s", np.array([2, 3, 2], np.int64), "INT64")], [2, 3, 2], "INT16",
               dict(scale=1.0, zero_point=0))
    y = it.run([np.array([[1], [2], [3]], np.int16)])[0]
    assert y.tolist() == [[[1, 1], [2, 2], [3, 3]]] * 2


def test_broadcast_to_needs_a_constant_shape():
    with pytest.raises(ModelError, match="Non-constant >shape<"):
        model("BROADCAST_TO", [("in", "x", [3], "FLOAT32"), ("in", "s", [2], "INT32")], [2, 3], "FLOAT32")


def test_fill_copies_the_raw_int8_value():
    q = dict(scale=0.5, zero_point=3)
    it = model("FILL", [("const", "d", np.array([2, 3], np.int16), "INT16"), ("in", "v", [], "INT8", q)],
               [2, 3], "INT8", q)
    assert it.run([np.array(-128, np.int8)])[0].tolist() == [[-128] * 3] * 2


def test_fill_checks_dims_against_the_output():
    with pytest.raises(ModelError, match="dims says 2"):
        model("FILL", [("const", "d", np.array([3, 2], np.int32), "INT32"), ("in", "v", [], "FLOAT32")],
              [3, 3], "FLOAT32")
    with pytest.raises(UnsupportedOpError, match="value of type INT16"):
        model("FILL", [("const", "d", np.array([3], np.int32), "INT32"), ("in", "v", [], "INT16")], [3], "INT16")


def test_shape_writes_the_input_rank():
    it = model("SHAPE", [("in", "x", [2, 3, 5], "BOOL")], [3], "INT32")
    assert it.run([np.zeros((2, 3, 5), bool)])[0].tolist() == [2, 3, 5]
    with pytest.raises(UnsupportedOpError, match="past its end"):
        model("SHAPE", [("in", "x", [2, 3, 5], "BOOL")], [2], "INT32")
    with pytest.raises(UnsupportedOpError, match="INT64"):
        model("SHAPE", [("in", "x", [2, 3, 5], "BOOL")], [3], "INT64")


# ---------------------------------------------------------------------------------- SLICE
def test_slice_size_minus_one_runs_to_the_end():
    it = model("SLICE", [("in", "x", [3, 4], "FLOAT32"), ("const", "b", np.array([1, 1], np.int64), "INT64"),
                         ("const", "s", np.array([2, -1], np.int64), "INT64")], [2, 3], "FLOAT32")
    assert it.run([X34])[0].tolist() == [[5, 6, 7], [9, 10, 11]]


def test_slice_past_the_end_of_a_row_reads_the_next_row():
    # TFLM addresses the input flat: column 4 of row 1 is column 0 of row 2.
    it = model("SLICE", [("in", "x", [3, 4], "FLOAT32"), ("const", "b", np.array([1, 3], np.int32), "INT32"),
                         ("const", "s", np.array([1, 2], np.int32), "INT32")], [1, 2], "FLOAT32")
    assert it.run([X34])[0].tolist() == [[7, 8]]


def test_slice_outside_the_input_is_refused():
    with pytest.raises(UnsupportedOpError, match="read outside the input"):
        model("SLICE", [("in", "x", [3, 4], "FLOAT32"), ("const", "b", np.array([-1, 1], np.int32), "INT32"),
                        ("const", "s", np.array([2, 2], np.int32), "INT32")], [2, 2], "FLOAT32")
    it = model("SLICE", [("in", "x", [3, 4], "FLOAT32"), ("in", "b", [2], "INT32"),
                         ("const", "s", np.array([2, 2], np.int32), "INT32")], [2, 2], "FLOAT32")
    assert it.run([X34, np.array([1, 2], np.int32)])[0].tolist() == [[6, 7], [10, 11]]
    with pytest.raises(InvokeError, match=r"SLICE.*read outside the input"):
        it.run([X34, np.array([2, 1], np.int32)])


def test_slice_write_count_must_match_the_output():
    with pytest.raises(UnsupportedOpError, match="leaving the rest unwritten"):
        model("SLICE", [("in", "x", [3, 4], "FLOAT32"), ("const", "b", np.array([1, 1], np.int32), "INT32"),
                        ("const", "s", np.array([1, 1], np.int32), "INT32")], [2, 2], "FLOAT32")


def test_slice_computed_begin_per_sample():
    it = model("SLICE", [("in", "x", [3, 4], "FLOAT32"), ("in", "b", [2], "INT32"),
                         ("const", "s", np.array([1, 2], np.int32), "INT32")], [1, 2], "FLOAT32")
    begins = np.array([[0, 0], [2, 2], [1, 1]], np.int32)
    y = it.run_batch([np.broadcast_to(X34, (3, 3, 4)), begins])[0]
    assert y.reshape(3, 2).tolist() == [[0, 1], [10, 11], [5, 6]]


# ---------------------------------------------------------------------------------- MIRROR_PAD
@pytest.mark.parametrize("mode, first_rows", [
    ("REFLECT", [[6, 5, 4, 5, 6, 7, 6, 5], [2, 1, 0, 1, 2, 3, 2, 1]]),
    ("SYMMETRIC", [[1, 0, 0, 1, 2, 3, 3, 2], [1, 0, 0, 1, 2, 3, 3, 2]]),
])
def test_mirror_pad_modes(mode, first_rows):
    it = model("MIRROR_PAD", [("in", "x", [3, 4], "FLOAT32"),
                              ("const", "p", np.array([[1, 1], [2, 2]], np.int32), "INT32")], [5, 8], "FLOAT32",
               mode=mode)
    y = it.run([X34])[0]
    assert y[:2].tolist() == first_rows
    assert np.array_equal(y, np.pad(X34, [[1, 1], [2, 2]], mode=mode.lower()))
    assert it.kernels[0].scratch_bytes == [8, 8]


def test_mirror_pad_wide_right_pad_clamps_to_the_first_element():
    it = model("MIRROR_PAD", [("in", "x", [3, 4], "FLOAT32"),
                              ("const", "p", np.array([[0, 5], [0, 0]], np.int64), "INT64")], [8, 4], "FLOAT32",
               mode="REFLECT")
    assert it.run([X34])[0][:, 0].tolist() == [0, 4, 8, 4, 0, 0, 0, 0]


def test_mirror_pad_wide_left_pad_reads_outside_and_is_refused():
    with pytest.raises(UnsupportedOpError, match="outside the input"):
        model("MIRROR_PAD", [("in", "x", [3, 4], "FLOAT32"),
                             ("const", "p", np.array([[3, 0], [0, 0]], np.int32), "INT32")], [6, 4], "FLOAT32",
              mode="REFLECT")


def test_mirror_pad_int16_paddings_are_never_read():
    it = model("MIRROR_PAD", [("in", "x", [3, 4], "FLOAT32"),
                              ("const", "p", np.ones((2, 2), np.int16), "INT16")], [5, 8], "FLOAT32", mode="REFLECT")
    y = it.run([X34])[0]
    assert y[:, :4].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [4, 5, 6, 7], [0, 1, 2, 3]]
    assert y[0, 4:].tolist() == [2, 1, 0, 0]


# ---------------------------------------------------------------------------------- REVERSE_V2
def test_reverse_contiguous_axes():
    x = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    it = model("REVERSE_V2", [("in", "x", [2, 3, 4], "INT64"), ("const", "a", np.array([2, -2], np.int32), "INT32")],
               [2, 3, 4], "INT64")
    assert np.array_equal(it.run([x])[0], x[:, ::-1, ::-1])


def test_reverse_axes_tflm_cannot_reverse():
    with pytest.raises(ModelError, match="not contiguous"):
        model("REVERSE_V2", [("in", "x", [2, 3, 4], "INT8"), ("const", "a", np.array([0, 2], np.int32), "INT32")],
              [2, 3, 4], "INT8")
    it = model("REVERSE_V2", [("in", "x", [2, 3, 4], "INT8"), ("in", "a", [1], "INT32")], [2, 3, 4], "INT8")
    x = np.zeros((2, 3, 4), np.int8)
    it.run([x, np.array([-3], np.int32)])
    with pytest.raises(InvokeError, match=r"REVERSE_V2.*axis 3 is out of range"):
        it.run([x, np.array([3], np.int32)])


def _tensor(index, name, shape, type_name, dtype, data=None):
    return Tensor(index=index, name=name, shape=tuple(shape), type_name=type_name, dtype=np.dtype(dtype),
                  element_bytes=np.dtype(dtype).itemsize, quantization=None, data=data,
                  data_bytes=0 if data is None else data.nbytes)


def test_reverse_empty_axis_tensor_is_refused_by_the_kernel():
    # An empty axis makes TFLM's Reverse read axes[-1] (the wheel crashes).
    tensors = [_tensor(0, "x", [2, 3], "FLOAT32", np.float32), _tensor(1, "a", [0], "INT32", np.int32),
               _tensor(2, "y", [2, 3], "FLOAT32", np.float32)]
    op = Operator(index=0, op_name="REVERSE_V2", version=1, inputs=(0, 1), outputs=(2,))
    with pytest.raises(ModelError, match="axis tensor is empty"):
        ReverseV2(PrepareContext(op, tensors))


# ---------------------------------------------------------------------------------- DYNAMIC_UPDATE_SLICE
def test_dynamic_update_slice_clamps_start_indices():
    u = -np.arange(1, 5, dtype=np.float32).reshape(2, 2)
    it = model("DYNAMIC_UPDATE_SLICE", [("in", "x", [3, 4], "FLOAT32"), ("in", "u", [2, 2], "FLOAT32"),
                                        ("in", "i", [2], "INT64")], [3, 4], "FLOAT32")
    y = it.run([X34, u, np.array([5, -3], np.int64)])[0]
    assert y.tolist() == [[0, 1, 2, 3], [-1, -2, 6, 7], [-3, -4, 10, 11]]
    starts = np.array([[0, 0], [2 ** 40, 2 ** 40], [1, 1]], np.int64)
    ys = it.run_batch([np.broadcast_to(X34, (3, 3, 4)), np.broadcast_to(u, (3, 2, 2)), starts])[0]
    for s in range(3):
        assert np.array_equal(ys[s], it.run([X34, u, starts[s]])[0])
    assert ys[1][1:, 2:].tolist() == [[-1, -2], [-3, -4]]


def test_dynamic_update_slice_output_must_be_the_operands_type():
    with pytest.raises(UnsupportedOpError, match="copies the operand's bytes"):
        model("DYNAMIC_UPDATE_SLICE", [("in", "x", [3, 4], "FLOAT32"), ("in", "u", [2, 2], "FLOAT32"),
                                       ("in", "i", [2], "INT32")], [3, 4], "INT32")


# ---------------------------------------------------------------------------------- GATHER family
def test_gather_out_of_range_is_an_invoke_error_naming_op_and_index():
    it = model("GATHER", [("in", "x", [3, 4], "FLOAT32"), ("in", "i", [2], "INT32")], [3, 2], "FLOAT32", axis=1)
    assert it.run([X34, np.array([3, 0], np.int32)])[0].tolist() == [[3, 0], [7, 4], [11, 8]]
    for bad in (4, -1):
        with pytest.raises(InvokeError, match=rf"operator 0 \(GATHER\).*index {bad} "):
            it.run([X34, np.array([0, bad], np.int32)])
    with pytest.raises(ModelError, match="GATHER index 4"):
        model("GATHER", [("in", "x", [3, 4], "FLOAT32"), ("const", "i", np.array([4], np.int32), "INT32")],
              [3, 1], "FLOAT32", axis=1)


def test_gather_batch_dims():
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    it = model("GATHER", [("in", "x", [2, 4], "FLOAT32"), ("in", "i", [2, 2], "INT32")], [2, 2], "FLOAT32",
               axis=1, batch_dims=-1)
    assert it.run([x, np.array([[0, 1], [2, 3]], np.int32)])[0].tolist() == [[0, 1], [6, 7]]


def test_gather_declared_shape_must_be_the_computed_one():
    with pytest.raises(UnsupportedOpError, match="TFLM computes"):
        model("GATHER", [("in", "x", [3, 4], "FLOAT32"), ("in", "i", [2], "INT32")], [2, 3], "FLOAT32", axis=1)


def test_gather_positions_must_be_int32():
    with pytest.raises(ModelError, match="Positions of type 'INT64'"):
        model("GATHER", [("in", "x", [3, 4], "FLOAT32"), ("in", "i", [2], "INT64")], [2, 4], "FLOAT32")


def test_gather_nd_checks_the_flat_offset_only():
    it = model("GATHER_ND", [("in", "x", [4, 3], "FLOAT32"), ("in", "i", [1, 2], "INT32")], [1], "FLOAT32")
    params = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert it.run([params, np.array([[0, 5]], np.int32)])[0].tolist() == [5]
    with pytest.raises(InvokeError, match=r"GATHER_ND.*gather_nd index out of bounds"):
        it.run([params, np.array([[3, 3]], np.int32)])
    with pytest.raises(InvokeError, match="GATHER_ND"):
        it.run([params, np.array([[0, -1]], np.int32)])


def test_gather_nd_slices():
    it = model("GATHER_ND", [("in", "x", [4, 3], "INT8", dict(scale=1.0, zero_point=0)),
                             ("const", "i", np.array([[3], [1]], np.int32), "INT32")], [2, 3], "INT8",
               dict(scale=1.0, zero_point=0))
    params = np.arange(12, dtype=np.int8).reshape(4, 3)
    assert it.run([params])[0].tolist() == [[9, 10, 11], [3, 4, 5]]


def test_embedding_lookup_hybrid_is_a_float32_product_with_the_first_scale():
    w = np.array([[-128, 127, 3], [1, -1, 0]], np.int8)
    scales = [0.1234567, 7.0]
    it = model("EMBEDDING_LOOKUP", [("in", "ids", [3], "INT32"),
                                    ("const", "w", w, "INT8", dict(scale=scales, zero_point=0,
                                                                   quantized_dimension=0))], [3, 3], "FLOAT32")
    y = it.run([np.array([1, 0, 1], np.int32)])[0]
    want = w[[1, 0, 1]].astype(np.float32) * np.float32(scales[0])
    assert y.dtype == np.float32 and y.tobytes() == want.tobytes()
    assert np.signbit(y[0, 1]) and y[0, 2] == 0 and not np.signbit(y[0, 2])


def test_embedding_lookup_refuses_a_nonzero_hybrid_zero_point_and_bad_ids():
    w = np.zeros((2, 3), np.int8)
    with pytest.raises(ModelError, match="zero point 0"):
        model("EMBEDDING_LOOKUP", [("in", "ids", [1], "INT32"), ("const", "w", w, "INT8", dict(scale=0.5,
                                                                                               zero_point=1))],
              [1, 3], "FLOAT32")
    it = model("EMBEDDING_LOOKUP", [("in", "ids", [2], "INT32"), ("const", "w", w, "INT8",
                                                                  dict(scale=0.5, zero_point=1))], [2, 3], "INT8",
               dict(scale=0.5, zero_point=1))
    with pytest.raises(InvokeError, match=r"EMBEDDING_LOOKUP: index out of bounds. Got 2 .*bounds are \[0, 1\]"):
        it.run([np.array([0, 2], np.int32)])


@pytest.mark.parametrize("indices", [[[0, 1], [2, 0]], [[0, -1], [1, 0]]], ids=["ReadOOB", "ReadOOBNegative"])
def test_gather_nd_tflm_unit_test_out_of_bounds_cases(indices):
    # gather_nd_test.cc GatherNd_ReadOOB / GatherNd_ReadOOBNegative: TFLM's Invoke returns an error.
    q = dict(scale=1.0, zero_point=0)
    it = model("GATHER_ND", [("in", "x", [2, 2], "INT8", q), ("in", "i", [2, 2], "INT32")], [2], "INT8", q)
    with pytest.raises(InvokeError, match="gather_nd index out of bounds"):
        it.run([np.array([[1, -1], [1, -2]], np.int8), np.array(indices, np.int32)])


def test_embedding_lookup_output_dims_past_the_value_rank_must_be_1():
    # TFLM keeps the output's extra dims but writes one row per id: the rest keeps arena bytes.
    w = np.zeros((5, 3, 2), np.float32)
    assert model("EMBEDDING_LOOKUP", [("in", "ids", [2], "INT32"), ("const", "w", w, "FLOAT32")], [2, 3, 2, 1],
                 "FLOAT32").run([np.array([0, 4], np.int32)])[0].shape == (2, 3, 2, 1)
    with pytest.raises(UnsupportedOpError, match="unwritten"):
        model("EMBEDDING_LOOKUP", [("in", "ids", [2], "INT32"), ("const", "w", w, "FLOAT32")], [2, 3, 2, 2],
              "FLOAT32")
