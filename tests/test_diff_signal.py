"""The signal library's custom operators against TFLM: SignalWindow, SignalFftAutoScale,
SignalRfft and SignalIrfft (int16, int32, float32), SignalEnergy, SignalFilterBank,
SignalFilterBankSquareRoot, SignalFilterBankLog, SignalFilterBankSpectralSubtraction,
SignalPCAN, SignalFramer, SignalStacker, SignalDelay and SignalOverlapAdd (int16, float32).

Models are single custom operators with flexbuffer options (``signal_model``). Stateless ops use
diff_support's protocol. Stateful ones (SpectralSubtraction, Framer, Stacker, Delay, OverlapAdd)
are checked the same way (``check_signal``): TFLM runs the calls of one request consecutively from
a fresh interpreter; microref must give the same outputs call after call with ``run``, again
after ``reset()``, and in ``run_batch``, where every sample is one first call from the reset
state. Output elements TFLM has not written yet hold leftover arena bytes and are not compared
(tests/test_ops_signal.py pins microref's zeros there).
"""
from __future__ import annotations

import numpy as np
import pytest
from diff_support import (
    OUTCOMES,
    Outcome,
    _assert_same,
    load_like_tflm,
    note_case,
    record,
    run_examples,
    seeds,
    tflm_run,
)
from flatbuffers import flexbuffers
from hypothesis import strategies as st

from interp.builder import ModelBuilder

DIFF_OPS = {"SignalWindow", "SignalFftAutoScale", "SignalRfft", "SignalIrfft", "SignalEnergy",
            "SignalFilterBank", "SignalFilterBankSquareRoot", "SignalFilterBankLog",
            "SignalFilterBankSpectralSubtraction", "SignalPCAN", "SignalFramer", "SignalStacker",
            "SignalDelay", "SignalOverlapAdd"}
TYPE_CODE = {"FLOAT32": 0, "INT32": 2, "INT16": 7}
# Transform lengths TFLM's kissfft can run: even, and fft_length / 2 made of radices 2, 3, 4, 5.
FFT_LENGTHS = [4, 6, 8, 10, 12, 16, 18, 20, 24, 30, 32, 36, 40, 48, 50, 54, 60, 64, 90, 100, 128, 150,
               256, 480, 512]


# ---------------------------------------------------------------------------------- models

def signal_model(code: str, inputs: list, outputs: list, options: dict | None) -> bytes:
    """One custom operator ``code``. ``inputs``: numpy arrays (constants) or (shape, type) pairs
    (model inputs, in order); ``outputs``: (shape, type) pairs; ``options``: the flexbuffer map
    (keys sorted by flexbuffers, as TFLM's converter writes them), None for no custom options."""
    b = ModelBuilder()
    ins = [b.constant(f"c{k}", x) if isinstance(x, np.ndarray) else b.input(f"x{k}", x[0], x[1])
           for k, x in enumerate(inputs)]
    outs = [b.tensor(f"y{k}", shape, type_name) for k, (shape, type_name) in enumerate(outputs)]
    b.op("CUSTOM", ins, outs, custom_code=code,
         custom_options=flexbuffers.Dumps(options) if options is not None else b"")
    b.output(*outs)
    return b.build()


def check_signal(data: bytes, calls: list[list[np.ndarray]], *, label: str, stateful: bool,
                 defined=None, batch_firsts: int = 2) -> Outcome:
    """The differential property for one signal model; ``calls[k]`` are the inputs of call k.

    TFLM runs the calls consecutively from a fresh interpreter (its arena all zero) and microref
    must give the same outputs call after call with ``run``, again after ``reset()``, and in
    ``run_batch`` (every sample one call from the reset state: for a stateful model, TFLM's first
    call on that input).

    Output elements TFLM's kernel has not written yet in a stream hold leftover arena bytes (the
    planner's temporaries), which no runtime can reproduce: ``defined(k)`` gives, for the k-th
    call of a stream, one boolean mask per output of the elements TFLM has written by then (None:
    all), and only those are compared.
    """

    verdict, payload = tflm_run(data, calls)
    it = load_like_tflm(data, verdict, payload, label)
    if it is None:
        return Outcome(False, payload)
    assert it.stateful == stateful

    def same(got, want, k, where):
        masks = defined(k) if defined is not None else None
        for j, (g, w) in enumerate(zip(got, want)):
            m = None if masks is None else masks[j]
            if m is not None:
                assert g.shape == w.shape, f"output {j}, {where}: microref shape {g.shape}, TFLM {w.shape}"
                g, w = g.reshape(-1)[m.reshape(-1)], w.reshape(-1)[m.reshape(-1)]
            _assert_same(g, w, f"output {j}, {where}", it)
        assert len(got) == len(want), f"microref gives {len(got)} outputs, TFLM {len(want)}"

    for k, xs in enumerate(calls):
        same(it.run(xs), payload[k], k, f"run() call {k}")
    it.reset()
    for k, xs in enumerate(calls[:2]):
        same(it.run(xs), payload[k], k, f"run() call {k} after reset()")
    batch = it.run_batch([np.stack([xs[i] for xs in calls]) for i in range(len(calls[0]))])
    if stateful:
        firsts = [payload[0]] + [tflm_run(data, [xs])[1][0] for xs in calls[1:batch_firsts]]
    else:
        firsts = payload
    for s, want in enumerate(firsts):
        same([b[s] for b in batch], want, 0, f"run_batch() sample {s}")
    OUTCOMES[label]["compared"] += 1
    return Outcome(True)


def prefix_mask(shape, count: int) -> np.ndarray:
    mask = np.zeros(int(np.prod(shape)), bool)
    mask[:count] = True
    return mask.reshape(shape)


# ---------------------------------------------------------------------------------- values

def int_values(rng, shape, type_name: str, style: str) -> np.ndarray:
    """Integers over the whole type ("uniform"), its extreme values, small magnitudes, or values
    of every magnitude ("scaled": a full-range value shifted right by a random count)."""
    dtype = np.dtype(type_name.lower())
    info = np.iinfo(dtype)
    full = rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)
    if style == "extremes":
        picks = [info.min, info.min + 1, 0, 1, info.max - 1, info.max] + ([-1] if info.min < 0 else [])
        return rng.choice(np.array(picks, dtype=dtype), shape)
    if style == "small":
        hi = 1 << int(rng.integers(1, 12))
        return rng.integers(0 if info.min == 0 else -hi, hi, shape).astype(dtype)
    if style == "scaled":
        return full >> rng.integers(0, dtype.itemsize * 8, shape).astype(dtype)
    return full


def values(rng, shape, type_name: str, style: str) -> np.ndarray:
    if type_name == "FLOAT32":
        scale = {"extremes": 1e30, "small": 1.0, "scaled": 1e6}.get(style, 1000.0)
        return (rng.normal(0, 1, shape) * scale).astype(np.float32)
    return int_values(rng, shape, type_name, style)


styles = st.sampled_from(["uniform", "uniform", "extremes", "small", "scaled"])


def dims(lo, hi):
    return st.integers(lo, hi)


def outer_shapes(max_rank=2, hi=3):
    return st.lists(dims(1, hi), min_size=0, max_size=max_rank)


# ---------------------------------------------------------------------------------- cases

@st.composite
def window_cases(draw):
    case = dict(op="SignalWindow", seed=draw(seeds), style=draw(styles))
    ws = draw(st.sampled_from([1, 2, 3, 7, 16, 32, 400, 480]) | dims(1, 40))
    case.update(weight_size=ws, chunks=draw(dims(1, 3)), outer=draw(outer_shapes(2, 2)),
                shift=draw(st.sampled_from([0, 1, 12, 15, 16, 31, 32, 40, -1]) | dims(0, 31)),
                weights_input=draw(st.booleans()), extra_out=draw(st.sampled_from([0, 0, 0, 3])),
                bad=draw(st.sampled_from([None] * 8 + ["output_int8", "weights_rank2", "rank"])))
    return case


@st.composite
def fft_auto_scale_cases(draw):
    n = draw(dims(1, 96))
    return dict(op="SignalFftAutoScale", seed=draw(seeds), style=draw(styles), n=n,
                out=draw(st.sampled_from([n, n]) | dims(1, n)),
                minimums=draw(st.sampled_from([0, 0, 1, 2])), zeros=draw(st.booleans()),
                bad=draw(st.sampled_from([None] * 8 + ["scale_rank1", "output_int32"])))


@st.composite
def rfft_cases(draw, op):
    fft = draw(st.sampled_from(FFT_LENGTHS))
    bins = fft // 2 + 1
    case = dict(op=op, seed=draw(seeds), style=draw(styles), kind=draw(st.sampled_from(["INT16", "INT32", "FLOAT32"])),
                fft_length=fft, outer=draw(outer_shapes(2, 3)), extra_out=draw(st.sampled_from([0, 0, 0, 1, 4])),
                bad=draw(st.sampled_from([None] * 8 + ["type_option", "rank"])))
    if op == "SignalRfft":
        case["input_length"] = draw(st.sampled_from([fft, fft]) | dims(1, fft) | st.just(fft + 2))
    else:
        # An odd row length over several rows shifts the rows TFLM walks (in complex values)
        # until the last one reads and writes past the tensors: only a single row may be odd.
        extra = draw(st.sampled_from([0, 0, 0, 2, 6] + ([1, 3] if not case["outer"] else [])))
        case["input_length"] = 2 * bins + extra
    return case


@st.composite
def energy_cases(draw):
    bins = draw(dims(1, 300))
    end = draw(dims(0, bins))
    return dict(op="SignalEnergy", seed=draw(seeds), style=draw(styles), bins=bins, odd=draw(st.booleans()),
                start=draw(dims(0, max(end, 0))), end=end, out=bins + draw(st.sampled_from([0, 0, 2])),
                bad=draw(st.sampled_from([None] * 8 + ["output_int32", "rank"])))


@st.composite
def filter_bank_cases(draw):
    nc = draw(dims(1, 16))
    return dict(op="SignalFilterBank", seed=draw(seeds), style=draw(styles), num_channels=nc,
                input_size=draw(dims(1, 80)), weights_size=draw(dims(1, 60)), max_width=draw(dims(0, 12)),
                out=draw(dims(1, nc)), weights_input=draw(st.booleans()),
                bad=draw(st.sampled_from([None] * 8 + ["output_uint32", "widths_rank2"])))


@st.composite
def sqrt_cases(draw):
    n = draw(dims(1, 48))
    return dict(op="SignalFilterBankSquareRoot", seed=draw(seeds), style=draw(styles), n=n,
                extra_out=draw(st.sampled_from([0, 0, 0, 2])),
                shifts=draw(st.sampled_from(["small", "small", "any"])),
                bad=draw(st.sampled_from([None] * 8 + ["scale_rank1", "output_uint64"])))


@st.composite
def log_cases(draw):
    return dict(op="SignalFilterBankLog", seed=draw(seeds), style=draw(styles), n=draw(dims(1, 48)),
                extra_out=draw(st.sampled_from([0, 0, 0, 2])),
                correction=draw(st.sampled_from([0, 3, 5, 31, 32, 35, -1]) | dims(0, 31)),
                output_scale=draw(st.sampled_from([1, 64, 1600, 32768, 1 << 20, -7])
                                  | st.integers(-2 ** 31, 2 ** 31 - 1)),
                bad=draw(st.sampled_from([None] * 8 + ["output_int32", "rank"])))


@st.composite
def spectral_subtraction_cases(draw):
    nc = draw(dims(1, 40))
    coefficient = st.sampled_from([0, 409, 983, 15401, 15975, 16384]) | st.integers(-2 ** 31, 2 ** 31 - 1)
    return dict(op="SignalFilterBankSpectralSubtraction", seed=draw(seeds), style=draw(styles), num_channels=nc,
                input_size=nc + draw(st.sampled_from([0, 0, 3])), out=nc + draw(st.sampled_from([0, 0, 2])),
                noise=draw(dims(1, nc)) if draw(st.booleans()) else nc, calls=draw(dims(2, 8)),
                options=dict(alternate_one_minus_smoothing=draw(coefficient), alternate_smoothing=draw(coefficient),
                             clamping=draw(st.booleans()), min_signal_remaining=draw(coefficient),
                             one_minus_smoothing=draw(coefficient), smoothing=draw(coefficient),
                             smoothing_bits=draw(st.sampled_from([0, 10, 31, 33]) | dims(0, 16)),
                             spectral_subtraction_bits=draw(st.sampled_from([14, 0, 40, 63, 70]) | dims(0, 20))),
                bad=draw(st.sampled_from([None] * 8 + ["noise_int32", "rank"])))


@st.composite
def pcan_cases(draw):
    return dict(op="SignalPCAN", seed=draw(seeds), style=draw(styles), noise_style=draw(styles),
                n=draw(dims(1, 48)), lut=draw(st.sampled_from(["random", "smooth"])),
                snr_shift=draw(st.sampled_from([6, 0, 12, 63, 64, 70]) | dims(0, 40)),
                lut_input=draw(st.booleans()), bad=draw(st.sampled_from([None] * 8 + ["lut_int32", "rank"])))


@st.composite
def framer_cases(draw):
    step = draw(dims(1, 6))
    size = draw(dims(1, 14))
    return dict(op="SignalFramer", seed=draw(seeds), style=draw(styles), frame_step=step, frame_size=size,
                prefill=draw(st.booleans()) and size >= step, n_frames=draw(dims(1, 4)),
                outer=draw(outer_shapes(2, 2)), extra_out=draw(st.sampled_from([0, 0, 0, 3])), calls=draw(dims(2, 7)),
                bad=draw(st.sampled_from([None] * 8 + ["not_multiple", "valid_int8"])))


@st.composite
def stacker_cases(draw):
    left, right = draw(dims(0, 3)), draw(dims(0, 3))
    return dict(op="SignalStacker", seed=draw(seeds), style=draw(styles), num_channels=draw(dims(1, 6)),
                left=left, right=right, step=draw(dims(1, left + right + 1)),
                extra_in=draw(st.sampled_from([0, 0, 2])), extra_out=draw(st.sampled_from([0, 0, 3])),
                calls=draw(dims(2, 9)), bad=draw(st.sampled_from([None] * 8 + ["rank", "output_int32"])))


@st.composite
def delay_cases(draw):
    return dict(op="SignalDelay", seed=draw(seeds), style=draw(styles), delay=draw(dims(0, 12)),
                frame=draw(dims(1, 8)), outer=draw(outer_shapes(2, 3)), extra_out=draw(st.sampled_from([0, 0, 2])),
                calls=draw(dims(2, 7)), bad=draw(st.sampled_from([None] * 8 + ["output_int32"])))


@st.composite
def overlap_add_cases(draw):
    size = draw(dims(1, 10))
    return dict(op="SignalOverlapAdd", seed=draw(seeds), style=draw(styles),
                kind=draw(st.sampled_from(["INT16", "FLOAT32"])), frame_size=size, frame_step=draw(dims(0, size)),
                n_frames=draw(dims(1, 4)), outer=draw(outer_shapes(1, 3)), extra_out=draw(st.sampled_from([0, 0, 2])),
                calls=draw(dims(2, 6)), bad=draw(st.sampled_from([None] * 8 + ["type_option", "rank1"])))


# ---------------------------------------------------------------------------------- builders

def build_window(case, rng):
    ws = case["weight_size"]
    shape = list(case["outer"]) + [ws * case["chunks"]]
    weights = values(rng, (ws,), "INT16", "uniform")
    out_shape = shape[:-1] + [shape[-1] + case["extra_out"]]
    bad = case["bad"]
    if bad == "weights_rank2":
        weights = weights.reshape(1, ws)
    if bad == "rank":
        out_shape = [int(np.prod(out_shape))] + ([1] if len(out_shape) == 1 else [])
    w_spec = (weights.shape, "INT16") if case["weights_input"] else weights
    data = signal_model("SignalWindow", [(shape, "INT16"), w_spec],
                        [(out_shape, "INT8" if bad == "output_int8" else "INT16")], {"shift": case["shift"]})
    xs = [values(rng, (3,) + tuple(shape), "INT16", case["style"])]
    if case["weights_input"]:
        xs.append(np.stack([weights] + [values(rng, weights.shape, "INT16", "uniform") for _ in range(2)]))
    written = [prefix_mask(out_shape, int(np.prod(shape)))]
    return data, xs, lambda k: written


def build_fft_auto_scale(case, rng):
    n = case["n"]
    x = values(rng, (3, n), "INT16", case["style"])
    if case["zeros"]:
        x[0] = 0
    for s in range(1, 3):  # -32768 somewhere: MaxAbs16 then misreads the maximum
        x[s, rng.integers(0, n, case["minimums"])] = -32768
    bad = case["bad"]
    outputs = [((case["out"],), "INT32" if bad == "output_int32" else "INT16"),
               ((1,) if bad == "scale_rank1" else (), "INT32")]
    return signal_model("SignalFftAutoScale", [((n,), "INT16")], outputs, {}), [x], None


def build_rfft(case, rng):
    op, kind, fft = case["op"], case["kind"], case["fft_length"]
    bins = fft // 2 + 1
    outer = list(case["outer"])
    if op == "SignalRfft":
        in_shape = outer + [case["input_length"]]
        out_shape = outer + [2 * bins + case["extra_out"]]
    else:
        in_shape = outer + [case["input_length"]]
        out_shape = outer + [fft + case["extra_out"]]
    bad = case["bad"]
    code = TYPE_CODE[kind]
    if bad == "type_option":
        code = TYPE_CODE[{"INT16": "INT32", "INT32": "FLOAT32", "FLOAT32": "INT16"}[kind]]
    if bad == "rank":
        out_shape = [1] + out_shape
    data = signal_model(op, [(in_shape, kind)], [(out_shape, kind)], {"T": code, "fft_length": fft})
    rows, row_out = int(np.prod(outer)), out_shape[-1]
    written = np.zeros(int(np.prod(out_shape)), bool)
    for r in range(rows):  # each transform writes its values at its row's start
        if op == "SignalRfft":
            start = 2 * r * (row_out // 2)
            written[start:start + 2 * bins] = True
        else:
            written[r * row_out:r * row_out + fft] = True
    return data, [values(rng, (3,) + tuple(in_shape), kind, case["style"])], lambda k: [written]


def build_energy(case, rng):
    n_in = 2 * case["bins"] + (1 if case["odd"] else 0)
    bad = case["bad"]
    in_shape = [1, n_in] if bad == "rank" else [n_in]
    data = signal_model("SignalEnergy", [(in_shape, "INT16")],
                        [((case["out"],), "INT32" if bad == "output_int32" else "UINT32")],
                        {"end_index": case["end"], "start_index": case["start"]})
    written = np.zeros(case["out"], bool)
    written[case["start"]:case["end"]] = True
    return data, [values(rng, (3,) + tuple(in_shape), "INT16", case["style"])], lambda k: [written]


def build_filter_bank(case, rng):
    nc, n_in, n_w = case["num_channels"], case["input_size"], case["weights_size"]
    widths = rng.integers(0, min(case["max_width"], n_in, n_w) + 1, nc + 1)
    freq_starts = np.array([rng.integers(0, n_in - w + 1) for w in widths], np.int16)
    weight_starts = np.array([rng.integers(0, n_w - w + 1) for w in widths], np.int16)
    widths = widths.astype(np.int16)
    if case["bad"] == "widths_rank2":
        widths = widths.reshape(1, -1)
    weights = values(rng, (n_w,), "INT16", "uniform")
    unweights = values(rng, (n_w,), "INT16", "uniform")
    ins = [((n_in,), "UINT32")]
    ins += [((n_w,), "INT16"), ((n_w,), "INT16")] if case["weights_input"] else [weights, unweights]
    ins += [freq_starts, weight_starts, widths]
    data = signal_model("SignalFilterBank", ins,
                        [((case["out"],), "UINT32" if case["bad"] == "output_uint32" else "UINT64")],
                        {"num_channels": nc})
    xs = [values(rng, (3, n_in), "UINT32", case["style"])]
    if case["weights_input"]:
        xs += [np.stack([weights] * 3), np.stack([unweights] + [values(rng, (n_w,), "INT16", "uniform")] * 2)]
    return data, xs, None


def build_sqrt(case, rng):
    n = case["n"]
    bad = case["bad"]
    data = signal_model("SignalFilterBankSquareRoot",
                        [((n,), "UINT64"), ((1,) if bad == "scale_rank1" else (), "INT32")],
                        [((n + case["extra_out"],), "UINT64" if bad == "output_uint64" else "UINT32")], None)
    x = values(rng, (3, n), "UINT64", case["style"])
    x[0, :min(n, 8)] = np.array([0, 1, 2, 3, 2 ** 32 - 1, 2 ** 32, 2 ** 64 - 1, 2 ** 62], np.uint64)[:min(n, 8)]
    if case["shifts"] == "small":
        shift = rng.integers(0, 32, 3)
    else:
        shift = rng.choice(np.array([-1, 31, 32, 33, 40, 100, -2 ** 31], np.int64), 3)
    shift = shift.astype(np.int32).reshape((3, 1) if bad == "scale_rank1" else (3,))
    return data, [x, shift], lambda k: [prefix_mask((n + case["extra_out"],), n)]


def build_log(case, rng):
    n = case["n"]
    bad = case["bad"]
    in_shape = [1, n] if bad == "rank" else [n]
    data = signal_model("SignalFilterBankLog", [(in_shape, "UINT32")],
                        [((n + case["extra_out"],), "INT32" if bad == "output_int32" else "INT16")],
                        {"input_correction_bits": case["correction"], "output_scale": case["output_scale"]})
    x = values(rng, (3,) + tuple(in_shape), "UINT32", case["style"])
    x.reshape(3, -1)[0, :min(n, 4)] = np.array([0, 1, 2, 3], np.uint32)[:min(n, 4)]
    return data, [x], lambda k: [prefix_mask((n + case["extra_out"],), n)]


def build_spectral_subtraction(case, rng):
    bad = case["bad"]
    in_shape = [1, case["input_size"]] if bad == "rank" else [case["input_size"]]
    options = dict(case["options"], num_channels=case["num_channels"])
    data = signal_model("SignalFilterBankSpectralSubtraction", [(in_shape, "UINT32")],
                        [((case["out"],), "UINT32"), ((case["noise"],), "INT32" if bad == "noise_int32" else "UINT32")],
                        options)
    # A noise floor that drifts: the estimate then both trails and exceeds the signal.
    base = values(rng, tuple(in_shape), "UINT32", case["style"])
    calls = [[(base.astype(np.float64) * rng.uniform(0.2, 1.5, base.shape)).clip(0, 2 ** 32 - 1).astype(np.uint32)]
             for _ in range(case["calls"])]
    return data, calls, lambda k: [prefix_mask((case["out"],), case["num_channels"]), None]


def pcan_lut(rng, kind):
    if kind == "smooth":  # a gain table shaped like the front end's (decreasing, positive)
        return np.clip(32767 - np.cumsum(rng.integers(0, 700, 125)), -32768, 32767).astype(np.int16)
    return values(rng, (125,), "INT16", "uniform")


def build_pcan(case, rng):
    n = case["n"]
    bad = case["bad"]
    lut = pcan_lut(rng, case["lut"])
    in_shape = [1, n] if bad == "rank" else [n]
    lut_spec = ((125,), "INT32" if bad == "lut_int32" else "INT16") if case["lut_input"] else (
        lut.astype(np.int32) if bad == "lut_int32" else lut)
    data = signal_model("SignalPCAN", [(in_shape, "UINT32"), ((n,), "UINT32"), lut_spec],
                        [(in_shape, "UINT32")], {"snr_shift": case["snr_shift"]})
    noise = values(rng, (3, n), "UINT32", case["noise_style"])
    noise[0, :min(n, 3)] = np.array([0, 1, 2], np.uint32)[:min(n, 3)]
    xs = [values(rng, (3,) + tuple(in_shape), "UINT32", case["style"]), noise]
    if case["lut_input"]:
        xs.append(np.stack([lut, pcan_lut(rng, "random"), pcan_lut(rng, "smooth")]).astype(
            np.int32 if bad == "lut_int32" else np.int16))
    return data, xs, None


def build_framer(case, rng):
    step, size, n_frames = case["frame_step"], case["frame_size"], case["n_frames"]
    bad = case["bad"]
    innermost = step * n_frames + (1 if bad == "not_multiple" and step > 1 else 0)
    in_shape = list(case["outer"]) + [innermost]
    out_shape = list(case["outer"]) + [n_frames, size + case["extra_out"]]
    data = signal_model("SignalFramer", [(in_shape, "INT16")],
                        [(out_shape, "INT16"), ((), "INT8" if bad == "valid_int8" else "BOOL")],
                        {"frame_size": size, "frame_step": step, "prefill": case["prefill"]})
    # Which frame slots TFLM has written by call k: a frame is emitted once frame_size samples
    # are queued (the queue length does not depend on the data).
    outer = int(np.prod(case["outer"]))
    queued, ever, history = (size - step if case["prefill"] else 0), np.zeros(n_frames, bool), []
    for _ in range(case["calls"]):
        for f in range(n_frames):
            queued += step
            if queued >= size:
                ever[f] = True
                queued -= step
        slots = np.zeros((outer, n_frames, size + case["extra_out"]), bool)
        slots[:, ever] = True
        mask = np.zeros(slots.size, bool)
        mask[:outer * n_frames * size] = slots[..., :size].reshape(-1)
        history.append([mask, None])
    return data, [[values(rng, in_shape, "INT16", case["style"])] for _ in range(case["calls"])], history.__getitem__


def build_stacker(case, rng):
    nc = case["num_channels"]
    bad = case["bad"]
    size = nc * (case["left"] + case["right"] + 1) + case["extra_out"]
    in_shape = [1, nc + case["extra_in"]] if bad == "rank" else [nc + case["extra_in"]]
    data = signal_model("SignalStacker", [(in_shape, "INT16")],
                        [((size,), "INT32" if bad == "output_int32" else "INT16"), ((), "BOOL")],
                        {"num_channels": nc, "stacker_left_context": case["left"],
                         "stacker_right_context": case["right"], "stacker_step": case["step"]})
    # The output is written from the first call with left + right + 1 frames queued on.
    frames, need, written, history = case["left"], case["left"] + case["right"] + 1, False, []
    for _ in range(case["calls"]):
        frames += 1
        if frames >= need:
            written, frames = True, frames - case["step"]
        history.append([prefix_mask((size,), nc * need if written else 0), None])
    return data, [[values(rng, in_shape, "INT16", case["style"])] for _ in range(case["calls"])], history.__getitem__


def build_delay(case, rng):
    shape = list(case["outer"]) + [case["frame"]]
    out = [int(np.prod(shape)) + case["extra_out"]]
    data = signal_model("SignalDelay", [(shape, "INT16")], [(out, "INT32" if case["bad"] else "INT16")],
                        {"delay_length": case["delay"]})
    written = [prefix_mask(out, int(np.prod(shape)))]
    return data, [[values(rng, shape, "INT16", case["style"])] for _ in range(case["calls"])], lambda k: written


def build_overlap_add(case, rng):
    kind, size, step, n_frames = case["kind"], case["frame_size"], case["frame_step"], case["n_frames"]
    bad = case["bad"]
    outer = list(case["outer"])
    in_shape = outer + [n_frames, size]
    out_shape = outer + [n_frames * step + case["extra_out"]]
    if bad == "rank1":
        in_shape, out_shape = [size], []
    code = TYPE_CODE["INT16" if kind == "FLOAT32" else "FLOAT32"] if bad == "type_option" else TYPE_CODE[kind]
    data = signal_model("SignalOverlapAdd", [(in_shape, kind)], [(out_shape, kind)],
                        {"T": code, "frame_step": step})
    written = [prefix_mask(out_shape, int(np.prod(outer)) * n_frames * step)]
    return data, [[values(rng, in_shape, kind, case["style"])] for _ in range(case["calls"])], lambda k: written


BUILDERS = {
    "SignalWindow": (build_window, False), "SignalFftAutoScale": (build_fft_auto_scale, False),
    "SignalRfft": (build_rfft, False), "SignalIrfft": (build_rfft, False), "SignalEnergy": (build_energy, False),
    "SignalFilterBank": (build_filter_bank, False), "SignalFilterBankSquareRoot": (build_sqrt, False),
    "SignalFilterBankLog": (build_log, False),
    "SignalFilterBankSpectralSubtraction": (build_spectral_subtraction, True), "SignalPCAN": (build_pcan, False),
    "SignalFramer": (build_framer, True), "SignalStacker": (build_stacker, True),
    "SignalDelay": (build_delay, True), "SignalOverlapAdd": (build_overlap_add, True),
}

STRATEGIES = {
    "SignalWindow": window_cases(), "SignalFftAutoScale": fft_auto_scale_cases(),
    "SignalRfft": rfft_cases("SignalRfft"), "SignalIrfft": rfft_cases("SignalIrfft"), "SignalEnergy": energy_cases(),
    "SignalFilterBank": filter_bank_cases(), "SignalFilterBankSquareRoot": sqrt_cases(),
    "SignalFilterBankLog": log_cases(), "SignalFilterBankSpectralSubtraction": spectral_subtraction_cases(),
    "SignalPCAN": pcan_cases(), "SignalFramer": framer_cases(), "SignalStacker": stacker_cases(),
    "SignalDelay": delay_cases(), "SignalOverlapAdd": overlap_add_cases(),
}
# Share of the profile's examples per op (the whole module runs in about 40 s): the FFTs carry
# the most arithmetic.
FRACTIONS = {"SignalRfft": 1.0, "SignalIrfft": 1.0}


def run_case(op: str, case: dict):
    note_case(**case)
    rng = np.random.default_rng(case["seed"])
    build, stateful = BUILDERS[op]
    data, inputs, defined = build(case, rng)
    label = f"{op} {case.get('kind', '')}".strip()
    calls = inputs if stateful else [[x[s] for x in inputs] for s in range(inputs[0].shape[0])]
    record(check_signal(data, calls, label=label, stateful=stateful, defined=defined), label)


@pytest.mark.parametrize("op", sorted(DIFF_OPS))
def test_signal_op_matches_tflm(op):
    run_examples(STRATEGIES[op], lambda case: run_case(op, case), fraction=FRACTIONS.get(op, 0.6))
