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
import sys
import traceback

import ops  # noqa: F401  (importing the package registers every kernel)

from ..errors import InputError, MicrorefError, UnsupportedOpError, printable
from ..runtime import batch_tuning
from .cli_io import (  # noqa: F401
    EXIT_DIFFERS,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_MISSING_PACKAGE,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_OVER_BUDGET,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    MAX_VECTOR_COUNT,
    MissingPackageError,
    UsageError,
    _count_arg,
    _index_arg,
    _Parser,
    _seed_arg,
    _size_arg,
    load_inputs,
    parse_size,
    read_arrays,
)
from .commands import (  # noqa: F401
    cmd_compare,
    cmd_explain,
    cmd_info,
    cmd_plan,
    cmd_run,
    cmd_trace,
    cmd_vectors,
)
from .eval import _positive
from .eval import add_parser as add_eval_parser
from .explain import NUMERICS_CHOICES


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
    # Long-running commands show a progress bar on stderr when it is a terminal.
    quiet = _Parser(add_help=False)
    quiet.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a "
                       "terminal)")
    # The sweeps (a folder of models) run on the engines of interp.scale, as eval does.
    engines = _Parser(add_help=False)
    engines.add_argument("--workers", type=_positive, metavar="N",
                         help="with a folder of models: worker processes (default: the machine's cores, or this "
                              "process for fewer than 8 tasks)")
    engines.add_argument("--engine", choices=("local", "ray"), default=None,
                         help="with a folder of models: local processes (default) or Ray tasks (pip install "
                              "'microref[ray]')")
    engines.add_argument("--address", metavar="ADDR",
                         help="with --engine ray: an existing cluster (host:port, ray://...)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", parents=[running, writing, quiet], help="run a model on given or seeded random inputs")
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

    c = sub.add_parser("compare", parents=[running, writing, quiet, engines],
                       help="compare with TFLM/LiteRT tensor by tensor, or int8 against a float model; a folder of "
                            "models × N seeds as a conformance sweep",
                       description="Compare MODEL with TFLM (or LiteRT) tensor by tensor, or with its float original "
                                   "(--float). MODEL a folder (every *.tflite under it, sorted) or --seeds N: a "
                                   "conformance sweep, every model × N seeds on the engines of eval (--workers, "
                                   "--engine ray), one row per model; exit 7 when any case differs or the other "
                                   "runtime refuses or crashes, models microref refuses reported, not fatal.")
    c.add_argument("model", help="a .tflite file, or a folder of them (a sweep)")
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
    c.add_argument("--seed", type=_seed_arg, default=0, help="seed of the random inputs (a sweep: the first seed)")
    c.add_argument("--seeds", type=_count_arg, default=None, metavar="N",
                   help="a sweep: N seeds per model, --seed .. --seed+N-1 (default 1)")
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

    v = sub.add_parser("vectors", parents=[running, writing, quiet, engines],
                       help="export inputs and expected outputs (npz and C header) for conformance suites; a folder "
                            "of models gives a subfolder per model")
    v.add_argument("model", help="a .tflite file, or a folder of them (OUTPUT/<model path without .tflite>/ each)")
    v.add_argument("-o", "--output", required=True, metavar="DIR")
    v.add_argument("--json", action="store_true", help="what was written, as JSON")
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
        # The command owns its process: BLAS on one thread and freed memory kept for its duration
        # (interp.runtime.blas).
        with batch_tuning():
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
