"""The custom operators TFLM registers, against TFLM: CIRCULAR_BUFFER and
TFLite_Detection_PostProcess, built with ModelBuilder's custom operators and flexbuffer options.

CIRCULAR_BUFFER keeps state across invokes: its models are checked call after call
(``check_stateful``). Variants microref refuses on purpose (a period of more than one call, an
output that is not a variable tensor: see ops/circular_buffer.py) are checked to be refused
while TFLM runs them.

TFLite_Detection_PostProcess leaves some output entries unwritten (arena garbage in TFLM, 0 in
microref: see ops/detection_postprocess.py); ``check_detection`` compares every entry TFLM
writes, bit for bit, and the number of detections.
"""
import numpy as np
import pytest
from diff_support import (
    OUTCOMES,
    Outcome,
    _assert_same,
    calls_from,
    check_stateful,
    note_case,
    record,
    run_examples,
    seeds,
    tflm_run,
    zero_points,
)
from flatbuffers import flexbuffers
from hypothesis import strategies as st

from interp import Interpreter, ModelError, UnsupportedOpError
from interp.builder import ModelBuilder
from interp.errors import InvokeError

# The ops this module tests (see test_diff_regressions.py).
DIFF_OPS = {"CIRCULAR_BUFFER", "TFLite_Detection_PostProcess"}
CALLS = 7


# ------------------------------------------------------------------------------ CIRCULAR_BUFFER

def circular_buffer_model(*, batch=1, slots=4, width=1, depth=3, zero_point=0, variable=True, options=b"",
                          relu_after=False) -> bytes:
    b = ModelBuilder()
    x = b.input("x", [batch, 1, width, depth], "INT8", scale=0.5, zero_point=zero_point)
    y = b.tensor("buffer", [batch, slots, width, depth], "INT8", scale=0.5, zero_point=zero_point,
                 variable=variable)
    b.op("CUSTOM", [x], [y], custom_code="CIRCULAR_BUFFER", custom_options=options)
    if relu_after:
        z = b.tensor("z", [batch, slots, width, depth], "INT8", scale=0.5, zero_point=zero_point)
        b.op("RELU", [y], [z])
        b.output(z)
    else:
        b.output(y)
    return b.build()


@st.composite
def circular_buffer_cases(draw):
    case = dict(batch=draw(st.sampled_from([1, 1, 1, 2])), slots=draw(st.sampled_from([1, 2, 3, 4, 5, 7, 13])),
                width=draw(st.sampled_from([1, 1, 2, 3])), depth=draw(st.integers(1, 8)),
                zero_point=draw(zero_points("INT8")), variable=draw(st.sampled_from([True] * 9 + [False])),
                seed=draw(seeds))
    # element 0 of the options' vector: the map's alphabetically first key, or the vector's first item.
    first = draw(st.sampled_from([1] * 6 + [0, -1, 2, 3]))
    case["options"] = draw(st.sampled_from([
        ("none",), ("map", {"cycles_max": first}),
        ("map", {"cycles_max": draw(st.integers(-3, 3)), "a_first": first}),
        ("map", {"cycles_max": first, "z_last": draw(st.sampled_from([7, 2 ** 40, -(2 ** 33)]))}),
        ("vector", [first, draw(st.integers(-(2 ** 40), 2 ** 40))]),
    ]))
    case["first"] = first
    return case


def _options_bytes(spec) -> bytes:
    return b"" if spec[0] == "none" else flexbuffers.Dumps(spec[1])


def expected_period(case) -> int:
    """cycles_max as TFLM derives it, computed from how the case wrote its options."""
    value = 0 if case["options"][0] == "none" else case["first"]
    if value > 0:
        return value
    return 1 if case["slots"] in (5, 13, 25) else 2


def run_circular_buffer_case(case: dict):
    note_case(**case)
    rng = np.random.default_rng(case["seed"])
    data = circular_buffer_model(batch=case["batch"], slots=case["slots"], width=case["width"],
                                 depth=case["depth"], zero_point=case["zero_point"], variable=case["variable"],
                                 options=_options_bytes(case["options"]))
    shape = (CALLS, case["batch"], 1, case["width"], case["depth"])
    inputs = [rng.integers(-128, 128, shape).astype(np.int8)]
    label = "CIRCULAR_BUFFER"
    if expected_period(case) == 1 and case["variable"]:
        calls = calls_from(inputs)
        middle = len(calls) // 2  # a reset() in the middle restarts both
        record(check_stateful(data, calls[:middle] + [None] + calls[middle:], label=label), label)
        return
    # TFLM runs it; microref refuses it, saying why.
    verdict, payload = tflm_run(data, [[inputs[0][0]]])
    assert verdict == "ok", payload
    with pytest.raises(UnsupportedOpError, match="cycles_max|not a variable tensor"):
        Interpreter.from_bytes(data)
    OUTCOMES[label]["refused (TFLM's period or arena)"] += 1


def run_case(op: str, case: dict):
    if op == "CIRCULAR_BUFFER":
        run_circular_buffer_case(case)
    elif op == "TFLite_Detection_PostProcess":
        run_detection_case(case)
    else:
        raise AssertionError(op)


def test_circular_buffer_matches_tflm_call_after_call():
    run_examples(circular_buffer_cases(), lambda case: run_case("CIRCULAR_BUFFER", case), fraction=0.5)


def test_circular_buffer_goldens_of_tflm_test():
    """circular_buffer_test.cc, OutputTensorOnEveryIterationLength4: depth 3, 4 slots, period 1."""
    data = circular_buffer_model(options=flexbuffers.Dumps({"cycles_max": 1}))
    goldens = [[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3], [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6],
               [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
               [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]
    inputs = np.arange(1, 16, dtype=np.int8).reshape(5, 1, 1, 1, 3)
    it = Interpreter.from_bytes(data)
    for i, golden in enumerate(goldens):
        assert it.run([inputs[i]])[0].ravel().tolist() == golden
    verdict, payload = tflm_run(data, [[x] for x in inputs])
    assert verdict == "ok" and [p[0].ravel().tolist() for p in payload] == goldens


def test_circular_buffer_period_two_skips_later_operators_in_tflm():
    """Why microref refuses a period above one: TFLM's invoke stops at the buffer on the calls it
    aborts, and the RELU after it leaves its output as the arena held it (not RELU of the buffer)."""
    data = circular_buffer_model(options=flexbuffers.Dumps({"cycles_max": 2}), relu_after=True)
    x = np.full((1, 1, 1, 3), 5, np.int8)
    verdict, payload = tflm_run(data, [[x]])
    assert verdict == "ok"
    buffer_after_one_call = np.zeros((1, 4, 1, 3), np.int8)
    buffer_after_one_call[0, 3] = 5
    assert not np.array_equal(payload[0][0], buffer_after_one_call)  # the RELU did not run
    with pytest.raises(UnsupportedOpError, match="kTfLiteAbort"):
        Interpreter.from_bytes(data)


# TFLM-free checks of the circular buffer's options and refusals.

@pytest.mark.parametrize("options, expected", [
    (b"", 0),
    (flexbuffers.Dumps({"cycles_max": 3}), 3),
    (flexbuffers.Dumps({"a": -2, "cycles_max": 1}), -2),  # element 0 is the first key's value
    (flexbuffers.Dumps([2 ** 32 + 1, 5]), 1),  # a 64-bit element cut to int32
    (flexbuffers.Dumps(7), None),  # no vector: TFLM would read outside the options
    (flexbuffers.Dumps({}), None),
])
def test_circular_buffer_reads_element_0_as_tflm_does(options, expected):
    from ops.circular_buffer import cycles_max_option
    assert cycles_max_option(options) == expected


def test_circular_buffer_state_resets_to_the_zero_point():
    data = circular_buffer_model(slots=2, depth=2, zero_point=-5, options=flexbuffers.Dumps({"cycles_max": 1}))
    it = Interpreter.from_bytes(data)
    x = np.array([1, 2], np.int8).reshape(1, 1, 1, 2)
    assert it.run([x])[0].ravel().tolist() == [-5, -5, 1, 2]
    assert it.run([x * 3])[0].ravel().tolist() == [1, 2, 3, 6]
    it.reset()
    assert it.run([x])[0].ravel().tolist() == [-5, -5, 1, 2]
    # run_batch: every sample starts from the reset state.
    batch = it.run_batch([np.stack([x, x * 2])])[0]
    assert batch.reshape(2, -1).tolist() == [[-5, -5, 1, 2], [-5, -5, 2, 4]]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(variable=False, options=flexbuffers.Dumps({"cycles_max": 1})), UnsupportedOpError, "not a variable"),
    (dict(options=b""), UnsupportedOpError, "cycles_max 2"),  # 4 slots: TFLM guesses a period of 2
    (dict(slots=4, width=2, depth=96, options=b""), UnsupportedOpError, "static counter"),
])
def test_circular_buffer_refusals(kwargs, error, message):
    with pytest.raises(error, match=message):
        Interpreter.from_bytes(circular_buffer_model(**kwargs))


def test_circular_buffer_guesses_a_period_of_one_for_5_13_25_slots():
    for slots in (5, 13, 25):
        kernel = Interpreter.from_bytes(circular_buffer_model(slots=slots)).kernels[0]
        assert kernel.params.cycles_max == 1


# ------------------------------------------------------------------------------ TFLite_Detection_PostProcess

DETECTION = "TFLite_Detection_PostProcess"


def detection_model(case: dict) -> bytes:
    """Box encodings, class scores (NaN where a third input, the mask, is positive: SQRT(NEG(mask))
    added to them, when case["nan_scores"]), anchors (a constant or an input), four outputs."""
    nb, ncwb = case["num_boxes"], case["num_classes"] + case["background"]
    out_n = case["outputs"]
    b = ModelBuilder()
    box = b.input("box_encodings", [case.get("box_batch", 1), nb, case["code_size"]], "FLOAT32")
    scores = b.input("class_predictions", [1, nb, ncwb], "FLOAT32")
    if case.get("nan_scores"):
        mask = b.input("nan_mask", [1, nb, ncwb], "FLOAT32")
        neg = b.tensor("neg_mask", [1, nb, ncwb], "FLOAT32")
        b.op("NEG", [mask], [neg])
        root = b.tensor("nan_or_zero", [1, nb, ncwb], "FLOAT32")
        b.op("SQRT", [neg], [root])
        with_nans = b.tensor("scores_with_nans", [1, nb, ncwb], "FLOAT32")
        b.op("ADD", [scores, root], [with_nans])
        scores = with_nans
    rng = np.random.default_rng(case["seed"])
    anchor_values = detection_anchors(rng, case)
    anchors = b.input("anchors", [nb, 4], "FLOAT32") if case["anchor_input"] else b.constant("anchors", anchor_values)
    outs = [b.tensor("detection_boxes", [1, out_n, 4], "FLOAT32"), b.tensor("detection_classes", [1, out_n], "FLOAT32"),
            b.tensor("detection_scores", [1, out_n], "FLOAT32"), b.tensor("num_detections", [1], "FLOAT32")]
    b.op("CUSTOM", [box, scores, anchors], outs, custom_code=DETECTION,
         custom_options=flexbuffers.Dumps(case["options"]))
    b.output(*outs)
    return b.build()


def detection_anchors(rng, case):
    nb = case["num_boxes"]
    anchors = np.concatenate([rng.uniform(0, 1, (nb, 2)), rng.uniform(0.02, 0.6, (nb, 2))], axis=1)
    if case["style"] == "overflow":
        anchors[overflow_boxes(case)[1], 2] = 0.0  # 0.5 * exp(huge) * 0 = NaN corners
    return anchors.astype(np.float32)


def overflow_boxes(case):
    """(boxes whose height encoding overflows exp, the part of them whose anchor height is 0)."""
    rng = np.random.default_rng(case["seed"] + 2)
    huge = rng.uniform(size=case["num_boxes"]) < 0.3
    return huge, huge & (rng.uniform(size=case["num_boxes"]) < 0.5)


def detection_inputs(case: dict, samples: int):
    rng = np.random.default_rng(case["seed"] + 1)
    nb, ncwb = case["num_boxes"], case["num_classes"] + case["background"]
    out = []
    for _ in range(samples):
        box = rng.normal(0, case["spread"], (case.get("box_batch", 1), nb, case["code_size"])).astype(np.float32)
        if case["style"] == "overflow":
            box[:, overflow_boxes(case)[0], 2] = 1e4  # exp(h / h_scale) overflows: infinite corners
        scores = rng.uniform(0, 1, (1, nb, ncwb))
        if case["ties"]:
            scores = np.round(scores * 4) / 4
        sample = [box, scores.astype(np.float32)]
        if case.get("nan_scores"):
            sample.append(np.where(rng.uniform(size=(1, nb, ncwb)) < 0.25, 3.0, 0.0).astype(np.float32))
        if case["anchor_input"]:
            sample.append(detection_anchors(np.random.default_rng(case["seed"]), case))
        out.append(sample)
    return out


@st.composite
def detection_cases(draw, regular: bool):
    nb = draw(st.sampled_from([1, 2, 3, 5, 6, 8, 12, 30]))
    nc = draw(st.integers(1, 6))
    md = draw(st.integers(1, 6))
    if regular and (md - 1) * (nb - 1) < 1:
        # Regular NMS sizes its scratch buffers max_detections x num_boxes; below
        # max_detections + num_boxes TFLM can write past them (undefined; microref refuses, see
        # test_detection_postprocess_refuses_inputs_that_overrun_tflm_buffers).
        md, nb = max(md, 2), max(nb, 2)
    options = dict(max_detections=md, max_classes_per_detection=draw(st.integers(1, 4)),
                   nms_score_threshold=draw(st.sampled_from([0.0, 0.3, -1.0, 1e-8, 0.6])),
                   nms_iou_threshold=draw(st.sampled_from([0.5, 0.1, 1.0, 0.01, 0.99, 0.6])),
                   num_classes=nc, y_scale=draw(st.sampled_from([10.0, 1.0, 0.1])),
                   x_scale=draw(st.sampled_from([10.0, 1.0, 3.0])), h_scale=draw(st.sampled_from([5.0, 1.0, 2.5])),
                   w_scale=draw(st.sampled_from([5.0, 1.0, 0.7])))
    if regular or draw(st.booleans()):
        options["use_regular_nms"] = regular
    if draw(st.integers(0, 3)):
        options["detections_per_class"] = draw(st.integers(1, 5))
    # Rarely an option TFLM's Eval refuses.
    bad = draw(st.sampled_from([None] * 12 + ["iou", "per_detection", "per_class"]))
    if bad == "iou":
        options["nms_iou_threshold"] = draw(st.sampled_from([0.0, 1.5, -0.5]))
    elif bad == "per_detection":
        options["max_classes_per_detection"] = 0
    elif bad == "per_class":
        options["detections_per_class"] = 0
    ncpa = min(options["max_classes_per_detection"], nc)
    # Fast NMS writes detection k at ncpa * k + k % ncpa (see ops/detection_postprocess.py), up
    # to ncpa^2 * md: the outputs have room for that (TFLM crashes writing past smaller ones),
    # or, with one class per anchor or regular NMS, more entries than it writes.
    outputs = draw(st.sampled_from([md * max(ncpa, 1) ** 2, md * max(ncpa, 1) ** 2 + 2]))
    return dict(num_boxes=nb, num_classes=nc, background=draw(st.integers(0, 1)),
                code_size=draw(st.sampled_from([4, 4, 6])), outputs=outputs, options=options,
                anchor_input=draw(st.integers(0, 4)) == 0, nan_scores=not regular and draw(st.integers(0, 3)) == 0,
                ties=draw(st.booleans()), spread=draw(st.sampled_from([0.5, 0.5, 1.0, 2.0, 20.0])),
                style=draw(st.sampled_from(["normal"] * 5 + ["overflow"])), seed=draw(seeds))


def written_entries(kernel, num_detections: float) -> np.ndarray:
    """The output entries TFLM writes: the first max_detections (regular NMS), or detection k at
    ncpa * k + k % ncpa (fast NMS; ncpa = classes per anchor) for k < num_detections."""
    p = kernel.params
    if p.use_regular_non_max_suppression:
        return np.arange(p.max_detections)
    ncpa = min(p.max_classes_per_detection, p.num_classes)
    k = np.arange(int(num_detections))
    return ncpa * k + k % ncpa


def check_detection(data: bytes, samples: list, *, label: str) -> Outcome:
    """The differential property of a detection model: TFLM's refusals are microref's (at load, or,
    for inputs whose decoded boxes TFLM's Invoke rejects, an InputError at run); every output entry
    TFLM writes equals microref's, through run() and run_batch(); the entries TFLM leaves
    unwritten are 0 in microref."""
    verdict, payload = tflm_run(data, samples)
    try:
        it = Interpreter.from_bytes(data)
    except (ModelError, UnsupportedOpError) as e:
        if verdict != "ok":
            OUTCOMES[label]["rejected by both"] += 1
            return Outcome(False, payload)
        raise AssertionError(f"TFLM accepts this model but microref refuses it: {type(e).__name__}: {e}") from None
    kernel = next(k for k in it.kernels if getattr(k, "op_name", "") == DETECTION)
    if verdict == "rejected":
        raise AssertionError(f"TFLM refuses this model but microref loads it. TFLM: {payload}")
    if verdict == "invoke failed":
        # Only ValidateBoxes fails on inputs: some sample must make microref raise InvokeError.
        errors = []
        for sample in samples:
            try:
                it.run(sample)
            except InvokeError as e:
                errors.append(e)
        assert errors and "ValidateBoxes" in str(errors[0]), f"TFLM's Invoke fails ({payload}) but microref runs"
        OUTCOMES[label]["invoke refused by both"] += 1
        return Outcome(False, payload)
    try:
        singles = [it.run(sample) for sample in samples]
        batch = it.run_batch([np.stack([s[i] for s in samples]) for i in range(len(samples[0]))])
    except InvokeError as e:
        # Inputs that make TFLM write past a scratch buffer or an output: undefined, refused.
        assert "out of bounds" in str(e), e
        OUTCOMES[label]["undefined in TFLM, refused"] += 1
        return Outcome(False, str(e))
    for s, (got, want) in enumerate(zip(singles, payload)):
        _assert_same(got[3], want[3], f"num_detections, sample {s}", it)
        idx = written_entries(kernel, want[3].reshape(-1)[0])
        for j, width in ((0, 4), (1, 1), (2, 1)):
            g, w = got[j].reshape(-1, width), want[j].reshape(-1, width)
            _assert_same(g[idx], w[idx], f"output {j} entries {idx.tolist()}, sample {s}", it)
            unwritten = np.ones(g.shape[0], bool)
            unwritten[idx] = False
            assert not g[unwritten].any(), f"output {j}, sample {s}: microref's unwritten entries are not 0"
            _assert_same(batch[j][s], got[j], f"output {j}, run_batch() sample {s} against run()", it)
        _assert_same(batch[3][s], got[3], f"num_detections, run_batch() sample {s} against run()", it)
    OUTCOMES[label]["compared"] += 1
    return Outcome(True)


def run_detection_case(case: dict):
    note_case(**case)
    label = f"{DETECTION} {'regular' if case['options'].get('use_regular_nms') else 'fast'}"
    record(check_detection(detection_model(case), detection_inputs(case, 3), label=label), label)


@pytest.mark.parametrize("regular", [False, True], ids=["fast_nms", "regular_nms"])
def test_detection_postprocess_matches_tflm(regular):
    run_examples(detection_cases(regular), lambda case: run_case(DETECTION, case), fraction=0.6)


# The test of detection_postprocess_test.cc: six boxes, two classes plus background.
TFLM_BOXES = np.array([0, 0, 0, 0, 0, 1, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
                      np.float32).reshape(1, 6, 4)
TFLM_SCORES = np.array([0., .9, .8, 0., .75, .72, 0., .6, .5, 0., .93, .95, 0., .5, .4, 0., .3, .2],
                       np.float32).reshape(1, 6, 3)
TFLM_ANCHORS = np.array([.5, .5, 1, 1, .5, .5, 1, 1, .5, .5, 1, 1, .5, 10.5, 1, 1, .5, 10.5, 1, 1, .5, 100.5, 1, 1],
                        np.float32).reshape(6, 4)
TFLM_OPTIONS = dict(max_detections=3, max_classes_per_detection=1, detections_per_class=1, nms_score_threshold=0.0,
                    nms_iou_threshold=0.5, num_classes=2, y_scale=10.0, x_scale=10.0, h_scale=5.0, w_scale=5.0)


def tflm_test_model(regular: bool) -> bytes:
    b = ModelBuilder()
    box = b.input("box_encodings", [1, 6, 4], "FLOAT32")
    scores = b.input("class_predictions", [1, 6, 3], "FLOAT32")
    anchors = b.constant("anchors", TFLM_ANCHORS)
    outs = [b.tensor("boxes", [1, 3, 4], "FLOAT32"), b.tensor("classes", [1, 3], "FLOAT32"),
            b.tensor("scores", [1, 3], "FLOAT32"), b.tensor("num", [1], "FLOAT32")]
    b.op("CUSTOM", [box, scores, anchors], outs, custom_code=DETECTION,
         custom_options=flexbuffers.Dumps(dict(TFLM_OPTIONS, use_regular_nms=regular)))
    b.output(*outs)
    return b.build()


@pytest.mark.parametrize("regular", [False, True], ids=["fast_nms", "regular_nms"])
def test_detection_postprocess_goldens_of_tflm_test(regular):
    """TFLM's goldens (its regular-NMS test allows 0.1 of slack: the exact second score is 0.93)."""
    got = Interpreter.from_bytes(tflm_test_model(regular)).run([TFLM_BOXES, TFLM_SCORES])
    if regular:
        expected = ([0, 10, 1, 11, 0, 10, 1, 11, 0, 0, 0, 0], [1, 0, 0], [0.95, 0.93, 0.0], [2.0])
    else:
        expected = ([0, 10, 1, 11, 0, 0, 1, 1, 0, 100, 1, 101], [1, 0, 0], [0.95, 0.9, 0.3], [3.0])
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g.ravel(), np.array(e, np.float32))
    record(check_detection(tflm_test_model(regular), [[TFLM_BOXES, TFLM_SCORES]], label=DETECTION), DETECTION)


def test_detection_postprocess_ssd_sized_head_matches_tflm():
    """An SSD MobileNet head: 1917 anchors, 90 classes + background, score threshold 1e-8."""
    for regular in (False, True):
        case = dict(num_boxes=1917, num_classes=90, background=1, code_size=4, outputs=10, anchor_input=False,
                    nan_scores=False, ties=False, spread=1.0, style="normal", seed=7,
                    options=dict(max_detections=10, max_classes_per_detection=1, detections_per_class=100,
                                 use_regular_nms=regular, nms_score_threshold=1e-8, nms_iou_threshold=0.6,
                                 num_classes=90, y_scale=10.0, x_scale=10.0, h_scale=5.0, w_scale=5.0))
        record(check_detection(detection_model(case), detection_inputs(case, 1), label=DETECTION), DETECTION)


def nan_sort_case(seed: int) -> dict:
    """Fast NMS over many classes with NaN scores: std::partial_sort's order then depends on the
    algorithm (NaN is neither less nor greater than anything)."""
    rng = np.random.default_rng(seed)
    nc, md, mcpd = int(rng.integers(6, 12)), int(rng.integers(2, 6)), int(rng.integers(2, 6))
    nb = int(rng.integers(3, 9))
    return dict(num_boxes=nb, num_classes=nc, background=0, code_size=4, outputs=md * min(mcpd, nc) ** 2,
                anchor_input=False, nan_scores=True, ties=bool(seed % 2), spread=0.5, style="normal", seed=seed,
                options=dict(max_detections=md, max_classes_per_detection=mcpd, nms_score_threshold=0.0,
                             nms_iou_threshold=0.5, num_classes=nc, y_scale=10.0, x_scale=10.0, h_scale=5.0,
                             w_scale=5.0))


def test_detection_postprocess_orders_nan_scores_as_libstdcxx_does(monkeypatch):
    import ops.detection_postprocess as dp
    sensitive = 0
    for seed in range(12):
        case = nan_sort_case(seed)
        data, samples = detection_model(case), detection_inputs(case, 1)
        record(check_detection(data, samples, label=f"{DETECTION} fast"), f"{DETECTION} fast")
        # The case is one where a plain stable sort (NaN last) gives other outputs.
        exact = Interpreter.from_bytes(data).run(samples[0])
        with monkeypatch.context() as m:
            m.setattr(dp, "_decreasing_partial_argsort", lambda v, k: np.argsort(-v, kind="stable")[:k])
            naive = Interpreter.from_bytes(data).run(samples[0])
        sensitive += any(not np.array_equal(a, b, equal_nan=True) for a, b in zip(exact, naive))
    assert sensitive >= 8


# TFLM-free checks of the detection kernel's options, refusals and index arithmetic.

def small_detection(options: dict, *, nb=2, nc=2, outputs=None) -> bytes:
    case = dict(num_boxes=nb, num_classes=nc, background=1, code_size=4, anchor_input=False, nan_scores=False,
                ties=False, spread=0.5, style="normal", seed=0,
                outputs=outputs or options.get("max_detections", 1), options=options)
    return detection_model(case)


BASE = dict(max_detections=2, max_classes_per_detection=1, nms_score_threshold=0.0, nms_iou_threshold=0.5,
            num_classes=2, y_scale=10.0, x_scale=10.0, h_scale=5.0, w_scale=5.0)


def test_detection_options_defaults_and_conversions():
    from ops.detection_postprocess import parse_options
    p = parse_options(flexbuffers.Dumps(BASE))
    assert p["detections_per_class"] == 100 and p["use_regular_non_max_suppression"] is False
    p = parse_options(flexbuffers.Dumps(dict(BASE, max_detections=3.9, use_regular_nms=2, nms_iou_threshold=1,
                                             detections_per_class=2 ** 32 + 5, y_scale=0.1)))
    assert p["max_detections"] == 3  # AsInt32 of a float truncates
    assert p["use_regular_non_max_suppression"] is True  # AsBool of a nonzero int
    assert p["intersection_over_union_threshold"] == 1.0
    assert p["detections_per_class"] == 5  # cut to int32
    assert p["scale_values"][0] == float(np.float32(0.1))  # the double rounded to float
    assert parse_options(flexbuffers.Dumps([1, 2]))["max_detections"] == 0  # no map: every key is Null


@pytest.mark.parametrize("options, message", [
    (dict(BASE, nms_iou_threshold=0.0), "nms_iou_threshold"),
    (dict(BASE, max_classes_per_detection=0), "max_classes_per_detection"),
    (dict(BASE, use_regular_nms=True, detections_per_class=0), "detections_per_class"),
    (dict(BASE, max_detections=-1), "negative size"),
    (dict(BASE, num_classes=1), "at most one background"),  # 3 scores per box for 1 class
])
def test_detection_refusals(options, message):
    with pytest.raises(ModelError, match=message):
        Interpreter.from_bytes(small_detection(options, outputs=2))


def test_detection_regular_nms_into_too_small_outputs_is_undefined():
    with pytest.raises(UnsupportedOpError, match="regular NMS writes 4"):
        Interpreter.from_bytes(small_detection(dict(BASE, use_regular_nms=True, max_detections=4), outputs=2))


def test_detection_string_option_is_unsupported():
    with pytest.raises(UnsupportedOpError, match="STRING"):
        Interpreter.from_bytes(small_detection(dict(BASE, num_classes="2")))


def test_detection_scratch_buffers_as_tflm_requests_them():
    kernel = Interpreter.from_bytes(small_detection(dict(BASE, max_detections=3), nb=5, outputs=3)).kernels[0]
    nb, md, ncwb = 5, 3, 3
    assert kernel.scratch_bytes == [nb, nb * 16, nb * ncwb * 4, nb * 4, nb * 4, md * nb * 4, md * nb * 4, nb * 4,
                                    md * nb * 4, max(2, md) * nb * 4, min(nb, md) * nb * 4]


def far_apart_boxes(nb):
    """Box encodings of 0 on anchors far apart: boxes that never overlap."""
    box = np.zeros((1, nb, 4), np.float32)
    anchors = np.array([[0.5, 10.0 * i, 1.0, 1.0] for i in range(nb)], np.float32)
    return box, anchors


def detection_with_anchors(options, anchors, nc, outputs):
    nb = anchors.shape[0]
    b = ModelBuilder()
    box = b.input("box_encodings", [1, nb, 4], "FLOAT32")
    scores = b.input("class_predictions", [1, nb, nc + 1], "FLOAT32")
    anc = b.constant("anchors", anchors)
    outs = [b.tensor("boxes", [1, outputs, 4], "FLOAT32"), b.tensor("classes", [1, outputs], "FLOAT32"),
            b.tensor("scores", [1, outputs], "FLOAT32"), b.tensor("num", [1], "FLOAT32")]
    b.op("CUSTOM", [box, scores, anc], outs, custom_code=DETECTION, custom_options=flexbuffers.Dumps(options))
    b.output(*outs)
    return Interpreter.from_bytes(b.build())


def test_fast_nms_with_two_classes_per_anchor_writes_where_tflm_does():
    # Two anchors, three classes, two per anchor: writes k = 0..3 land at 2k + k % 2 = 0, 3, 4, 7.
    box, anchors = far_apart_boxes(2)
    it = detection_with_anchors(dict(BASE, max_classes_per_detection=2, num_classes=3), anchors, 3, 8)
    scores = np.array([[0, .9, .1, .5], [0, .2, .8, .3]], np.float32).reshape(1, 2, 4)
    boxes, classes, out_scores, num = it.run([box, scores])
    assert num.tolist() == [4.0]
    # Anchor 0 (best .9) first: classes 0 then 2; then anchor 1: classes 1 then 2.
    assert classes.ravel().tolist() == [0, 0, 0, 2, 1, 0, 0, 2]
    np.testing.assert_array_equal(out_scores.ravel(), np.array([.9, 0, 0, .5, .8, 0, 0, .3], np.float32))
    assert boxes.reshape(-1, 4)[[1, 2, 5, 6]].tolist() == [[0] * 4] * 4  # unwritten entries: 0


def test_detection_refuses_inputs_that_overrun_tflm_buffers():
    # Regular NMS, one box, two classes, max_detections 1: the second class's selection is the 2nd
    # entry of a scratch buffer of max_detections x num_boxes = 1.
    box, anchors = far_apart_boxes(1)
    it = detection_with_anchors(dict(BASE, use_regular_nms=True, detections_per_class=1, max_detections=1), anchors,
                                2, 1)
    with pytest.raises(InvokeError, match="out of bounds"):
        it.run([box, np.array([0, .9, .8], np.float32).reshape(1, 1, 3)])
    # With one class scoring, nothing overruns.
    assert it.run([box, np.array([0, .9, -1], np.float32).reshape(1, 1, 3)])[3].tolist() == [1.0]
    # Fast NMS with 2 classes per anchor into outputs of max_detections x 2 (the converter's size).
    box, anchors = far_apart_boxes(2)
    it = detection_with_anchors(dict(BASE, max_classes_per_detection=2, num_classes=2), anchors, 2, 4)
    with pytest.raises(InvokeError, match="past outputs"):
        it.run([box, np.array([0, .9, .8, 0, .7, .6], np.float32).reshape(1, 2, 3)])


def test_detection_invalid_decoded_box_fails_like_tflm_invoke():
    box, anchors = far_apart_boxes(2)
    anchors[1, 2] = 0.0  # zero height: ymin == ymax
    it = detection_with_anchors(BASE, anchors, 2, 2)
    with pytest.raises(InvokeError, match="ValidateBoxes"):
        it.run([box, np.full((1, 2, 3), 0.5, np.float32)])


def test_libstdcxx_partial_sort_without_nan_is_the_total_order():
    from ops.detection_postprocess import _libstdcxx_partial_sort
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        v = np.round(rng.normal(size=n) * 3).astype(np.float32)  # many ties
        k = int(rng.integers(0, n + 1))
        assert _libstdcxx_partial_sort([float(x) for x in v], k)[:k] == list(np.argsort(-v, kind="stable")[:k])


@pytest.mark.parametrize("regular", [False, True], ids=["fast_nms", "regular_nms"])
def test_detection_scratch_in_the_arena_plan(regular):
    """The eleven scratch buffers TFLM's Prepare requests: the plan's head equals the wheel's."""
    from planner_support import tflm_allocations
    case = dict(num_boxes=30, num_classes=5, background=1, code_size=4, outputs=12, anchor_input=False,
                nan_scores=False, ties=False, spread=1.0, style="normal", seed=1,
                options=dict(max_detections=3, max_classes_per_detection=2, detections_per_class=4,
                             use_regular_nms=regular, nms_score_threshold=0.1, nms_iou_threshold=0.5, num_classes=5,
                             y_scale=10.0, x_scale=10.0, h_scale=5.0, w_scale=5.0))
    data = detection_model(case)
    assert Interpreter.from_bytes(data).plan.arena_bytes == tflm_allocations(data)[0]


def test_circular_buffer_variable_output_is_outside_the_arena_plan():
    from planner_support import tflm_allocations
    data = circular_buffer_model(options=flexbuffers.Dumps({"cycles_max": 1}), relu_after=True)
    assert Interpreter.from_bytes(data).plan.arena_bytes == tflm_allocations(data)[0]
