"""What TFLM refuses while it parses an operator's options, before any Prepare.

TFLM's ParseOpData (tensorflow/lite/core/api/flatbuffer_conversions.cc) turns each operator's
builtin options into its C params struct; a few parsers fail on values they cannot convert, and
then TFLM refuses the whole model ("Unsupported data type ...", "Unhandled fully-connected weights
format.", "Found too many dimensions ..."). microref's kernels often never read those fields, so
without these checks they ran models TFLM refuses (found by mutating option fields of the models
the differential tests compare; tests/test_run_what_tflm_runs.py pins each case to the wheel).

Kernels whose TFLM parser checks a field call ``check_parsed_options(ctx)`` first in prepare.
"""
from __future__ import annotations

from .registry import PrepareContext

# ConvertTensorType's cases in the pinned wheel: TensorType 0 (FLOAT32) .. 22 (FLOAT8_E5M2),
# checked against the wheel (a CAST out_data_type of 23 or -1 fails: "Unsupported data type").
WHEEL_TENSOR_TYPES = range(0, 23)

# Option fields each parser passes through ConvertTensorType.
TENSOR_TYPE_FIELDS = {
    "ARG_MAX": ("output_type",),                   # ParseArgMax
    "ARG_MIN": ("output_type",),                   # ParseArgMin
    "CAST": ("in_data_type", "out_data_type"),     # ParseCast
    "SHAPE": ("out_type",),                        # ParseShape
    "CONV_2D": ("quantized_bias_type",),           # ParseConv2D
    "FULLY_CONNECTED": ("quantized_bias_type",),   # ParseFullyConnected
    "TRANSPOSE_CONV": ("quantized_bias_type",),    # ParseTransposeConv
}

# ParseFullyConnected: FullyConnectedOptionsWeightsFormat DEFAULT (0) or SHUFFLED4x16INT8 (1).
FC_WEIGHTS_FORMATS = (0, 1)

# FlatBufferIntVectorToArray into TfLiteReshapeParams::shape / TfLiteSqueezeParams::squeeze_dims,
# both int[8] (TFLITE_RESHAPE_PARAMS_MAX_DIMENSION_COUNT, squeeze_dims[8]).
INT_VECTOR_FIELDS = {"RESHAPE": ("new_shape", 8), "SQUEEZE": ("squeeze_dims", 8)}


def converted_activation(value) -> int:
    """ConvertActivation: the schema's fused activation as TFLM's params hold it. Codes outside
    NONE (0) .. SIGN_BIT (5) fall out of its switch and become kTfLiteActNone."""
    value = int(value)
    return value if 0 <= value <= 5 else 0


def check_parsed_options(ctx: PrepareContext) -> None:
    """Refuse (ModelError, as TFLM refuses the model) the option values TFLM's parser cannot take."""
    name = ctx.op.op_name
    opts = ctx.options
    for field in TENSOR_TYPE_FIELDS.get(name, ()):
        value = opts.get(field)
        if value is not None and int(value) not in WHEEL_TENSOR_TYPES:
            ctx.fail(f"option {field} = {int(value)} is not a tensor type TFLM knows (its parser's "
                     f"ConvertTensorType fails: \"Unsupported data type {int(value)} in tensor\")")
    if name == "FULLY_CONNECTED":
        fmt = opts.get("weights_format")
        if fmt is not None and int(fmt) not in FC_WEIGHTS_FORMATS:
            ctx.fail(f"option weights_format = {int(fmt)} is neither DEFAULT nor SHUFFLED4x16INT8 (TFLM's "
                     "parser: \"Unhandled fully-connected weights format.\")")
    if name in INT_VECTOR_FIELDS:
        field, limit = INT_VECTOR_FIELDS[name]
        values = opts.get(field)
        if values is not None and len(values) > limit:
            ctx.fail(f"option {field} has {len(values)} entries; TFLM's parser copies at most {limit} (\"Found "
                     f"too many dimensions in the input array of operation '{name}'\")")
