"""`microref eval` and the many-sample forms of `compare --float --data` and `vectors --input`.

    microref eval MODEL --data DATA [--labels LABELS] [--float FLOAT_MODEL] [--against litert]
                  [--batch-size N] [--workers N] [--engine local|ray [--address ADDR]]
                  [--json] [--quiet] [--output preds.npz]

DATA is an .npy/.npz file whose first axis is samples (memory-mapped), or a folder of images
(see interp.scale.data). The report: top-1/top-k accuracy of the int8 model as TFLM computes it;
with --float the float model's accuracy, the top-1 agreement and the samples where they
disagree; with --against litert how often LiteRT's top-1 differs from TFLM's and the LSB
histogram of every output; a per-class confusion summary. A progress bar (rate, ETA) goes to
stderr when it is a terminal, unless --quiet.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import stat
import sys

import numpy as np

from ..errors import MicrorefError, printable
from ..scale import evaluate
from .cli_io import UsageError
from .progress import Progress  # noqa: F401  (its home is interp.tools.progress)

SHOWN_INDICES = 20  # disagreeing sample indices printed (--json lists them all)
SHOWN_CLASSES = 20  # classes in the per-class table (the worst recall first beyond this)


def usage_error(message: str) -> MicrorefError:
    """The CLI's UsageError (exit 2)."""
    return UsageError(message)


# ----------------------------------------------------------------------------- outputs

def check_output(path: str, force: bool) -> str:
    """The path --output writes (".npz" appended as numpy does), checked before any work: its
    folder exists, it is not a folder, and it does not exist unless --force."""
    final = path if path.endswith(".npz") else path + ".npz"
    parent = os.path.dirname(os.path.abspath(final))
    if not os.path.isdir(parent):
        raise usage_error(f"cannot write {printable(final)!r}: its directory {printable(parent)!r} does not exist")
    try:
        st = os.stat(final)
    except FileNotFoundError:
        return final
    except OSError as e:
        raise usage_error(f"cannot write {printable(final)!r}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise usage_error(f"cannot write {printable(final)!r}: it is not a regular file")
    if not force:
        raise usage_error(f"{printable(final)!r} exists; pass --force to overwrite it")
    return final


def _output_keys(names: list[str]) -> list[str]:
    keys, seen = [], set()
    for j, name in enumerate(names):
        key = name or f"output_{j}"
        if key in seen:
            key = f"{key}#{j}"
        seen.add(key)
        keys.append(key)
    return keys


# ----------------------------------------------------------------------------- eval

def parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo == hi:
        raise argparse.ArgumentTypeError(f"expected two different finite numbers LO,HI, got {text!r}")
    return lo, hi


def _positive(text: str) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def add_parser(sub, parents) -> argparse.ArgumentParser:
    """The `eval` command, added to the CLI's subparsers."""
    e = sub.add_parser("eval", parents=parents, help="accuracy of the int8 model over a dataset, as TFLM computes it "
                       "(with the float model and LiteRT beside it)",
                       description="Run the int8 MODEL over every sample of DATA exactly as TFLM computes it and "
                       "report accuracy, agreement with the float model and LiteRT, and a confusion summary.")
    e.add_argument("model")
    e.add_argument("--data", required=True, metavar="DATA",
                   help=".npy/.npz (first axis samples, memory-mapped) or a folder of images (class subfolders "
                        "give the labels)")
    e.add_argument("--labels", metavar="LABELS", help="class index per sample: .npy, or a text file, one per line")
    e.add_argument("--float", dest="float_model", metavar="FLOAT_MODEL",
                   help="the float model: its accuracy and top-1 agreement with the int8 model")
    e.add_argument("--against", choices=("litert",), help="LiteRT's top-1 disagreements and LSB histogram")
    e.add_argument("--top-k", type=_positive, default=5, metavar="K", help="top-k accuracy (default 5)")
    e.add_argument("--output-index", type=int, default=0, metavar="I",
                   help="which output holds the class scores (default 0)")
    e.add_argument("--batch-size", type=_positive, metavar="N",
                   help="samples per chunk (default: about 64 MB of activations)")
    e.add_argument("--workers", type=_positive, metavar="N", help="worker processes (default: the machine's cores)")
    e.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local processes (default) or Ray tasks (pip install 'microref[ray]')")
    e.add_argument("--address", metavar="ADDR", help="with --engine ray: an existing cluster (host:port, ray://...)")
    e.add_argument("--image-range", type=parse_range, metavar="LO,HI",
                   help="image folders: pixels 0..255 map linearly to LO..HI (default: what the input represents)")
    e.add_argument("--no-range-check", action="store_true",
                   help="quantize real values even when most lie outside what the input represents")
    e.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.add_argument("--output", metavar="PREDS.npz", help="write every output tensor, samples first, by output name")
    e.add_argument("--force", action="store_true", help="overwrite --output")
    e.set_defaults(func=cmd_eval)
    return e


def cmd_eval(args) -> int:
    if args.address and args.engine != "ray":
        raise usage_error("--address is for --engine ray")
    output = check_output(args.output, args.force) if args.output else None
    with Progress("eval", quiet=args.quiet) as bar:
        result = evaluate(args.model, args.data, labels=args.labels, float_model=args.float_model,
                          against=args.against, top_k=args.top_k, classifier_output=args.output_index,
                          engine=args.engine, workers=args.workers, address=args.address,
                          chunk_size=args.batch_size, image_range=args.image_range,
                          check_range=not args.no_range_check, kernels=getattr(args, "kernels", "fast"),
                          keep_outputs=output is not None, progress=bar)
    if output:
        keys = _output_keys(result.output_names)
        try:
            np.savez(output, **dict(zip(keys, result.outputs)))
        except OSError as e:
            raise usage_error(f"cannot write {printable(output)!r}: {e.strerror or e}") from None
    ds = result.dataset
    if ds.ignored and not args.quiet:
        print(f"microref: ignored {len(ds.ignored)} file(s) that are not images: "
              + ", ".join(printable(p) for p in ds.ignored[:5]) + (", ..." if len(ds.ignored) > 5 else ""),
              file=sys.stderr)
    if args.json:
        payload = result.to_json()
        payload["model"] = args.model
        if args.float_model:
            payload["float_model"] = args.float_model
        if ds.classes:
            payload["class_names"] = ds.classes
        if output:
            payload["output_file"] = output
        print(json.dumps(payload, indent=2))
    else:
        print(format_evaluation(result, args.model, output))
    return 0


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _indices(values: list[int]) -> str:
    shown = ", ".join(str(i) for i in values[:SHOWN_INDICES])
    return shown + (f", … ({len(values) - SHOWN_INDICES:,} more; --json lists all)" if len(values) > SHOWN_INDICES
                    else "")


def format_evaluation(result, model: str, output: str | None = None) -> str:
    s = result.summary
    n, k, classes = s["samples"], s["top_k"], s["classes"]
    ds = result.dataset
    lines = [f"microref eval {printable(model)}: {ds.description}"]
    what = f"{n:,} samples"
    if classes:
        what += f", {classes} classes (output \"{printable(s['classifier_output'])}\")"
    lines.append(f"  {what}")
    rate = n / result.seconds if result.seconds > 0 else float("inf")
    lines.append(f"  {result.seconds:.1f} s, {rate:,.1f} samples/s ({result.engine} engine, {result.workers} "
                 f"worker{'s' if result.workers != 1 else ''}, chunks of {result.chunk_size})")
    if ds.image_range is not None:
        lo, hi = ds.image_range
        lines.append(f"  images: pixels 0..255 -> real {lo:.6g}..{hi:.6g}, quantized with the input's scale and zero "
                     f"point")
    names = {c: name for c, name in enumerate(ds.classes)} if ds.classes else {}

    def cls(c):
        return f"{c} ({printable(names[c])})" if c in names else str(c)

    show_k = classes is not None and k < classes and k > 1
    if "int8" in s:
        lines += ["", f"{'accuracy':18s} {'top-1':>8s}" + (f" {'top-' + str(k):>8s}" if show_k else "")]
        rows = [("int8 (TFLM)", s["int8"])]
        if "float" in s and "top1" in s["float"]:
            rows.append(("float", s["float"]))
        for label, acc in rows:
            lines.append(f"  {label:16s} {_pct(acc['top1']):>8s}" + (f" {_pct(acc[f'top{k}']):>8s}" if show_k else ""))
    if "float" in s:
        f = s["float"]
        if "top1_agreement" in f:
            differ = f["disagreeing_samples"]
            lines += ["", f"int8 vs float: the same top-1 on {_pct(f['top1_agreement'])} of samples"
                      + (f"; {len(differ):,} differ: {_indices(differ)}" if differ else "")]
        for name, o in f["outputs"].items():
            lines.append(f"  output \"{printable(name)}\" (dequantized) vs float: SNR {_db(o['snr_db'])} over the set, "
                         f"min {_db(o['snr_db_min'])} per sample, max |error| {o['max_abs_error']:.4g}")
    if "litert" in s:
        lt = s["litert"]
        lines.append("")
        if "top1_differs" in lt:
            lines.append(f"LiteRT vs TFLM: top-1 differs on {lt['top1_differs']:,} samples "
                         f"({_pct(lt['top1_disagreement'])})" + (f": {_indices(lt['disagreeing_samples'])}"
                                                                  if lt["top1_differs"] else ""))
        lines.append("  |TFLM - LiteRT| per output value, in LSB:")
        for name, o in lt["outputs"].items():
            hist = "  ".join(f"{key}: {count:,}" for key, count in o["histogram"].items())
            lines.append(f"    \"{printable(name)}\": {hist}; max {o['max_lsb']} LSB, {o['samples_differing']:,} "
                         f"samples differ")
    if "confusion" in s:
        per = s["confusion"]["per_class"]
        shown = per if len(per) <= SHOWN_CLASSES else sorted(
            (c for c in per if c["support"]), key=lambda c: (c["recall"], c["class"]))[:SHOWN_CLASSES]
        title = "per class" if len(per) <= SHOWN_CLASSES else f"the {SHOWN_CLASSES} classes with the lowest recall"
        lines += ["", f"{title} (label: samples, recall, most often predicted as):"]
        for c in shown:
            mistaken = (f"{cls(c['most_often_predicted_as'])} ({c['times']:,})"
                        if c["most_often_predicted_as"] is not None else "—")
            lines.append(f"  {cls(c['class'])}: {c['support']:,}, {_pct(c['recall'])}, {mistaken}")
        confused = s["confusion"]["most_confused"]
        if confused:
            lines.append("most confused (label -> predicted): "
                         + ", ".join(f"{cls(m['label'])} -> {cls(m['predicted'])} ({m['count']:,})"
                                     for m in confused))
    elif classes and "predicted_per_class" in s:
        counts = s["predicted_per_class"]
        top = sorted(range(len(counts)), key=lambda c: -counts[c])[:SHOWN_CLASSES]
        lines += ["", "predicted classes (no labels): " + ", ".join(f"{cls(c)}: {counts[c]:,}" for c in top
                                                                    if counts[c])]
    if "float" in s and s["float"].get("disagreeing_samples") or "litert" in s and s["litert"].get("top1_differs"):
        lines += ["", "sample indices count from 0 along DATA's first axis (microref explain / trace --input take one "
                      "sample: np.save('s.npy', np.load(DATA, mmap_mode='r')[i]))"]
    if output:
        lines.append(f"wrote {printable(output)} ({len(result.output_names)} output(s), {n:,} samples each)")
    return "\n".join(lines)


def _db(x) -> str:
    if isinstance(x, str):
        return f"{x} dB"
    return "—" if x is None else f"{x:.2f} dB"
