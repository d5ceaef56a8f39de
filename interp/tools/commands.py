"""The `microref` commands (run, info, plan, trace, compare, explain, vectors): each takes the
parsed arguments and returns an exit code. The parser and main() are in ``cli``; ``eval`` is in
``interp.tools.eval``."""
from __future__ import annotations

import collections
import contextlib
import os

import numpy as np

import ops  # noqa: F401  (importing the package registers every kernel)
from ops.registry import kernel_class

from .. import planner
from ..api import Interpreter
from ..errors import InputError, ModelError, UnsupportedOpError, printable
from ..model import load_model, verify
from ..runtime import dequantize_tensor
from . import compare as cmp
from . import plots
from . import sweep as swp
from . import vectors as vec
from .cli_io import (  # noqa: F401
    EXIT_DIFFERS,
    EXIT_OK,
    EXIT_OVER_BUDGET,
    UsageError,
    _max_input_elements,
    _plot_path,
    check_writable,
    load_inputs,
    output_path,
    read_arrays,
    save_npz,
)
from .explain import NUMERICS_CHOICES, explain
from .progress import Progress


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
        with Progress("profile", quiet=getattr(args, "quiet", False), unit="run") as bar, \
                _counting_runs(it, bar, args.repeat + 1):
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


@contextlib.contextmanager
def _counting_runs(it, bar, total: int):
    """The bar moves after every run or run_batch of ``it`` inside the block (profile's warm-up and
    timed runs); ``it`` is this command's own interpreter, left as it was after the block."""
    if not bar.enabled:
        yield
        return
    done = [0]

    def counted(method):
        def call(*a, **kw):
            try:
                return method(*a, **kw)
            finally:
                done[0] += 1
                bar(min(done[0], total), total)
        return call
    it.run, it.run_batch = counted(it.run), counted(it.run_batch)
    try:
        yield
    finally:
        del it.run, it.run_batch


def cmd_info(args) -> int:
    m = load_model(args.model)
    sg = m.main
    print(f"model: {printable(args.model)}  ({m.file_bytes:,} bytes, weights {m.weight_bytes:,} bytes, "
          f"{len(m.subgraphs)} subgraph{'s' if len(m.subgraphs) > 1 else ''}, schema v{m.version})")
    if m.description:
        print(f"description: {printable(m.description)}")
    counts = collections.Counter((op.display_name, op.version, kernel_class(op) is not None) for op in sg.operators)
    print(f"\noperators ({len(sg.operators)}):")
    unsupported = 0
    for (name, ver, ok), n in sorted(counts.items()):
        mark = "" if ok else "   <- UNSUPPORTED"
        unsupported += 0 if ok else n
        print(f"  {n:4d} x {printable(name)} (v{ver}){mark}")
    # Variant-level support (types, options) is decided by each kernel's prepare step.
    warnings: list[str] = []
    try:
        it = Interpreter(m)
        verdict = "every operator is supported"
        # What TFLM runs as written but a reader may not expect: in-place operators, tensors
        # written twice, overwritten graph inputs.
        warnings = [note for s in sorted(it.graphs) for note in it.graphs[s].notes]
    except UnsupportedOpError as e:
        verdict = str(e)
    except ModelError as e:
        verdict = f"the model is rejected: {e}"
    print(f"\nsupport: {verdict}")
    for note in warnings:
        print(f"  note: {printable(note)}")

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
    if swp.is_sweep(args):
        return swp.cmd_compare_sweep(args)
    swp.check_single(args)
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
        with Progress("compare --float", quiet=args.quiet) as bar:
            rows = cmp.compare_float_samples(it, float_it, inputs.samples, progress=bar)
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


def _op_file_names(op) -> list[str]:
    # A custom operator's code comes from the model: vec.op_stem keeps it from naming another directory.
    return [vec.op_stem(op) + ".npz", vec.op_stem(op) + ".h"]


def cmd_vectors(args) -> int:
    if os.path.isdir(args.model):
        return swp.cmd_vectors_sweep(args)
    swp.check_single(args)
    it = Interpreter.from_file(args.model, kernels=args.kernels)
    base = os.path.splitext(os.path.basename(args.model))[0]
    _vector_files(args, base, [name for op in it.subgraph.operators for name in _op_file_names(op)])
    if args.input:
        # One .npz, or one .npy per input, each holding one sample or N: [N, …].
        bound = _max_input_elements(it.input_details) * min(vec.vector_fit(it), vec.MAX_FILE_SAMPLES)
        loaded = [read_arrays(p, bound) for p in args.input]
        label = ", ".join(printable(p) for p in args.input)
        if any(isinstance(a, dict) for a in loaded):
            if len(loaded) > 1:
                raise InputError("pass one .npz holding every input, or one .npy per input, not both")
            loaded = vec.arrays_for_inputs(it, loaded[0], label)
        inputs, source = vec.samples_from_arrays(it, loaded, args.count, label)
        vec.check_vector_count(it, int(inputs[0].shape[0]) if inputs else 1)
    else:
        vec.check_vector_count(it, args.count or vec.DEFAULT_COUNT)
        inputs, source = vec.random_samples(it, args.count, args.seed)
    try:
        os.makedirs(args.output, exist_ok=True)
        with Progress("vectors: run", quiet=args.quiet) as bar:
            result = vec.write_vectors(it, inputs, args.output, base, per_op=args.per_op,
                                       flash_budget=args.flash_budget, model_bytes=os.path.getsize(args.model),
                                       source=source, progress=bar)
    except OSError as e:
        raise UsageError(f"cannot write into {printable(args.output)!r}: {e.strerror or e}") from None
    if args.json:
        import json
        print(json.dumps({"model": args.model, "samples": result.samples, "source": source,
                          "written": result.written, "warnings": result.warnings,
                          "data_bytes": result.data_bytes}, indent=2))
        return EXIT_OK
    print(f"{result.samples} vector{'s' if result.samples != 1 else ''}: {source}")
    for w in result.warnings:
        print(w)
    print("wrote " + ", ".join(printable(w) for w in result.written))
    return EXIT_OK
