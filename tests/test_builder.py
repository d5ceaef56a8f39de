"""interp.builder writes .tflite files that load back (in microref's parser, in TFLM and, when
installed, in LiteRT) with exactly the shapes, types, quantization, data and options given."""
import numpy as np
import pytest
from diff_support import check_model, tflm_run
from hypothesis import given, settings
from hypothesis import strategies as st

from interp import Interpreter, load_model
from interp.builder import ModelBuilder, options_table_for


def conv_model():
    rng = np.random.default_rng(0)
    b = ModelBuilder()
    x = b.input("x", [1, 8, 8, 3], "INT8", scale=0.05, zero_point=-3)
    w = b.constant("w", rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8),
                   scale=[0.01, 0.02, 0.03, 0.04], zero_point=0, quantized_dimension=0)
    bias = b.constant("b", rng.integers(-1000, 1000, 4).astype(np.int32),
                      scale=[0.0005, 0.001, 0.0015, 0.002])
    y = b.tensor("y", [1, 4, 4, 4], "INT8", scale=0.1, zero_point=5)
    b.op("CONV_2D", [x, w, bias], [y], padding="SAME", stride_w=2, stride_h=2, dilation_h_factor=1,
         fused_activation_function="RELU6")
    b.output(y)
    return b.build(), (x, w, bias, y)


def test_conv_model_parses_back_to_what_was_built():
    data, (x, w, bias, y) = conv_model()
    model = load_model(data)
    sg = model.main
    assert model.version == 3 and data[4:8] == b"TFL3"
    assert sg.inputs == (x,) and sg.outputs == (y,)
    tx, tw, tb, ty = (sg.tensors[i] for i in (x, w, bias, y))
    assert (tx.name, tx.shape, tx.type_name, tx.data) == ("x", (1, 8, 8, 3), "INT8", None)
    assert tx.quantization.scale == np.float32(0.05) and tx.quantization.zero_point == -3
    assert tw.shape == (4, 3, 3, 3) and tw.type_name == "INT8"
    np.testing.assert_array_equal(tw.quantization.scales, np.float32([0.01, 0.02, 0.03, 0.04]))
    np.testing.assert_array_equal(tw.quantization.zero_points, [0, 0, 0, 0])
    assert tw.quantization.quantized_dimension == 0
    assert tb.type_name == "INT32" and tb.data.dtype == np.int32
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(tw.data, rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8))
    (op,) = sg.operators
    assert op.op_name == "CONV_2D" and op.inputs == (x, w, bias) and op.outputs == (y,)
    assert op.options["padding"] == 0 and op.options["fused_activation_function"] == 3
    assert op.options["stride_w"] == 2 and op.options["stride_h"] == 2


def test_conv_model_runs_the_same_in_tflm_and_microref():
    data, _ = conv_model()
    x = np.random.default_rng(1).integers(-128, 128, (3, 1, 8, 8, 3)).astype(np.int8)
    assert check_model(data, [x], label="builder CONV_2D").compared


def test_constant_data_of_every_numeric_type_round_trips():
    arrays = {
        "INT8": np.array([-128, 0, 127], np.int8), "UINT8": np.array([0, 255], np.uint8),
        "INT16": np.array([[-32768], [32767]], np.int16), "INT32": np.array([-(2 ** 31), 2 ** 31 - 1], np.int32),
        "INT64": np.array([-(2 ** 63), 2 ** 63 - 1], np.int64), "FLOAT32": np.array([1.5, -0.0, 3e38], np.float32),
        "FLOAT16": np.array([0.5, -2.0], np.float16), "BOOL": np.array([True, False, True]),
    }
    b = ModelBuilder()
    index = {name: b.constant(name, values) for name, values in arrays.items()}
    tensors = load_model(b.build()).main.tensors
    for name, values in arrays.items():
        t = tensors[index[name]]
        assert t.type_name == name
        assert t.data.dtype == values.dtype
        np.testing.assert_array_equal(t.data, values)


def test_int4_constants_are_packed_low_nibble_first():
    values = np.array([[-8, 7, 0], [1, -1, 5]], np.int8)
    b = ModelBuilder()
    i = b.constant("w4", values, "INT4", scale=0.5, zero_point=0)
    data = b.build()
    t = load_model(data).main.tensors[i]
    assert t.type_name == "INT4" and t.data_bytes == 3
    np.testing.assert_array_equal(t.data, values)
    with pytest.raises(ValueError, match="int4"):
        ModelBuilder().constant("bad", np.array([8]), "INT4")


def test_constant_data_is_16_byte_aligned():
    from tflite.Model import Model
    b = ModelBuilder()
    b.constant("a", np.arange(3, dtype=np.int8))
    b.constant("b", np.arange(5, dtype=np.int32))
    fb = Model.GetRootAs(b.build(), 0)
    for i in range(1, fb.BuffersLength()):
        tab = fb.Buffers(i)._tab
        assert tab.Vector(tab.Offset(4)) % 16 == 0


def test_omitted_optional_inputs_are_written_as_minus_one():
    b = ModelBuilder()
    x = b.input("x", [2, 4], "INT8", scale=0.5, zero_point=0)
    w = b.constant("w", np.ones((3, 4), np.int8), scale=0.25, zero_point=0)
    y = b.tensor("y", [2, 3], "INT8", scale=1.0, zero_point=0)
    b.op("FULLY_CONNECTED", [x, w, None], [y])
    b.output(y)
    data = b.build()
    assert load_model(data).main.operators[0].inputs == (x, w, -1)
    xs = np.random.default_rng(2).integers(-128, 128, (3, 2, 4)).astype(np.int8)
    assert check_model(data, [xs], label="builder FULLY_CONNECTED").compared


def test_several_ops_inputs_and_outputs():
    b = ModelBuilder()
    q = dict(scale=0.1, zero_point=0)
    a = b.input("a", [2, 3], "INT8", **q)
    c = b.input("c", [3], "INT8", **q)
    s = b.tensor("sum", [2, 3], "INT8", scale=0.2, zero_point=-1)
    r = b.tensor("relu", [2, 3], "INT8", scale=0.2, zero_point=-128)
    m = b.tensor("max", [2, 3], "INT8", **q)
    b.op("ADD", [a, c], [s], fused_activation_function="NONE")
    b.op("RELU", [s], [r])
    b.op("MAXIMUM", [a, c], [m])
    b.output(r, m)
    data = b.build()
    sg = load_model(data).main
    assert [op.op_name for op in sg.operators] == ["ADD", "RELU", "MAXIMUM"]
    assert sg.inputs == (a, c) and sg.outputs == (r, m)
    rng = np.random.default_rng(3)
    inputs = [rng.integers(-128, 128, (3, 2, 3)).astype(np.int8), rng.integers(-128, 128, (3, 3)).astype(np.int8)]
    assert check_model(data, inputs, label="builder ADD+RELU+MAXIMUM").compared


def test_vector_options_and_enum_names():
    b = ModelBuilder()
    x = b.input("x", [2, 3], "FLOAT32")
    y = b.tensor("y", [3, 2], "FLOAT32")
    z = b.tensor("z", [3, 2], "INT32")
    b.op("RESHAPE", [x], [y], new_shape=[3, 2])
    b.op("CAST", [y], [z], in_data_type="FLOAT32", out_data_type="int32")
    b.output(z)
    ops = load_model(b.build()).main.operators
    assert ops[0].options == {"new_shape": [3, 2]}
    assert ops[1].options == {"in_data_type": 0, "out_data_type": 2}


def test_large_builtin_codes_and_custom_ops():
    b = ModelBuilder()
    x = b.input("x", [4], "FLOAT32")
    y = b.tensor("y", [4], "FLOAT32")
    z = b.tensor("z", [4], "FLOAT32")
    b.op("GELU", [x], [y], approximate=True)  # builtin code 150: past the int8 deprecated code
    b.op("CUSTOM", [y], [z], custom_code="MyOp", custom_options=b"\x01\x02")
    b.output(z)
    ops = load_model(b.build()).main.operators
    assert ops[0].op_name == "GELU" and ops[0].options == {"approximate": True}
    assert ops[1].op_name == "CUSTOM" and ops[1].custom_code == "MyOp" and ops[1].custom_options == b"\x01\x02"


@pytest.mark.parametrize("call, message", [
    (lambda b, x: b.op("CONV_2D", [x], [x], strides=2), "no field"),
    (lambda b, x: b.op("CONV_2D", [x], [x], padding="HALF"), "not a Padding"),
    (lambda b, x: b.op("CONV_2D", [x], [x], stride_w="2"), "takes a number"),
    (lambda b, x: b.op("NOT_AN_OP", [x], [x]), "unknown builtin operator"),
    (lambda b, x: b.op("RELU", [x], [x], alpha=0.5), "no builtin options"),
    (lambda b, x: b.op("RELU", [x], [7]), "does not exist"),
    (lambda b, x: b.tensor("t", [2], "INT9"), "unknown tensor type"),
    (lambda b, x: b.tensor("t", [2], "INT8", scale=[1.0, 2.0], zero_point=[0, 0, 0]), "zero points"),
    (lambda b, x: b.constant("c", np.array([300]), "INT8"), "do not fit"),
])
def test_mistakes_are_reported_when_made(call, message):
    b = ModelBuilder()
    x = b.input("x", [2], "INT8", scale=1.0, zero_point=0)
    with pytest.raises(ValueError, match=message):
        call(b, x)


def test_options_tables_of_ops_named_differently():
    assert options_table_for("AVERAGE_POOL_2D") == "Pool2DOptions"
    assert options_table_for("MEAN") == "ReducerOptions"
    assert options_table_for("DEPTHWISE_CONV_2D") == "DepthwiseConv2DOptions"
    assert options_table_for("LOGISTIC") is None


def test_tflm_rejects_what_microref_rejects_for_a_built_model():
    # Softmax with an int8 output zero point other than -128 fails TFLM's Prepare.
    b = ModelBuilder()
    x = b.input("x", [1, 5], "INT8", scale=0.1, zero_point=0)
    y = b.tensor("y", [1, 5], "INT8", scale=1 / 256, zero_point=0)
    b.op("SOFTMAX", [x], [y], beta=1.0)
    b.output(y)
    data = b.build()
    verdict, _ = tflm_run(data, [[np.zeros((1, 5), np.int8)]])
    assert verdict == "rejected"
    assert not check_model(data, [np.zeros((1, 1, 5), np.int8)], label="builder SOFTMAX rejected").compared


def test_litert_loads_built_models():
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    data, _ = conv_model()
    interpreter = litert.Interpreter(model_content=data)
    interpreter.allocate_tensors()
    x = np.random.default_rng(4).integers(-128, 128, (1, 8, 8, 3)).astype(np.int8)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert out.shape == (1, 4, 4, 4) and out.dtype == np.int8
    np.testing.assert_array_equal(Interpreter.from_bytes(data).run([x])[0].shape, out.shape)


def _every_options_table():
    import inspect
    import re

    from interp.model import BUILTIN_OPERATOR_NAMES
    from interp.model.builder import _option_fields
    tables = {}
    for op_name in sorted(BUILTIN_OPERATOR_NAMES.values()):
        table = options_table_for(op_name)
        if table and table not in tables.values():
            fields = {}
            for key, field in _option_fields(table).items():
                kind = "String" if field.is_string else field.element_flags.__name__ if field.start_vector else \
                    re.search(r"Prepend(\w+)Slot", inspect.getsource(field.add)).group(1)
                fields[key] = kind
            tables[op_name] = table
            yield op_name, table, fields


@pytest.mark.parametrize("op_name, table, fields", list(_every_options_table()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_options_field_round_trips_through_the_parser(op_name, table, fields):
    # One non-default value per field, by its flatbuffer type; keys as the parser spells them.
    samples = {"Bool": True, "Float32": 0.5, "Float32Flags": [0.5, -1.5], "BoolFlags": [True, False],
               "String": "name"}
    options = {}
    for key, kind in fields.items():
        if key in options or any(key.replace("_", "") == k.replace("_", "") for k in options):
            continue  # the same field under its second spelling
        options[key] = samples.get(kind, [1, 2] if kind.endswith("Flags") else 1)
    b = ModelBuilder()
    x = b.input("x", [1], "FLOAT32")
    b.op(op_name, [x], [x], **options)
    b.output(x)
    (op,) = load_model(b.build()).main.operators
    assert op.options_type == table
    for key, value in options.items():
        assert op.options[key] == pytest.approx(value), key


def _litert_models():
    """One plain model per op family, built the way the differential tests build them."""
    import test_diff_conv
    import test_diff_elementwise
    import test_diff_fc
    import test_diff_pooling
    import test_diff_quantize
    import test_diff_reduce
    import test_diff_shape
    import test_diff_softmax
    q = dict(input_scale=0.5, output_scale=0.25, input_zp=3, output_zp=-2)
    conv = dict(batch=1, height=5, width=4, kernel_h=3, kernel_w=2, stride_h=1, stride_w=2, dilation_h=1,
                dilation_w=1, padding="SAME", in_channels=3, groups=1, out_channels=2, kind="INT8", activation="RELU",
                seed=0, style="uniform", per_channel=True, filter_scales=[0.01, 0.02], bias="INT32", bias_bits=8, **q)
    depthwise = dict(conv, depth_multiplier=2, out_channels=6, filter_scales=[0.01] * 6)
    fc = dict(kind="INT8", input_shape=[2, 6], units=3, rows=2, keep_num_dims=False, activation="NONE", seed=0,
              style="uniform", per_channel=False, weight_scales=[0.01], weight_zp=0, bias="INT32", bias_bits=8,
              bias_scale_factor=1.0, **q)
    softmax = dict(kind="INT8", shape=[2, 7], beta=1.0, seed=0, style="uniform", input_scale=0.1, input_zp=0,
                   output_scale=1 / 256, output_zp=-128)
    add = dict(op="ADD", kind="INT8", shape1=[2, 3], shape2=[3], out_shape=[2, 3], constant2=False, seed=0,
               style="uniform", activation="NONE", scale1=0.1, scale2=0.2, output_scale=0.3, zp1=1, zp2=2, output_zp=3)
    pool = dict(op="AVERAGE_POOL_2D", kind="INT8", batch=1, height=5, width=5, channels=2, filter_h=2, filter_w=2,
                stride_h=2, stride_w=2, padding="VALID", activation="NONE", seed=0, style="uniform", scale=0.5,
                zero_point=1, output_scale_factor=1.0, output_zp_offset=0)
    mean = dict(op="MEAN", kind="INT8", shape=[1, 4, 4, 3], axes=[1, 2], keep_dims=True, seed=0, style="uniform", **q)
    transpose = dict(op="TRANSPOSE", kind="INT8", seed=0, style="uniform", scale=0.5, zero_point=0, shape=[2, 3, 4],
                     perm=[2, 0, 1])
    quantize = dict(op="QUANTIZE", in_type="FLOAT32", out_type="INT8", shape=[3, 4], seed=0, style="uniform",
                    output_scale=0.1, output_zp=4, output_channels=1)
    return {
        "CONV_2D": lambda: test_diff_conv.build_conv(conv, False),
        "DEPTHWISE_CONV_2D": lambda: test_diff_conv.build_conv(depthwise, True),
        "FULLY_CONNECTED": lambda: test_diff_fc.build_fc(fc),
        "SOFTMAX": lambda: test_diff_softmax.build_softmax(softmax),
        "ADD": lambda: test_diff_elementwise.build_elementwise(add),
        "AVERAGE_POOL_2D": lambda: test_diff_pooling.build_pool(pool),
        "MEAN": lambda: test_diff_reduce.build_reduce(mean),
        "TRANSPOSE": lambda: test_diff_shape.build_shape_op(transpose),
        "QUANTIZE": lambda: test_diff_quantize.build_quantize(quantize),
    }


@pytest.mark.parametrize("op_name", sorted(_litert_models()))
def test_litert_and_tflm_load_built_models(op_name):
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    data, inputs = _litert_models()[op_name]()
    assert check_model(data, inputs, label=f"builder {op_name}").compared
    interpreter = litert.Interpreter(model_content=data)
    interpreter.allocate_tensors()
    for detail, x in zip(interpreter.get_input_details(), inputs):
        interpreter.set_tensor(detail["index"], x[0])
    interpreter.invoke()
    expected = Interpreter.from_bytes(data).run([x[0] for x in inputs])
    for detail, want in zip(interpreter.get_output_details(), expected):
        got = interpreter.get_tensor(detail["index"])
        assert got.shape == want.shape and got.dtype == want.dtype


@st.composite
def tensor_specs(draw):
    rank = draw(st.integers(0, 5))
    shape = draw(st.lists(st.integers(1, 6), min_size=rank, max_size=rank))
    type_name = draw(st.sampled_from(["INT8", "UINT8", "INT16", "INT32", "INT64", "FLOAT32", "BOOL"]))
    spec = dict(shape=shape, type_name=type_name, constant=draw(st.booleans()), quantization=None)
    if draw(st.booleans()):
        channels_axis = draw(st.integers(0, rank - 1)) if rank and draw(st.booleans()) else None
        n = shape[channels_axis] if channels_axis is not None else 1
        scales = draw(st.lists(st.floats(2.0 ** -30, 2.0 ** 30, width=32), min_size=n, max_size=n))
        zps = draw(st.lists(st.integers(-128, 127), min_size=n, max_size=n))
        spec["quantization"] = (scales, zps, channels_axis or 0)
    return spec


@settings(max_examples=100, deadline=None)
@given(specs=st.lists(tensor_specs(), min_size=1, max_size=6), seed=st.integers(0, 2 ** 32 - 1))
def test_tensors_parse_back_as_built(specs, seed):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    expected = []
    for i, spec in enumerate(specs):
        q = {}
        if spec["quantization"]:
            scales, zps, axis = spec["quantization"]
            q = dict(scale=scales if len(scales) > 1 else scales[0], zero_point=zps if len(zps) > 1 else zps[0],
                     quantized_dimension=axis)
        dtype = np.dtype(spec["type_name"].lower()) if spec["type_name"] != "BOOL" else np.dtype(bool)
        values = None
        if spec["constant"]:
            values = (rng.integers(0, 2, spec["shape"]).astype(bool) if dtype is bool
                      else rng.integers(-100, 100, spec["shape"]).astype(dtype))
            index = b.constant(f"t{i}", values, **q)
        else:
            index = b.tensor(f"t{i}", spec["shape"], spec["type_name"], **q)
        expected.append((index, spec, values))
    tensors = load_model(b.build()).main.tensors
    for index, spec, values in expected:
        t = tensors[index]
        assert t.shape == tuple(spec["shape"]) and t.type_name == spec["type_name"]
        if values is None:
            assert t.data is None
        else:
            np.testing.assert_array_equal(t.data, values)
        if spec["quantization"] is None:
            assert t.quantization is None
        else:
            scales, zps, axis = spec["quantization"]
            np.testing.assert_array_equal(t.quantization.scales, np.float32(scales))
            np.testing.assert_array_equal(t.quantization.zero_points, zps)
            assert t.quantization.quantized_dimension == axis
