"""The signal library's kernels without the TFLM wheel: TFLM's own unit-test vectors
(signal/micro/kernels/*_test.cc, with their expected outputs), the quirks of its integer
helpers, kissfft's structure, the state kept across calls, and what microref refuses."""
from __future__ import annotations

import math

import numpy as np
import pytest
from flatbuffers import flexbuffers
from test_diff_signal import signal_model

from interp import Interpreter
from interp.errors import ModelError, UnsupportedOpError
from ops.signal.arith import msb32, msb64, sqrt32, sqrt64
from ops.signal.kiss_fft import KissFft, KissFftr, UnsupportedLength, kf_factor
from ops.signal.spectral import fft_auto_scale_bits, max_abs16


def run_once(code, inputs, outputs, options, values):
    return Interpreter.from_bytes(signal_model(code, inputs, outputs, options)).run(values)


# ---------------------------------------------------------------------------------- TFLM's test vectors

def test_window_matches_tflm_unit_test_length16_shift12():
    weights = np.arange(0xF00, -1, -0x100).astype(np.int16)
    x = np.arange(0, 0x1000, 0x100).astype(np.int16)
    got = run_once("SignalWindow", [((16,), "INT16"), weights], [((16,), "INT16")], {"shift": 12}, [x])[0]
    assert got.tolist() == [0, 224, 416, 576, 704, 800, 864, 896, 896, 864, 800, 704, 576, 416, 224, 0]


@pytest.mark.parametrize("start, end, golden", [(2, 4, [0, 0, 61, 113, 0, 0, 0, 0]),
                                                (0, 4, [5, 25, 61, 113, 0, 0, 0, 0]),
                                                (4, 8, [0, 0, 0, 0, 181, 265, 365, 481])])
def test_energy_matches_tflm_unit_tests_and_leaves_other_bins_zero(start, end, golden):
    x = np.arange(1, 17).astype(np.int16)
    got = run_once("SignalEnergy", [((16,), "INT16")], [((8,), "UINT32")],
                   {"end_index": end, "start_index": start}, [x])[0]
    assert got.dtype == np.uint32 and got.tolist() == golden


def test_filter_bank_square_root_matches_tflm_unit_test_16_channels():
    x = np.array([13051415151, 14932650877, 18954728418, 8730126017, 6529665275, 12952546517,
                  10314975609, 8919697835, 8053663348, 17231208421, 7366899760, 1372112200,
                  19953434807, 17012385332, 4710443222, 17765594053], np.uint64)
    got = run_once("SignalFilterBankSquareRoot", [((16,), "UINT64"), ((), "INT32")], [((16,), "UINT32")], None,
                   [x, np.array(5, np.int32)])[0]
    assert got.tolist() == [3570, 3818, 4302, 2919, 2525, 3556, 3173, 2951, 2804, 4102, 2682, 1157, 4414, 4076,
                            2144, 4165]


def test_filter_bank_log_matches_tflm_unit_test_32_channels():
    x = np.array([29, 21, 29, 40, 19, 11, 13, 23, 13, 11, 25, 17, 5, 4, 46, 14, 17, 14, 20, 14, 10, 10, 15,
                  11, 17, 12, 15, 16, 19, 18, 6, 2], np.uint32)
    got = run_once("SignalFilterBankLog", [((32,), "UINT32")], [((32,), "INT16")],
                   {"input_correction_bits": 3, "output_scale": 1600}, [x])[0]
    assert got.tolist() == [8715, 8198, 8715, 9229, 8038, 7164, 7431, 8344, 7431, 7164, 8477, 7860, 5902, 5545,
                            9453, 7550, 7860, 7550, 8120, 7550, 7011, 7011, 7660, 7164, 7860, 7303, 7660, 7763,
                            8038, 7952, 6194, 4436]


# filter_bank_log_flexbuffers_generated_data.cc: the options TFLM's tests feed (4-byte values).
TFLM_LOG_OPTIONS_SCALE_32768_CORRECTION_5 = bytes([
    0x6f, 0x75, 0x74, 0x70, 0x75, 0x74, 0x5f, 0x73, 0x63, 0x61, 0x6c, 0x65, 0x00, 0x69, 0x6e, 0x70, 0x75,
    0x74, 0x5f, 0x63, 0x6f, 0x72, 0x72, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x5f, 0x62, 0x69, 0x74, 0x73,
    0x00, 0x02, 0x17, 0x25, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
    0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x06, 0x06, 0x0a, 0x26, 0x01])


def test_filter_bank_log_reads_tflm_generated_options_and_saturates():
    from interp.builder import ModelBuilder
    mb = ModelBuilder()
    x = mb.input("x", [16], "UINT32")
    y = mb.tensor("y", [16], "INT16")
    mb.op("CUSTOM", [x], [y], custom_code="SignalFilterBankLog",
          custom_options=TFLM_LOG_OPTIONS_SCALE_32768_CORRECTION_5)
    mb.output(y)
    it = Interpreter.from_bytes(mb.build())
    assert it.kernels[0].describe()["input_correction_bits"] == 5
    assert it.kernels[0].describe()["output_scale"] == 32768
    inp = np.array([48, 20, 19, 24, 35, 47, 23, 30, 31, 10, 48, 21, 46, 14, 18, 27], np.uint32)
    assert it.run([inp])[0].tolist() == [32767, 15121, 13440, 21095, 32767, 32767, 19701, 28407, 29482, 32767,
                                         32767, 16720, 32767, 3434, 11669, 24955]


PCAN_LUT = np.array([
    32636, 32633, 32630, -6, 0, -21589, 32624, -12, 0, -21589, 32612, -23, -2, -21589, 32587, -48, 0,
    -21589, 32539, -96, 0, -21589, 32443, -190, 0, -21589, 32253, -378, 4, -21589, 31879, -739, 18, -21589,
    31158, -1409, 62, -21589, 29811, -2567, 202, -21589, 27446, -4301, 562, -21589, 23707, -6265, 1230,
    -21589, 18672, -7458, 1952, -21589, 13166, -7030, 2212, -21589, 8348, -5342, 1868, -21589, 4874, -3459,
    1282, -21589, 2697, -2025, 774, -21589, 1446, -1120, 436, -21589, 762, -596, 232, -21589, 398, -313, 122,
    -21589, 207, -164, 64, -21589, 107, -85, 34, -21589, 56, -45, 18, -21589, 29, -22, 8, -21589, 15, -13, 6,
    -21589, 8, -8, 4, -21589, 4, -2, 0, -21589, 2, -3, 2, -21589, 1, 0, 0, -21589, 1, -3, 2, -21589, 0, 0,
    0], np.int16)


def test_pcan_matches_tflm_unit_test_mix1_ref1():
    x = np.array([286, 298, 305, 291, 290, 279, 273, 257, 250, 240, 240, 233, 234, 230, 221, 205, 183, 159,
                  156, 188, 239, 298, 345, 374, 380, 369, 359, 364, 372, 354, 302, 243, 194, 135, 64, 72, 171,
                  245, 277, 304], np.uint32)
    noise = np.array([7310, 18308, 7796, 17878, 7413, 17141, 6978, 15789, 6390, 14745, 6135, 14314, 5981,
                      14130, 5649, 12594, 4677, 9768, 3987, 11550, 6109, 18308, 8819, 22977, 9713, 22670,
                      9176, 22363, 9509, 21748, 7719, 14929, 4959, 8294, 1636, 4423, 4371, 15052, 7080,
                      18677], np.uint32)
    got = run_once("SignalPCAN", [((40,), "UINT32"), ((40,), "UINT32"), PCAN_LUT], [((40,), "UINT32")],
                   {"snr_shift": 6}, [x, noise])[0]
    assert got.tolist() == [1301, 836, 1354, 827, 1312, 811, 1263, 779, 1192, 753, 1160, 743, 1140, 738, 1096,
                            698, 956, 607, 845, 667, 1157, 836, 1461, 912, 1546, 908, 1496, 904, 1527, 895,
                            1346, 758, 999, 548, 378, 344, 908, 761, 1274, 843]


# ---------------------------------------------------------------------------------- integer helpers

def test_msb_of_zero_is_the_word_width_as_gcc_builds_it():
    assert msb32(np.array([0, 1, 2, 3, 0xFFFFFFFF])).tolist() == [32, 1, 2, 2, 32]
    assert msb64(np.array([0, 1, 2 ** 63], np.uint64)).tolist() == [64, 1, 64]


def _rounded_sqrt(n: int, limit: int) -> int:
    r = math.isqrt(n)
    return r + 1 if n - r * r > r and r != limit else r


def test_integer_square_roots_round_to_nearest_below_the_type_limit():
    rng = np.random.default_rng(0)
    small = np.concatenate([np.arange(0, 600), rng.integers(0, 2 ** 32, 2000),
                            [2 ** 32 - 1, 65535 ** 2, 65535 ** 2 + 65535, 65535 ** 2 + 65536]]).astype(np.uint64)
    assert sqrt32(small).tolist() == [_rounded_sqrt(int(n), 0xFFFF) for n in small]
    big = np.concatenate([rng.integers(0, 2 ** 63, 2000, dtype=np.uint64) * np.uint64(2),
                          np.array([2 ** 32, 2 ** 64 - 1, (2 ** 32 - 1) ** 2 + 2 ** 32 - 1], np.uint64)])
    assert sqrt64(big).tolist() == [_rounded_sqrt(int(n), 0xFFFFFFFF) if n >> 32 else _rounded_sqrt(int(n), 0xFFFF)
                                    for n in big]


def test_max_abs16_follows_the_int16_wraparound_of_minus_32768():
    rows = np.array([[3, -7, 5, 0], [3, -32768, 5, -2], [-32768, -5, -3, -7], [1, 2, 3, -32768]], np.int16)
    # -(-32768) is stored back into the int16 maximum as -32768; the loop then follows later values.
    assert max_abs16(rows).tolist() == [7, 5, 7, -32768]
    assert fft_auto_scale_bits(max_abs16(rows)).tolist() == [12, 12, 12, 0]
    assert fft_auto_scale_bits(np.array([0, 1, 32767])).tolist() == [0, 14, 0]  # MSB(0) = 32: no scaling


def test_fft_auto_scale_of_silence_and_of_a_misread_maximum():
    model = [((6,), "INT16")], [((6,), "INT16"), ((), "INT32")], {}
    out, bits = run_once("SignalFftAutoScale", *model, [np.zeros(6, np.int16)])
    assert out.tolist() == [0] * 6 and int(bits) == 0
    out, bits = run_once("SignalFftAutoScale", *model, [np.array([-32768, 1, 2, 3, -3, 700], np.int16)])
    assert int(bits) == 5 and out.tolist() == [0, 32, 64, 96, -96, 22400]  # -32768 << 5 wraps to 0


# ---------------------------------------------------------------------------------- kissfft

def test_kf_factor_takes_fours_then_twos_then_odd_radices():
    assert kf_factor(256) == [(4, 64), (4, 16), (4, 4), (4, 1)]
    assert kf_factor(128) == [(4, 32), (4, 8), (4, 2), (2, 1)]
    assert kf_factor(240) == [(4, 60), (4, 15), (3, 5), (5, 1)]
    assert kf_factor(7) == [(7, 1)]


def test_lengths_needing_a_generic_butterfly_are_refused():
    with pytest.raises(UnsupportedLength):
        KissFft(14, False, "int16")
    with pytest.raises(UnsupportedLength):
        KissFftr(2, False, "float32")


@pytest.mark.parametrize("nfft", [8, 12, 20, 60, 512])
def test_float_rfft_and_irfft_are_the_discrete_fourier_transform(nfft):
    x = np.random.default_rng(nfft).normal(0, 1, (2, nfft)).astype(np.float32)
    re, im = KissFftr(nfft, False, "float32").forward(x)
    want = np.fft.rfft(x.astype(np.float64))
    assert np.allclose(re, want.real, atol=1e-4 * nfft) and np.allclose(im, want.imag, atol=1e-4 * nfft)
    back = KissFftr(nfft, True, "float32").inverse_transform(re, im) / np.float32(nfft)
    assert np.allclose(back, x, atol=1e-5 * nfft)


def test_fixed_point_rfft_scales_by_one_over_length():
    x = np.zeros((1, 64), np.int64)
    x[0, 0] = 32767  # an impulse: every bin is 32767 / 64 after the per-stage divisions
    re, im = KissFftr(64, False, "int16").forward(x)
    assert np.all(np.abs(re - 32767 / 64) <= 2) and np.all(np.abs(im) <= 2)
    re32, _ = KissFftr(64, False, "int32").forward(x << 16)
    assert np.all(np.abs(re32 - (32767 << 16) / 64) <= 4)


def test_rfft_output_beyond_the_written_bins_is_zero():
    x = np.arange(8).astype(np.int16) * 1000
    out = run_once("SignalRfft", [((8,), "INT16")], [((14,), "INT16")], {"T": 7, "fft_length": 8}, [x])[0]
    assert out[10:].tolist() == [0, 0, 0, 0] and abs(int(out[0]) - 28000 // 8) <= 2  # DC: sum / fft_length


# ---------------------------------------------------------------------------------- state across calls

def test_delay_outputs_the_stream_late_by_delay_length_and_reset_restarts_it():
    it = Interpreter.from_bytes(signal_model("SignalDelay", [((2, 4), "INT16")], [((2, 4), "INT16")],
                                             {"delay_length": 3}))
    assert it.stateful
    stream = np.arange(1, 13).reshape(3, 1, 4).repeat(2, axis=1).astype(np.int16)
    stream[:, 1] *= -1
    got = np.concatenate([it.run([c])[0] for c in stream], axis=-1)
    want = np.concatenate([np.zeros((2, 3), np.int16), np.concatenate(list(stream), axis=-1)[:, :9]], axis=-1)
    assert np.array_equal(got, want)
    it.reset()
    assert it.run([stream[0]])[0][0].tolist() == [0, 0, 0, 1]
    # run_batch: every sample is the first call of its own stream, and run()'s state is kept.
    batch = it.run_batch([stream])[0]
    assert [b[0].tolist() for b in batch] == [[0, 0, 0, 1], [0, 0, 0, 5], [0, 0, 0, 9]]
    assert it.run([stream[1]])[0][0].tolist() == [2, 3, 4, 5]


def test_framer_without_prefill_marks_frames_invalid_until_a_frame_is_full():
    it = Interpreter.from_bytes(signal_model("SignalFramer", [((2,), "INT16")],
                                             [((1, 5), "INT16"), ((), "BOOL")],
                                             {"frame_size": 5, "frame_step": 2, "prefill": False}))
    outs = [it.run([np.array([2 * k, 2 * k + 1], np.int16)]) for k in range(5)]
    assert [bool(v) for _, v in outs] == [False, False, True, True, True]
    assert outs[0][0].tolist() == [[0] * 5]  # never written yet: microref gives 0
    assert [o.tolist() for o, _ in outs[2:]] == [[[0, 1, 2, 3, 4]], [[2, 3, 4, 5, 6]], [[4, 5, 6, 7, 8]]]


def test_stacker_keeps_its_last_output_on_an_invalid_call():
    it = Interpreter.from_bytes(signal_model(
        "SignalStacker", [((2,), "INT16")], [((6,), "INT16"), ((), "BOOL")],
        {"num_channels": 2, "stacker_left_context": 1, "stacker_right_context": 1, "stacker_step": 2}))
    outs = [it.run([np.array([k, -k], np.int16)]) for k in range(1, 6)]
    assert [bool(v) for _, v in outs] == [False, True, False, True, False]
    assert outs[1][0].tolist() == [1, -1, 1, -1, 2, -2]  # the first frame repeated as left context
    assert outs[2][0].tolist() == outs[1][0].tolist()  # TFLM leaves the output as it was
    assert outs[3][0].tolist() == [2, -2, 3, -3, 4, -4]


def test_overlap_add_saturates_int16_and_adds_float32():
    model = lambda t: signal_model("SignalOverlapAdd", [((1, 4), t)], [((2,), t)],  # noqa: E731
                                   {"T": {"INT16": 7, "FLOAT32": 0}[t], "frame_step": 2})
    it = Interpreter.from_bytes(model("INT16"))
    frame = np.array([[30000, 30000, 30000, 30000]], np.int16)
    assert it.run([frame])[0].tolist() == [30000, 30000]
    assert it.run([frame])[0].tolist() == [32767, 32767]
    it = Interpreter.from_bytes(model("FLOAT32"))
    frame = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    it.run([frame])
    assert it.run([frame])[0].tolist() == [np.float32(0.3) + np.float32(0.1), np.float32(0.4) + np.float32(0.2)]


def test_spectral_subtraction_noise_estimate_persists_and_resets():
    options = {"alternate_one_minus_smoothing": 15401, "alternate_smoothing": 983, "clamping": False,
               "min_signal_remaining": 819, "num_channels": 2, "one_minus_smoothing": 15975, "smoothing": 409,
               "smoothing_bits": 10, "spectral_subtraction_bits": 14}
    it = Interpreter.from_bytes(signal_model("SignalFilterBankSpectralSubtraction", [((2,), "UINT32")],
                                             [((2,), "UINT32"), ((2,), "UINT32")], options))
    x = np.array([1000, 1000], np.uint32)
    first = [o.tolist() for o in it.run([x])]
    # noise = (x << 10) * smoothing >> 14 on the first call: 1000 * 1024 * 409 >> 14 (even channel)
    assert first[1] == [(1000 * 1024 * 409) >> 14, (1000 * 1024 * 983) >> 14]
    second = [o.tolist() for o in it.run([x])]
    assert second[1][0] > first[1][0]
    it.reset()
    assert [o.tolist() for o in it.run([x])] == first


# ---------------------------------------------------------------------------------- options and refusals

def test_options_are_read_by_position_like_tflm_flexbuffer_wrapper():
    # A key sorting before 'shift' moves it: TFLM reads element 0 (the extra key's 2) as the shift.
    it = Interpreter.from_bytes(signal_model("SignalWindow", [((4,), "INT16"), np.full(4, 4096, np.int16)],
                                             [((4,), "INT16")], {"a_extra": 2, "shift": 12}))
    assert it.kernels[0].describe()["shift"] == 2
    assert it.run([np.full(4, 1000, np.int16)])[0].tolist() == [32767] * 4


def test_shift_counts_past_the_width_wrap_like_the_wheel():
    it = Interpreter.from_bytes(signal_model("SignalWindow", [((4,), "INT16"), np.full(4, 3, np.int16)],
                                             [((4,), "INT16")], {"shift": 40}))
    assert it.run([np.full(4, -1000, np.int16)])[0].tolist() == [-12] * 4  # -3000 >> (40 % 32)


def test_rfft_type_comes_from_option_t_and_missing_t_means_float():
    with pytest.raises(ModelError, match="TF_LITE_ENSURE_TYPES_EQ"):
        Interpreter.from_bytes(signal_model("SignalRfft", [((8,), "INT16")], [((10,), "INT16")],
                                            {"a": 0, "fft_length": 8}))
    out = run_once("SignalRfft", [((8,), "FLOAT32")], [((10,), "FLOAT32")], {"a": 0, "fft_length": 8},
                   [np.ones(8, np.float32)])[0]
    assert out.tolist() == [8.0] + [0.0] * 9


@pytest.mark.parametrize("code, inputs, outputs, options, why", [
    ("SignalRfft", [((14,), "INT16")], [((16,), "INT16")], {"T": 7, "fft_length": 14}, "radix-7"),
    ("SignalRfft", [((8,), "INT16")], [((10,), "INT16")], {"T": 3, "fft_length": 8}, "T = 3"),
    ("SignalWindow", [((4,), "INT16"), np.ones(4, np.int16)], [((4,), "INT16")], None, "no flexbuffer"),
    ("SignalStacker", [((3,), "INT16")], [((9,), "INT16"), ((), "BOOL")],
     {"num_channels": 3, "stacker_left_context": 0, "stacker_right_context": 0, "stacker_step": 2}, "ASSERT"),
    ("SignalFramer", [((4,), "INT16")], [((1, 4), "INT16"), ((), "BOOL")],
     {"frame_size": 4, "frame_step": 0, "prefill": False}, "frame_step = 0"),
    ("SignalPCAN", [((4,), "UINT32"), ((4,), "UINT32"), np.zeros(60, np.int16)], [((4,), "UINT32")],
     {"snr_shift": 6}, "gain LUT"),
])
def test_undefined_behaviour_in_tflm_is_refused(code, inputs, outputs, options, why):
    with pytest.raises(UnsupportedOpError, match=why):
        Interpreter.from_bytes(signal_model(code, inputs, outputs, options))


def test_prepare_checks_are_tflms():
    with pytest.raises(ModelError, match="innermost_dim % frame_step"):
        Interpreter.from_bytes(signal_model("SignalFramer", [((5,), "INT16")], [((1, 4), "INT16"), ((), "BOOL")],
                                            {"frame_size": 4, "frame_step": 2, "prefill": False}))
    with pytest.raises(ModelError, match="input_length <= params->fft_length|fft_length"):
        Interpreter.from_bytes(signal_model("SignalRfft", [((10,), "INT16")], [((10,), "INT16")],
                                            {"T": 7, "fft_length": 8}))
    with pytest.raises(ModelError, match="UINT64"):
        Interpreter.from_bytes(signal_model("SignalFilterBankSquareRoot", [((4,), "UINT32"), ((), "INT32")],
                                            [((4,), "UINT32")], None))


def test_flexbuffers_dumps_sorts_keys_as_tflm_expects():
    assert flexbuffers.Loads(flexbuffers.Dumps({"b": 1, "a": 2})) == {"a": 2, "b": 1}


def test_a_stateful_op_on_a_constant_input_keeps_one_state_per_sample():
    from interp.builder import ModelBuilder
    b = ModelBuilder()
    x = b.input("x", [4], "INT16")
    c = b.constant("c", np.array([5, 6, 7, 8], np.int16))
    y = b.tensor("y", [4], "INT16")
    z = b.tensor("z", [4], "INT16")
    options = flexbuffers.Dumps({"delay_length": 3})
    b.op("CUSTOM", [x], [y], custom_code="SignalDelay", custom_options=options)
    b.op("CUSTOM", [c], [z], custom_code="SignalDelay", custom_options=options)
    b.output(y, z)
    it = Interpreter.from_bytes(b.build())
    batch = it.run_batch([np.arange(12).reshape(3, 4).astype(np.int16)])
    assert batch[1].tolist() == [[0, 0, 0, 5]] * 3
    assert it.run([np.zeros(4, np.int16)])[1].tolist() == [0, 0, 0, 5]
    assert it.run([np.zeros(4, np.int16)])[1].tolist() == [6, 7, 8, 5]


def test_filter_bank_square_root_of_a_constant_with_per_sample_shifts_in_run_batch():
    """A constant input (one row) with a scale_bits input that varies per sample: the output has a
    row per sample (it once raised a broadcasting ValueError in run_batch)."""
    x = np.array([13051415151, 14932650877, 18954728418, 8730126017], np.uint64)
    data = signal_model("SignalFilterBankSquareRoot", [x, ((), "INT32")], [((4,), "UINT32")], None)
    it = Interpreter.from_bytes(data)
    shifts = np.array([0, 3, 5], np.int32)
    batch = it.run_batch([shifts])[0]
    assert batch.shape == (3, 4)
    for k, s in enumerate(shifts):
        assert batch[k].tolist() == it.run([s])[0].tolist()
