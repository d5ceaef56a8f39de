"""The README's "Supported operators" table, generated from the op registry.

Every kernel class declares what it supports next to the code that supports it:

    @register("GATHER")
    class Gather(OpKernel):
        supported_types = "int8, float32 (int32 positions)"   # the input types TFLM's kernel accepts
        notes = "axis, batch_dims (negative too); ..."        # what a user should know

and the operators TFLM registers that microref refuses by design (``ops.unrunnable``) declare
``refused``, the reason. This module turns them into the table:

    python -m interp.tools.optable                # print the markdown
    python -m interp.tools.optable --check README.md
    python -m interp.tools.optable --write README.md

Rows: one per kernel class (all the names it is registered under), and kernels of one module declaring
exactly the same types and notes share a row; builtin operators first, then custom operators (by custom_code),
each alphabetically; the refused operators in a table of their own. In README.md the tables sit
between ``<!-- optable:begin -->`` and ``<!-- optable:end -->``; tests/test_optable.py fails when
they differ from this output.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import ops  # noqa: F401  (importing the package registers every kernel)
from ops.registry import REGISTRY, OpKernel

BEGIN = "<!-- optable:begin -->"
END = "<!-- optable:end -->"


@dataclass(frozen=True)
class Row:
    names: tuple[str, ...]
    types: str
    notes: str
    custom: bool    # registered by custom_code, not as a builtin operator
    refused: bool   # registered by TFLM, refused by microref (``notes`` says why)


def _builtin_names() -> frozenset[str]:
    from interp.model import BUILTIN_OPERATOR_NAMES
    return frozenset(BUILTIN_OPERATOR_NAMES.values())


def undeclared() -> list[str]:
    """Registered kernel classes that do not declare ``supported_types`` and ``notes`` themselves
    (an inherited declaration does not count: a new subclass must say what it supports)."""
    bad = []
    for cls in sorted(set(REGISTRY.values()), key=lambda c: c.__qualname__):
        own = vars(cls)
        if not isinstance(own.get("supported_types"), str) or not isinstance(own.get("notes"), str):
            bad.append(f"{cls.__module__}.{cls.__qualname__}")
        elif not own["supported_types"].strip():
            bad.append(f"{cls.__module__}.{cls.__qualname__} (empty supported_types)")
    return bad


def rows() -> list[Row]:
    """The table's rows, in table order (see the module docstring)."""
    missing = undeclared()
    if missing:
        raise ValueError("kernel classes without supported_types/notes: " + ", ".join(missing))
    builtins = _builtin_names()
    by_class: dict[type[OpKernel], list[str]] = {}
    for name, cls in REGISTRY.items():
        by_class.setdefault(cls, []).append(name)
    grouped: dict[tuple, list[str]] = {}
    for cls, names in by_class.items():
        refused = bool(getattr(cls, "refused", ""))
        custom = not all(n in builtins for n in names)
        key = (cls.supported_types, cls.notes, custom, refused, cls.__module__)
        grouped.setdefault(key, []).extend(names)
    out = [Row(tuple(sorted(names, key=str.lower)), types, notes, custom, refused)
           for (types, notes, custom, refused, _), names in grouped.items()]
    return sorted(out, key=lambda r: (r.refused, r.custom, r.names[0].lower()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def markdown() -> str:
    """The generated block, markers included."""
    table = rows()
    lines = [BEGIN, "| op | types | notes |", "|---|---|---|"]
    for r in table:
        if not r.refused:
            lines.append(f"| {', '.join(r.names)} | {_cell(r.types)} | {_cell(r.notes)} |")
    refused = [r for r in table if r.refused]
    if refused:
        lines += ["", "Registered by TFLM's op resolver, refused by microref (an `UnsupportedOpError` at load "
                  "that says why):", "", "| op | why |", "|---|---|"]
        lines += [f"| {', '.join(r.names)} | {_cell(r.notes)} |" for r in refused]
    lines.append(END)
    return "\n".join(lines)


def extract(text: str) -> str | None:
    """The generated block of a README (markers included), or None without markers."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return None
    return text[start:end + len(END)]


def replace(text: str) -> str:
    block = extract(text)
    if block is None:
        raise ValueError(f"no {BEGIN} ... {END} block")
    start = text.find(BEGIN)
    return text[:start] + markdown() + text[start + len(block):]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m interp.tools.optable", description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--check", metavar="README", help="exit 1 when README's table differs from the registry's")
    g.add_argument("--write", metavar="README", help="rewrite README's table from the registry")
    args = p.parse_args(argv)
    if args.check:
        with open(args.check, encoding="utf-8") as f:
            same = extract(f.read()) == markdown()
        print(f"{args.check}: the operator table is {'up to date' if same else 'out of date'}")
        return 0 if same else 1
    if args.write:
        with open(args.write, encoding="utf-8") as f:
            text = f.read()
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(replace(text))
        return 0
    print(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
