"""Per-element activations with their integer steps recorded, for ``explain``:
LEAKY_RELU (reference_ops::QuantizeLeakyRelu, leaky_relu.h), int8 and int16.

    input_value = input - input_zero_point
    input_value >= 0:  scaled = MBQM(input_value, output_multiplier_identity, output_shift_identity)
    input_value <  0:  scaled = MBQM(input_value, |output_multiplier_alpha|, output_shift_alpha),
                       negated when alpha < 0 (the multiplier then is negative)
    output = clamp(output_zero_point + scaled, the output type's range)
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from .elementwise import multiply_by_quantized_multiplier

TYPE_RANGES = {"INT8": (-128, 127), "INT16": (-32768, 32767)}


def leaky_relu(p, input: np.ndarray, rounding: str = "double", steps: dict | None = None) -> np.ndarray:
    """QuantizeLeakyRelu per element; ``p`` is the kernel's LeakyReluOpData.

    With ``steps``: ``input_value``, ``identity`` (the identity multiplier's result, with its
    rounding steps as ``identity_shifted`` / ``identity_high``), ``alpha_scaled`` (likewise),
    ``scaled`` (the branch the sign picks), ``unclamped_output`` and ``output``."""
    input_value = fp.wrap_int32(fp.as_int64(input) - p.input_zero_point)
    identity = multiply_by_quantized_multiplier(input_value, p.output_multiplier_identity, p.output_shift_identity,
                                                rounding, steps, "identity")
    alpha_scaled = multiply_by_quantized_multiplier(input_value, abs(p.output_multiplier_alpha),
                                                    p.output_shift_alpha, rounding, steps, "alpha_scaled")
    if p.output_multiplier_alpha < 0:
        alpha_scaled = -alpha_scaled
    scaled = np.where(input_value >= 0, identity, alpha_scaled)
    unclamped_output = fp.wrap_int32(p.output_zero_point + scaled)
    lo, hi = TYPE_RANGES[p.kind]
    output = np.clip(unclamped_output, lo, hi)
    if steps is not None:
        steps.update(input_value=input_value, alpha_scaled=alpha_scaled, scaled=scaled,
                     unclamped_output=unclamped_output, output=output)
    return output
