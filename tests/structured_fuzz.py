"""Structure-aware hostile models: what byte mutation of valid models rarely reaches.

    python tests/structured_fuzz.py [--per-family 100] [--seed 0] [--workers 2] [--no-tflm]
                                    [--save DIR] [--markdown]

Every case is a model written on purpose (``ModelBuilder`` without its safety checks, then
patched where the builder cannot go), one of nine families:

    subgraphs      IF / WHILE / CALL_ONCE naming subgraphs out of range, themselves, each other
                   (recursion, mutual recursion), with mismatched input and output counts
    cycles         operators reading their own output, a later operator's, each other's; graph
                   outputs nobody writes; graph inputs an operator overwrites; operators listed
                   out of dependency order
    aliasing       one tensor as input and output of one operator, twice among its outputs or
                   the graph's inputs or outputs; a constant written by an operator; a graph input
                   passed straight through
    variables      variable tensors read before any write, written by operators, as graph inputs
                   and outputs, with data, of every type, in subgraphs, of size 0
    indices        tensor, buffer, opcode and subgraph indices of +-2^31, -1, -2, n, n+1
    buffers        Buffer.offset/size (the >2 GB layout) inside, past and far past the file, on
                   constants, shared by tensors of different sizes; buffer 0 holding data
    dims           dimensions of 2^31-1 and shapes whose element count overflows int64;
                   negative, zero and rank-9 shapes; shape_signature against shape
    quantization   scale and zero-point arrays of unequal or wrong lengths, quantized_dimension
                   outside the shape, NaN / infinite / negative / denormal scales, zero points
                   past their type
    names          tensor, operator-code, subgraph and model names that are not UTF-8, carry
                   control characters, repeat each other, are empty or 64 KiB long

Each model goes to microref in a worker process (tests/mutants.py's pool: the same checks as the
mutation fuzzer — typed errors only, 2 s of CPU, 1 GiB of peak RSS, no crash, no hang) and, with
the wheel installed, to TFLM in another (a crash there is a finding about TFLM, recorded, not a
failure here). Both run on the same seeded inputs when both run the model, and their outputs
are compared. The table printed (``--markdown`` for the README) gives per family what microref
did, what TFLM did, and how often they agreed.

``cases(per_family, seed)`` is what tests/mutants.py (``--structured N``) and tests/test_hostile.py
use to add these models to the mutation campaign.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import struct
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _p in (str(REPO), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from interp.model import verify  # noqa: E402
from interp.model.builder import ModelBuilder, SubgraphBuilder, _Tensor  # noqa: E402

INT32_MAX, INT32_MIN = (1 << 31) - 1, -(1 << 31)
TFLM_ARENA_BYTES = 64 << 20


# ------------------------------------------------------------------------------ a lenient builder
class _Lenient:
    """Any integer is a tensor index (the builder would refuse a hostile one)."""

    def _check_index(self, t, op_name: str, allow_omitted: bool = False) -> int:
        return int(t)

    def raw_tensor(self, name, shape, type_name="INT8", *, scales=None, zero_points=None, quantized_dimension=0,
                   data=None, variable=False, shape_signature=None) -> int:
        """A tensor exactly as given: name may be bytes (written as they are), the quantization
        arrays any lengths, data any bytes or an ``OffsetBuffer``."""
        self._tensors.append(_Tensor(name, tuple(int(d) for d in shape), type_name,
                                     None if scales is None else [float(s) for s in scales],
                                     None if zero_points is None else [int(z) for z in zero_points],
                                     int(quantized_dimension), data, bool(variable),
                                     None if shape_signature is None else tuple(shape_signature)))
        return len(self._tensors) - 1


class RawSubgraph(_Lenient, SubgraphBuilder):
    pass


class OffsetBuffer:
    """Buffer contents given as Buffer.offset / Buffer.size (and optionally data as well)."""

    def __init__(self, offset: int, size: int, data: bytes = b""):
        self.offset, self.size, self.data = offset, size, data

    def __bool__(self):
        return True


class RawBuilder(_Lenient, ModelBuilder):
    """ModelBuilder without the checks that keep a model sane; names and codes may be bytes."""

    def subgraph(self, name="") -> RawSubgraph:
        g = RawSubgraph(name or f"subgraph_{len(self.subgraphs)}", len(self.subgraphs))
        self.subgraphs.append(g)
        return g

    @staticmethod
    def _write_buffer(fb, data):
        if not isinstance(data, OffsetBuffer):
            return ModelBuilder._write_buffer(fb, data)
        vector = None
        if data.data:
            fb.StartVector(1, len(data.data), 16)
            fb.head -= len(data.data)
            fb.Bytes[fb.head:fb.head + len(data.data)] = data.data
            vector = fb.EndVector()
        fb.StartObject(3)  # Buffer { data: [ubyte]; offset: ulong; size: ulong; }
        if vector is not None:
            fb.PrependUOffsetTRelativeSlot(0, vector, 0)
        fb.PrependUint64Slot(1, data.offset % (1 << 64), 0)
        fb.PrependUint64Slot(2, data.size % (1 << 64), 0)
        return fb.EndObject()


def q8(g, name, shape, **kw):
    """An int8 activation with per-tensor quantization."""
    return g.tensor(name, list(shape), "INT8", scale=kw.get("scale", 0.05), zero_point=kw.get("zero_point", -3))


def chain(g, x, ops: int, rng, shape=(1, 4)) -> int:
    """``ops`` elementwise int8 operators after tensor ``x``; returns the last output."""
    for _ in range(ops):
        y = q8(g, f"t{len(g._tensors)}", shape)
        kind = ["RELU", "ADD", "MUL", "RELU6", "TANH"][int(rng.integers(5))]
        if kind in ("ADD", "MUL"):
            g.op(kind, [x, x], [y])
        elif kind == "TANH":
            y = g.tensor(f"t{len(g._tensors)}", shape, "INT8", scale=1 / 128, zero_point=0)
            g.op(kind, [x], [y])
        else:
            g.op(kind, [x], [y])
        x = y
    return x


def pick(rng, values):
    return values[int(rng.integers(len(values)))]


HOSTILE_INDICES = [INT32_MAX, INT32_MIN, -1, -2, INT32_MAX - 1, 1 << 30]


# ------------------------------------------------------------------------------ families
def gen_subgraphs(rng):
    b = RawBuilder("structured: subgraphs")
    n_extra = int(rng.integers(0, 4))
    extra = [b.subgraph() for _ in range(n_extra)]
    n = 1 + n_extra
    targets = list(range(n)) + [n, n + 1] + HOSTILE_INDICES
    kind = pick(rng, ["IF", "WHILE", "CALL_ONCE"])
    x = q8(b, "x", [1, 4])
    b.mark_input(x)
    desc = [f"{n} subgraphs", kind]
    if kind == "IF":
        cond = b.input("cond", [1], "BOOL")
        y = q8(b, "y", [1, 4])
        then, other = pick(rng, targets), pick(rng, targets)
        b.op("IF", [cond, x], [y], then_subgraph_index=then, else_subgraph_index=other)
        desc.append(f"then {then} else {other}")
    elif kind == "WHILE":
        y = q8(b, "y", [1, 4])
        cond_g, body_g = pick(rng, targets), pick(rng, targets)
        b.op("WHILE", [x], [y], cond_subgraph_index=cond_g, body_subgraph_index=body_g)
        desc.append(f"cond {cond_g} body {body_g}")
    else:
        init = pick(rng, targets)
        b.op("CALL_ONCE", [], [], init_subgraph_index=init)
        y = chain(b, x, 1, rng)
        desc.append(f"init {init}")
    b.output(y)
    for g in extra:
        # Each callee: 0-2 inputs and outputs of varying shapes, maybe a call of its own.
        ins = [q8(g, f"in{k}", pick(rng, [[1, 4], [1, 4], [4], [1, 8]])) for k in range(int(rng.integers(0, 3)))]
        g.mark_input(*ins)
        outs = []
        if rng.random() < 0.4:
            inner = pick(rng, ["CALL_ONCE", "IF", "WHILE"])
            tgt = pick(rng, [0, g.index, (g.index % n) + 1, INT32_MAX, -1])
            if inner == "CALL_ONCE":
                g.op("CALL_ONCE", [], [], init_subgraph_index=tgt)
            elif inner == "WHILE" and ins:
                o = q8(g, "w", [1, 4])
                g.op("WHILE", [ins[0]], [o], cond_subgraph_index=tgt, body_subgraph_index=pick(rng, [0, g.index, tgt]))
                outs.append(o)
            elif ins:
                c = g.tensor("c", [1], "BOOL")
                g.mark_input(c)
                o = q8(g, "i", [1, 4])
                g.op("IF", [c, ins[0]], [o], then_subgraph_index=tgt, else_subgraph_index=pick(rng, [0, g.index]))
                outs.append(o)
            desc.append(f"subgraph {g.index} calls {tgt} ({inner})")
        if ins and rng.random() < 0.7:
            outs.append(chain(g, ins[0], int(rng.integers(0, 3)), rng, tuple(g._tensors[ins[0]].shape)))
        if rng.random() < 0.3:
            outs.append(g.tensor("cond_out", [1], "BOOL"))  # an output nobody writes
        g.output(*outs)
        desc.append(f"subgraph {g.index}: {len(ins)} in, {len(outs)} out")
    return b.build(), "; ".join(desc)


def gen_cycles(rng):
    b = RawBuilder("structured: cycles")
    x = q8(b, "x", [1, 4])
    b.mark_input(x)
    k = int(rng.integers(2, 6))
    last = chain(b, x, k, rng)
    b.output(last)
    ops = b._operators
    i = int(rng.integers(len(ops)))
    how = pick(rng, ["own output", "later output", "two-cycle", "output of nobody", "input overwritten",
                     "reversed order", "three-cycle", "intermediate as input"])
    if how == "own output":
        ops[i].inputs[0] = ops[i].outputs[0]
    elif how == "later output":
        j = int(rng.integers(i, len(ops)))
        ops[i].inputs[-1] = ops[j].outputs[0]
    elif how in ("two-cycle", "three-cycle") and len(ops) >= 3:
        span = 2 if how == "two-cycle" else 3
        i = min(i, len(ops) - span)
        ops[i].inputs[0] = ops[i + span - 1].outputs[0]
    elif how == "output of nobody":
        b.output(q8(b, "orphan", [1, 4]))
    elif how == "input overwritten":
        ops[i].outputs[0] = x
    elif how == "reversed order":
        ops.reverse()
    else:
        b.mark_input(ops[i].outputs[0])
    return b.build(), f"{k} ops, {how} at operator {i}"


def gen_aliasing(rng):
    b = RawBuilder("structured: aliasing")
    shape = pick(rng, [[1, 4], [1, 4], [1, 8], [2, 4]])
    x0 = q8(b, "x0", shape)
    b.mark_input(x0)
    before = int(rng.integers(0, 3))
    x = chain(b, x0, before, rng, shape)  # the aliasing happens after a few ordinary operators
    how = pick(rng, ["in == out", "ADD(x, x) -> x", "CONCAT into its input", "SPLIT into one tensor twice",
                     "graph output twice", "graph input twice", "passthrough", "writes a constant",
                     "RESHAPE in place", "QUANTIZE in place", "output is another op's input"])
    y = q8(b, "y", shape)
    if how == "in == out":
        b.op(pick(rng, ["RELU", "RELU6", "LOGISTIC", "NEG"]) if rng.random() < 0.5 else "RELU", [x], [x])
        b.output(x)
    elif how == "ADD(x, x) -> x":
        b.op(pick(rng, ["ADD", "MUL", "SUB", "MAXIMUM"]), [x, x], [x])
        b.output(x)
    elif how == "CONCAT into its input":
        z = q8(b, "z", [shape[0], 2 * shape[1]])
        b.op("CONCATENATION", [x, x], [pick(rng, [x, z])], axis=1)
        b.output(z)
    elif how == "SPLIT into one tensor twice":
        axis = b.constant("axis", np.array(1, np.int32))
        half = q8(b, "half", [shape[0], shape[1] // 2])
        b.op("SPLIT", [axis, x], [half, half], num_splits=2)
        b.output(half)
    elif how == "graph output twice":
        b.op("RELU", [x], [y])
        b.output(y, y, *([x] if rng.random() < 0.5 else []))
    elif how == "graph input twice":
        b.mark_input(x)
        b.op("ADD", [x, x], [y])
        b.output(y)
    elif how == "passthrough":
        b.op("RELU", [x], [y])
        b.output(x, y)
    elif how == "writes a constant":
        c = b.constant("c", np.arange(np.prod(shape), dtype=np.int8).reshape(shape), scale=0.05, zero_point=-3)
        b.op("ADD", [x, c], [c])
        b.output(c)
    elif how == "RESHAPE in place":
        new = b.constant("shape", np.array(shape, np.int32))
        b.op("RESHAPE", [x, new], [x], new_shape=shape)
        b.output(x)
    elif how == "QUANTIZE in place":
        b.op("QUANTIZE", [x], [x])
        b.output(x)
    else:
        b.op("RELU", [x], [y])
        b.op("RELU", [y], [x])
        b.output(x, y)
    return b.build(), f"{how} after {before} operators, {shape}"


def gen_variables(rng):
    b = RawBuilder("structured: variables")
    type_name = pick(rng, ["INT8", "INT8", "INT16", "FLOAT32", "INT32", "BOOL"])
    shape = pick(rng, [[1, 4], [1, 4], [4], [0], [1, 0, 4]])
    quant = dict(scales=[0.05], zero_points=[int(rng.integers(-128, 128))]) if type_name in ("INT8", "INT16") else {}
    x = b.raw_tensor("x", shape, type_name, **quant)
    b.mark_input(x)
    nbytes = int(np.prod(shape)) * {"INT8": 1, "INT16": 2, "FLOAT32": 4, "INT32": 4, "BOOL": 1}[type_name]
    data = bytes(rng.integers(0, 256, nbytes, dtype=np.uint8)) if rng.random() < 0.2 else None
    v = b.raw_tensor("v", shape, type_name, variable=True, data=data, **quant)
    y = b.raw_tensor("y", shape, type_name, **quant)
    how = pick(rng, ["read before write", "written by its reader", "graph input", "graph output",
                     "written twice", "written by a later op", "in a WHILE body", "only variable"])
    op = "ADD" if type_name != "BOOL" else "LOGICAL_OR"
    if how == "read before write":
        b.op(op, [x, v], [y])
        b.output(y)
    elif how == "written by its reader":
        b.op(op, [x, v], [v])
        b.output(pick(rng, [v, x]))
        if rng.random() < 0.5:
            b.op(op, [v, v], [y])
            b.output(y)
    elif how == "graph input":
        b.mark_input(v)
        b.op(op, [x, v], [y])
        b.output(y)
    elif how == "graph output":
        b.op(op, [x, x], [y])
        b.output(y, v)
    elif how == "written twice":
        b.op(op, [x, v], [v])
        b.op(op, [x, x], [v])
        b.output(v)
    elif how == "written by a later op":
        b.op(op, [x, v], [y])
        b.op(op, [y, x], [v])
        b.output(y)
    elif how == "in a WHILE body" and type_name == "INT8" and shape == [1, 4]:
        # WHILE over (x, n): while n < 3, x -= v (a variable of the body) and n += 1.
        cond = b.subgraph("cond")
        body = b.subgraph("body")
        ci = cond.tensor("ci", shape, type_name, scale=0.05, zero_point=0)
        cn = cond.tensor("cn", [1], "INT32")
        cond.mark_input(ci, cn)
        co = cond.tensor("co", [1], "BOOL")
        cond.op("LESS", [cn, cond.constant("three", np.array([3], np.int32))], [co])
        cond.output(co)
        bi = body.tensor("bi", shape, type_name, scale=0.05, zero_point=0)
        bn = body.tensor("bn", [1], "INT32")
        body.mark_input(bi, bn)
        bv = body.raw_tensor("bv", shape, type_name, variable=True, scales=[0.05], zero_points=[0])
        bo = body.tensor("bo", shape, type_name, scale=0.05, zero_point=0)
        body.op("SUB", [bi, bv], [pick(rng, [bo, bv])])
        bm = body.tensor("bm", [1], "INT32")
        body.op("ADD", [bn, body.constant("one", np.array([1], np.int32))], [bm])
        body.output(bo, bm)
        n0 = b.constant("n0", np.array([0], np.int32))
        m = b.tensor("m", [1], "INT32")
        b.op("WHILE", [x, n0], [y, m], cond_subgraph_index=1, body_subgraph_index=2)
        b.output(y)
    else:
        b.output(v)
    return b.build(), f"{how}, {type_name}{shape}{' with data' if data else ''}"


def _base_for_patching(rng):
    """A small valid model with every kind of index: ADD(x, c) -> RELU -> FC, two opcodes, buffers."""
    b = ModelBuilder("structured: base")
    x = b.input("x", [1, 4], "INT8", scale=0.05, zero_point=-3)
    c = b.constant("c", np.arange(4, dtype=np.int8).reshape(1, 4), scale=0.05, zero_point=-3)
    t = b.tensor("t", [1, 4], "INT8", scale=0.1, zero_point=0)
    b.op("ADD", [x, c], [t])
    r = b.tensor("r", [1, 4], "INT8", scale=0.1, zero_point=0)
    b.op("RELU", [t], [r])
    w = b.constant("w", (np.arange(12) % 5 - 2).astype(np.int8).reshape(3, 4), scale=0.02, zero_point=0)
    bias = b.constant("bias", np.array([1, -2, 3], np.int32), scale=0.002, zero_point=0)
    y = b.tensor("y", [1, 3], "INT8", scale=0.2, zero_point=1)
    b.op("FULLY_CONNECTED", [r, w, bias], [y])
    b.output(y)
    return b.build()


def _locations(data: bytes) -> list:
    found: list = []
    verify.verify_flatbuffer(data, "base", record=found)
    return found


def _patch(data: bytes, loc, value) -> bytes:
    buf = bytearray(data)
    buf[loc.pos:loc.pos + loc.size] = (int(value) % (1 << (8 * loc.size))).to_bytes(loc.size, "little")
    return bytes(buf)


_INDEX_FIELDS = (r"\.operators\[\d+\]\.(inputs|outputs)\[\d+\]$", r"\.subgraphs\[\d+\]\.(inputs|outputs)\[\d+\]$",
                 r"\.tensors\[\d+\]\.buffer$", r"\.operators\[\d+\]\.opcode_index$",
                 r"\.operator_codes\[\d+\]\.(builtin_code|deprecated_builtin_code)$")


def gen_indices(rng):
    import re
    data = _base_for_patching(rng)
    locs = [loc for loc in _locations(data) if loc.kind in ("scalar", "element")
            and any(re.search(p, loc.path) for p in _INDEX_FIELDS)]
    desc = []
    for _ in range(int(pick(rng, [1, 1, 1, 2, 3]))):
        loc = pick(rng, locs)
        value = pick(rng, HOSTILE_INDICES + [3, 5, 6, 7, 8, 9, 10, 255, 256, 127, 1 << 16, (1 << 32) - 1])
        data = _patch(data, loc, value)
        desc.append(f"{loc.path} = {value}")
    return data, "; ".join(desc)


def gen_buffers(rng):
    b = RawBuilder("structured: buffers")
    x = q8(b, "x", [1, 4])
    b.mark_input(x)
    n = int(rng.integers(1, 64))
    how = pick(rng, ["offset/size", "offset/size and data", "shared, different sizes", "size mismatch",
                     "offset/size on a variable"])
    offset = pick(rng, [0, 1, 2, 8, 64, 100, 1 << 20, 1 << 31, 1 << 40, (1 << 63) - 1, 1 << 63, (1 << 64) - 1,
                        int(rng.integers(0, 4096))])
    size = pick(rng, [0, 1, n, n + 1, n - 1, 1 << 20, 1 << 32, (1 << 64) - 1, int(rng.integers(0, 4096))])
    if how.startswith("offset/size"):
        data = OffsetBuffer(offset, size, bytes(n) if how == "offset/size and data" else b"")
        c = b.raw_tensor("c", [1, n], "INT8", scales=[0.05], zero_points=[-3], data=data,
                         variable=how.endswith("variable"))
    elif how == "shared, different sizes":
        c = b.constant("c", np.ones((1, n), np.int8), scale=0.05, zero_point=-3)
        c2 = b.raw_tensor("c2", [1, n + int(rng.integers(-n, n + 8))], "INT8", scales=[0.05], zero_points=[-3],
                          data=bytes(b._tensors[c].data))
        # The builder gives every constant its own buffer; point c2 at c's after the build.
        b._shared = (c, c2)
    else:
        c = b.raw_tensor("c", [1, n], "INT8", scales=[0.05], zero_points=[-3],
                         data=bytes(max(0, n + int(rng.integers(-n, 8)))) or b"\0")
    y = q8(b, "y", [1, n])
    xb = q8(b, "xb", [1, n])
    if n != 4:
        # Broadcast x to [1, n] through a constant shape-independent path: use c as both operands.
        b.op("ADD", [c, c], [y])
    else:
        b.op("ADD", [x, c], [y])
        b.op("RELU", [y], [xb])
    b.output(y)
    data = b.build()
    if how == "shared, different sizes":
        locs = [loc for loc in _locations(data) if loc.path.endswith(".buffer")]
        data = _patch(data, locs[-1], _read_u32(data, locs[-2].pos))
    return data, f"{how}: offset {offset}, size {size}, {n} values"


def _read_u32(data: bytes, pos: int) -> int:
    return struct.unpack_from("<I", data, pos)[0]


HUGE_SHAPES = [[INT32_MAX], [INT32_MAX, INT32_MAX], [1 << 16] * 4, [INT32_MAX] * 3, [INT32_MAX] * 8,
               [1 << 21] * 3, [-1, 4], [1, -4], [0, 4], [0], [1] * 9, [INT32_MAX, 0], [0, INT32_MAX],
               [1 << 28], [1 << 30, 4], [3, INT32_MAX], [-(1 << 31), 1], [4, 1 << 29], []]


def gen_dims(rng):
    b = RawBuilder("structured: dims")
    zp = int(rng.integers(-128, 128))
    where = pick(rng, ["input", "intermediate", "output", "constant", "shape_signature", "conv filter"])
    shape = pick(rng, HUGE_SHAPES)
    x = b.raw_tensor("x", shape if where == "input" else [1, 4], "INT8", scales=[0.05], zero_points=[zp])
    b.mark_input(x)
    t_shape = shape if where == "intermediate" else [1, 4]
    t = b.raw_tensor("t", t_shape, "INT8", scales=[0.05], zero_points=[-3])
    if where == "constant":
        c = b.raw_tensor("c", shape, "INT8", scales=[0.05], zero_points=[-3], data=bytes(16))
        b.op("ADD", [x, c], [t])
    elif where == "conv filter":
        xi = b.raw_tensor("img", [1, 4, 4, 2], "INT8", scales=[0.05], zero_points=[-3])
        b.mark_input(xi)
        f = b.raw_tensor("filter", (shape + [1, 1, 1, 1])[:4] if len(shape) < 4 else shape, "INT8",
                         scales=[0.02], zero_points=[0], data=bytes(64))
        co = b.raw_tensor("conv", [1, 4, 4, 2], "INT8", scales=[0.1], zero_points=[0])
        b.op("CONV_2D", [xi, f, None], [co], padding="SAME", stride_w=1, stride_h=1)
        b.output(co)
        b.op("RELU", [x], [t])
    else:
        kind = pick(rng, ["RELU", "ADD", "RESHAPE"]) if where != "intermediate" else "RELU"
        b.op(kind, [x, x] if kind == "ADD" else [x], [t], **({"new_shape": [1, 4]} if kind == "RESHAPE" else {}))
    y_shape = shape if where == "output" else t_shape
    sig = None
    if where == "shape_signature":
        sig = pick(rng, [[-1, 4], [INT32_MAX, 4], [1, 4, 1], [], [-2, -2]])
    y = b.raw_tensor("y", y_shape, "INT8", scales=[0.05], zero_points=[-3], shape_signature=sig)
    b.op("RELU", [t], [y])
    b.output(y)
    return b.build(), f"{where} shape {shape}" + (f", signature {sig}" if sig is not None else "")


def gen_quantization(rng):
    b = RawBuilder("structured: quantization")
    where = pick(rng, ["input", "output", "conv filter", "conv bias", "activation per-channel"])
    n_scales = int(pick(rng, [0, 1, 1, 2, 3, 5]))
    n_zps = int(pick(rng, [0, 1, n_scales, n_scales, n_scales + 1, 2]))
    specials = [0.05, 0.05, 0.0, -0.05, float("nan"), float("inf"), 1e-45, 3.4e38, 1e-30]
    scales = [pick(rng, specials) for _ in range(n_scales)]
    zps = [int(pick(rng, [0, 0, -3, 127, -128, 128, -129, 32767, 1 << 31, -(1 << 40)])) for _ in range(n_zps)]
    qdim = int(pick(rng, [0, 0, 1, 3, 4, -1, INT32_MAX, INT32_MIN]))
    quant = dict(scales=scales, zero_points=zps, quantized_dimension=qdim)
    plain = dict(scales=[0.05], zero_points=[-3])
    img = b.raw_tensor("img", [1, 4, 4, 2], "INT8", **(quant if where == "input" else plain))
    b.mark_input(img)
    f_quant = quant if where == "conv filter" else dict(scales=[0.02, 0.03], zero_points=[0, 0], quantized_dimension=0)
    f = b.raw_tensor("filter", [2, 3, 3, 2], "INT8", data=bytes(range(36)), **f_quant)
    bias_quant = quant if where == "conv bias" else dict(scales=[0.001, 0.0015], zero_points=[0, 0])
    bias = b.raw_tensor("bias", [2], "INT32", data=struct.pack("<2i", 5, -7), **bias_quant)
    out_quant = quant if where in ("output", "activation per-channel") else dict(scales=[0.1], zero_points=[1])
    y = b.raw_tensor("y", [1, 4, 4, 2], "INT8", **out_quant)
    b.op("CONV_2D", [img, f, bias], [y], padding="SAME", stride_w=1, stride_h=1)
    if where == "activation per-channel":
        z = b.raw_tensor("z", [1, 4, 4, 2], "INT8", scales=[0.1], zero_points=[1])
        b.op("RELU", [y], [z])
        b.output(z)
    else:
        b.output(y)
    return b.build(), f"{where}: scales {scales}, zero points {zps}, quantized_dimension {qdim}"


BAD_NAMES = [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"abc\x00def", b"\xe2\x82",
             b"\x1b[2J\nname: fake", b"\xe2\x80\xae\xe2\x80\x8b", b"", b"\x80" * 64, b"x" * 65536, b"ok",
             b"\xf0\x9f\x98\x80", b"line1\r\nline2", b"\x07\x08\x7f"]


def gen_names(rng):
    b = RawBuilder(pick(rng, [b"structured: names", b"\xff desc \x1b[2J", b"desc\nsecond"]))
    names = {k: pick(rng, BAD_NAMES) for k in ("x", "t", "y", "c")}
    if rng.random() < 0.4:
        names["t"] = names["x"]  # a duplicate name
    if rng.random() < 0.2:
        names["y"] = names["x"]
    x = b.raw_tensor(names["x"], [1, 4], "INT8", scales=[0.05], zero_points=[-3])
    b.mark_input(x)
    c = b.raw_tensor(names["c"], [1, 4], "INT8", scales=[0.05], zero_points=[-3], data=bytes(range(4)))
    t = b.raw_tensor(names["t"], [1, 4], "INT8", scales=[0.05], zero_points=[-3])
    b.op("ADD", [x, c], [t])
    y = b.raw_tensor(names["y"], [1, 4], "INT8", scales=[0.05], zero_points=[-3])
    if rng.random() < 0.3:
        code = pick(rng, [b"\xff\xfeCUSTOM", b"\x1b[2J", b"MyOp\n", b"", b"\xc0\xaf"])
        b.op("CUSTOM", [t], [y], custom_code=code or b"\x00")
        names["custom"] = code
    else:
        b.op("RELU", [t], [y])
    b.subgraph_name = pick(rng, [b"main", b"\xff", b"\x1b]0;pwned\x07"])
    b.output(y)
    return b.build(), "names " + ", ".join(f"{k}={v[:24]!r}" for k, v in names.items())


FAMILIES = {
    "subgraphs": gen_subgraphs, "cycles": gen_cycles, "aliasing": gen_aliasing, "variables": gen_variables,
    "indices": gen_indices, "buffers": gen_buffers, "dims": gen_dims, "quantization": gen_quantization,
    "names": gen_names,
}


def cases(per_family: int, seed: int = 0, families=None) -> list[tuple[str, bytes, str]]:
    """``per_family`` models of every family: (label "structured/<family>", bytes, description)."""
    out = []
    for name in families or FAMILIES:
        gen = FAMILIES[name]
        for i in range(per_family):
            rng = np.random.default_rng([seed, i, len(name), sum(name.encode())])
            try:
                data, desc = gen(rng)
            except (ValueError, TypeError, OverflowError, struct.error) as e:
                # A value the flatbuffer itself cannot hold: still a case (the bytes are garbage).
                data, desc = f"unbuildable: {e}".encode(), f"unbuildable ({type(e).__name__}: {e})"
            out.append((f"structured/{name}", data, f"{desc} [case {i}]"))
    return out


# ------------------------------------------------------------------------------ running
def _digest(outputs) -> str:
    h = hashlib.sha1()
    for a in outputs:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _input_details(data: bytes):
    """The model's inputs as microref parses them ((shape, dtype) each), or None."""
    from interp import MicrorefError, load_model
    try:
        m = load_model(data)
    except MicrorefError:
        return None
    return [{"shape": np.array(m.main.tensors[i].shape), "dtype": m.main.tensors[i].dtype} for i in m.main.inputs]


class _Details:
    def __init__(self, details):
        self.input_details = details


def seeded_inputs(details, seed: int) -> list[np.ndarray]:
    from interp.runtime.inputs import random_inputs
    return random_inputs(_Details(details), np.random.default_rng(seed))


def microref_runner(data: bytes, seed: int = 0):
    """mutants.run_mutant, with the digest of the outputs as the detail of a model that ran."""
    import mutants
    return mutants.run_mutant(data, seed, on_outputs=_digest)


_QUIET = False


def tflm_runner(data: bytes, seed: int = 0):
    """Run the model in TFLM (in a worker process of the pool): ("ran", digest) |
    ("refused", message) | ("invoke failed", message) | ("no wheel", "")."""
    global _QUIET
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return "no wheel", "", 0
    if not _QUIET:
        # TFLM explains every refusal on stdout and stderr; the pool talks over a pipe.
        import os
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        _QUIET = True
    details = _input_details(data)
    try:
        ref = runtime.Interpreter.from_bytes(data, arena_size=TFLM_ARENA_BYTES)
    except Exception as e:  # noqa: BLE001 - any refusal is an answer
        return "refused", f"{type(e).__name__}: {str(e)[:160]}", 0
    try:
        if details is not None and all(d["dtype"] is not None for d in details):
            for i, x in enumerate(seeded_inputs(details, seed)):
                ref.set_input(x, i)
        ref.invoke()
        from tflite.Model import Model
        n_out = Model.GetRootAs(data, 0).Subgraphs(0).OutputsLength()
        outs = [np.array(ref.get_output(j)) for j in range(n_out)]
    except Exception as e:  # noqa: BLE001
        return "invoke failed", f"{type(e).__name__}: {str(e)[:160]}", 0
    return "ran", _digest(outs), 0


MICROREF_KINDS = ("ran", "ModelError", "UnsupportedOpError", "InputError")


def run(per_family: int = 100, seed: int = 0, workers: int = 2, tflm: bool = True, timeout: float = 2.0,
        memory_mb: int = 1024, save: str | None = None, families=None, progress: bool = True,
        tflm_kill_after: float = 20.0):
    """Run the cases through microref (and TFLM); returns (rows by family, violations, report,
    per-case outcomes as (family, description, microref outcome and detail, TFLM outcome and detail))."""
    import mutants
    all_cases = cases(per_family, seed, families)
    rows = collections.OrderedDict((label.split("/", 1)[1], collections.Counter()) for label, _, _ in all_cases)
    mine: dict[int, tuple[str, str]] = {}
    theirs_by_case: dict[int, tuple[str, str]] = {}
    start = time.perf_counter()
    # microref: the mutation fuzzer's pool and checks (typed, fast, small, alive).
    report = mutants.Report()
    violations = []
    with mutants.Pool(workers, mutants.ADDRESS_SPACE_MB, 20.0, runner=microref_runner) as pool:
        for r in pool.run((i, data, i) for i, (_, data, _) in enumerate(all_cases)):
            family = all_cases[r.task_id][0].split("/", 1)[1]
            mine[r.task_id] = (r.outcome, r.detail)
            report.count += 1
            report.outcomes[r.outcome] += 1
            report.max_seconds = max(report.max_seconds, r.cpu_seconds)
            report.max_rss_kib = max(report.max_rss_kib, r.rss_kib)
            kind = r.outcome if r.outcome in MICROREF_KINDS else "untyped / crash / hang"
            rows[family][f"microref {kind}"] += 1
            bad = (r.outcome not in MICROREF_KINDS) or r.cpu_seconds > timeout or r.rss_kib > memory_mb << 10
            if bad:
                violations.append((family, r.outcome, r.detail, r.cpu_seconds, r.rss_kib, all_cases[r.task_id][2]))
                if save:
                    Path(save).mkdir(parents=True, exist_ok=True)
                    Path(save, f"structured_{family}_{r.task_id}.tflite").write_bytes(all_cases[r.task_id][1])
    if progress:
        print(f"  microref: {len(all_cases)} cases in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if tflm:
        start = time.perf_counter()
        with mutants.Pool(workers, 0, tflm_kill_after, runner=tflm_runner) as pool:
            for r in pool.run((i, data, i) for i, (_, data, _) in enumerate(all_cases)):
                family = all_cases[r.task_id][0].split("/", 1)[1]
                theirs = {"crash": "crashed", "timeout": "hung"}.get(r.outcome, r.outcome)
                theirs_by_case[r.task_id] = (theirs, r.detail)
                rows[family][f"TFLM {theirs}"] += 1
                m_outcome, m_detail = mine[r.task_id]
                if r.outcome == "ran" and m_outcome == "ran":
                    rows[family]["both ran, identical" if r.detail == m_detail else "both ran, outputs differ"] += 1
                if save and (theirs in ("crashed", "hung") or (r.outcome == "ran" and m_outcome == "ran"
                                                               and r.detail != m_detail)):
                    Path(save).mkdir(parents=True, exist_ok=True)
                    tag = theirs if theirs in ("crashed", "hung") else "differ"
                    Path(save, f"tflm_{tag}_{family}_{r.task_id}.tflite").write_bytes(all_cases[r.task_id][1])
                    Path(save, f"tflm_{tag}_{family}_{r.task_id}.txt").write_text(
                        f"{all_cases[r.task_id][2]}\nmicroref: {m_outcome} {m_detail}\nTFLM: {r.outcome} {r.detail}\n",
                        encoding="utf-8")
        if progress:
            print(f"  TFLM: {len(all_cases)} cases in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    per_case = [(label.split("/", 1)[1], desc, mine.get(i, ("", "")), theirs_by_case.get(i, ("", "")))
                for i, (label, _, desc) in enumerate(all_cases)]
    return rows, violations, report, per_case


COLUMNS = ("microref ran", "microref ModelError", "microref UnsupportedOpError", "microref InputError",
           "microref untyped / crash / hang", "TFLM ran", "TFLM refused", "TFLM invoke failed", "TFLM crashed",
           "TFLM hung", "both ran, identical", "both ran, outputs differ")


def table(rows, markdown: bool = False) -> str:
    heads = ["family", "cases", "ran", "ModelError", "Unsupported", "InputError", "untyped",
             "ran", "refused", "invoke failed", "crashed", "hung", "identical", "differ"]
    lines = []
    body = []
    for family, c in rows.items():
        n = sum(c[k] for k in COLUMNS[:5])
        body.append([family, str(n)] + [str(c[k]) for k in COLUMNS])
    total = ["all", str(sum(int(r[1]) for r in body))] + [str(sum(int(r[i]) for r in body))
                                                          for i in range(2, len(heads))]
    if markdown:
        lines.append("| | | microref | | | | | TFLM | | | | | both ran | |")
        lines.append("| " + " | ".join(heads) + " |")
        lines.append("|" + "---|" * len(heads))
        for r in body + [total]:
            lines.append("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in body + [total])) for i, h in enumerate(heads)]
        lines.append("  ".join(h.rjust(w) for h, w in zip(heads, widths)))
        for r in body + [total]:
            lines.append("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tests/structured_fuzz.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--per-family", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-tflm", action="store_true", help="microref only")
    p.add_argument("--families", nargs="+", choices=sorted(FAMILIES))
    p.add_argument("--save", metavar="DIR", help="write violating cases and TFLM crashes / differences there")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown (for the README)")
    p.add_argument("--cases", metavar="FILE.tsv", help="write every case's outcomes there")
    args = p.parse_args(argv)
    start = time.perf_counter()
    rows, violations, report, per_case = run(args.per_family, args.seed, args.workers, not args.no_tflm,
                                             save=args.save, families=args.families)
    if args.cases:
        with open(args.cases, "w", encoding="utf-8") as f:
            f.write("family\tcase\tmicroref\tmicroref detail\tTFLM\tTFLM detail\n")
            for family, desc, (m, md), (t, td) in per_case:
                f.write("\t".join(x.replace("\t", " ").replace("\n", " ") for x in (family, desc, m, md, t, td)) + "\n")
    print(table(rows, args.markdown))
    print(f"\n{report.count} cases in {time.perf_counter() - start:.0f} s; microref: max {report.max_seconds:.2f} s "
          f"CPU and {report.max_rss_kib >> 10} MiB peak RSS per case; {len(violations)} violation(s)")
    for v in violations[:30]:
        print(f"  {v[0]}: {v[1]}: {v[2][:200]} ({v[3]:.2f} s, {v[4] >> 10} MiB) — {v[5][:200]}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
