"""The `microref` command line.

Exit codes: 0 success; 1 an unexpected internal error (a bug: please report it, --debug shows
the traceback); 2 bad command-line usage (including an output path that cannot be written, or
exists without --force); 3 the model does not fit the memory budget (plan); 4 the model is
malformed or rejected (ModelError); 5 unsupported operators (UnsupportedOpError); 6 bad inputs
(InputError); 7 a comparison found differences, or the other runtime refused or crashed on the
model (compare); 8 an optional package is missing.

Every error is one line on stderr. Names from the model and paths are printed with control
characters escaped (a tensor named "\x1b[2J" cannot clear the terminal). Model and input files
are read only when they are regular files, and only as much as the model can use (a FIFO,
/dev/zero or a zip bomb is refused, not read). Outputs (--output, --dump, --plot, vectors -o)
are never overwritten without --force; when ".npz" or ".png" is appended to a path, the command
says so.
"""
from __future__ import annotations

import argparse
import collections
import math
import os
import stat
import sys
import traceback
import zipfile

import numpy as np

import ops  # noqa: F401  (importing the package registers every kernel)
from ops.registry import REGISTRY

from .. import planner
from ..api import Interpreter
from ..errors import InputError, MicrorefError, ModelError, UnsupportedOpError, printable
from ..model import load_model, verify
from ..runtime import dequantize_tensor, limited_blas_threads
from ..runtime.inputs import random_inputs
from . import compare as cmp
from . import plots
from . import vectors as vec
from .explain import NUMERICS_CHOICES, explain

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


def _fmt_array(a: np.ndarray, limit: int = 16) -> str:
    flat = np.asarray(a).ravel()
    body = np.array2string(flat[:limit], separator=", ", max_line_width=100000, precision=6)
    return body[:-1] + (", …]" if flat.size > limit else "]")


def cmd_run(args) -> int:
    if args.output:
        output_path(args.output, args.force, ".npz")  # before the work, not after
    it = Interpreter.from_file(args.model, kernels=args.kernels)
    xs = load_inputs(it, args.input, args.seed)
    if not args.input:
        print(f"inputs: random, seed {args.seed} (each input uniform over its type's full range; "
              f"--input X.npy runs your own)")
    outs = it.run(xs)
    if args.profile:
        from .profile import format_profile, profile
        rows, total_ms = profile(it, xs, batch=args.batch, repeat=args.repeat)
        print(format_profile(rows, total_ms, args.batch))
    for d, y in zip(it.output_details, outs):
        t = it.tensors[d["index"]]
        print(f'output "{printable(d["name"])}" {t.type_name}{list(t.shape)}:')
        print(f"  raw:         {_fmt_array(y)}")
        if t.quantization is not None and t.dtype.kind != "f":
            print(f"  dequantized: {_fmt_array(dequantize_tensor(t, y))}")
    if args.output:
        # The keys vectors writes too (interp.tools.vectors): input_<i>, output_<j>, <key>_scale/_zero_point.
        print(save_npz(args.output, vec.io_payload(it, xs, outs), args.force))
    return EXIT_OK


def cmd_info(args) -> int:
    m = load_model(args.model)
    sg = m.main
    print(f"model: {printable(args.model)}  ({m.file_bytes:,} bytes, weights {m.weight_bytes:,} bytes, "
          f"{len(m.subgraphs)} subgraph{'s' if len(m.subgraphs) > 1 else ''}, schema v{m.version})")
    if m.description:
        print(f"description: {printable(m.description)}")
    counts = collections.Counter((op.display_name, op.version, op.op_name in REGISTRY) for op in sg.operators)
    print(f"\noperators ({len(sg.operators)}):")
    unsupported = 0
    for (name, ver, ok), n in sorted(counts.items()):
        mark = "" if ok else "   <- UNSUPPORTED"
        unsupported += 0 if ok else n
        print(f"  {n:4d} x {printable(name)} (v{ver}){mark}")
    # Variant-level support (types, options) is decided by each kernel's prepare step.
    try:
        Interpreter(m)
        verdict = "every operator is supported"
    except UnsupportedOpError as e:
        verdict = str(e)
    except ModelError as e:
        verdict = f"the model is rejected: {e}"
    print(f"\nsupport: {verdict}")

    def qdesc(t):
        q = t.quantization
        if q is None:
            return ""
        if q.per_channel:
            return f"per-channel ({q.scales.size} scales, dim {q.quantized_dimension})"
        return f"scale {q.scale:.6g} zp {q.zero_point}"

    for label, idx in (("inputs", sg.inputs), ("outputs", sg.outputs)):
        print(f"\n{label}:")
        for i in idx:
            t = sg.tensors[i]
            print(f'  [{i}] "{printable(t.name)}" {t.type_name}{list(t.shape)} {qdesc(t)}')
    if args.tensors:
        print("\ntensors:")
        for t in sg.tensors:
            kind = "const" if t.is_constant else ("var" if t.is_variable else "act")
            print(f'  [{t.index:3d}] {kind:5s} {t.type_name:7s} {str(list(t.shape)):20s} {qdesc(t):40s} '
                  f'"{printable(t.name)}"')
    if args.ops:
        print("\noperator list:")
        for op in sg.operators:
            print(f"  [{op.index:3d}] {printable(op.display_name):22s} in {list(op.inputs)} out {list(op.outputs)} "
                  f"{printable(op.options)}")
    return EXIT_OK


def cmd_plan(args) -> int:
    # The plan needs the tensors' lifetimes and each operator's scratch requests, not an Interpreter:
    # models with operators microref cannot execute are planned too (unknown scratch is reported).
    if args.optimize and not args.output:
        raise UsageError("--optimize needs -o/--output for the rewritten model")
    if args.output:
        check_writable(args.output, args.force)
    if args.plot:
        _plot_path(args.plot, args.force)
    plan = planner.plan_arena(load_model(args.model), budget_bytes=args.budget,
                              flash_budget_bytes=args.flash_budget)
    planner.check_offline_plan(plan, arena_bytes=plan.budget_bytes)  # the budget is the arena here
    orders = planner.search_operator_orders(plan)
    if args.json:
        import json
        payload = planner.plan_to_json(plan)
        payload["operator_order_search"] = {
            "orders_tried": orders.orders_tried, "exhaustive": orders.exhaustive,
            "best_order": orders.best_order, "best_lower_bound": orders.best_lower_bound,
            "best_arena_bytes": orders.best_arena_bytes, "original_arena_bytes": orders.original_arena_bytes}
        print(json.dumps(payload, indent=2))
    else:
        print(planner.format_plan(plan))
        print()
        print(_how_to_need_less(plan, orders))
    if args.plot:
        _plot_plan(plan, *_plot_path(args.plot, args.force))
    if args.optimize:
        data = verify.read_model_file(args.model)
        improved = plan.improved
        if not improved.tensor_offsets:
            print(f"TFLM's greedy plan ({plan.arena_bytes:,} bytes) could not be improved; "
                  f"{printable(args.output)} is an unchanged copy")
        new = planner.write_improved_model(data, plan)
        try:
            with open(args.output, "wb") as f:
                f.write(new)
        except OSError as e:
            raise UsageError(f"cannot write {printable(args.output)!r}: {e.strerror or e}") from None
        print(f"wrote {printable(args.output)}: offline-planned arena of {improved.arena_bytes:,} bytes "
              f"(TFLM's greedy plan: {plan.arena_bytes:,} bytes)")
        reloaded = planner.plan_arena(load_model(new))
        print(f"microref re-planning the rewritten model: {reloaded.arena_bytes:,} bytes")
    return EXIT_OK if plan.fits else EXIT_OVER_BUDGET


def _short_label(label: str, limit: int = 60) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _how_to_need_less(plan, orders) -> str:
    """Concrete ways to a smaller arena, largest saving first."""
    lines = ["How to need less:"]
    saved = plan.arena_bytes - plan.improved.arena_bytes
    if saved > 0:
        lines.append(f"  - store the improved plan in the model (microref plan --optimize -o out.tflite): "
                     f"{saved:,} bytes less, and TFLM uses it as is")
    if orders.improves:
        lines.append(f"  - run the operators in another valid order ({orders.orders_tried} tried"
                     f"{', all' if orders.exhaustive else ''}): peak {orders.best_lower_bound:,} bytes instead of "
                     f"{orders.original_lower_bound:,}; order {orders.best_order}")
    elif orders.exhaustive and orders.orders_tried == 1:
        lines.append("  - operator order: the graph is a chain; it has no other valid order")
    else:
        lines.append(f"  - operator order: none of the {orders.orders_tried} valid orders tried"
                     f"{' (all there are)' if orders.exhaustive else ''} lowers the peak")
    live = [b for b in plan.buffers if b.label in set(plan.live_at_peak)]
    if live:
        biggest = max(live, key=lambda b: b.size)
        lines.append(f"  - the peak ({plan.lower_bound:,} bytes at operator {plan.peak_op}) is set by what is live "
                     f"there; the largest is {_short_label(biggest.label)} ({biggest.size:,} bytes): a smaller "
                     f"input resolution or fewer channels around operator {plan.peak_op} lowers the floor no "
                     f"planner can beat")
    return "\n".join(lines)


def _save_figure(fig, path: str, note: str, **kwargs) -> None:
    import matplotlib.pyplot as plt
    try:
        fig.savefig(path, **kwargs)
    except (OSError, ValueError) as e:  # ValueError: a file extension matplotlib has no format for
        raise UsageError(f"cannot write {printable(path)!r}: {getattr(e, 'strerror', None) or e}") from None
    finally:
        plt.close(fig)
    print(f"wrote {printable(path)}{note}")


def _plot_plan(plan, path, note=""):
    _save_figure(plots.plan_figure(plan), path, note, dpi=110)


def _tensor_key(t) -> str:
    return f"{t.index:04d}_" + "".join(c if c.isalnum() or c in "._-" else "_" for c in t.name)[:80]


def cmd_trace(args) -> int:
    if args.dump:
        output_path(args.dump, args.force, ".npz")  # before the work, not after
    it = Interpreter.from_file(args.model, kernels=args.kernels)
    xs = load_inputs(it, args.input, args.seed)
    it.run(xs, keep=True)
    print(f"{'op':>4}  {'operator':22s} {'output tensor':44s} {'type/shape':22s} {'raw min..max':>14s}  real range")
    payload = {}
    for ti in it.subgraph.inputs:
        payload[_tensor_key(it.tensors[ti])] = it.tensor(ti)
    for op in it.subgraph.operators:
        for ti in op.outputs:
            t = it.tensors[ti]
            v = it.tensor(ti)
            payload[_tensor_key(t)] = v
            real = dequantize_tensor(t, v)
            print(f"{op.index:>4}  {printable(op.display_name):22s} {printable(t.name)[:44]:44s} "
                  f"{t.type_name + str(list(t.shape)):22s} "
                  f"{str(v.min()) + '..' + str(v.max()):>14s}  {real.min():.4g}..{real.max():.4g}")
    if it.stateful:
        # Streaming models: the state the call started from and the state it leaves (see
        # Interpreter.state); the dump has them as "state_before/NAME" and "state_after/NAME".
        before, after = it.state(before=True), it.state()
        print(f"\nstate ({'kind':9s} {'name':44s} {'type/shape':22s} {'before min..max':>16s}  after min..max)")
        for kind in ("variables", "resources"):
            for name, old in before[kind].items():
                new = after[kind][name]
                payload[f"state_before/{name}"], payload[f"state_after/{name}"] = old, new
                print(f"       {kind[:-1]:9s} {printable(name)[:44]:44s} {old.dtype.name + str(list(old.shape)):22s} "
                      f"{str(old.min()) + '..' + str(old.max()):>16s}  {new.min()}..{new.max()}")
    if args.dump:
        print(f"{save_npz(args.dump, payload, args.force)}: {len(payload)} tensors "
              f"(keys: 4-digit tensor index + name)")
    return EXIT_OK


def cmd_compare(args) -> int:
    import json
    plot = _plot_path(args.plot, args.force) if args.plot else None  # before the work, not after
    if args.data and not args.float_model:
        raise UsageError("--data gives the real-valued inputs of --float; the inputs of a runtime comparison "
                         "are --input")
    it = Interpreter.from_file(args.model, kernels=args.kernels)
    if args.float_model:
        float_it = Interpreter.from_file(args.float_model, kernels=args.kernels)
        cmp.check_float_pair(it, float_it, printable(args.model), printable(args.float_model))
        if args.data:
            # N samples per input at most: the bound keeps a hostile file from allocating more.
            bound = _max_input_elements(float_it.input_details) * cmp.MAX_FLOAT_SAMPLES
            arrays = read_arrays(args.data, bound, "--data file")
            if not isinstance(arrays, dict):
                arrays = {"0": arrays}
            inputs = cmp.float_inputs_from_data(it, float_it, arrays, printable(args.data))
        else:
            inputs = cmp.default_float_inputs(it, float_it, args.samples, args.seed)
        rows = cmp.compare_float_samples(it, float_it, inputs.samples)
        if args.json:
            print(json.dumps(cmp.float_comparison_to_json(rows, inputs), indent=2, default=float))
        else:
            print(cmp.format_float_comparison(rows, inputs))
        if plot:
            _plot_layers(rows, *plot)
        return EXIT_OK
    data = verify.read_model_file(args.model)
    xs = load_inputs(it, args.input, args.seed)
    runtimes = cmp.RUNTIMES if args.against == "all" else (args.against,)
    results = []
    for rt in runtimes:
        # The other runtime runs in a child process: its refusal or crash is a finding about it.
        try:
            results.append(cmp.compare_runtime(it, data, xs, rt))
        except (cmp.OtherRuntimeCrashed, cmp.OtherRuntimeRefused) as e:
            crashed = isinstance(e, cmp.OtherRuntimeCrashed)
            verdict = (f"{e}: a defect of {cmp.RUNTIME_NAMES[rt]}, not a difference in arithmetic; microref "
                       f"runs this model" if crashed else f"{e}; microref runs this model")
            if args.json:
                print(json.dumps([{"runtime": rt, "crashed" if crashed else "refused": str(e)}], indent=2))
            else:
                print(f"microref vs {rt}: {verdict}")
            return EXIT_DIFFERS
    prefix = _explain_prefix(args)
    if args.json:
        print(json.dumps([cmp.runtime_comparison_to_json(r, prefix) for r in results], indent=2))
    else:
        print("\n\n".join(cmp.format_runtime_comparison(r, prefix) for r in results))
    return EXIT_OK if all(r.first_divergent is None for r in results) else EXIT_DIFFERS


def _explain_prefix(args) -> str:
    """`microref explain MODEL` with the options that give it the same inputs as this command."""
    import shlex
    words = ["microref", "explain", args.model]
    if args.kernels != "fast":
        words += ["--kernels", args.kernels]
    words += ["--input", *args.input] if args.input else ["--seed", str(args.seed)]
    return " ".join(shlex.quote(w) for w in words)


def _plot_layers(rows, path, note=""):
    _save_figure(plots.layers_figure(rows), path, note)


def cmd_explain(args) -> int:
    it = Interpreter.from_file(args.model, kernels=args.kernels)
    xs = load_inputs(it, args.input, args.seed)
    try:
        coords = tuple(int(c) for c in args.at.replace(" ", "").split(","))
    except ValueError:
        raise InputError(f"--at takes comma-separated integers, e.g. 0,3,4,7; got {args.at!r}") from None
    if args.numerics != "all":
        print(explain(it, args.op, coords, xs, numerics=args.numerics).text)
        return EXIT_OK
    print(explain(it, args.op, coords, xs).text)
    print("\nthe same element under each numerics variant (--numerics NAME tells its whole story):")
    for name in NUMERICS_CHOICES:
        if name != "tflm":
            e = explain(it, args.op, coords, xs, numerics=name)
            verdict = "the same" if e.value == e.tflm_value else f"differs by {e.value - e.tflm_value:+} LSB"
            print(f"  {name:22s} computes {e.value}; TFLM computes {e.tflm_value} ({verdict})")
    return EXIT_OK


def _vector_files(args, base: str, operators) -> list[str]:
    """Check that vectors can write its files into ``args.output`` (made when missing)."""
    out = args.output
    if os.path.lexists(out) and not os.path.isdir(out):
        raise UsageError(f"-o {printable(out)!r} exists and is not a directory (vectors writes several files into it)")
    files = [os.path.join(out, f"{base}_vectors.npz"), os.path.join(out, f"{base}_vectors.h")]
    if args.per_op:
        files += [os.path.join(out, f"{base}_ops", name) for name in operators]
    for f in files:
        if os.path.lexists(f):
            check_writable(f, args.force)
    return files


def _vector_fit(it) -> int:
    """How many samples run_batch can hold within the memory budget."""
    estimate = verify.memory_estimate(it.model)
    return max(1, (verify.MAX_MEMORY_BYTES - estimate.file_bytes - estimate.work_bytes)
               // max(estimate.activation_bytes, 1))


def _check_vector_count(it, count: int) -> None:
    """--count samples go through run_batch at once: refuse more than the memory budget holds."""
    estimate = verify.memory_estimate(it.model)
    need = estimate.file_bytes + estimate.work_bytes + count * max(estimate.activation_bytes, 1)
    if need > verify.MAX_MEMORY_BYTES:
        fit = max(0, (verify.MAX_MEMORY_BYTES - estimate.file_bytes - estimate.work_bytes)
                  // max(estimate.activation_bytes, 1))
        raise UsageError(f"--count {count:,}: that many samples need an estimated {need:,} bytes, more than the "
                         f"memory budget of {verify.MAX_MEMORY_BYTES:,} (at most {fit:,} samples fit; run vectors "
                         f"several times with different --seed values for more)")


def _op_file_names(op) -> list[str]:
    # A custom operator's code comes from the model: vec.op_stem keeps it from naming another directory.
    return [vec.op_stem(op) + ".npz", vec.op_stem(op) + ".h"]


def cmd_vectors(args) -> int:
    it = Interpreter.from_file(args.model, kernels=args.kernels)
    base = os.path.splitext(os.path.basename(args.model))[0]
    _vector_files(args, base, [name for op in it.subgraph.operators for name in _op_file_names(op)])
    if args.input:
        # One .npz, or one .npy per input, each holding one sample or N: [N, …].
        bound = _max_input_elements(it.input_details) * min(_vector_fit(it), vec.MAX_FILE_SAMPLES)
        loaded = [read_arrays(p, bound) for p in args.input]
        label = ", ".join(printable(p) for p in args.input)
        if any(isinstance(a, dict) for a in loaded):
            if len(loaded) > 1:
                raise InputError("pass one .npz holding every input, or one .npy per input, not both")
            loaded = vec.arrays_for_inputs(it, loaded[0], label)
        inputs, source = vec.samples_from_arrays(it, loaded, args.count, label)
        _check_vector_count(it, int(inputs[0].shape[0]) if inputs else 1)
    else:
        _check_vector_count(it, args.count or vec.DEFAULT_COUNT)
        inputs, source = vec.random_samples(it, args.count, args.seed)
    try:
        os.makedirs(args.output, exist_ok=True)
        result = vec.write_vectors(it, inputs, args.output, base, per_op=args.per_op,
                                   flash_budget=args.flash_budget, model_bytes=os.path.getsize(args.model),
                                   source=source)
    except OSError as e:
        raise UsageError(f"cannot write into {printable(args.output)!r}: {e.strerror or e}") from None
    print(f"{result.samples} vector{'s' if result.samples != 1 else ''}: {source}")
    for w in result.warnings:
        print(w)
    print("wrote " + ", ".join(printable(w) for w in result.written))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="microref", description="Bit-exact TFLM reference interpreter and arena planner "
                                "for int8 TFLite models.", epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    # --debug is accepted after the command too; SUPPRESS keeps a global --debug from being reset.
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    # Commands that run the model choose the kernels: the fast ones (default) or the plain
    # reference kernels of ops.reference (same bytes, slower, the ones to read and step through).
    running = _Parser(add_help=False, parents=[common])
    # Commands that write files refuse to overwrite one unless told to.
    writing = _Parser(add_help=False)
    writing.add_argument("--force", action="store_true", help="overwrite output files that exist")
    running.add_argument("--kernels", choices=("fast", "reference"), default="fast",
                         help="fast kernels (default) or the plain reference kernels of ops.reference")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", parents=[running, writing], help="run a model on given or seeded random inputs")
    r.add_argument("model")
    r.add_argument("--input", nargs="+", metavar="X.npy", help="one .npy per model input, or one .npz")
    r.add_argument("--seed", type=_seed_arg, default=0, help="seed for random inputs (default 0)")
    r.add_argument("--output", metavar="OUT.npz", help="save inputs and outputs (.npz is appended when missing)")
    r.add_argument("--profile", action="store_true",
                   help="time every operator (op, MACs, ms, G MAC/s), slowest first, on one thread")
    r.add_argument("--batch", type=_count_arg, default=1, metavar="N",
                   help="with --profile: time run_batch on N copies of the inputs (default 1: run)")
    r.add_argument("--repeat", type=_count_arg, default=5, metavar="N",
                   help="with --profile: timed runs, medians reported (default 5)")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("info", parents=[common], help="operators, support, inputs and outputs of a model")
    i.add_argument("model")
    i.add_argument("--tensors", action="store_true", help="list every tensor")
    i.add_argument("--ops", action="store_true", help="list every operator with its options")
    i.set_defaults(func=cmd_info)

    pl = sub.add_parser("plan", parents=[common, writing],
                        help="TFLM's tensor arena plan, peak RAM and a verdict against a budget")
    pl.add_argument("model")
    pl.add_argument("--budget", type=_size_arg, default="256KiB", help="RAM budget for the arena (default 256KiB)")
    pl.add_argument("--flash-budget", type=_size_arg, default="1MiB", help="flash budget for the model (default 1MiB)")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.add_argument("--plot", metavar="OUT.png", help="memory-over-time chart (needs matplotlib)")
    pl.add_argument("--optimize", action="store_true", help="write the improved plan into a copy of the model")
    pl.add_argument("-o", "--output", metavar="OUT.tflite", help="where --optimize writes the model")
    pl.set_defaults(func=cmd_plan)

    t = sub.add_parser("trace", parents=[running, writing],
                       help="run once and show (and dump) every intermediate tensor")
    t.add_argument("model")
    t.add_argument("--input", nargs="+", metavar="X.npy")
    t.add_argument("--seed", type=_seed_arg, default=0)
    t.add_argument("--dump", metavar="TRACE.npz", help="write every tensor to an .npz (.npz is appended when missing)")
    t.set_defaults(func=cmd_trace)

    c = sub.add_parser("compare", parents=[running, writing],
                       help="compare with TFLM/LiteRT tensor by tensor, or int8 against a float model")
    c.add_argument("model")
    c.add_argument("--against", choices=("tflm", "litert", "litert-ref", "all"), default="tflm",
                   help="runtime to compare with (litert = LiteRT's default kernels, litert-ref = its reference "
                        "kernels)")
    c.add_argument("--float", dest="float_model", metavar="FLOAT.tflite",
                   help="compare the int8 MODEL with this float model layer by layer instead")
    c.add_argument("--data", metavar="INPUTS.npz",
                   help="real-valued inputs for --float, N samples as [N, …] (default: --samples seeded samples "
                        "uniform over each input's quantized range)")
    c.add_argument("--samples", type=_count_arg, default=4, metavar="N",
                   help="with --float and no --data: how many random samples (default 4)")
    c.add_argument("--input", nargs="+", metavar="X.npy")
    c.add_argument("--seed", type=_seed_arg, default=0)
    c.add_argument("--json", action="store_true")
    c.add_argument("--plot", metavar="OUT.png", help="with --float: SNR per layer chart (needs matplotlib)")
    c.set_defaults(func=cmd_compare)

    e = sub.add_parser("explain", parents=[running],
                       help="the integer arithmetic behind one output element of one operator")
    e.add_argument("model")
    e.add_argument("--op", type=_index_arg, required=True, help="operator index")
    e.add_argument("--at", required=True, help="output coordinates, comma-separated, e.g. 0,3,4,7")
    e.add_argument("--input", nargs="+", metavar="X.npy")
    e.add_argument("--seed", type=_seed_arg, default=0)
    e.add_argument("--numerics", choices=(*NUMERICS_CHOICES, "all"), default="tflm",
                   help="tell the story in another build's arithmetic beside TFLM's value (single = "
                        "TFLITE_SINGLE_ROUNDING; float32-scales = older TFLM's scale products; all = each "
                        "variant's value)")
    e.set_defaults(func=cmd_explain)

    v = sub.add_parser("vectors", parents=[running, writing],
                       help="export inputs and expected outputs (npz and C header) for conformance suites")
    v.add_argument("model")
    v.add_argument("-o", "--output", required=True, metavar="DIR")
    v.add_argument("--count", type=_count_arg, default=None,
                   help=f"number of samples: seeded random ones (default 4, at most {MAX_VECTOR_COUNT:,}), or the "
                        f"first N of --input (default: all it holds)")
    v.add_argument("--seed", type=_seed_arg, default=0)
    v.add_argument("--input", nargs="+", metavar="X.npy",
                   help="use these inputs instead of random ones: one .npy per input or one .npz, each holding "
                        "one sample or N as [N, …]")
    v.add_argument("--per-op", action="store_true",
                   help="also write each operator's inputs (weights and bias included), outputs and prepared "
                        "parameters (.npz and .h)")
    v.add_argument("--flash-budget", type=_size_arg, default="1MiB",
                   help="warn when the model and the vectors' arrays exceed it (default 1MiB)")
    v.set_defaults(func=cmd_vectors)

    from .eval import add_parser as add_eval_parser  # microref eval: a whole dataset (interp.tools.eval)
    add_eval_parser(sub, [running])
    return p


class _EscapingStream:
    """stdout for a command: control characters other than newlines escaped (errors.printable),
    whatever printed them (a name deep in a plan or a comparison cannot drive the terminal)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        if not text.isprintable():
            text = "\n".join(printable(part) for part in text.split("\n"))
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def exit_code(e: MicrorefError) -> int:
    if isinstance(e, UsageError):
        return EXIT_USAGE
    if isinstance(e, UnsupportedOpError):
        return EXIT_UNSUPPORTED
    if isinstance(e, InputError):
        return EXIT_INPUT
    if isinstance(e, MissingPackageError) or type(e).__name__ == "MissingPackage":
        return EXIT_MISSING_PACKAGE
    # ModelError, and the errors of the layers below that refuse a model (a plan that cannot
    # hold, a model run_in_arena cannot execute).
    return EXIT_MODEL


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage mistakes (exit 2, one line) and --help (exit 0)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    stdout = sys.stdout
    sys.stdout = _EscapingStream(stdout)
    try:
        # The command owns its process: BLAS on one thread for its duration (interp.runtime.blas).
        with limited_blas_threads():
            return args.func(args)
    except MicrorefError as e:
        if args.debug:
            traceback.print_exc()
        print(f"microref: {type(e).__name__}: {e}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except MemoryError:
        print("microref: out of memory (the model is within the memory budget, interp.verify.MAX_MEMORY_BYTES, "
              "but this machine has less free)", file=sys.stderr)
        return EXIT_MODEL
    except Exception as e:  # a bug in microref: one line by default, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"microref: internal error ({type(e).__name__}: {printable(e)}); rerun with --debug and please "
                  f"report it", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        sys.stdout = stdout


if __name__ == "__main__":
    sys.exit(main())
