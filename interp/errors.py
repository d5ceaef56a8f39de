"""Typed errors: every failure microref reports derives from MicrorefError.

Messages name where the problem is (operator index, op name, tensor index and name), so a
user can find it in the model without a debugger.

Names come from the model file and may hold anything: a newline that splits a message in two,
``ESC[2J`` that clears the terminal it is printed on, right-to-left overrides that reorder what
is shown. ``printable`` escapes every such character (as ``\\n``, ``\\x1b``, ``\\u202e``);
``where`` and every error's message go through it, so no message microref raises carries one.
A message spans several lines only as a list: a newline followed by two spaces is kept (the
form ``UnsupportedOpError`` lists operators in); every other newline is escaped.
"""
from __future__ import annotations

import re

_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_LIST_ITEM = re.compile(r"\n(?=  )")


def _escape_char(c: str) -> str:
    if c in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[c]
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text) -> str:
    """``text`` with every character Python does not call printable escaped: control characters
    (C0, DEL, C1: newline, tab, ESC), format characters (bidirectional overrides, zero-width
    marks), line and paragraph separators, unassigned and private-use code points, and spaces
    other than ' '. Printable text, which is every sensible name, is returned unchanged."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def printable_message(text) -> str:
    """``printable`` for a whole message: list items ("\\n  item") keep their line breaks."""
    text = str(text)
    if text.isprintable():
        return text
    return "\n".join(printable(part) for part in _LIST_ITEM.split(text))


class MicrorefError(Exception):
    """Base class of every error microref raises on purpose.

    The message is escaped with ``printable_message`` when the error is made, so a name from
    the model cannot break it into lines or send escape sequences to the terminal.
    """

    def __init__(self, message="", *args):
        super().__init__(printable_message(message), *args)


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


class InvokeError(InputError):
    """TFLM's Invoke fails, aborts, or has no defined result for the values this run computed
    (not for the model as such): an index out of range, a zero divisor, axes it cannot reverse,
    shapes it cannot broadcast, a slice that reads outside its input. The message names the
    operator and the offending values."""


class TensorLookupError(InputError, KeyError):
    """``tensor()``, ``dequantized()`` or ``tensor_index()`` was given a name no tensor has, a name
    several tensors share (ambiguous: pass the index), or an index outside the subgraph. Also a
    ``KeyError``, which these lookups raised before."""

    __str__ = Exception.__str__  # KeyError's would show the message in quotes


def where(op_index=None, op_name=None, tensor=None):
    """A short 'operator 3 (CONV_2D), tensor 7 "conv1/weights"' locator for messages; names (and
    custom operator codes) are escaped with ``printable``."""
    parts = []
    if op_index is not None:
        parts.append(f"operator {op_index}" + (f" ({printable(op_name)})" if op_name else ""))
    if tensor is not None:
        parts.append(f'tensor {tensor.index} "{printable(tensor.name)}"')
    return ", ".join(parts)
