"""Streaming: many samples through a model with memory bounded by a chunk, not by their number.

``Interpreter.run_iter`` and ``Interpreter.run_batch(..., chunk_size=...)`` are built here.
A chunk is a run_batch of at most ``chunk_size`` samples: its intermediate tensors exist only
while it runs, so however many samples there are, at most one chunk of them is held (per
calling thread). Every sample is independent in run_batch (a stateful model starts each sample
from a freshly loaded model's state), so cutting a batch into chunks gives the same bytes as
running it whole.

Arrays larger than memory work as inputs: ``np.load("x.npy", mmap_mode="r")`` is read a chunk
at a time, and the pages of a read-only memory map that a chunk has been copied from are handed
back to the kernel (``release_pages``), so they do not pile up in the process's resident memory.
"""
from __future__ import annotations

import mmap
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from .interpreter import Interpreter

# Bytes of non-constant tensors (per sample, summed over the model's activations) one chunk may
# hold when the caller gives no chunk size. Kernel temporaries come on top: measured on
# person_detect, a chunk's peak is about 1x its activation bytes above the baseline.
CHUNK_ACTIVATION_BYTES = 64 << 20
MAX_DEFAULT_CHUNK = 1024  # samples; beyond this a chunk gains nothing, and progress comes in larger steps
_PAGE = mmap.PAGESIZE


def activation_bytes_per_sample(it: Interpreter) -> int:
    """Bytes of one sample's non-constant tensors in every subgraph the model runs."""
    total = 0
    for s in it.reachable:
        total += sum(t.nbytes for t in it.model.subgraphs[s].tensors if t.data is None and t.dtype is not None)
    return max(1, total)


def default_chunk_size(it: Interpreter) -> int:
    """Samples per chunk when none is given: as many as fit CHUNK_ACTIVATION_BYTES of activations,
    at least 1 and at most MAX_DEFAULT_CHUNK."""
    return int(max(1, min(MAX_DEFAULT_CHUNK, CHUNK_ACTIVATION_BYTES // activation_bytes_per_sample(it))))


def check_chunk_size(chunk_size, it: Interpreter | None = None) -> int:
    """``chunk_size`` as an int >= 1 (None: the model's default), else InputError."""
    if chunk_size is None:
        if it is None:
            raise InputError("a chunk size is needed")
        return default_chunk_size(it)
    if isinstance(chunk_size, (bool, np.bool_)) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise InputError(f"chunk_size must be a whole number >= 1, not {chunk_size!r}")
    return int(chunk_size)


def release_pages(a: np.ndarray, lo: int, hi: int) -> None:
    """Give back the resident pages behind samples lo..hi of ``a`` if ``a`` views a read-only
    memory map (np.load(..., mmap_mode="r"), np.memmap(mode="r")): the kernel drops them from this
    process (they stay in the page cache and are read again if touched). Anything else: no-op.

    Only whole pages inside the range are released, and only for read-only maps, where dropping
    a page loses nothing."""
    mm = getattr(a, "_mmap", None)
    if mm is None or getattr(a, "mode", None) != "r" or not hasattr(mm, "madvise") or a.ndim == 0:
        return
    if not a[lo:hi].flags.c_contiguous:
        return
    try:
        base = np.frombuffer(mm, np.uint8).ctypes.data
    except (ValueError, TypeError):  # a closed map
        return
    row = a.strides[0]
    start = a.ctypes.data - base + lo * row
    stop = start + (hi - lo) * row
    first = -(-start // _PAGE) * _PAGE  # whole pages only: a neighbour's bytes stay resident
    last = stop // _PAGE * _PAGE
    if 0 <= first < last <= len(mm):
        try:
            mm.madvise(mmap.MADV_DONTNEED, first, last - first)
        except (OSError, ValueError):  # advice is advice: a kernel that declines changes nothing
            pass


def as_array(v) -> np.ndarray:
    """``np.asarray(v)``, except that a memory map stays one (np.asarray would make it a plain view,
    whose pages could not be handed back)."""
    return v if isinstance(v, np.memmap) else np.asarray(v)


def take_chunk(arrays: list[np.ndarray], lo: int, hi: int) -> list[np.ndarray]:
    """Samples lo..hi of each array, copied into memory (a memory map's pages released after)."""
    chunk = [np.array(a[lo:hi]) for a in arrays]
    for a in arrays:
        release_pages(a, lo, hi)
    return chunk


def is_one_batch(it: Interpreter, inputs) -> bool:
    """Whether ``inputs`` are the inputs of one batch (an array, a list of arrays in model order,
    a dict by input name) rather than an iterable of batches."""
    if isinstance(inputs, (np.ndarray, Mapping)):
        return True
    if type(inputs) in (list, tuple):
        return len(inputs) == len(it.subgraph.inputs) and all(isinstance(v, np.ndarray) for v in inputs)
    return False


def batch_arrays(it: Interpreter, inputs) -> tuple[list[np.ndarray], int]:
    """The inputs of one batch as arrays in model order with their sample count, checked against
    the model (count, names, dtype, shape, equal sample counts) without reading their values:
    a memory map stays a memory map. The values (NaN in float inputs) are checked chunk by chunk
    as they run."""
    sg = it.subgraph
    names = [it.tensors[i].name for i in sg.inputs]
    if isinstance(inputs, Mapping):
        if sorted(inputs) != sorted(names) or len(set(names)) != len(names):
            it._gather_inputs(dict(inputs), batched=True)  # its message for unknown, missing, ambiguous names
            raise InputError(f"the inputs are given by names {sorted(inputs)}; the model's inputs are {names}")
        values = [inputs[n] for n in names]
    elif isinstance(inputs, np.ndarray):
        values = [inputs]
    elif isinstance(inputs, (list, tuple)):
        values = list(inputs)
    else:
        raise InputError(f"inputs must be a list of arrays or a dict by input name, not {type(inputs).__name__}")
    if any(isinstance(v, np.ma.MaskedArray) and np.ma.is_masked(v) for v in values):
        it._gather_inputs(values, batched=True)  # its message for masked values
    arrays = [as_array(v) for v in values]
    if len(arrays) == len(sg.inputs):
        # The shapes here, on whole arrays; everything else by run_batch's own checks on the first
        # sample (a float array's values are not read: NaN is found chunk by chunk as it runs).
        for k, (ti, a) in enumerate(zip(sg.inputs, arrays)):
            t = it.tensors[ti]
            want = tuple(t.shape)
            if a.dtype == t.dtype and (a.ndim != len(want) + 1 or tuple(a.shape[1:]) != want):
                raise InputError(f'input {k} "{t.name}" must have shape (N, {", ".join(map(str, want))}) for '
                                 f"run_batch, got {tuple(a.shape)}")
    it._gather_inputs([a[:1] if a.ndim else a for a in arrays], batched=True)
    if not arrays:
        return arrays, 1
    n = arrays[0].shape[0]
    for k, a in enumerate(arrays[1:], 1):
        if a.shape[0] != n:
            raise InputError(f'input {k} "{names[k]}" has {a.shape[0]} samples, input 0 has {n}')
    return arrays, int(n)


def run_iter(it: Interpreter, batches, *, chunk_size: int | None = None,
             threads: int | None = None) -> Iterator[list[np.ndarray]]:
    """See ``Interpreter.run_iter``. Checks what it can before returning the iterator: the inputs
    of one batch completely (shape, dtype), and the chunk size."""
    size = check_chunk_size(chunk_size, it)
    if is_one_batch(it, batches):
        arrays, n = batch_arrays(it, batches)
        return _chunks_of_batch(it, arrays, n, size, threads)
    if isinstance(batches, (str, bytes)) or not isinstance(batches, Iterable):
        raise InputError(f"run_iter takes an iterable of input batches, or the inputs of one batch (an array, a "
                         f"list of arrays, a dict by input name), not {type(batches).__name__}")
    return _chunks_of_batches(it, iter(batches), size, threads)


def _chunks_of_batch(it, arrays, n, size, threads):
    if not arrays:  # a model without inputs runs once
        yield it.run_batch([], threads=threads)
        return
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        yield it.run_batch(take_chunk(arrays, lo, hi), threads=threads)


def _chunks_of_batches(it, batches, size, threads):
    for number, batch in enumerate(batches):
        try:
            arrays, n = batch_arrays(it, batch)
        except InputError as e:
            raise type(e)(f"batch {number}: {e}") from None
        if n <= size or not arrays:
            yield it.run_batch([np.asarray(a) for a in arrays], threads=threads)
            continue
        yield run_batch_chunked(it, arrays, size, threads=threads, checked=(arrays, n))


def run_batch_chunked(it: Interpreter, inputs, chunk_size, *, keep: bool = False, threads: int | None = None,
                      checked: tuple[list[np.ndarray], int] | None = None) -> list[np.ndarray]:
    """See ``Interpreter.run_batch``'s ``chunk_size``: the outputs of every sample, computed a chunk
    at a time."""
    size = check_chunk_size(chunk_size, it)
    if keep:
        raise InputError("run_batch(keep=True) keeps every intermediate tensor of every sample, which chunk_size "
                         "is there to avoid: keep=True takes a batch without chunk_size")
    arrays, n = checked if checked is not None else batch_arrays(it, inputs)
    if n <= size or not arrays:
        return it.run_batch(arrays, threads=threads)
    outputs: list[np.ndarray] | None = None
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        outs = it.run_batch(take_chunk(arrays, lo, hi), threads=threads)
        if outputs is None:
            outputs = [np.empty((n,) + o.shape[1:], o.dtype) for o in outs]
        for whole, part in zip(outputs, outs):
            whole[lo:hi] = part
    assert outputs is not None
    # tensor() after the call: every sample's outputs (copies, as run_batch keeps them), and the
    # inputs as read-only views of the caller's arrays: they may be larger than memory.
    io = {}
    for ti, a in zip(it.subgraph.inputs, arrays):
        view = a.view()
        view.flags.writeable = False
        io[ti] = view
    io.update((ti, np.array(o)) for ti, o in zip(it.subgraph.outputs, outputs))
    it._io = io
    return outputs
