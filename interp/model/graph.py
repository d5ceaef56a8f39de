"""Graph-level checks and facts: execution order, writers, consumers, last uses.

TFLM checks nothing about a subgraph's data flow. It runs the operators in stored order on
buffers its planner placed by lifetime — from the first write of a tensor (or the start of the
subgraph, for its inputs) to its last use as an input or an output — so a tensor's buffer is
never shared with another tensor between its first write and its last use. What an operator
reads is therefore the last value written to the tensor before it: what its producer wrote, or
the second of two writers, or the operator's own in-place update. microref runs the same graphs
the same way (``analyse`` records every writer), and refuses, as ``UnsupportedOpError`` naming
the reason, the data flows whose result TFLM does not define:

* a tensor read (or a graph output returned) before anything wrote it: TFLM reads arena memory
  nobody wrote (another tensor's bytes, a previous call's, or zeros);
* an operator that writes a constant: TFLM writes into the model's own bytes (flash on a device);
* an operator writing one tensor through two of its outputs: the result is whichever write its
  kernel happens to make last;
* an operator whose input is also its output ("in place") outside ``IN_PLACE_OPERATORS``: the
  kernel reads values it has already overwritten, which depends on its loop order.

What TFLM refuses stays a ``ModelError`` quoting its condition (an output with a zero dimension
is a dynamic tensor). A tensor with no elements always has its (empty) value: TFLM gives it no
bytes, so there is nothing to be unwritten (a constant of shape [0, 4] has no buffer, and is
still a constant).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ModelError, UnsupportedOpError, where
from .parse import Model, Operator, Subgraph, Tensor

# Operators whose TFLM kernel, handed one buffer as an input and as its output (the same tensor),
# gives what two separate buffers give: every output element is computed from the input elements
# at its own position only (RESHAPE skips its copy when the two are one buffer). Each is checked
# against the wheel with every input position aliased, broadcasting included, in
# tests/test_run_what_tflm_runs_model.py. Other kernels in place read values they have already
# overwritten (TRANSPOSE, CONV_2D, FULLY_CONNECTED, ... give other numbers than with two tensors),
# and microref, whose kernels compute every output from unmodified inputs, does not run them.
IN_PLACE_OPERATORS = frozenset({
    "ABS", "ADD", "ADD_N", "CEIL", "COS", "DIV", "ELU", "EQUAL", "EXP", "FLOOR", "FLOOR_DIV", "FLOOR_MOD",
    "HARD_SWISH", "LEAKY_RELU", "LOG", "LOGICAL_AND", "LOGICAL_NOT", "LOGICAL_OR", "LOGISTIC", "MAXIMUM",
    "MINIMUM", "MUL", "NEG", "NOT_EQUAL", "PRELU", "QUANTIZE", "RELU", "RELU6", "RESHAPE", "ROUND", "RSQRT",
    "SELECT_V2", "SIN", "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "SUB", "TANH", "ZEROS_LIKE",
})

# Inputs TFLM's Prepare demands be constant (IsConstantTensor): a tensor of no elements without a
# buffer is none (see Tensor.empty_without_buffer), so TFLM refuses it there. Position -> the name
# TFLM's message gives it ("Non-constant >axis< tensor is not supported").
CONSTANT_INPUTS = {
    "BROADCAST_TO": {1: "shape"}, "EXPAND_DIMS": {1: "axis"}, "FILL": {0: "dims"}, "PAD": {1: "paddings"},
    "PADV2": {1: "paddings"}, "RESIZE_BILINEAR": {1: "size"}, "RESIZE_NEAREST_NEIGHBOR": {1: "size"},
    "SPLIT": {0: "axis"}, "SPLIT_V": {2: "axis"}, "STRIDED_SLICE": {1: "begin", 2: "end", 3: "strides"},
    "TRANSPOSE": {1: "perm"},
}

# Inputs TFLM's kernels never read, so that one nothing wrote gives a defined result there:
# RESHAPE takes its shape from the output tensor, TRANSPOSE_CONV ignores its output-shape input
# (TFLM has no dynamic tensors). microref's interpreter hands every input to its kernel and has
# no value for one nothing wrote, so it refuses such a model, saying so.
UNREAD_INPUTS = {"RESHAPE": (1,), "TRANSPOSE_CONV": (0,)}

# Operators checked against the wheel on inputs of no elements that were refused before (graph
# inputs with a zero dimension, buffer-less tensors of no elements), by the type of their first
# input (None: every type): they run them as TFLM does. Any other operator reading such a tensor
# is not run: many TFLM kernels divide by the zero dimension (CONV_2D with no input channels
# stops on SIGFPE), read element 0 of the empty tensor (float MEAN over an empty axis: SIGSEGV)
# or return before writing their output (int8 MEAN or SUM over an empty axis), and not every
# microref kernel has been brought to TFLM's result on them (FULLY_CONNECTED with no input
# depth is refused by its kernel; TFLM gives the bias).
EMPTY_INPUT_OPERATORS: dict[str, frozenset[str] | None] = {
    "CONCATENATION": None,
    "SHAPE": None,
    "PAD": frozenset({"INT8", "INT16", "FLOAT32"}),
    "BATCH_MATMUL": frozenset({"INT8", "INT16", "FLOAT32"}),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": frozenset({"INT8", "INT16"}),
}


def runs_empty_inputs(op: Operator, tensors: list[Tensor]) -> bool:
    """Whether ``op`` is one of EMPTY_INPUT_OPERATORS, with a first input of a type checked."""
    if op.op_name not in EMPTY_INPUT_OPERATORS:
        return False
    types = EMPTY_INPUT_OPERATORS[op.op_name]
    first = op.inputs[0] if op.inputs else -1
    return types is None or (0 <= first < len(tensors) and tensors[first].type_name in types)


@dataclass
class GraphInfo:
    producer: dict[int, int]  # tensor index -> the first operator that writes it
    consumers: dict[int, list[int]]  # tensor index -> operator indices that read it
    last_use: dict[int, int]  # tensor index -> last operator index that reads it
    writers: dict[int, list[int]] = field(default_factory=dict)  # tensor index -> every operator writing it
    # What TFLM runs with a defined result but a reader of the model may not expect, one line each
    # (`microref info` shows them): tensors written twice, operators in place, graph inputs overwritten.
    notes: list[str] = field(default_factory=list)


def _is_empty(t: Tensor) -> bool:
    return t.size == 0


def _here(sg: Subgraph, op: Operator | None, tensor: Tensor | None = None) -> str:
    here = where(op.index, op.display_name, tensor) if op is not None else where(tensor=tensor)
    return f"subgraph {sg.index}, {here}" if sg.index else here


def _undefined(sg: Subgraph, op: Operator | None, why: str, tensor: Tensor | None = None) -> UnsupportedOpError:
    """What TFLM runs with no defined result: UnsupportedOpError (TFLM does not refuse it)."""
    here = _here(sg, op, tensor)
    name, version, idx = (op.display_name, op.version, [op.index]) if op is not None else ("graph output", 0, [])
    return UnsupportedOpError(f"{here}: {why}", [(name, version, idx, why)])


def analyse(sg: Subgraph) -> GraphInfo:
    """Check that TFLM's in-order execution of ``sg`` has a defined result and record the data
    flow (see the module docstring): every tensor an operator reads must hold a value — a graph
    input, a constant, a variable, or the output of an earlier operator (or of several: the last
    one counts) — and the kernels writing in place must be ones that give the same result so."""
    tensors = sg.tensors
    inputs = set(sg.inputs)
    available = set(inputs)
    available.update(t.index for t in tensors if t.is_constant or t.is_variable)
    newly_empty = {t.index for t in tensors if t.empty_without_buffer}
    newly_empty.update(i for i in inputs if _is_empty(tensors[i]) and tensors[i].shape != (0,))
    writers: dict[int, list[int]] = {}
    consumers: dict[int, list[int]] = {}
    last_use: dict[int, int] = {}
    notes: list[str] = []
    for op in sg.operators:
        for position, t in enumerate(op.inputs):
            if t < 0:
                continue
            tensor = tensors[t]
            if t not in available:
                if tensor.data_outside_flatbuffer:
                    # The file declares constants the pinned TFLM cannot see (the >2 GB layout): it is
                    # inconsistent for that runtime, which would run on uninitialised memory instead.
                    raise ModelError(f"{_here(sg, op, tensor)}: reads a tensor whose buffer "
                                     f"keeps the data outside the flatbuffer (Buffer.offset/size), which the "
                                     f"pinned TFLM does not read: TFLM would run the operator on uninitialised "
                                     f"arena memory in its place")
                if position in UNREAD_INPUTS.get(op.op_name, ()):
                    raise _undefined(sg, op, f"input {position} was written by nothing: TFLM's kernel never "
                                             f"reads it (its result is defined), but microref passes every input "
                                             f"to its kernel and has no value for this one", tensor)
                later = next((o.index for o in sg.operators[op.index + 1:] if t in o.outputs), None)
                if t in op.outputs:
                    why = "it is this operator's own output"
                elif later is not None:
                    why = f"it is written later, by operator {later}"
                else:
                    why = "no operator writes it and it is neither a graph input nor a constant"
                raise _undefined(sg, op, f"reads a tensor before anything wrote it ({why}): TFLM would read "
                                         f"arena memory nobody wrote, which has no defined value", tensor)
            constant_name = CONSTANT_INPUTS.get(op.op_name, {}).get(position)
            if constant_name is not None and tensor.empty_without_buffer:
                raise ModelError(f"{_here(sg, op, tensor)}: has no elements and no buffer, "
                                 f"so it is no constant in TFLM, whose Prepare refuses it: \"Non-constant "
                                 f">{constant_name}< tensor is not supported\"")
            if t in newly_empty and not runs_empty_inputs(op, tensors):
                raise _undefined(sg, op, f"reads a tensor of no elements (shape {list(tensor.shape)}); microref "
                                         f"runs those only on operators checked against TFLM on them "
                                         f"({', '.join(sorted(EMPTY_INPUT_OPERATORS))})", tensor)
            consumers.setdefault(t, []).append(op.index)
            last_use[t] = op.index
        if len(set(op.outputs)) != len(op.outputs):
            twice = next(t for t in op.outputs if op.outputs.count(t) > 1)
            raise _undefined(sg, op, "writes one tensor as two of its outputs: what it holds afterwards is "
                                     "whichever write TFLM's kernel makes last", tensors[twice])
        in_place = [t for t in op.outputs if t in op.inputs]
        if in_place and op.op_name not in IN_PLACE_OPERATORS:
            raise _undefined(sg, op, "reads and writes the same tensor (in place): TFLM's kernel then reads "
                                     "values it has already overwritten, in the order its loops run, which "
                                     "microref does not model (it runs in place only "
                                     "elementwise operators, checked against TFLM)", tensors[in_place[0]])
        for t in op.outputs:
            tensor = tensors[t]
            shape = tensor.shape
            # TFLM's CheckDynamicTensors: an output dim <= 0 is a dynamic tensor, except the legacy
            # scalar shape [0].
            if any(d <= 0 for d in shape) and shape != (0,):
                raise ModelError(f"{_here(sg, op, tensor)}: output shape {list(shape)} "
                                 "has a zero dimension; TFLM rejects it as a dynamic tensor")
            if tensor.is_constant and not tensor.is_variable:
                # (A variable's buffer in the file is not what TFLM runs on: AllocateVariables gives
                # every variable a persistent buffer of its own.)
                raise _undefined(sg, op, "writes a constant: TFLM would write into the model's own bytes (flash "
                                         "on a device), which the model's later invocations then read", tensor)
            if t in op.inputs:
                notes.append(f"{_here(sg, op, tensor)}: computed in place")
            elif t in writers:
                notes.append(f"{_here(sg, op, tensor)}: written again (first by operator {writers[t][0]}); "
                             f"readers after this one see the new value")
            elif t in inputs:
                notes.append(f"{_here(sg, op, tensor)}: overwrites a graph input")
            writers.setdefault(t, []).append(op.index)
            available.add(t)
    for t in sg.outputs:
        if t not in available:
            raise _undefined(sg, None, "is a graph output nothing writes: TFLM would return arena memory "
                                       "nobody wrote", tensors[t])
    producer = {t: ops[0] for t, ops in writers.items()}
    return GraphInfo(producer, consumers, last_use, writers, notes)


# Operators that invoke other subgraphs, and the options naming them (TFLM's AllocationInfoBuilder
# follows the same three when it plans the subgraphs' lifetimes).
SUBGRAPH_OPTIONS = {
    "IF": ("then_subgraph_index", "else_subgraph_index"),
    "WHILE": ("cond_subgraph_index", "body_subgraph_index"),
    "CALL_ONCE": ("init_subgraph_index",),
}


def subgraph_calls(op: Operator) -> list[tuple[str, int]]:
    """(option name, subgraph index) for every subgraph ``op`` invokes; [] for other operators.
    An absent options table reads as index 0, as TFLM's zero-initialised params do."""
    return [(name, int(op.options.get(name, 0))) for name in SUBGRAPH_OPTIONS.get(op.op_name, ())]


def check_dynamic_tensors(model: Model) -> None:
    """TFLM's CheckDynamicTensors, which PrepareSubgraphs runs after every operator's Prepare in
    every subgraph, reachable or not: an output with a dimension <= 0 (other than the legacy
    scalar shape [0]) is a dynamic tensor, and TFLM refuses the model."""
    for sg in model.subgraphs:
        for op in sg.operators:
            for t in op.outputs:
                shape = sg.tensors[t].shape
                if any(d <= 0 for d in shape) and shape != (0,):
                    raise ModelError(f"{_here(sg, op, sg.tensors[t])}: output shape {list(shape)} has a zero "
                                     f"dimension; TFLM rejects it as a dynamic tensor")


def check_subgraph_calls(model: Model) -> list[int]:
    """The subgraphs reachable from subgraph 0 through IF, WHILE and CALL_ONCE, in the order TFLM's
    planner first visits them (depth first, operators in order).

    Refused, each naming the operator: an output that is a dynamic tensor in any subgraph
    (``check_dynamic_tensors``), an index outside the model (TFLM's Prepare checks
    ``index < NumSubgraphs()`` only, so a negative one would make its planner read outside the
    subgraph vector) and a cycle of calls (TFLM's planner recurses into every called subgraph
    without a guard and overflows its stack; its interpreter would recurse for ever).
    """
    check_dynamic_tensors(model)  # in every subgraph, as TFLM's PrepareSubgraphs
    n = len(model.subgraphs)
    order: list[int] = []
    done: set[int] = set()

    def visit(s: int, path: list[tuple[int, Operator]]):
        order.append(s)
        for op in model.subgraphs[s].operators:
            for option, target in subgraph_calls(op):
                here = f"subgraph {s}, {where(op.index, op.display_name)}"
                if not 0 <= target < n:
                    raise ModelError(f"{here}: {option} {target} is not a subgraph (the model has {n})")
                on_path = [p for p, _ in path] + [s]
                if target in on_path:
                    chain = " -> ".join(map(str, on_path[on_path.index(target):] + [target]))
                    raise ModelError(f"{here}: {option} {target} calls a subgraph that is already running "
                                     f"(recursion {chain}); TFLM's planner and interpreter would recurse "
                                     f"without end")
                if target not in done:
                    visit(target, path + [(s, op)])
        done.add(s)

    visit(0, [])
    return order
