"""Datasets for a model: where the samples come from, checked against the model before any work.

``open_data(data, it)`` takes

* a path to an ``.npy`` file (memory-mapped) or an ``.npz`` file (members stored uncompressed,
  as ``np.savez`` writes them, are memory-mapped; compressed ones are decompressed a chunk at a
  time), whose first axis is samples, each shaped like the model input with or without its
  leading 1. An ``.npz`` gives the inputs by input name, or else in the order of its keys; a
  member named ``labels`` (or ``label``, ``y``) holds the labels;
* a path to a folder of images (needs Pillow: ``pip install 'microref[images]'``): every file
  whose extension Pillow reads, in sorted order; class subfolders give the labels (the classes
  are the subfolders' names in sorted order). See ``image_to_real`` for the exact preprocessing;
* arrays (one per input, first axis samples; memory maps welcome), a list of them, a dict by
  input name;
* any other iterable of batches (a generator: each batch an array, a list of arrays or a dict,
  first axis samples), checked as the batches come.

Each input's data is either the model's own integers (same dtype as the input: used as they
are) or real values (float: quantized as TFLM's QUANTIZE does with the input's scale and zero
point, ``interp.quantize``). Anything else is an ``InputError`` naming what was expected, raised
before the first sample runs: wrong shapes or dtypes, integers of another type, NaN or infinity,
real values mostly outside what the input's quantization can represent, labels of another length
or outside the classes, unreadable image files (named).
"""
from __future__ import annotations

import math
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, MicrorefError, printable
from ..quantization import dequantize, quantize
from ..runtime.streaming import as_array, release_pages

LABEL_KEYS = ("labels", "label", "y")
# Real values for a quantized input: when more than this fraction of the first chunk's values lie
# more than one step outside the range the input's integers represent, the data is refused as
# scaled for another model (e.g. 0..255 pixels for an input covering -1..1).
SATURATION_LIMIT = 0.5
MAX_NAMED = 10  # unreadable image files named in one error


class MissingPackage(MicrorefError):
    """An optional package is not installed: Pillow for image folders (``microref[images]``),
    Ray for ``engine="ray"`` (``microref[ray]``), LiteRT for ``against="litert"``."""


@dataclass
class Dataset:
    """Samples for one model, checked against it.

    ``n``: how many (None for a generator whose length is unknown); ``kinds``: per model input,
    ``"quantized"`` (the input's own integers) or ``"real"`` (values to quantize); ``labels``:
    from the data itself (class folders, an .npz's ``labels``) or None; ``classes``: class names
    of an image folder; ``files``: an image folder's files in sample order.
    """

    n: int | None
    kinds: list[str]
    description: str
    labels: np.ndarray | None = None
    classes: list[str] | None = None
    files: list[str] | None = None
    ignored: list[str] = field(default_factory=list)  # files of an image folder that are not images
    image_range: tuple[float, float] | None = None  # an image folder's pixel 0..255 -> real mapping
    _chunks: Callable[[int], Iterator[list[np.ndarray]]] | None = field(default=None, repr=False)

    def chunks(self, size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
        """(first sample index, one array per input of the samples in memory), in order."""
        start = 0
        for arrays in self._chunks(size):
            yield start, arrays
            start += len(arrays[0]) if arrays else 1


# ----------------------------------------------------------------------------- checking

def _input_label(it, k: int) -> str:
    return f'input {k} "{printable(it.tensors[it.subgraph.inputs[k]].name)}"'


def sample_view(a: np.ndarray, it, k: int, what: str) -> np.ndarray:
    """``a`` (first axis samples) as (N,) + the input's shape: samples shaped like the input, or like
    it without its leading 1. A view, never a copy."""
    want = tuple(int(s) for s in it.tensors[it.subgraph.inputs[k]].shape)
    got = tuple(a.shape[1:]) if a.ndim else None
    if got == want:
        return a
    if want and want[0] == 1 and got == want[1:]:
        return a.reshape((a.shape[0],) + want)
    options = f"(N, {', '.join(map(str, want))})"
    if want and want[0] == 1:
        options += f" or (N, {', '.join(map(str, want[1:]))})" if len(want) > 1 else " or (N,)"
    raise InputError(f"{what} for {_input_label(it, k)} has shape {tuple(a.shape)}; samples go along the first "
                     f"axis, so it must be {options}")


def data_kind(a: np.ndarray, it, k: int, what: str) -> str:
    """'quantized' when ``a`` holds the input's own integers, 'real' for float values; else InputError."""
    t = it.tensors[it.subgraph.inputs[k]]
    if a.dtype == t.dtype:
        return "quantized" if t.dtype.kind != "f" else "real"
    if a.dtype.kind == "f" and a.dtype.itemsize <= 8:
        if t.dtype.kind == "f" or t.quantization is not None:
            return "real"
        raise InputError(f"{what} holds real values ({a.dtype}) but {_input_label(it, k)} is {t.dtype} without "
                         f"quantization parameters: give its {t.dtype} values")
    hint = (f"give the {t.dtype} values the model takes, or real values as float32 (quantized with the input's "
            f"scale {float(t.quantization.scale):.6g} and zero point {int(t.quantization.zero_point)})"
            if t.quantization is not None and t.dtype.kind != "f" else f"give {t.dtype} values")
    raise InputError(f"{what} is {a.dtype} but {_input_label(it, k)} is {t.dtype}: {hint}")


def represented_range(t) -> tuple[float, float] | None:
    """The real values a quantized integer tensor's values stand for: scale * (q - zero point) over
    the type's range; None for float or unquantized tensors."""
    if t.dtype.kind == "f" or t.quantization is None or t.quantization.per_channel:
        return None
    info = np.iinfo(t.dtype)
    scale, zp = float(t.quantization.scale), int(t.quantization.zero_point)
    return scale * (info.min - zp), scale * (info.max - zp)


def check_values(arrays: list[np.ndarray], kinds: list[str], it, start: int, what: str,
                 check_range: bool) -> None:
    """NaN/infinity in real values (naming the first sample), and real values mostly outside what a
    quantized input represents (``check_range``)."""
    for k, (a, kind) in enumerate(zip(arrays, kinds)):
        if kind != "real" or a.dtype.kind != "f":
            continue
        bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
        if bad.any():
            raise InputError(f"{what}: sample {start + int(np.argmax(bad))} of {_input_label(it, k)} holds NaN or "
                             f"infinity")
        t = it.tensors[it.subgraph.inputs[k]]
        span = represented_range(t)
        if check_range and span is not None and a.size:
            step = float(t.quantization.scale)
            outside = np.count_nonzero((a < span[0] - step) | (a > span[1] + step))
            if outside > SATURATION_LIMIT * a.size:
                raise InputError(
                    f"{what}: {outside / a.size:.0%} of the real values for {_input_label(it, k)} (range "
                    f"{float(a.min()):.4g}..{float(a.max()):.4g}) lie outside {span[0]:.4g}..{span[1]:.4g}, what its "
                    f"{t.dtype} values with scale {step:.6g} and zero point {int(t.quantization.zero_point)} "
                    f"represent: the data looks scaled for another model (rescale it, or give the quantized "
                    f"{t.dtype} values; check_range=False / --no-range-check to quantize it anyway)")


def to_model_inputs(arrays: list[np.ndarray], kinds: list[str], it,
                    data_quantization: list | None = None) -> list[np.ndarray]:
    """A chunk as the model's inputs: quantized data as it is, real values quantized (TFLM's
    QUANTIZE) for an integer input or converted to a float input's dtype. ``data_quantization``
    (per input, details or None) dequantizes integer data for a float input — how the float model
    of an int8/float pair sees the int8 model's data."""
    out = []
    for k, (a, kind) in enumerate(zip(arrays, kinds)):
        t = it.tensors[it.subgraph.inputs[k]]
        if t.dtype.kind == "f":
            if kind == "quantized":
                q = data_quantization[k] if data_quantization else None
                if q is None:
                    raise InputError(f"integer data for the float {_input_label(it, k)}, with no quantization to "
                                     f"read it by")
                a = dequantize(a, q)
            out.append(np.ascontiguousarray(a, dtype=t.dtype))
        elif kind == "real":
            try:
                out.append(quantize(a, t))
            except ValueError as e:
                raise InputError(f"real values for {_input_label(it, k)} cannot be quantized: {e}") from None
        else:
            out.append(np.ascontiguousarray(a))
    return out


def read_labels(source, n: int | None, what: str = "labels") -> np.ndarray:
    """Labels as int64: a path (.npy; .npz with one array or a ``labels`` member; a text file with one
    integer per line), or an array. Their number must be ``n``."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        _check_regular(path, "labels file")
        try:
            if path.endswith(".npy"):
                values = np.load(path, allow_pickle=False)
            elif path.endswith(".npz"):
                with np.load(path, allow_pickle=False) as z:
                    key = next((k for k in LABEL_KEYS if k in z.files), None)
                    if key is None and len(z.files) == 1:
                        key = z.files[0]
                    if key is None:
                        raise InputError(f"labels file {printable(path)!r} holds {sorted(z.files)}; name the labels "
                                         f"array 'labels'")
                    values = z[key]
            else:
                with open(path, encoding="utf-8") as f:
                    lines = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
                values = np.array([int(line.split(",")[0]) for line in lines], np.int64)
        except InputError:
            raise
        except (OSError, ValueError, UnicodeDecodeError, zipfile.BadZipFile) as e:
            raise InputError(f"cannot read labels file {printable(path)!r}: {e}") from None
        what = f"labels file {printable(path)!r}"
    else:
        values = np.asarray(source)
    values = np.asarray(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise InputError(f"{what}: labels must be one integer per sample (shape (N,)), got shape {values.shape}")
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise InputError(f"{what}: labels must be whole numbers (class indices), got {values.dtype} values "
                             f"with fractions, NaN or infinity")
    elif values.dtype.kind not in "iu":
        raise InputError(f"{what}: labels must be integers (class indices), not {values.dtype}")
    values = values.astype(np.int64)
    if n is not None and len(values) != n:
        raise InputError(f"{what}: {len(values):,} labels for {n:,} samples")
    return values


# ----------------------------------------------------------------------------- files

def _check_regular(path: str, what: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as e:
        raise InputError(f"cannot read {what} {printable(path)!r}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"cannot read {what} {printable(path)!r}: not a regular file")
    return st


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not one microref reads")
    if dtype.hasobject:
        raise ValueError("it holds Python objects (pickled data), which microref does not load")
    return tuple(int(s) for s in shape), bool(fortran), dtype


def map_npy(path: str, offset: int = 0, what: str | None = None) -> np.ndarray:
    """The .npy array at byte ``offset`` of ``path``, memory-mapped read-only."""
    what = what or f"data file {printable(path)!r}"
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            shape, fortran, dtype = _npy_header(f)
            data_offset = f.tell()
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype)
        return np.memmap(path, dtype=dtype, mode="r", offset=data_offset, shape=shape, order="F" if fortran else "C")
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"cannot read {what}: {e}") from None


def _stored_member_offset(path: str, info: zipfile.ZipInfo) -> int:
    """Where an uncompressed zip member's bytes start in the file (after its local header)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise ValueError(f"bad local header for {info.filename!r}")
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len


class _StreamedMember:
    """A compressed .npz member read front to back, a chunk of samples at a time."""

    def __init__(self, path: str, name: str, what: str):
        self.path, self.name, self.what = path, name, what
        with zipfile.ZipFile(path) as z, z.open(name) as f:
            self.shape, fortran, self.dtype = _npy_header(f)
        if fortran and len(self.shape) > 1:
            raise InputError(f"{what}: a compressed Fortran-ordered array cannot be read a sample at a time; "
                             f"save it C-ordered or uncompressed (np.savez)")
        self.ndim = len(self.shape)

    def sample_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        row = self.sample_bytes()
        with zipfile.ZipFile(self.path) as z, z.open(self.name) as f:
            _npy_header(f)
            for lo in range(0, self.shape[0], size):
                count = min(size, self.shape[0] - lo)
                raw = f.read(count * row)
                if len(raw) != count * row:
                    raise InputError(f"{self.what}: the member {self.name!r} ends early")
                yield np.frombuffer(raw, self.dtype).reshape((count,) + self.shape[1:])


def _open_npz(path: str) -> dict[str, np.ndarray | _StreamedMember]:
    what = f"data file {printable(path)!r}"
    members: dict[str, np.ndarray | _StreamedMember] = {}
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise InputError(f"{what}: {printable(info.filename)!r} in it is not an .npy array")
            key = info.filename[:-4]
            if info.compress_type == zipfile.ZIP_STORED:
                members[key] = map_npy(path, _stored_member_offset(path, info), f"{what} member {key!r}")
            else:
                members[key] = _StreamedMember(path, info.filename, f"{what} member {key!r}")
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as e:
        raise InputError(f"cannot read {what}: {e}") from None
    return members


# ----------------------------------------------------------------------------- sources

def _array_dataset(values: list, it, description: str, labels=None, check_range: bool = True) -> Dataset:
    """One array (or streamed member) per input, first axis samples."""
    what = description
    if len(values) != len(it.subgraph.inputs):
        raise InputError(f"{what} gives {len(values)} input(s); the model takes {len(it.subgraph.inputs)}")
    views, kinds, streamed = [], [], []
    for k, v in enumerate(values):
        if isinstance(v, _StreamedMember):
            shaped = np.lib.stride_tricks.as_strided(np.zeros(1, v.dtype), shape=v.shape, strides=(0,) * v.ndim,
                                                     writeable=False)
            view = sample_view(shaped, it, k, what)
            kinds.append(data_kind(shaped, it, k, what))
            views.append(v)
            streamed.append((v, view.shape[1:]))
            continue
        if isinstance(v, np.ma.MaskedArray) and np.ma.is_masked(v):
            raise InputError(f"{what} for {_input_label(it, k)} is a masked array with masked values; pass "
                             f"np.ma.filled(x, fill_value)")
        a = as_array(v)
        if a.ndim == 0:
            raise InputError(f"{what} for {_input_label(it, k)} is a single number; samples go along the first axis")
        kinds.append(data_kind(a, it, k, what))
        views.append(sample_view(a, it, k, what))
        streamed.append(None)
    counts = {(v.shape[0]) for v in views}
    if len(counts) > 1:
        raise InputError(f"{what}: the inputs have different numbers of samples {[v.shape[0] for v in views]}")
    n = counts.pop() if counts else 0
    if n == 0:
        raise InputError(f"{what} holds no samples")

    def chunks(size: int) -> Iterator[list[np.ndarray]]:
        readers = [s[0].chunks(size) if s else None for s in streamed]
        for lo in range(0, n, size):
            hi = min(n, lo + size)
            out = []
            for v, reader, s in zip(views, readers, streamed):
                if reader is not None:
                    out.append(next(reader).reshape((hi - lo,) + s[1]))
                else:
                    out.append(np.array(v[lo:hi]))
                    release_pages(v, lo, hi)
            yield out

    ds = Dataset(n, kinds, description, labels=labels, _chunks=chunks)
    _precheck(ds, it, check_range)
    return ds


def _precheck(ds: Dataset, it, check_range: bool) -> None:
    """The values checks before any work: real values read once, a chunk at a time (NaN anywhere;
    the range on the first chunk)."""
    if "real" not in ds.kinds:
        return
    first = True
    for start, arrays in ds.chunks(4096):
        check_values(arrays, ds.kinds, it, start, ds.description, check_range and first)
        first = False


def _generator_dataset(batches: Iterable, it, check_range: bool) -> Dataset:
    iterator = iter(batches)
    names = [it.tensors[i].name for i in it.subgraph.inputs]

    def as_list(batch, number):
        what = f"batch {number}"
        if isinstance(batch, Mapping):
            missing = [nm for nm in names if nm not in batch]
            if missing or len(batch) != len(names):
                raise InputError(f"{what} is given by names {sorted(batch)}; the model's inputs are {names}")
            values = [batch[nm] for nm in names]
        elif isinstance(batch, np.ndarray):
            values = [batch]
        elif isinstance(batch, (list, tuple)):
            values = list(batch)
        else:
            raise InputError(f"{what} is a {type(batch).__name__}; a batch is an array, a list of arrays in input "
                             f"order or a dict by input name, samples along the first axis")
        if len(values) != len(names):
            raise InputError(f"{what} gives {len(values)} input(s); the model takes {len(names)}")
        arrays = [as_array(v) for v in values]
        for k, a in enumerate(arrays):
            if a.ndim == 0:
                raise InputError(f"{what} for {_input_label(it, k)} is a single number")
        return arrays

    try:
        first = next(iterator)
    except StopIteration:
        raise InputError("the data gives no batches") from None
    arrays = as_list(first, 0)
    kinds = [data_kind(a, it, k, "batch 0") for k, a in enumerate(arrays)]
    views = [sample_view(a, it, k, "batch 0") for k, a in enumerate(arrays)]
    check_values(views, kinds, it, 0, "batch 0", check_range)

    def chunks(size: int) -> Iterator[list[np.ndarray]]:
        number, batch_views = 0, views
        start = 0
        while True:
            lengths = {len(v) for v in batch_views}
            if len(lengths) > 1:
                raise InputError(f"batch {number}: the inputs have different numbers of samples")
            count = lengths.pop() if lengths else 0
            for lo in range(0, count, size):
                yield [np.array(v[lo:lo + size]) for v in batch_views]
            start += count
            try:
                batch = next(iterator)
            except StopIteration:
                return
            number += 1
            what = f"batch {number}"
            arrays = as_list(batch, number)
            for k, a in enumerate(arrays):
                if data_kind(a, it, k, what) != kinds[k]:
                    raise InputError(f"{what} for {_input_label(it, k)} is {a.dtype}, batch 0 was {views[k].dtype}")
            batch_views = [sample_view(a, it, k, what) for k, a in enumerate(arrays)]
            check_values(batch_views, kinds, it, start, what, False)

    return Dataset(None, kinds, "generator", _chunks=chunks)


def file_arrays(path: str, it) -> tuple[list, np.ndarray | None]:
    """The arrays of an .npy or .npz file for the model's inputs (memory-mapped, or streamed for
    compressed .npz members) and the labels an .npz holds (or None). Nothing is read but headers."""
    _check_regular(path, "data file")
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):
        return [map_npy(path)], None
    if not head.startswith(b"PK"):
        raise InputError(f"cannot read data file {printable(path)!r}: it is neither an .npy nor an .npz file "
                         f"(nor a folder of images)")
    members = _open_npz(path)
    names = [it.tensors[i].name for i in it.subgraph.inputs]
    labels = next((members.pop(k) for k in LABEL_KEYS if k in members and k not in names), None)
    if isinstance(labels, _StreamedMember):
        labels = np.concatenate(list(labels.chunks(1 << 20)))
    if all(nm in members for nm in names):
        values = [members[nm] for nm in names]
    else:
        values = [members[k] for k in sorted(members)]
    return values, None if labels is None else np.asarray(labels)


def materialize(value) -> np.ndarray:
    """An array from ``file_arrays`` read into memory."""
    if isinstance(value, _StreamedMember):
        parts = list(value.chunks(max(1, (64 << 20) // max(1, value.sample_bytes()))))
        return np.concatenate(parts) if parts else np.zeros(value.shape, value.dtype)
    return np.array(value)


def open_data(data, it, *, image_range: tuple[float, float] | None = None, check_range: bool = True) -> Dataset:
    """The samples in ``data`` for the model of ``it`` (an Interpreter), checked: see the module's
    docstring for what ``data`` may be."""
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if os.path.isdir(path):
            return image_folder(path, it, image_range=image_range, check_range=check_range)
        values, labels = file_arrays(path, it)
        description = f"data file {printable(path)!r}"
        ds = _array_dataset(values, it, description, check_range=check_range)
        if labels is not None:
            ds.labels = read_labels(labels, ds.n, f"{description} member 'labels'")
        return ds
    if isinstance(data, Dataset):
        return data
    if isinstance(data, np.ndarray):
        return _array_dataset([data], it, "data", check_range=check_range)
    if isinstance(data, Mapping):
        names = [it.tensors[i].name for i in it.subgraph.inputs]
        missing = [nm for nm in names if nm not in data]
        if missing:
            raise InputError(f"the data is given by names {sorted(data)}; the model's inputs are {names}")
        return _array_dataset([data[nm] for nm in names], it, "data", check_range=check_range)
    if isinstance(data, (list, tuple)) and len(data) == len(it.subgraph.inputs) \
            and all(isinstance(v, np.ndarray) for v in data):
        return _array_dataset(list(data), it, "data", check_range=check_range)
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise InputError(f"data must be a path (.npy, .npz, a folder of images), arrays, or an iterable of batches, "
                         f"not {type(data).__name__}")
    return _generator_dataset(data, it, check_range)


# ----------------------------------------------------------------------------- images

def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise MissingPackage("a folder of images needs Pillow: pip install 'microref[images]' (or pip install "
                             "pillow)") from None
    return Image


def image_layout(shape) -> tuple[int, int, int, str]:
    """(height, width, channels, layout) of an image input: (1, H, W, C) or (H, W, C) is "NHWC",
    (1, C, H, W) "NCHW" (C = 1 or 3; NHWC when both readings fit). Else InputError."""
    s = tuple(int(d) for d in shape)
    if len(s) == 4 and s[0] == 1 and s[3] in (1, 3):
        return s[1], s[2], s[3], "NHWC"
    if len(s) == 3 and s[2] in (1, 3):
        return s[0], s[1], s[2], "NHWC"
    if len(s) == 4 and s[0] == 1 and s[1] in (1, 3):
        return s[2], s[3], s[1], "NCHW"
    raise InputError(f"a folder of images needs an input shaped (1, H, W, C) or (1, C, H, W) with 1 or 3 channels; "
                     f"this input is {s}")


def default_image_range(t) -> tuple[float, float]:
    """The real range pixels 0..255 are mapped to by default: what an integer input represents
    (``represented_range``), so that for 8-bit inputs q = pixel + the type's minimum exactly (as
    TFLM's person_detect example feeds its camera); 0..1 for a float input."""
    return represented_range(t) or (0.0, 1.0)


def image_to_real(pixels: np.ndarray, image_range: tuple[float, float]) -> np.ndarray:
    """Pixels (uint8, 0..255) to real values: ``float32(lo + p * ((hi - lo) / 255))``, computed in
    double and rounded once to float32 (the QUANTIZE input type)."""
    lo, hi = (float(v) for v in image_range)
    return (lo + pixels.astype(np.float64) * ((hi - lo) / 255.0)).astype(np.float32)


def load_image(path: str, height: int, width: int, channels: int, layout: str) -> np.ndarray:
    """One image file as uint8 pixels in the input's layout (without the leading 1): converted to
    grayscale ("L", channels 1) or RGB (channels 3) by Pillow, resized to width x height with
    bilinear resampling (Image.Resampling.BILINEAR) when its size differs. InputError naming the
    file when it cannot be decoded."""
    Image = _pil()
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (width, height):
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {printable(path)!r}: {e}") from None
    pixels = pixels.reshape(height, width, channels)
    return pixels.transpose(2, 0, 1) if layout == "NCHW" else pixels


# In a JPEG's entropy-coded data a 0xFF byte is followed by 0x00 (stuffing) or a restart marker
# (0xD0..0xD7); anything else is the next marker.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def jpeg_problem(data: bytes) -> str | None:
    """Why a JPEG file cannot be decoded whole, found from its markers without decoding it (None
    when it is complete): Pillow's ``verify`` reads only a JPEG's header, so a truncated file would
    otherwise pass the check and fail mid-run. The segments are walked from the start of image to
    the end-of-image marker (0xFFD9), which Pillow needs (it refuses a file without it as
    truncated); what follows that marker (a thumbnail's is inside an APP segment; data appended
    after the image, as some cameras do) is not looked at."""
    if not data.startswith(b"\xff\xd8"):
        return "not a JPEG start-of-image marker"
    pos, n = 2, len(data)
    while True:
        if pos + 1 >= n:
            return "truncated: the data ends before the end-of-image marker"
        if data[pos] != 0xFF:
            return f"no marker at byte {pos:,}"
        while pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos + 1 >= n:
            return "truncated: the data ends before the end-of-image marker"
        code = data[pos + 1]
        if code == 0xD9:
            return None
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # markers without a length
            pos += 2
            continue
        if pos + 4 > n:
            return "truncated: the data ends inside a segment header"
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if end > n:
            return "truncated: the data ends inside a segment"
        if code != 0xDA:
            pos = end
            continue
        found = _JPEG_NEXT_MARKER.search(data, end)  # the scan's entropy-coded data, to the next marker
        if found is None:
            return "truncated: the data ends inside the image data"
        pos = found.start()


def _check_image(Image, path: str) -> None:
    """An exception when the image file cannot be read: Pillow's verify (PNG: every chunk's CRC),
    and for a JPEG the walk of its markers (``jpeg_problem``)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError("not a regular file")
    with Image.open(path) as img:
        kind = img.format
        img.verify()
    if kind == "JPEG":
        with open(path, "rb") as f:
            problem = jpeg_problem(f.read())
        if problem:
            raise OSError(f"JPEG {problem}")


def _image_files(root: str) -> tuple[list[str], list[int] | None, list[str] | None, list[str]]:
    """(image files, labels, class names, ignored files) of a folder: files directly in it, or in
    class subfolders (one level)."""
    Image = _pil()
    extensions = {e.lower() for e in Image.registered_extensions()}
    entries = sorted(e for e in os.listdir(root) if not e.startswith("."))
    dirs = [e for e in entries if os.path.isdir(os.path.join(root, e))]
    loose = [e for e in entries if not os.path.isdir(os.path.join(root, e))]
    ignored: list[str] = []

    def pick(folder, names):
        out = []
        for name in names:
            path = os.path.join(folder, name)
            if os.path.splitext(name)[1].lower() in extensions:
                out.append(path)
            else:
                ignored.append(path)
        return out

    if not dirs:
        return pick(root, loose), None, None, ignored
    images_loose = pick(root, loose)
    if images_loose:
        raise InputError(f"the folder {printable(root)!r} has both images ({printable(images_loose[0])!r}, ...) and "
                         f"subfolders ({printable(dirs[0])!r}, ...): put every image in a class subfolder, or none")
    files, labels = [], []
    for label, d in enumerate(dirs):
        folder = os.path.join(root, d)
        found = pick(folder, sorted(e for e in os.listdir(folder) if not e.startswith(".")
                                    and not os.path.isdir(os.path.join(folder, e))))
        files += found
        labels += [label] * len(found)
    return files, labels, dirs, ignored


def image_folder(root: str, it, *, image_range: tuple[float, float] | None = None,
                 check_range: bool = True) -> Dataset:
    """A folder of images for a one-input image model (see ``load_image`` and ``image_to_real``).
    Every file is opened (its header read and verified; a JPEG's markers walked to its end, a PNG's
    chunks checked) before the Dataset is returned; the ones that cannot be are named together in
    one InputError."""
    Image = _pil()
    if len(it.subgraph.inputs) != 1:
        raise InputError(f"a folder of images feeds one input; the model takes {len(it.subgraph.inputs)}")
    t = it.tensors[it.subgraph.inputs[0]]
    height, width, channels, layout = image_layout(t.shape)
    files, labels, classes, ignored = _image_files(root)
    if not files:
        raise InputError(f"the folder {printable(root)!r} holds no image files"
                         + (f" (ignored: {', '.join(printable(p) for p in ignored[:MAX_NAMED])})" if ignored else ""))
    bad = []
    for path in files:
        try:
            _check_image(Image, path)
        except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for a broken file
            bad.append(f"{printable(path)} ({type(e).__name__}: {printable(str(e))[:80]})")
    if bad:
        more = f", and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
        raise InputError(f"{len(bad)} of the {len(files)} image files in {printable(root)!r} cannot be read: "
                         + "; ".join(bad[:MAX_NAMED]) + more)
    lo_hi = tuple(image_range) if image_range is not None else default_image_range(t)
    if len(lo_hi) != 2 or not all(math.isfinite(float(v)) for v in lo_hi) or float(lo_hi[0]) == float(lo_hi[1]):
        raise InputError(f"image range must be two different finite numbers LO,HI, not {image_range!r}")
    quantized_exactly = image_range is None and t.dtype in (np.dtype(np.int8), np.dtype(np.uint8))

    def chunks(size: int) -> Iterator[list[np.ndarray]]:
        for lo in range(0, len(files), size):
            pixels = np.stack([load_image(p, height, width, channels, layout) for p in files[lo:lo + size]])[:, None] \
                if len(t.shape) == 4 else np.stack([load_image(p, height, width, channels, layout)
                                                     for p in files[lo:lo + size]])
            if quantized_exactly:
                # The default range for an 8-bit input maps pixel p to q = p + the type's minimum;
                # quantizing the real values gives exactly that (tested), so skip the float detour.
                yield [(pixels.astype(np.int16) + np.iinfo(t.dtype).min).astype(t.dtype)]
            else:
                yield [image_to_real(pixels, lo_hi)]

    kinds = ["quantized" if quantized_exactly else "real"]
    if not quantized_exactly:
        # The range check on the first few images: a range chosen for another model shows there.
        first = next(chunks(min(64, len(files))))
        check_values(first, kinds, it, 0, f"image folder {printable(root)!r} with image range {lo_hi}", check_range)
    return Dataset(len(files), kinds, f"image folder {printable(root)!r}",
                   labels=None if labels is None else np.asarray(labels, np.int64), classes=classes, files=files,
                   ignored=ignored, image_range=(float(lo_hi[0]), float(lo_hi[1])), _chunks=chunks)
