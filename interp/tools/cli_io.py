"""What the command line reads and writes, and how it says no: exit codes, the usage and
missing-package errors, argument types (sizes, counts, seeds), bounded reading of model and
input files (regular files only; .npy/.npz checked before their data is read), and outputs that
are never overwritten without --force."""
from __future__ import annotations

import argparse
import math
import os
import stat
import zipfile

import numpy as np

import ops  # noqa: F401  (importing the package registers every kernel)

from ..errors import InputError, MicrorefError, printable
from ..model import verify
from ..runtime.inputs import random_inputs

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_OVER_BUDGET = 0, 1, 2, 3
EXIT_MODEL, EXIT_UNSUPPORTED, EXIT_INPUT, EXIT_DIFFERS, EXIT_MISSING_PACKAGE = 4, 5, 6, 7, 8


class MissingPackageError(MicrorefError):
    """An optional dependency needed by this command is not installed."""


class UsageError(MicrorefError):
    """A command-line mistake argparse cannot see: an output path that cannot be written or
    exists (without --force), a --count too large for the memory budget."""


# vectors --count: at most this many samples (and no more than the memory budget holds).
MAX_VECTOR_COUNT = 100_000
# An .npz input holds at most this many arrays.
MAX_NPZ_MEMBERS = 1024


def parse_size(text: str) -> int:
    """'256KiB', '256K', '1MiB', '1MB', '262144' -> bytes (K/M = 1024-based, as MCU datasheets use).
    ValueError for anything else (negative, not a number, infinite)."""
    t = text.strip().lower().replace(",", "").replace("_", "")
    mult = 1
    for suffix, m in (("kib", 1024), ("mib", 1 << 20), ("kb", 1024), ("mb", 1 << 20),
                      ("k", 1024), ("m", 1 << 20), ("b", 1)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], m
            break
    try:
        value = float(t)
        if not math.isfinite(value) or value < 0:
            raise ValueError
        return int(value * mult)
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r} is not a size: use bytes or KiB/MiB, e.g. 262144, 256KiB, 1MiB") from None


# ------------------------------------------------------------------ argument types (errors exit 2)
def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _whole(text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bounds = f"from {low:,} to {high:,}" if high is not None else f">= {low:,}"
        raise argparse.ArgumentTypeError(f"expected a whole number {bounds}, got {text!r}")
    return value


def _seed_arg(text: str) -> int:
    return _whole(text, 0)


def _count_arg(text: str) -> int:
    return _whole(text, 1, MAX_VECTOR_COUNT)


def _index_arg(text: str) -> int:
    return _whole(text, 0)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (exit 2) instead of usage plus error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n")


# ------------------------------------------------------------------ reading input files
def _open_regular(path: str, what: str):
    """An open binary file, if ``path`` is a regular file (a FIFO would block, a device never end)."""
    label = printable(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"cannot read {what} {label!r}: it is {verify.file_kind(st.st_mode)}, not a regular file")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {what} {label!r}: {getattr(e, 'strerror', None) or e}") from None
    return os.fdopen(fd, "rb")


def _read_npy(f, label: str, max_elements: int) -> np.ndarray:
    """One .npy array from ``f``, its header checked before anything is allocated for it."""
    fmt = np.lib.format
    start = f.tell()
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    elif version == (3, 0) and hasattr(fmt, "_read_array_header"):
        shape, _, dtype = fmt._read_array_header(f, version)
    else:
        raise ValueError(f".npy format version {version} is not one microref reads")
    if dtype.hasobject:
        raise ValueError("it holds Python objects (pickled data), which microref does not load; save a "
                         "numeric array")
    count = math.prod(shape)
    if count > max_elements:
        raise ValueError(f"its header declares shape {shape} ({count:,} values), more than any input of the "
                         f"model takes ({max_elements:,})")
    f.seek(start)
    return fmt.read_array(f, allow_pickle=False)


def read_arrays(path: str, max_elements: int, what: str = "input file") -> dict[str, np.ndarray] | np.ndarray:
    """A .npy file's array, or an .npz file's arrays by name, read with bounds: a regular file,
    no pickled objects, no array declaring more than ``max_elements`` values, no more than
    MAX_NPZ_MEMBERS arrays, no member that decompresses past what its array needs (zip bombs).
    Any problem is an InputError naming the file."""
    label = printable(path)
    with _open_regular(path, what) as f:
        try:
            head = f.read(6)
            f.seek(0)
            if head.startswith(b"PK"):
                with zipfile.ZipFile(f) as z:
                    members = z.infolist()
                    if len(members) > MAX_NPZ_MEMBERS:
                        raise ValueError(f"it holds {len(members):,} files, more than {MAX_NPZ_MEMBERS:,}")
                    arrays = {}
                    for m in members:
                        if not m.filename.endswith(".npy"):
                            raise ValueError(f"{m.filename!r} in it is not an .npy array")
                        # Header, and at most 16 bytes for each value the model can take.
                        if m.file_size > (1 << 16) + 16 * max_elements:
                            raise ValueError(f"{m.filename!r} in it decompresses to {m.file_size:,} bytes, more "
                                             f"than an input of the model can use")
                        with z.open(m) as member:
                            arrays[m.filename[:-4]] = _read_npy(member, label, max_elements)
                    return arrays
            return _read_npy(f, label, max_elements)
        except InputError:
            raise
        except (ValueError, OSError, EOFError, KeyError, NotImplementedError, RuntimeError, zipfile.BadZipFile,
                zipfile.LargeZipFile, MemoryError) as e:
            raise InputError(f"cannot read {what} {label!r}: {e}") from None


def _max_input_elements(details) -> int:
    return max([math.prod(int(d) for d in x["shape"]) for x in details] + [1])


def _by_name(arrays: dict[str, np.ndarray], details) -> list[np.ndarray]:
    """An .npz's arrays in input order: by input name when every input has one, else by key."""
    names = [d["name"] for d in details]
    if all(n in arrays for n in names):
        return [arrays[n] for n in names]
    return [arrays[k] for k in sorted(arrays)]


def load_inputs(it, paths: list[str] | None, seed: int) -> list[np.ndarray]:
    """The inputs given on the command line (one .npz, or one .npy per input), else seeded random ones."""
    if not paths:
        return random_inputs(it, np.random.default_rng(seed))
    bound = _max_input_elements(it.input_details)
    loaded = [read_arrays(p, bound) for p in paths]
    if any(isinstance(a, dict) for a in loaded):
        if len(loaded) > 1:
            raise InputError("pass one .npz holding every input, or one .npy per input, not both")
        return _by_name(loaded[0], it.input_details)
    return loaded


# ------------------------------------------------------------------ writing output files
def output_path(path: str, force: bool, suffix: str | None = None) -> tuple[str, str]:
    """(the path a file is written to, a note when it differs from ``path``) after checking that
    it can be written: its directory exists, it is no directory, FIFO or socket, and it does not
    exist unless ``force``. ``suffix`` is what numpy or matplotlib append to a path without it."""
    final, note = path, ""
    if suffix and not path.endswith(suffix):
        final = path + suffix
        note = f" ({suffix} appended to {printable(path)!r})"
    check_writable(final, force)
    return final, note


def check_writable(path: str, force: bool) -> None:
    label = printable(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"cannot write {label!r}: its directory {printable(parent)!r} does not exist")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise UsageError(f"cannot write {label!r}: {e.strerror or e}") from None
    if stat.S_ISCHR(st.st_mode):
        return  # /dev/null, /dev/stdout: the user asked for exactly that
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"cannot write {label!r}: it is {verify.file_kind(st.st_mode)}")
    if not force:
        raise UsageError(f"{label!r} exists; pass --force to overwrite it")


def save_npz(path: str, payload: dict, force: bool) -> str:
    """Write ``payload`` as an .npz at ``path`` (".npz" appended when missing, as numpy does);
    returns the 'wrote ...' line."""
    final, note = output_path(path, force, ".npz")
    try:
        np.savez(final, **payload)
    except OSError as e:
        raise UsageError(f"cannot write {printable(final)!r}: {e.strerror or e}") from None
    return f"wrote {printable(final)}{note}"


def _plot_path(path: str, force: bool) -> tuple[str, str]:
    """matplotlib appends ".png" to a path without an extension."""
    return output_path(path, force, None if os.path.splitext(path)[1] else ".png")
