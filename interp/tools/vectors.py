"""Test vectors for a kernel porter: inputs and the outputs TFLM computes, as .npz and C headers.

Key names (the same in ``microref run --output`` and ``microref vectors``):

* ``input_<i>`` / ``output_<j>``: the model's i-th input and j-th output, by position (the order
  of ``Interpreter.input_details`` / ``output_details``). ``vectors`` gives them a leading sample
  axis, ``(N,) + shape``; ``run --output`` holds the one sample run, of the tensor's own shape.
* ``<key>_scale`` (float32) and ``<key>_zero_point`` (int32): the tensor's quantization, one value
  (or one per channel); absent for unquantized tensors.
* ``vectors --per-op``, one .npz and one header per operator ``op<NNN>_<OP>``: ``input_<i>`` for
  every input position of the operator (activations with the sample axis, constants such as
  weights and bias as stored in the model, without it), ``output_<j>``, the quantization keys for
  each, and ``param_<name>`` for every prepared parameter of the kernel (offsets, multipliers,
  shifts, activation bounds, strides, padding...; nested parameters joined by ``_``).

In a C header every array is ``<model>_<key>`` with a braced initializer of its full shape, and
every tensor has ``<MODEL>_<KEY>_SCALE``, ``_ZERO_POINT`` (per tensor) or ``<model>_<key>_scale[]``
and ``_zero_point[]`` (per channel), ``_RANK`` and ``<model>_<key>_shape[]``. The headers compile
with ``gcc -Wall -Wextra -Werror``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..model import verify
from ..runtime.inputs import random_inputs
from .compare import describe_kernel
from .compare_float import as_samples_of

DEFAULT_COUNT = 4
# vectors --input: at most this many samples are read from a file (an .npz member that would
# decompress to more is refused as a zip bomb; several runs with other files give more).
MAX_FILE_SAMPLES = 1024
VALUES_PER_LINE = 16
LINE_CHARS = 96  # values per line: at most 16, and at most this many characters

C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "uint16": "uint16_t", "int32": "int32_t",
           "uint32": "uint32_t", "int64": "int64_t", "uint64": "uint64_t", "float32": "float", "float64": "double",
           "bool": "bool"}


# ----------------------------------------------------------------------------- inputs

def vector_fit(it) -> int:
    """How many samples run_batch can hold within the memory budget."""
    estimate = verify.memory_estimate(it.model)
    return max(1, (verify.MAX_MEMORY_BYTES - estimate.file_bytes - estimate.work_bytes)
               // max(estimate.activation_bytes, 1))


def check_vector_count(it, count: int) -> None:
    """--count samples go through run_batch at once: refuse more than the memory budget holds."""
    from .cli_io import UsageError
    estimate = verify.memory_estimate(it.model)
    need = estimate.file_bytes + estimate.work_bytes + count * max(estimate.activation_bytes, 1)
    if need > verify.MAX_MEMORY_BYTES:
        fit = max(0, (verify.MAX_MEMORY_BYTES - estimate.file_bytes - estimate.work_bytes)
                  // max(estimate.activation_bytes, 1))
        raise UsageError(f"--count {count:,}: that many samples need an estimated {need:,} bytes, more than the "
                         f"memory budget of {verify.MAX_MEMORY_BYTES:,} (at most {fit:,} samples fit; run vectors "
                         f"several times with different --seed values for more)")


def random_samples(it, count: int | None, seed: int) -> tuple[list[np.ndarray], str]:
    """``count`` (default 4) seeded random samples over each input's full range, with a leading
    sample axis, and a sentence saying so."""
    n = DEFAULT_COUNT if count is None else count
    if n < 1:
        raise InputError(f"--count must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    samples = [random_inputs(it, rng) for _ in range(n)]
    batched = [np.stack([s[i] for s in samples]) for i in range(len(it.input_details))]
    return batched, f"{n} seeded random sample{'s' if n != 1 else ''} (seed {seed}) over each input's full range"


def arrays_for_inputs(it, arrays: dict[str, np.ndarray], label: str) -> list[np.ndarray]:
    """An .npz's arrays in input order: by input name, else by ``input_<i>`` (the keys ``run
    --output`` and ``vectors`` write), else the keys in sorted order when there are just enough."""
    names = [d["name"] for d in it.input_details]
    for keys in (names, [f"input_{i}" for i in range(len(names))]):
        if all(k in arrays for k in keys):
            return [arrays[k] for k in keys]
    keys = sorted(arrays)
    if len(keys) != len(names):
        raise InputError(f"{label} holds {len(keys)} arrays {keys}; the model has {len(names)} input(s) {names}: "
                         f"name them by input name or input_<i>")
    return [arrays[k] for k in keys]


def samples_from_arrays(it, arrays: list[np.ndarray], count: int | None, label: str) -> tuple[list[np.ndarray], str]:
    """One array per model input: an array of the input's shape is one sample, ``(N,) + shape``
    (or N rows in place of a batch of 1) is N samples. ``count`` larger than the arrays hold is an
    InputError (never silently fewer vectors); smaller takes the first ``count``."""
    if len(arrays) != len(it.input_details):
        raise InputError(f"{len(arrays)} input array(s) for a model of {len(it.input_details)} input(s)")
    batched = []
    for i, (d, a) in enumerate(zip(it.input_details, arrays)):
        a = np.asarray(a)
        shape = tuple(int(x) for x in d["shape"])
        samples = as_samples_of(a, shape)
        if samples is None:
            raise InputError(f'input {i} "{d["name"]}": {label} holds shape {list(a.shape)}; the input takes '
                             f"{list(shape)}, or N samples of it as [N, {', '.join(map(str, shape))}]")
        batched.append(samples)
    counts = [a.shape[0] for a in batched]
    if len(set(counts)) > 1:
        raise InputError(f"{label}: the inputs hold different numbers of samples: {counts}")
    held = counts[0] if counts else 1
    if count is not None and count < 1:
        raise InputError(f"--count must be at least 1, got {count}")
    if count is not None and count > held:
        raise InputError(f"--count {count}, but the inputs given hold {held} sample{'s' if held != 1 else ''} "
                         f"({label}): put N samples in one array of shape [N, …], or drop --count")
    n = held if count is None else count
    batched = [a[:n] for a in batched]
    return batched, f"{n} sample{'s' if n != 1 else ''} from {label}" + (
        f" (the first {n} of {held})" if n < held else "")


def load_samples(it, paths: list[str] | None, count: int | None, seed: int) -> tuple[list[np.ndarray], str]:
    """The inputs as arrays with a leading sample axis, and a sentence saying where they come from:
    ``random_samples`` without ``paths``; else one .npy per model input, or one .npz (see
    ``arrays_for_inputs``), read with ``samples_from_arrays``."""
    if not paths:
        return random_samples(it, count, seed)
    label = ", ".join(paths)
    try:
        if len(paths) == 1 and paths[0].endswith(".npz"):
            with np.load(paths[0], allow_pickle=False) as z:
                arrays = arrays_for_inputs(it, {k: z[k] for k in z.files}, paths[0])
        else:
            arrays = [np.load(p, allow_pickle=False) for p in paths]
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the input file(s) {paths}: {e}") from None
    return samples_from_arrays(it, arrays, count, label)


def op_stem(op) -> str:
    """The per-op file name without extension; a custom operator's code cannot name another directory."""
    return f"op{op.index:03d}_" + c_identifier(op.display_name)[:80]


# ----------------------------------------------------------------------------- payloads

def quantization_keys(key: str, t) -> dict[str, np.ndarray]:
    """``<key>_scale`` and ``<key>_zero_point`` for a quantized tensor ({} otherwise)."""
    q = t.quantization
    if q is None:
        return {}
    scales = np.asarray(q.scales, np.float32).reshape(-1)
    zps = np.asarray(q.zero_points, np.int64).reshape(-1)
    if zps.size != scales.size:
        zps = np.full(scales.size, q.zero_point, np.int64)
    return {f"{key}_scale": scales, f"{key}_zero_point": zps.astype(np.int32)}


def io_payload(it, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The model's inputs and outputs under the documented keys, with their quantization."""
    payload = {}
    for prefix, indices, values in (("input", it.subgraph.inputs, inputs), ("output", it.subgraph.outputs, outputs)):
        for k, (ti, v) in enumerate(zip(indices, values)):
            key = f"{prefix}_{k}"
            payload[key] = np.asarray(v)
            payload.update(quantization_keys(key, it.tensors[ti]))
    return payload


def _flat_params(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_params(v, name + "_"))
        else:
            out[name] = v
    return out


def param_arrays(kernel) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The kernel's prepared parameters: numbers as ``param_<name>`` arrays; text kept apart."""
    arrays, text = {}, {}
    for name, v in _flat_params(describe_kernel(kernel)).items():
        key = "param_" + c_identifier(name)
        if isinstance(v, str) or v is None:
            text[key] = str(v)
            continue
        a = np.asarray(v)
        if a.dtype == object or a.dtype.kind not in "biuf":
            text[key] = str(v)
            continue
        if a.dtype.kind == "i":
            a = a.astype(np.int64)
            if a.size and np.iinfo(np.int32).min <= a.min() and a.max() <= np.iinfo(np.int32).max:
                a = a.astype(np.int32)
        arrays[key] = a
    return arrays, text


# ----------------------------------------------------------------------------- C

def c_identifier(text: str) -> str:
    ident = "".join(c if c.isalnum() or c == "_" else "_" for c in text)
    return ident if ident and not ident[0].isdigit() else "m_" + ident


def _c_literal(v, dtype: np.dtype) -> str:
    kind, bits = dtype.kind, dtype.itemsize * 8
    if kind == "b":
        return "true" if v else "false"
    if kind == "f":
        f = float(v)
        suffix = "f" if dtype == np.float32 else ""
        if math.isnan(f):
            return "NAN"
        if math.isinf(f):
            return "INFINITY" if f > 0 else "-INFINITY"
        return repr(f) + suffix
    i = int(v)
    if kind == "u":
        return f"{i}u" + ("LL" if bits == 64 else "")
    if bits == 64:
        return "(-9223372036854775807LL - 1)" if i == -(1 << 63) else f"{i}LL"
    if bits == 32 and i == -(1 << 31):
        return "(-2147483647 - 1)"
    return str(i)


def _c_body(a: np.ndarray, indent: str, on_row=None) -> str:
    if a.ndim == 1:
        chunks, line = [], []
        for v in (_c_literal(v, a.dtype) for v in a):
            if line and (len(line) >= VALUES_PER_LINE or sum(len(x) + 2 for x in line) + len(v) > LINE_CHARS):
                chunks.append(", ".join(line))
                line = []
            line.append(v)
        if line:
            chunks.append(", ".join(line))
        if len(chunks) <= 1:
            return "{" + (chunks[0] if chunks else "0") + "}"
        return "{\n" + ",\n".join(indent + "  " + c for c in chunks) + "\n" + indent + "}"
    inner = []
    for sub in a:
        inner.append(indent + "  " + _c_body(sub, indent + "  "))
        if on_row is not None:
            on_row()
    return "{\n" + ",\n".join(inner) + "\n" + indent + "}"


def c_array(name: str, a: np.ndarray, on_row=None) -> str:
    """``static const T name[d0][d1]… = {{…}, …};`` with braces for every dimension, 16 values a line.
    ``on_row()`` is called after each row of the first axis (a sample of a vectors array) is written."""
    a = np.asarray(a)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.size == 0:
        return f"/* {name}: empty ({list(a.shape)}) */\n"
    ctype = C_TYPES[a.dtype.name]
    dims = "".join(f"[{d}]" for d in a.shape)
    head = f"static const {ctype} {name}{dims} = "
    body = _c_body(a, "", on_row if a.ndim > 1 else None)
    if "\n" not in body and len(head) + len(body) > LINE_CHARS + 24:
        body = "{\n  " + body[1:-1] + "\n}"  # a long name: the values on their own line
    return f"{head}{body};\n"


def _c_tensor(ident: str, key: str, a: np.ndarray, t, note: str, on_row=None) -> list[str]:
    """A tensor's array and its constants (shape, rank, size, scale, zero point)."""
    name, macro = f"{ident}_{key}", f"{ident}_{key}".upper()
    out = [f"\n/* {key}: {note} */\n"]
    shape = list(t.shape) if t is not None else list(a.shape)
    out.append(f"#define {macro}_RANK {len(shape)}\n")
    out.append(f"#define {macro}_SIZE {int(np.prod(shape)) if shape else 1}\n")
    if shape:
        out.append(c_array(f"{name}_shape", np.asarray(shape, np.int32)))
    q = t.quantization if t is not None else None
    if q is not None:
        scales = np.asarray(q.scales, np.float32).reshape(-1)
        zps = np.asarray(q.zero_points).reshape(-1)
        if zps.size != scales.size:
            zps = np.full(scales.size, q.zero_point)
        if scales.size == 1:
            out.append(f"#define {macro}_SCALE {_c_literal(scales[0], np.dtype(np.float32))}\n")
            out.append(f"#define {macro}_ZERO_POINT ({q.zero_point})\n")
        else:
            out.append(f"#define {macro}_QUANTIZED_DIMENSION {q.quantized_dimension}\n")
            out.append(c_array(f"{name}_scale", scales))
            out.append(c_array(f"{name}_zero_point", zps.astype(np.int32)))
    out.append(c_array(name, a, on_row))
    return out


def c_header(ident: str, guard: str, comment: list[str], tensors: list[tuple[str, np.ndarray, object, str]],
             defines: dict[str, int] | None = None, params: dict[str, np.ndarray] | None = None,
             text_params: dict[str, str] | None = None, on_row=None) -> str:
    """A header: tensors (key, array, Tensor or None, note), integer #defines, parameter arrays.
    ``on_row()`` after each row of a tensor's first axis (see ``c_array``)."""
    lines = ["/* " + comment[0]] + [" * " + c for c in comment[1:]] + [" */\n"]
    lines = ["\n".join(lines)]
    lines.append(f"#ifndef {guard}\n#define {guard}\n\n#include <stdbool.h>\n#include <stdint.h>\n")
    arrays = [a for _, a, _, _ in tensors] + list((params or {}).values())
    if any(np.asarray(a).dtype.kind == "f" and not np.all(np.isfinite(a)) for a in arrays):
        lines.append("#include <math.h>\n")
    for name, value in (defines or {}).items():
        lines.append(f"#define {ident.upper()}_{name} {value}\n")
    for key, a, t, note in tensors:
        lines += _c_tensor(ident, key, a, t, note, on_row)
    if params:
        lines.append("\n/* prepared parameters of the kernel */\n")
        for key, a in params.items():
            a = np.asarray(a)
            if a.ndim == 0:
                lines.append(f"#define {ident.upper()}_{key.upper()} ({_c_literal(a, a.dtype)})\n")
            else:
                lines.append(c_array(f"{ident}_{key}", a))
    for key, v in (text_params or {}).items():
        lines.append(f"/* {key} = {v.replace('*/', '* /')} */\n")
    lines.append(f"\n#endif  /* {guard} */\n")
    return "".join(lines)


# ----------------------------------------------------------------------------- the command's work

@dataclass
class VectorsResult:
    written: list[str]
    samples: int
    data_bytes: int                  # bytes of the header's arrays (what they take in flash)
    warnings: list[str] = field(default_factory=list)


def _note(t, with_samples: int | None) -> str:
    q = t.quantization
    quant = "" if q is None else (f", scale {float(q.scale):.6g}, zero point {q.zero_point}" if not q.per_channel
                                  else f", per-channel quantization ({q.scales.size} scales)")
    samples = f"{with_samples} samples of " if with_samples is not None else ""
    return f'tensor {t.index} "{t.name.replace("*/", "* /")}": {samples}{t.type_name}{list(t.shape)}{quant}'


PROGRESS_STEPS = 50  # with a progress bar, the samples run in about this many chunks


def _run_samples(it, inputs: list[np.ndarray], n: int, keep: bool, progress) -> list[np.ndarray]:
    """run_batch over the samples; with a progress bar shown (and not ``keep``), a chunk at a time
    (the same bytes: run_iter is run_batch's chunks) so that the bar moves."""
    if progress is None or not getattr(progress, "enabled", True) or keep or not inputs or n < 2:
        outs = it.run_batch(inputs, keep=keep)
        if progress is not None:
            progress(n, n)
        return outs
    from ..runtime.streaming import default_chunk_size
    size = max(1, min(default_chunk_size(it), math.ceil(n / PROGRESS_STEPS)))
    parts, done = [], 0
    for outs in it.run_iter(inputs, chunk_size=size):
        parts.append(outs)
        done += len(outs[0]) if outs else size
        progress(min(done, n), n)
    return [np.concatenate(chunks) for chunks in zip(*parts)]


def write_vectors(it, inputs: list[np.ndarray], out_dir: str, base: str, *, per_op: bool = False,
                  flash_budget: int | None = None, model_bytes: int = 0, source: str = "",
                  progress=None) -> VectorsResult:
    """Run ``inputs`` (leading sample axis) and write ``<base>_vectors.npz`` and ``.h`` (and per op
    files with ``per_op``) into ``out_dir``. ``progress(done, total)``: samples run; when it has a
    ``phase(label, unit)`` method (``interp.tools.progress.Progress``), the C header's rows are
    counted on the bar it returns."""
    os.makedirs(out_dir, exist_ok=True)
    ident = c_identifier(base)
    n = int(inputs[0].shape[0]) if inputs else 1
    outs = _run_samples(it, inputs, n, per_op, progress)
    payload = io_payload(it, inputs, outs)
    npz = os.path.join(out_dir, f"{base}_vectors.npz")
    np.savez(npz, **payload)
    sg = it.subgraph
    tensors = [(f"input_{k}", np.asarray(x), it.tensors[ti], _note(it.tensors[ti], n))
               for k, (ti, x) in enumerate(zip(sg.inputs, inputs))]
    tensors += [(f"output_{k}", np.asarray(y), it.tensors[ti], _note(it.tensors[ti], n))
                for k, (ti, y) in enumerate(zip(sg.outputs, outs))]
    data_bytes = sum(a.nbytes for _, a, _, _ in tensors)
    comment = [f"Test vectors for {base}: {n} sample(s),", f"{source or 'given inputs'}.",
               "Expected outputs are TFLM reference-kernel results as computed by microref (bit-exact with",
               "tflite-micro==0.dev20261023182759). Arrays: [sample][tensor dims...]; keys as in the .npz.",
               f"The arrays take {data_bytes:,} bytes of flash."]
    header = os.path.join(out_dir, f"{base}_vectors.h")
    bar = progress.phase("vectors: C header", "row") if hasattr(progress, "phase") else None
    rows = [0]
    total_rows = sum(int(a.shape[0]) for _, a, _, _ in tensors if a.ndim > 1)

    def on_row():
        rows[0] += 1
        bar(rows[0], total_rows)
    try:
        text = c_header(ident, f"MICROREF_{ident.upper()}_VECTORS_H", comment, tensors, {"NUM_VECTORS": n},
                        on_row=on_row if bar is not None and bar.enabled else None)
    finally:
        if bar is not None:
            bar.close()
    with open(header, "w") as f:
        f.write(text)
    result = VectorsResult([npz, header], n, data_bytes)
    if flash_budget is not None:
        total = data_bytes + model_bytes
        if total > flash_budget:
            result.warnings.append(
                f"warning: the vectors' arrays take {data_bytes:,} bytes; with the model ({model_bytes:,} bytes) that "
                f"is {total:,} bytes, over the flash budget of {flash_budget:,} bytes (--flash-budget): fewer "
                f"samples (--count) or the .npz on the host instead")
    if per_op:
        opdir = os.path.join(out_dir, f"{base}_ops")
        os.makedirs(opdir, exist_ok=True)
        for op, kernel in zip(sg.operators, it.kernels):
            stem = op_stem(op)
            vec, c_tensors = {}, []
            for prefix, indices in (("input", op.inputs), ("output", op.outputs)):
                for k, ti in enumerate(indices):
                    if ti < 0:
                        continue
                    t = it.tensors[ti]
                    key = f"{prefix}_{k}"
                    constant = t.data is not None
                    value = np.asarray(t.data if constant else it.tensor(ti))
                    vec[key] = value
                    vec.update(quantization_keys(key, t))
                    c_tensors.append((key, value, t, _note(t, None if constant else n)
                                      + (" (constant, from the model)" if constant else "")))
            params, text = param_arrays(kernel)
            vec.update(params)
            np.savez(os.path.join(opdir, stem + ".npz"), **vec)
            op_ident = c_identifier(f"{ident}_{stem}")
            op_comment = [f"Operator {op.index} ({op.display_name}) of {base}: its inputs (weights and bias",
                          "included), expected outputs and the kernel's prepared parameters."]
            with open(os.path.join(opdir, stem + ".h"), "w") as f:
                f.write(c_header(op_ident, f"MICROREF_{op_ident.upper()}_H", op_comment, c_tensors,
                                 {"NUM_VECTORS": n}, params, text))
        result.written.append(opdir + os.sep)
    return result
