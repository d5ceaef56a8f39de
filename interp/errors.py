"""Typed errors: every failure microref reports derives from MicrorefError.

Messages name where the problem is (operator index, op name, tensor index and name), so a
user can find it in the model without a debugger.
"""


class MicrorefError(Exception):
    """Base class of every error microref raises on purpose."""


class ModelError(MicrorefError):
    """The model file is malformed, inconsistent, or rejected the way TFLM's Prepare rejects it."""


class UnsupportedOpError(MicrorefError):
    """The model uses operators (or operator variants) that microref does not implement.

    ``unsupported`` lists ``(op_name, version, [operator indices], reason)`` for every one found,
    so a single load reports them all.
    """

    def __init__(self, message, unsupported=()):
        super().__init__(message)
        self.unsupported = list(unsupported)


class InputError(MicrorefError):
    """The inputs given to ``run`` do not match what the model expects."""


def where(op_index=None, op_name=None, tensor=None):
    """A short 'operator 3 (CONV_2D), tensor 7 "conv1/weights"' locator for messages."""
    parts = []
    if op_index is not None:
        parts.append(f"operator {op_index}" + (f" ({op_name})" if op_name else ""))
    if tensor is not None:
        parts.append(f'tensor {tensor.index} "{tensor.name}"')
    return ", ".join(parts)
