"""The `microref` command line.

Exit codes: 0 success; 1 an unexpected internal error (a bug: please report it, --debug shows
the traceback); 2 bad command-line usage; 3 the model does not fit the memory budget (plan);
4 the model is malformed or rejected (ModelError); 5 unsupported operators (UnsupportedOpError);
6 bad inputs (InputError); 7 a comparison found differences (compare); 8 an optional package is
missing.
"""
from __future__ import annotations

import argparse
import collections
import sys
import traceback

import numpy as np

import ops  # noqa: F401  (importing the package registers every kernel)
from ops.registry import REGISTRY

from .. import planner
from ..api import Interpreter
from ..errors import InputError, MicrorefError, ModelError, UnsupportedOpError
from ..model import load_model
from ..runtime import dequantize_tensor, limited_blas_threads
from ..runtime.inputs import random_inputs
from . import compare as cmp
from .explain import explain

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_OVER_BUDGET = 0, 1, 2, 3
EXIT_MODEL, EXIT_UNSUPPORTED, EXIT_INPUT, EXIT_DIFFERS, EXIT_MISSING_PACKAGE = 4, 5, 6, 7, 8


class MissingPackageError(MicrorefError):
    """An optional dependency needed by this command is not installed."""


def parse_size(text: str) -> int:
    """'256KiB', '256K', '1MiB', '1MB', '262144' -> bytes (K/M = 1024-based, as MCU datasheets use)."""
    t = text.strip().lower().replace(",", "").replace("_", "")
    for suffix, mult in (("kib", 1024), ("mib", 1 << 20), ("kb", 1024), ("mb", 1 << 20),
                         ("k", 1024), ("m", 1 << 20), ("b", 1)):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(t)


def load_inputs(it, paths: list[str] | None, seed: int) -> list[np.ndarray]:
    if not paths:
        return random_inputs(it, np.random.default_rng(seed))
    if len(paths) == 1 and paths[0].endswith(".npz"):
        with np.load(paths[0]) as z:
            names = [d["name"] for d in it.input_details]
            if all(n in z for n in names):
                return [z[n] for n in names]
            keys = sorted(z.files)
            return [z[k] for k in keys]
    out = []
    for p in paths:
        try:
            out.append(np.load(p, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read input file {p!r}: {e}") from None
    return out


def _fmt_array(a: np.ndarray, limit: int = 16) -> str:
    flat = np.asarray(a).ravel()
    body = np.array2string(flat[:limit], separator=", ", max_line_width=100000, precision=6)
    return body[:-1] + (", …]" if flat.size > limit else "]")


def cmd_run(args) -> int:
    it = Interpreter.from_file(args.model, kernels=args.kernels)
    xs = load_inputs(it, args.input, args.seed)
    outs = it.run(xs)
    if args.profile:
        from .profile import format_profile, profile
        rows, total_ms = profile(it, xs, batch=args.batch, repeat=args.repeat)
        print(format_profile(rows, total_ms, args.batch))
    for d, y in zip(it.output_details, outs):
        t = it.tensors[d["index"]]
        print(f'output "{d["name"]}" {t.type_name}{list(t.shape)}:')
        print(f"  raw:         {_fmt_array(y)}")
        if t.quantization is not None and t.dtype.kind != "f":
            print(f"  dequantized: {_fmt_array(dequantize_tensor(t, y))}")
    if args.output:
        payload = {f"input_{i}": x for i, x in enumerate(xs)}
        payload.update({d["name"] or f"output_{j}": y for j, (d, y) in enumerate(zip(it.output_details, outs))})
        np.savez(args.output, **payload)
        print(f"wrote {args.output}")
    return EXIT_OK


def cmd_info(args) -> int:
    m = load_model(args.model)
    sg = m.main
    print(f"model: {args.model}  ({m.file_bytes:,} bytes, weights {m.weight_bytes:,} bytes, "
          f"{len(m.subgraphs)} subgraph{'s' if len(m.subgraphs) > 1 else ''}, schema v{m.version})")
    if m.description:
        print(f"description: {m.description}")
    counts = collections.Counter((op.display_name, op.version, op.op_name in REGISTRY) for op in sg.operators)
    print(f"\noperators ({len(sg.operators)}):")
    unsupported = 0
    for (name, ver, ok), n in sorted(counts.items()):
        mark = "" if ok else "   <- UNSUPPORTED"
        unsupported += 0 if ok else n
        print(f"  {n:4d} x {name} (v{ver}){mark}")
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
            print(f'  [{i}] "{t.name}" {t.type_name}{list(t.shape)} {qdesc(t)}')
    if args.tensors:
        print("\ntensors:")
        for t in sg.tensors:
            kind = "const" if t.is_constant else ("var" if t.is_variable else "act")
            print(f'  [{t.index:3d}] {kind:5s} {t.type_name:7s} {str(list(t.shape)):20s} {qdesc(t):40s} "{t.name}"')
    if args.ops:
        print("\noperator list:")
        for op in sg.operators:
            print(f"  [{op.index:3d}] {op.display_name:22s} in {list(op.inputs)} out {list(op.outputs)} {op.options}")
    return EXIT_OK


def cmd_plan(args) -> int:
    # The plan needs the tensors' lifetimes and each operator's scratch requests, not an Interpreter:
    # models with operators microref cannot execute are planned too (unknown scratch is reported).
    plan = planner.plan_arena(load_model(args.model), budget_bytes=parse_size(args.budget),
                              flash_budget_bytes=parse_size(args.flash_budget))
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
        _plot_plan(plan, args.plot)
    if args.optimize:
        if not args.output:
            raise InputError("--optimize needs -o/--output for the rewritten model")
        with open(args.model, "rb") as f:
            data = f.read()
        improved = plan.improved
        if not improved.tensor_offsets:
            print(f"TFLM's greedy plan ({plan.arena_bytes:,} bytes) could not be improved; "
                  f"{args.output} is an unchanged copy")
        new = planner.write_improved_model(data, plan)
        with open(args.output, "wb") as f:
            f.write(new)
        print(f"wrote {args.output}: offline-planned arena of {improved.arena_bytes:,} bytes "
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
                     f"there; the largest is {_short_label(biggest.label)} ({biggest.size:,} bytes): a smaller input resolution "
                     f"or fewer channels around operator {plan.peak_op} lowers the floor no planner can beat")
    return "\n".join(lines)


def _plot_plan(plan, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingPackageError("--plot needs matplotlib: pip install 'microref[plot]' (or pip install matplotlib)")
    steps = plan.timeline
    xs = list(range(len(steps)))
    ys = [step.live_bytes for step in steps]
    labels = ["inputs" if step.op is None else f"{step.op} {step.op_name}" for step in steps]
    fig, ax = plt.subplots(figsize=(max(8, 0.28 * len(steps) + 3), 4.5))
    colors = ["#c0392b" if step.op == plan.peak_op else "#4a7ab5" for step in steps]
    ax.bar(xs, ys, color=colors)
    ax.axhline(plan.arena_bytes, color="#333333", linestyle=":", label=f"TFLM greedy arena {plan.arena_bytes:,} B")
    improved = plan.improved.arena_bytes
    if improved < plan.arena_bytes:
        ax.axhline(improved, color="#27ae60", linestyle="-.", label=f"improved plan {improved:,} B")
    top = max(ys + [plan.arena_bytes]) * 1.15
    if plan.budget_bytes <= 4 * top:
        ax.axhline(plan.budget_bytes, color="#c0392b", linestyle="--", label=f"budget {plan.budget_bytes:,} B")
        top = max(top, plan.budget_bytes * 1.05)
    else:
        ax.text(0.99, 0.97, f"budget {plan.budget_bytes:,} B (off scale)", transform=ax.transAxes,
                ha="right", va="top", fontsize=9, color="#c0392b")
    ax.set_ylim(0, top)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=75, fontsize=7)
    ax.set_ylabel("live activation bytes")
    ax.set_title(f"arena over time (peak at operator {plan.peak_op}, red)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def _tensor_key(t) -> str:
    return f"{t.index:04d}_" + "".join(c if c.isalnum() or c in "._-" else "_" for c in t.name)[:80]


def cmd_trace(args) -> int:
    it = Interpreter.from_file(args.model, kernels=args.kernels)
    xs = load_inputs(it, args.input, args.seed)
    it.run(xs, keep=True)
    print(f"{'op':>4}  {'operator':22s} {'output tensor':44s} {'type/shape':22s} {'raw min..max':>14s}  real range")
    payload = {}
    for i, ti in enumerate(it.subgraph.inputs):
        payload[_tensor_key(it.tensors[ti])] = it.tensor(ti)
    for op in it.subgraph.operators:
        for ti in op.outputs:
            t = it.tensors[ti]
            v = it.tensor(ti)
            payload[_tensor_key(t)] = v
            real = dequantize_tensor(t, v)
            print(f"{op.index:>4}  {op.display_name:22s} {t.name[:44]:44s} {t.type_name + str(list(t.shape)):22s} "
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
                print(f"       {kind[:-1]:9s} {name[:44]:44s} {old.dtype.name + str(list(old.shape)):22s} "
                      f"{str(old.min()) + '..' + str(old.max()):>16s}  {new.min()}..{new.max()}")
    if args.dump:
        np.savez(args.dump, **payload)
        print(f"wrote {len(payload)} tensors to {args.dump} (keys: 4-digit tensor index + name)")
    return EXIT_OK


def cmd_compare(args) -> int:
    import json
    it = Interpreter.from_file(args.model, kernels=args.kernels)
    if args.float_model:
        float_it = Interpreter.from_file(args.float_model, kernels=args.kernels)
        if args.data:
            with np.load(args.data) as z:
                keys = [d["name"] for d in float_it.input_details]
                real = [z[k] for k in keys] if all(k in z for k in keys) else [z[k] for k in sorted(z.files)]
        else:
            rng = np.random.default_rng(args.seed)
            real = [rng.standard_normal(tuple(d["shape"])).astype(np.float32) for d in float_it.input_details]
        rows = cmp.compare_float(it, float_it, real)
        if args.json:
            print(json.dumps([vars(r) for r in rows], indent=2, default=float))
        else:
            print(cmp.format_float_comparison(rows))
        if args.plot:
            _plot_layers(rows, args.plot)
        return EXIT_OK
    with open(args.model, "rb") as f:
        data = f.read()
    xs = load_inputs(it, args.input, args.seed)
    runtimes = cmp.RUNTIMES if args.against == "all" else (args.against,)
    results = [cmp.compare_runtime(it, data, xs, rt) for rt in runtimes]
    if args.json:
        print(json.dumps([cmp.runtime_comparison_to_json(r) for r in results], indent=2))
    else:
        print("\n\n".join(cmp.format_runtime_comparison(r) for r in results))
    return EXIT_OK if all(r.first_divergent is None for r in results) else EXIT_DIFFERS


def _plot_layers(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingPackageError("--plot needs matplotlib: pip install 'microref[plot]' (or pip install matplotlib)")
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot([r.op_index for r in rows], [r.snr_db for r in rows], marker="o")
    ax.set_xlabel("operator")
    ax.set_ylabel("SNR of int8 vs float (dB)")
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


def cmd_explain(args) -> int:
    it = Interpreter.from_file(args.model, kernels=args.kernels)
    xs = load_inputs(it, args.input, args.seed)
    try:
        coords = tuple(int(c) for c in args.at.replace(" ", "").split(","))
    except ValueError:
        raise InputError(f"--at takes comma-separated integers, e.g. 0,3,4,7; got {args.at!r}") from None
    print(explain(it, args.op, coords, xs).text)
    return EXIT_OK


def _c_array(name: str, a: np.ndarray) -> str:
    ctype = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t",
             "float32": "float", "int64": "int64_t", "bool": "bool"}[a.dtype.name]
    flat = a.ravel()
    if a.dtype.kind == "f":
        body = ", ".join(f"{float(v)!r}f" for v in flat)
    else:
        body = ", ".join(str(int(v)) for v in flat)
    dims = "".join(f"[{d}]" for d in a.shape) or "[1]"
    return f"static const {ctype} {name}{dims} = {{{body}}};\n"


def cmd_vectors(args) -> int:
    import os
    it = Interpreter.from_file(args.model, kernels=args.kernels)
    os.makedirs(args.output, exist_ok=True)
    base = os.path.splitext(os.path.basename(args.model))[0]
    ident = "".join(c if c.isalnum() else "_" for c in base)
    rng = np.random.default_rng(args.seed)
    samples = [load_inputs(it, args.input, args.seed)] if args.input else [random_inputs(it, rng)
                                                                           for _ in range(args.count)]
    batched_in = [np.stack([s[i] for s in samples]) for i in range(len(samples[0]))]
    outs = it.run_batch(batched_in, keep=args.per_op)
    payload = {f"input_{i}": x for i, x in enumerate(batched_in)}
    payload.update({f"output_{j}": y for j, y in enumerate(outs)})
    npz = os.path.join(args.output, f"{base}_vectors.npz")
    np.savez(npz, **payload)
    header = os.path.join(args.output, f"{base}_vectors.h")
    with open(header, "w") as f:
        f.write(f"// Test vectors for {base}: {len(samples)} sample(s); expected outputs are TFLM reference-kernel\n"
                f"// results as computed by microref (bit-exact with tflite-micro==0.dev20261023182759).\n")
        f.write(f"#pragma once\n#include <stdint.h>\n#include <stdbool.h>\n#define {ident.upper()}_NUM_VECTORS "
                f"{len(samples)}\n")
        for k, v in payload.items():
            f.write(_c_array(f"{ident}_{k}", v))
    written = [npz, header]
    if args.per_op:
        opdir = os.path.join(args.output, f"{base}_ops")
        os.makedirs(opdir, exist_ok=True)
        for op in it.subgraph.operators:
            vec = {}
            for i, ti in enumerate(op.inputs):
                if ti >= 0 and it.tensors[ti].data is None:
                    vec[f"input_{i}"] = it.tensor(ti)
            for j, ti in enumerate(op.outputs):
                vec[f"output_{j}"] = it.tensor(ti)
            np.savez(os.path.join(opdir, f"op{op.index:03d}_{op.display_name}.npz"), **vec)
        written.append(opdir + "/")
    print("wrote " + ", ".join(written))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="microref", description="Bit-exact TFLM reference interpreter and arena planner "
                                "for int8 TFLite models.", epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    # --debug is accepted after the command too; SUPPRESS keeps a global --debug from being reset.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    # Commands that run the model choose the kernels: the fast ones (default) or the plain
    # reference kernels of ops.reference (same bytes, slower, the ones to read and step through).
    running = argparse.ArgumentParser(add_help=False, parents=[common])
    running.add_argument("--kernels", choices=("fast", "reference"), default="fast",
                         help="fast kernels (default) or the plain reference kernels of ops.reference")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", parents=[running], help="run a model on given or seeded random inputs")
    r.add_argument("model")
    r.add_argument("--input", nargs="+", metavar="X.npy", help="one .npy per model input, or one .npz")
    r.add_argument("--seed", type=int, default=0, help="seed for random inputs (default 0)")
    r.add_argument("--output", metavar="OUT.npz", help="save inputs and outputs")
    r.add_argument("--profile", action="store_true",
                   help="time every operator (op, MACs, ms, G MAC/s), slowest first, on one thread")
    r.add_argument("--batch", type=int, default=1, metavar="N",
                   help="with --profile: time run_batch on N copies of the inputs (default 1: run)")
    r.add_argument("--repeat", type=int, default=5, metavar="N",
                   help="with --profile: timed runs, medians reported (default 5)")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("info", parents=[common], help="operators, support, inputs and outputs of a model")
    i.add_argument("model")
    i.add_argument("--tensors", action="store_true", help="list every tensor")
    i.add_argument("--ops", action="store_true", help="list every operator with its options")
    i.set_defaults(func=cmd_info)

    pl = sub.add_parser("plan", parents=[common], help="TFLM's tensor arena plan, peak RAM and a verdict against a budget")
    pl.add_argument("model")
    pl.add_argument("--budget", default="256KiB", help="RAM budget for the arena (default 256KiB)")
    pl.add_argument("--flash-budget", default="1MiB", help="flash budget for the model (default 1MiB)")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.add_argument("--plot", metavar="OUT.png", help="memory-over-time chart (needs matplotlib)")
    pl.add_argument("--optimize", action="store_true", help="write the improved plan into a copy of the model")
    pl.add_argument("-o", "--output", metavar="OUT.tflite", help="where --optimize writes the model")
    pl.set_defaults(func=cmd_plan)

    t = sub.add_parser("trace", parents=[running], help="run once and show (and dump) every intermediate tensor")
    t.add_argument("model")
    t.add_argument("--input", nargs="+", metavar="X.npy")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--dump", metavar="TRACE.npz", help="write every tensor to an .npz")
    t.set_defaults(func=cmd_trace)

    c = sub.add_parser("compare", parents=[running], help="compare with TFLM/LiteRT tensor by tensor, or int8 against a float model")
    c.add_argument("model")
    c.add_argument("--against", choices=("tflm", "litert", "litert-ref", "all"), default="tflm",
                   help="runtime to compare with (litert = LiteRT's default kernels, litert-ref = its reference "
                        "kernels)")
    c.add_argument("--float", dest="float_model", metavar="FLOAT.tflite",
                   help="compare the int8 MODEL with this float model layer by layer instead")
    c.add_argument("--data", metavar="INPUTS.npz", help="real-valued inputs for --float (default: seeded normal)")
    c.add_argument("--input", nargs="+", metavar="X.npy")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true")
    c.add_argument("--plot", metavar="OUT.png", help="with --float: SNR per layer chart (needs matplotlib)")
    c.set_defaults(func=cmd_compare)

    e = sub.add_parser("explain", parents=[running], help="the integer arithmetic behind one output element of one operator")
    e.add_argument("model")
    e.add_argument("--op", type=int, required=True, help="operator index")
    e.add_argument("--at", required=True, help="output coordinates, comma-separated, e.g. 0,3,4,7")
    e.add_argument("--input", nargs="+", metavar="X.npy")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=cmd_explain)

    v = sub.add_parser("vectors", parents=[running], help="export inputs and expected outputs (npz and C header) for conformance suites")
    v.add_argument("model")
    v.add_argument("-o", "--output", required=True, metavar="DIR")
    v.add_argument("--count", type=int, default=4, help="number of seeded random samples (default 4)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--input", nargs="+", metavar="X.npy", help="use these inputs instead of random ones")
    v.add_argument("--per-op", action="store_true", help="also write each operator's inputs and outputs")
    v.set_defaults(func=cmd_vectors)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # The command owns its process: BLAS on one thread for its duration (interp.runtime.blas).
        with limited_blas_threads():
            return args.func(args)
    except MicrorefError as e:
        if args.debug:
            traceback.print_exc()
        kind = type(e).__name__
        print(f"microref: {kind}: {e}", file=sys.stderr)
        if isinstance(e, UnsupportedOpError):
            return EXIT_UNSUPPORTED
        if isinstance(e, ModelError):
            return EXIT_MODEL
        if isinstance(e, InputError):
            return EXIT_INPUT
        if isinstance(e, MissingPackageError) or type(e).__name__ == "MissingPackage":
            return EXIT_MISSING_PACKAGE
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a bug in microref: one line by default, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"microref: internal error ({type(e).__name__}: {e}); rerun with --debug and please report it",
                  file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
