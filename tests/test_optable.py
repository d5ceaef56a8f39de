"""README's "Supported operators" table is generated from the registry (interp/tools/optable.py):
every kernel class declares its types and notes, and the README holds exactly the generated table."""
from __future__ import annotations

import pathlib

import pytest

import ops  # noqa: F401  (registers every kernel)
from interp.tools import optable
from ops import registry
from ops.registry import REGISTRY, register

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_every_kernel_class_declares_its_types_and_notes():
    assert optable.undeclared() == []


def test_the_table_lists_every_registered_operator_once():
    listed = [n for r in optable.rows() for n in r.names]
    assert sorted(listed) == sorted(REGISTRY) and len(listed) == len(set(listed))
    refused = {n for r in optable.rows() if r.refused for n in r.names}
    assert refused == {"ethos-u", "TFLM_DECODE"}


def test_readme_table_is_the_generated_one():
    text = README.read_text(encoding="utf-8")
    block = optable.extract(text)
    assert block is not None, f"README.md has no {optable.BEGIN} ... {optable.END} block"
    assert block == optable.markdown(), ("README.md's operator table is out of date: run "
                                         "`python -m interp.tools.optable --write README.md`")
    assert optable.main(["--check", str(README)]) == 0


def test_an_inherited_declaration_does_not_count(monkeypatch):
    # A subclass registered without its own declaration is reported, not listed with its parent's.
    copy = dict(REGISTRY)
    monkeypatch.setattr(registry, "REGISTRY", copy)  # what @register writes into
    monkeypatch.setattr(optable, "REGISTRY", copy)
    parent = REGISTRY["ADD"]

    @register("MICROREF_TEST_ONLY")
    class Child(parent):
        pass

    assert optable.undeclared() == [f"{__name__}.test_an_inherited_declaration_does_not_count.<locals>.Child"]
    with pytest.raises(ValueError, match="without supported_types"):
        optable.rows()


def test_rows_group_one_modules_identical_declarations_and_sort():
    rows = optable.rows()
    names = {r.names for r in rows}
    assert ("ADD", "MUL", "SUB") in names and ("MEAN", "SUM") in names and ("PAD", "PADV2") in names
    # builtins first, then custom operators, then the refusals; each alphabetically
    keys = [(r.refused, r.custom) for r in rows]
    assert keys == sorted(keys)
    assert [r.names[0] for r in rows if not r.custom] == sorted((r.names[0] for r in rows if not r.custom),
                                                                key=str.lower)


def test_replace_keeps_the_text_around_the_block(tmp_path):
    text = f"# title\n\nbefore\n{optable.BEGIN}\nstale\n{optable.END}\nafter\n"
    out = optable.replace(text)
    assert out.startswith("# title\n\nbefore\n" + optable.BEGIN) and out.endswith(optable.END + "\nafter\n")
    path = tmp_path / "R.md"
    path.write_text(text)
    assert optable.main(["--check", str(path)]) == 1
    assert optable.main(["--write", str(path)]) == 0 and optable.main(["--check", str(path)]) == 0
