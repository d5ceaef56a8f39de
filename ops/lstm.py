"""UNIDIRECTIONAL_SEQUENCE_LSTM: TFLM's kernel (unidirectional_sequence_lstm.cc, lstm_eval.h /
lstm_eval.cc, lstm_eval_common.cc, lstm_shared.h).

TFLM runs only the standard (Keras) LSTM: all four gates with their input and recurrent weights
and biases, no peephole, no projection, no layer norm (Prepare refuses those inputs). One time
step (``LstmStep``) is

    f = sigmoid(FC(x_t, W_f, b_f) + FC(h, R_f))          forget gate
    i = sigmoid(FC(x_t, W_i, b_i) + FC(h, R_i))          input gate
    g = act(FC(x_t, W_c, b_c) + FC(h, R_c))              cell gate (act: the op's activation)
    c = clip(f * c + i * g)                              cell state (clip if cell_clip > 0)
    o = sigmoid(FC(x_t, W_o, b_o) + FC(h, R_o))          output gate (uses the old h)
    h = tanh(c) * o;  output_t = h

in float32, or in three integer variants: int8 activations x int8 weights with int32 biases, and
16x8 (int16 activations, int64 biases); both keep an int16 cell state. In the integer variants
every FC writes int16 at scale 2^-12 (Q3.12), the sum of the two FCs saturates to int16, the
sigmoid and tanh are TFLM's int16 lookup-table functions (reference_integer_ops::Logistic and
Tanh, output scale 2^-15), and the three products are MulElementwise with requantization.

The hidden state (input 18) and cell state (input 19) are variable tensors the kernel overwrites:
eval returns their new values after the output (``writes_inputs``).

The batches of one call never interact (time-major runs all batches per step, batch-major one
batch after another from its own slice of the state), so eval steps all batches and all samples
together, time step by time step; the input FCs, which do not depend on the state, are computed
for all time steps at once.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from . import fixedpoint as fp
from .activations import checked_log2, logistic_float, logistic_int16, tanh_int16
from .c_semantics import float_function, float_sequential_sum_of_products
from .common import ExactIntegerMatmul, clamp_float, real_multiplier
from .elementwise import ieee_float_arithmetic, multiply_by_quantized_multiplier, scale_and_zero_point
from .registry import OpKernel, PrepareContext, register

# Input positions (lstm_shared.h).
INPUT = 0
INPUT_TO_INPUT_WEIGHTS, INPUT_TO_FORGET_WEIGHTS, INPUT_TO_CELL_WEIGHTS, INPUT_TO_OUTPUT_WEIGHTS = 1, 2, 3, 4
RECURRENT_TO_INPUT_WEIGHTS, RECURRENT_TO_FORGET_WEIGHTS, RECURRENT_TO_CELL_WEIGHTS, RECURRENT_TO_OUTPUT_WEIGHTS = \
    5, 6, 7, 8
CELL_TO_GATE_WEIGHTS = (9, 10, 11)  # peephole: TFLM refuses them
INPUT_GATE_BIAS, FORGET_GATE_BIAS, CELL_GATE_BIAS, OUTPUT_GATE_BIAS = 12, 13, 14, 15
PROJECTION = (16, 17)  # projection weights and bias: refused
OUTPUT_STATE, CELL_STATE = 18, 19
LAYER_NORM_COEFFICIENTS = (20, 21, 22, 23)  # refused

# Gate name -> (input weights, recurrent weights, bias) positions, in LstmStep's order.
GATES = {
    "forget": (INPUT_TO_FORGET_WEIGHTS, RECURRENT_TO_FORGET_WEIGHTS, FORGET_GATE_BIAS),
    "input": (INPUT_TO_INPUT_WEIGHTS, RECURRENT_TO_INPUT_WEIGHTS, INPUT_GATE_BIAS),
    "cell": (INPUT_TO_CELL_WEIGHTS, RECURRENT_TO_CELL_WEIGHTS, CELL_GATE_BIAS),
    "output": (INPUT_TO_OUTPUT_WEIGHTS, RECURRENT_TO_OUTPUT_WEIGHTS, OUTPUT_GATE_BIAS),
}

# TfLiteFusedActivation values of the cell gate's nonlinearity (schema ActivationFunctionType).
ACT_TANH = 4

# PrepareGateParametersInteger: every gate FC writes Q3.12, every nonlinearity writes Q0.15.
NONLINEAR_INPUT_SCALE = 2.0 ** -12
NONLINEAR_OUTPUT_SCALE = 2.0 ** -15

# (activation type, weight type, cell state type, bias type) -> EvalLstm's template arguments.
VARIANTS = {
    ("FLOAT32", "FLOAT32", "FLOAT32", "FLOAT32"): "float",
    ("INT8", "INT8", "INT16", "INT32"): "8x8_16",
    ("INT16", "INT8", "INT16", "INT64"): "16x8_16",
}

FLT_MAX = float(np.finfo(np.float32).max)


# ------------------------------------------------------------------------------ parameters

@dataclass(frozen=True)
class LstmSizeInfo:
    time_major: bool  # input is [time, batch, input] (else [batch, time, input])
    batch_size: int
    time_steps: int
    input_dimension: int
    state_dimension: int  # hidden_state.shape[1]


@dataclass(frozen=True)
class CellStateInfo:
    cell_clip: float  # the option, float32; clipping happens only when > 0
    quantized_cell_clip: int  # int16(clamp(cell_clip / cell_scale, ±32768)), truncated
    cell_state_scale_power: int  # round(log2(cell_scale)) (CheckedLog2, not required exact)


@dataclass(frozen=True)
class FullyConnectedParams:
    """FullyConnectedParamsQuantized of one gate FC (output int16, zero point 0, full range)."""

    input_offset: int  # -input (or hidden state) zero point
    weights_offset: int  # -weight zero point (TFLM only DCHECKs it is 0; it is used)
    output_multiplier: int
    output_shift: int


@dataclass(frozen=True)
class GateParameters:
    input_fc_params: FullyConnectedParams
    recurrent_fc_params: FullyConnectedParams


@dataclass(frozen=True)
class MulParams:
    """ArithmeticParams of one inter-gate MulElementwise (both inputs symmetric)."""

    output_multiplier: int
    output_shift: int
    output_offset: int
    quantized_activation_min: int
    quantized_activation_max: int


@dataclass(frozen=True)
class InterGateParameters:
    forget_cell_mul_params: MulParams  # forget gate (Q0.15) x cell state -> cell state
    input_mul_params: MulParams  # input gate x cell gate (both Q0.15) -> cell state
    output_mul_params: MulParams  # tanh(cell) x output gate (both Q0.15) -> hidden state


@dataclass(frozen=True)
class TanhInputScaling:
    """lstm_internal::Tanh's arguments to the int16 LUT tanh for the cell state."""

    input_multiplier: int  # 0: power-of-two path (3 << input_left_shift)
    input_left_shift: int  # a right shift of x * 3 when input_multiplier is 3


@dataclass(frozen=True)
class OpDataLSTM:
    variant: str  # "float", "8x8_16" or "16x8_16"
    size_info: LstmSizeInfo
    cell_state_info: CellStateInfo
    cell_gate_nonlinear_type: int  # TfLiteFusedActivation (4: tanh; others: none, see _activate)
    forget_gate_parameters: GateParameters | None  # None on the float path
    input_gate_parameters: GateParameters | None
    cell_gate_parameters: GateParameters | None
    output_gate_parameters: GateParameters | None
    inter_gate_parameters: InterGateParameters | None
    cell_tanh: TanhInputScaling | None


# ------------------------------------------------------------------------------ int16 nonlinearities

def lstm_tanh_scaling(cell_state_scale_power: int) -> TanhInputScaling:
    """lstm_internal::Tanh: left shift (15 + power) - 3; a negative one becomes multiplier 3 and a
    right shift."""
    shift = (15 + cell_state_scale_power) - 3
    if shift < 0:
        return TanhInputScaling(3, -shift)
    return TanhInputScaling(0, shift)


_INT16_DOMAIN = np.arange(-32768, 32768, dtype=np.int64)
# Sigmoid(...) calls Logistic(0, 0) and the gate Tanh uses cell_state_scale_power -12 (shift 0):
# both are fixed functions of the int16 value, tabulated once.
GATE_SIGMOID_TABLE = logistic_int16(_INT16_DOMAIN, 0, 0).astype(np.int16)
_GATE_TANH = lstm_tanh_scaling(-12)  # shift 0: multiplier 3, like the sigmoid
GATE_TANH_TABLE = tanh_int16(_INT16_DOMAIN, _GATE_TANH.input_multiplier, _GATE_TANH.input_left_shift).astype(np.int16)


def lookup16(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    return table[x.astype(np.intp) + 32768]


# ------------------------------------------------------------------------------ float helpers

def clip_cell_float(v: np.ndarray, clip: np.float32) -> np.ndarray:
    """Clipping(float): std::max(std::min(clip, v), -clip). Read literally, a NaN cell would become
    +clip; the wheel's build keeps it NaN (measured, see test_float_nan_cell_state_stays_nan), so
    NaN passes through here and everything else is clamped to [-clip, clip]."""
    upper = np.where(v > clip, clip, v)
    return np.where(upper < -clip, -clip, upper).astype(np.float32)


# ------------------------------------------------------------------------------ the kernel

@register("UNIDIRECTIONAL_SEQUENCE_LSTM")
class UnidirectionalSequenceLstm(OpKernel):
    supported_types = ("int8 (int8 weights, int32 bias, int16 cell state), int16x8 (int64 bias, int16 cell state), "
                       "float32")
    notes = ("time-major and batch-major, cell clip, tanh or no cell-gate activation; hidden and cell state "
             "persist across `run()` calls until `reset()`. Peephole, projection, layer norm and CIFG are refused, "
             "as TFLM's Prepare refuses them")

    writes_inputs = (OUTPUT_STATE, CELL_STATE)

    def prepare(self, ctx: PrepareContext):
        ctx.check_io_counts(24, 1)
        opts = ctx.options
        tensors = [ctx.input(i) for i in range(24)]
        out = ctx.output(0)
        self._validate_tensor_status(ctx, tensors, out)
        x, hidden, cell = tensors[INPUT], tensors[OUTPUT_STATE], tensors[CELL_STATE]

        # CreateLstmSizeInfo reads input dims 0-2 and hidden_state dims 1 unchecked.
        if len(x.shape) < 3:
            ctx.unsupported(f"input of rank {len(x.shape)}: TFLM reads its dims[2] past the shape "
                            f"(undefined)", x)
        if len(hidden.shape) < 2:
            ctx.unsupported(f"hidden state of rank {len(hidden.shape)}: TFLM reads its dims[1] past "
                            f"the shape (undefined)", hidden)
        time_major = bool(opts.get("time_major", False))
        size = LstmSizeInfo(time_major=time_major,
                            batch_size=int(x.shape[1] if time_major else x.shape[0]),
                            time_steps=int(x.shape[0] if time_major else x.shape[1]),
                            input_dimension=int(x.shape[2]), state_dimension=int(hidden.shape[1]))
        self._validate_tensor_size(ctx, tensors, out, size)

        weight_type = tensors[INPUT_TO_FORGET_WEIGHTS].type_name
        bias_type = tensors[FORGET_GATE_BIAS].type_name
        cell_type = cell.type_name
        if cell_type not in ("FLOAT32", "INT16"):
            ctx.fail(f"cell state type {cell_type} is not supported (the quantized LSTM keeps an int16 "
                     f"cell state)", cell)
        variant = VARIANTS.get((x.type_name, weight_type, cell_type, bias_type))
        if variant is None:
            if x.type_name not in ("FLOAT32", "INT8", "INT16") or (x.type_name != "FLOAT32" and weight_type != "INT8"):
                # EvalLstm's switch: "Input type ... not supported" / "Filter type ... not supported".
                ctx.fail(f"input type {x.type_name} with weight type {weight_type} is not supported "
                         f"(Eval returns kTfLiteError)")
            ctx.unsupported(f"input {x.type_name}, weights {weight_type}, cell state {cell_type}, bias "
                            f"{bias_type}: TFLM reads the tensors as another type (undefined); it runs "
                            f"float32 throughout, int8/int8/int16/int32 and int16/int8/int16/int64")
        for i in list(range(1, 9)) + list(range(12, 16)):
            if tensors[i].data is None:
                ctx.unsupported("non-constant weights or biases are not supported", tensors[i])

        activation = int(opts.get("fused_activation_function", 0))
        cell_clip = float(np.float32(opts.get("cell_clip", 0.0)))
        if variant == "float":
            self.params = OpDataLSTM(variant, size, CellStateInfo(cell_clip, 0, 0), activation,
                                     None, None, None, None, None, None)
            self.weights = {name: (np.asarray(tensors[w].data, np.float32),
                                   np.asarray(tensors[r].data, np.float32),
                                   np.asarray(tensors[b].data, np.float32)) for name, (w, r, b) in GATES.items()}
        else:
            self._prepare_integer(ctx, tensors, size, variant, activation, cell_clip)

        # Four scratch buffers of batch * state * sizeof(cell state).
        cell_bytes = 4 if cell_type == "FLOAT32" else 2
        self.scratch_bytes.extend([size.batch_size * size.state_dimension * cell_bytes] * 4)
        self.output_tensor = out
        self.hidden_tensor = hidden
        self.cell_tensor = cell

    # ---------------------------------------------------------------- Prepare's checks
    @staticmethod
    def _validate_tensor_status(ctx: PrepareContext, t, out):
        """LstmTensors::ValidateTensorStatus."""
        x, hidden, cell = t[INPUT], t[OUTPUT_STATE], t[CELL_STATE]
        ctx.check(x is not None, "input (0) is missing")
        ctx.check(hidden is not None, "hidden state (input 18) is missing")
        ctx.check(hidden.is_variable, "the hidden state (input 18) must be a variable tensor", hidden)
        ctx.check(hidden.type_name == x.type_name,
                  f"hidden state type {hidden.type_name} differs from input type {x.type_name}", hidden)
        ctx.check(cell is not None, "cell state (input 19) is missing")
        ctx.check(cell.is_variable, "the cell state (input 19) must be a variable tensor", cell)
        ctx.check(out.type_name == x.type_name,
                  f"output type {out.type_name} differs from input type {x.type_name}", out)
        weight_type = t[INPUT_TO_FORGET_WEIGHTS].type_name if t[INPUT_TO_FORGET_WEIGHTS] is not None else None
        for i in range(1, 9):
            ctx.check(t[i] is not None, f"weights input {i} is missing (TFLM runs only the LSTM with all four "
                                        f"gates: no CIFG)")
            ctx.check(t[i].type_name == weight_type,
                      f"weights input {i} is {t[i].type_name}, input 2 is {weight_type}", t[i])
        bias_type = t[FORGET_GATE_BIAS].type_name if t[FORGET_GATE_BIAS] is not None else None
        for i in range(12, 16):
            ctx.check(t[i] is not None, f"gate bias input {i} is missing")
            ctx.check(t[i].type_name == bias_type, f"bias input {i} is {t[i].type_name}, input 13 is {bias_type}",
                      t[i])
        for positions, what in ((CELL_TO_GATE_WEIGHTS, "peephole weights"), (PROJECTION, "projection"),
                                (LAYER_NORM_COEFFICIENTS, "layer norm coefficients")):
            for i in positions:
                ctx.check(t[i] is None, f"input {i} ({what}) must be absent: TFLM's LSTM has no {what}", t[i])

    @staticmethod
    def _validate_tensor_size(ctx: PrepareContext, t, out, size: LstmSizeInfo):
        """ValidateTensorSize."""
        s, n_in = size.state_dimension, size.input_dimension
        for i in range(1, 9):
            want = [s, n_in] if i < 5 else [s, s]
            ctx.check(list(t[i].shape) == want, f"weights input {i} has shape {list(t[i].shape)}, expected {want}",
                      t[i])
        for i in range(12, 16):
            ctx.check(list(t[i].shape) == [s], f"bias input {i} has shape {list(t[i].shape)}, expected [{s}]", t[i])
        for i in (OUTPUT_STATE, CELL_STATE):
            ctx.check(t[i].size == size.batch_size * s,
                      f"state input {i} has {t[i].size} elements, expected batch {size.batch_size} x state {s}",
                      t[i])
        x = t[INPUT]
        ctx.check(len(out.shape) == 3, f"output must have rank 3, has shape {list(out.shape)}", out)
        ctx.check(x.shape[0] == out.shape[0] and x.shape[1] == out.shape[1] and out.shape[2] == s,
                  f"output shape {list(out.shape)} does not match input {list(x.shape)} and state size {s}", out)

    # ---------------------------------------------------------------- integer parameters
    def _prepare_integer(self, ctx, t, size, variant, activation, cell_clip):
        x, hidden, cell = t[INPUT], t[OUTPUT_STATE], t[CELL_STATE]
        cell_scale, _ = scale_and_zero_point(cell)
        if not (math.isfinite(cell_scale) and cell_scale > 0):
            ctx.unsupported(f"cell state scale {cell_scale!r}: TFLM's CheckedLog2 of it is undefined", cell)
        # CreateLstmCellStateInfo.
        _, power = checked_log2(cell_scale)
        quantized_clip = int(np.trunc(min(max(cell_clip / cell_scale, -32768.0), 32767.0))) if cell_clip > 0 else 0
        cell_info = CellStateInfo(cell_clip, quantized_clip, power)
        tanh_scaling = lstm_tanh_scaling(power)
        if tanh_scaling.input_multiplier == 0 and tanh_scaling.input_left_shift > 29:
            ctx.unsupported(f"cell state scale 2^{power}: the tanh input multiplier 3 << "
                            f"{tanh_scaling.input_left_shift} overflows int32 (undefined)", cell)
        if tanh_scaling.input_multiplier == 3 and tanh_scaling.input_left_shift > 31:
            ctx.unsupported(f"cell state scale 2^{power}: the tanh input shift {tanh_scaling.input_left_shift} "
                            f"exceeds 31 (undefined)", cell)

        gate_params = {}
        self.weights = {}
        act_lo, act_hi = (-128, 127) if x.type_name == "INT8" else (-32768, 32767)
        for name, (w_i, r_i, b_i) in GATES.items():
            fcs = []
            mats = []
            for inp, w in ((x, t[w_i]), (hidden, t[r_i])):
                wq = w.quantization
                if wq is not None and wq.scales.size > 1:
                    ctx.unsupported("per-channel LSTM weights: TFLM's gate FC uses a per-tensor multiplier "
                                    "it never sets (undefined)", w)
                s_in, z_in = scale_and_zero_point(inp)
                s_w, z_w = scale_and_zero_point(w)
                # GetQuantizedConvolutionMultipler: TF_LITE_ENSURE(input_product_scale >= 0), then the
                # product over the FC output scale 2^-12 (the wheel: in double).
                ctx.check(s_in * s_w >= 0, f"input scale x weight scale {s_in * s_w:g} is not >= 0 "
                                           f"(TF_LITE_ENSURE input_product_scale >= 0)", w)
                m = real_multiplier(self.numerics, s_in, s_w, divisor=NONLINEAR_INPUT_SCALE)
                if not math.isfinite(m):
                    ctx.unsupported(f"gate FC multiplier {m} is not finite (undefined in QuantizeMultiplier)", w)
                mult, shift = fp.quantize_multiplier(m)
                fc = FullyConnectedParams(input_offset=-z_in, weights_offset=-z_w, output_multiplier=mult,
                                          output_shift=shift)
                # Every product (w + w_off) * (x + x_off) is an int32 multiply in C: it must not wrap.
                w_eff = np.asarray(w.data, np.int64) + fc.weights_offset
                max_x = max(abs(act_lo + fc.input_offset), abs(act_hi + fc.input_offset))
                max_w = int(np.abs(w_eff).max(initial=0))
                if max_w * max_x >= 2 ** 31:
                    ctx.unsupported(f"zero points make a gate FC product overflow int32 (|w| {max_w} x |x| "
                                    f"{max_x})", w)
                fcs.append(fc)
                mats.append(ExactIntegerMatmul(w_eff.T, max_x))
            gate_params[name] = GateParameters(*fcs)
            bias = np.asarray(t[b_i].data, np.int64)
            self.weights[name] = (mats[0], mats[1], bias)

        def mul_params(s1, s2, s_out, out_tensor=None):
            # CreateInterGateMulParams: double(s1) * double(s2) / double(s_out); the output range is
            # the output type's (int16 for the cell state, the hidden state's type for the last one).
            effective = float(s1) * float(s2) / float(s_out) if float(s_out) != 0 else math.inf
            if not math.isfinite(effective):
                ctx.unsupported(f"inter-gate multiplier {effective} is not finite (a zero state scale)", out_tensor)
            mult, shift = fp.quantize_multiplier(effective)
            if out_tensor is None:
                return MulParams(mult, shift, 0, -32768, 32767)
            lo, hi = (-128, 127) if out_tensor.type_name == "INT8" else (-32768, 32767)
            return MulParams(mult, shift, scale_and_zero_point(out_tensor)[1], lo, hi)

        s_hidden = scale_and_zero_point(hidden)[0]
        inter = InterGateParameters(
            forget_cell_mul_params=mul_params(NONLINEAR_OUTPUT_SCALE, cell_scale, cell_scale),
            input_mul_params=mul_params(NONLINEAR_OUTPUT_SCALE, NONLINEAR_OUTPUT_SCALE, cell_scale),
            output_mul_params=mul_params(NONLINEAR_OUTPUT_SCALE, NONLINEAR_OUTPUT_SCALE, s_hidden, hidden))
        self.params = OpDataLSTM(variant, size, cell_info, activation, gate_params["forget"], gate_params["input"],
                                 gate_params["cell"], gate_params["output"], inter, tanh_scaling)
        # The cell state's tanh depends only on the int16 value: tabulate it once.
        self.cell_tanh_table = tanh_int16(_INT16_DOMAIN, tanh_scaling.input_multiplier,
                                          tanh_scaling.input_left_shift).astype(np.int16)

    def describe(self) -> dict:
        return asdict(self.params)

    # ---------------------------------------------------------------- Eval
    @ieee_float_arithmetic
    def eval(self, inputs):
        p = self.params
        size = p.size_info
        b, steps, n_in, s = size.batch_size, size.time_steps, size.input_dimension, size.state_dimension
        x = inputs[INPUT]
        n = max(x.shape[0], inputs[OUTPUT_STATE].shape[0], inputs[CELL_STATE].shape[0])
        # The first T*B*I input values, as (N, T, B, I): LstmStepManager's offsets.
        flat = np.broadcast_to(x.reshape(x.shape[0], -1)[:, : steps * b * n_in], (n, steps * b * n_in))
        if size.time_major:
            seq = flat.reshape(n, steps, b, n_in)
        else:
            seq = flat.reshape(n, b, steps, n_in).transpose(0, 2, 1, 3)
        hidden = np.broadcast_to(inputs[OUTPUT_STATE].reshape(-1, b, s), (n, b, s))
        cell = np.broadcast_to(inputs[CELL_STATE].reshape(-1, b, s), (n, b, s))
        if p.variant == "float":
            outputs, hidden, cell = self._eval_float(seq, hidden, cell)
        else:
            outputs, hidden, cell = self._eval_integer(seq, hidden, cell)
        # outputs: (N, T, B, S) -> the output layout.
        if not size.time_major:
            outputs = outputs.transpose(0, 2, 1, 3)
        return [np.ascontiguousarray(outputs).reshape((n,) + tuple(self.output_tensor.shape))
                .astype(self.output_tensor.dtype, copy=False),
                hidden.reshape((n,) + tuple(self.hidden_tensor.shape)).astype(self.hidden_tensor.dtype, copy=False),
                cell.reshape((n,) + tuple(self.cell_tensor.shape)).astype(self.cell_tensor.dtype, copy=False)]

    # ---------------------------------------------------------------- integer
    def _fc(self, params: FullyConnectedParams, matmul: ExactIntegerMatmul, x, bias):
        """reference_integer_ops::FullyConnected with int16 output at zero point 0, no activation:
        acc = Σ (w + w_off)(x + x_off) [+ bias], int32 (8x8, wrapping) or int64 (16x8)."""
        acc = matmul(x.astype(np.int64) + params.input_offset)
        if bias is not None:
            acc = acc + bias
        if self.params.variant == "8x8_16":
            scaled = multiply_by_quantized_multiplier(self.numerics, fp.wrap_int32(acc), params.output_multiplier,
                                                      params.output_shift)
        else:
            scaled = fp.multiply_by_quantized_multiplier_int64(acc, params.output_multiplier, params.output_shift)
        return np.clip(scaled, -32768, 32767)

    def _mul(self, params: MulParams, a, b):
        """reference_integer_ops::MulElementwise on two int16 operands (input offsets 0); the product
        fits int32 (at most 2^30)."""
        product = a.astype(np.int64) * b.astype(np.int64)
        scaled = multiply_by_quantized_multiplier(self.numerics, product, params.output_multiplier,
                                                  params.output_shift)
        return np.clip(scaled + params.output_offset, params.quantized_activation_min,
                       params.quantized_activation_max)

    def _gate_activation(self, name: str, pre):
        """Sigmoid for the forget, input and output gates; the cell gate's nonlinearity is the op's
        activation: tanh, or (the wheel is built with NDEBUG, so TFLITE_ASSERT_FALSE does nothing)
        none at all for any other value."""
        if name != "cell":
            return lookup16(GATE_SIGMOID_TABLE, pre)
        if self.params.cell_gate_nonlinear_type == ACT_TANH:
            return lookup16(GATE_TANH_TABLE, pre)
        return pre

    def _eval_integer(self, seq, hidden, cell):
        p = self.params
        n, steps, b, _ = seq.shape
        gates = {"forget": p.forget_gate_parameters, "input": p.input_gate_parameters,
                 "cell": p.cell_gate_parameters, "output": p.output_gate_parameters}
        # The input FCs of every time step at once: (N, T, B, S) int16 values.
        input_fc = {name: self._fc(g.input_fc_params, self.weights[name][0], seq, self.weights[name][2])
                    for name, g in gates.items()}
        inter = p.inter_gate_parameters
        clip = p.cell_state_info.quantized_cell_clip
        hidden = hidden.astype(np.int64)
        cell = cell.astype(np.int64)
        outputs = np.empty((n, steps, b, hidden.shape[-1]), np.int64)
        for t in range(steps):
            out = {}
            for name in ("forget", "input", "cell", "output"):
                if name == "output":
                    # Step 2 (the cell update) comes before the output gate; it reads the old hidden state.
                    cell = self._mul(inter.forget_cell_mul_params, out["forget"], cell)
                    update = self._mul(inter.input_mul_params, out["input"], out["cell"])
                    cell = np.clip(cell + update, -32768, 32767)
                    if p.cell_state_info.cell_clip > 0:
                        # std::max(std::min(clip, v), int16(-clip)).
                        cell = np.maximum(np.minimum(clip, cell), fp.wrap_int16(-clip))
                recurrent = self._fc(gates[name].recurrent_fc_params, self.weights[name][1], hidden, None)
                pre = np.clip(input_fc[name][:, t] + recurrent, -32768, 32767)
                out[name] = self._gate_activation(name, pre)
            tanh_cell = lookup16(self.cell_tanh_table, cell)
            hidden = self._mul(inter.output_mul_params, tanh_cell, out["output"])
            outputs[:, t] = hidden
        return outputs, hidden, cell

    # ---------------------------------------------------------------- float
    def _eval_float(self, seq, hidden, cell):
        p = self.params
        n, steps, b, _ = seq.shape
        f32 = np.float32

        def fc(x, w, bias):
            # reference_ops::FullyConnected: a float32 sum in order d = 0, 1, ..., then + bias
            # (0.0f when absent), clamped to ±FLT_MAX.
            rows = x.reshape(-1, x.shape[-1]).astype(f32, copy=False)
            total = float_sequential_sum_of_products(rows, w)
            total = total + (bias[None, :] if bias is not None else f32(0.0))
            return clamp_float(total, -FLT_MAX, FLT_MAX).reshape(x.shape[:-1] + (w.shape[0],))

        def mul(a, c):
            return clamp_float(a * c, -FLT_MAX, FLT_MAX)

        input_fc = {name: fc(seq, w, bias) for name, (w, _, bias) in self.weights.items()}
        hidden = hidden.astype(f32)
        cell = cell.astype(f32)
        clip = f32(p.cell_state_info.cell_clip)
        outputs = np.empty((n, steps, b, hidden.shape[-1]), f32)
        for t in range(steps):
            out = {}
            for name in ("forget", "input", "cell", "output"):
                if name == "output":
                    cell = mul(out["forget"], cell)
                    cell = (cell + mul(out["input"], out["cell"])).astype(f32)
                    if clip > 0:
                        cell = clip_cell_float(cell, clip)
                pre = (input_fc[name][:, t] + fc(hidden, self.weights[name][1], None)).astype(f32)
                if name != "cell":
                    out[name] = logistic_float(pre)
                elif p.cell_gate_nonlinear_type == ACT_TANH:
                    out[name] = float_function("tanh")(pre)
                else:
                    out[name] = pre
            hidden = mul(float_function("tanh")(cell), out["output"])
            outputs[:, t] = hidden
        return outputs, hidden, cell
