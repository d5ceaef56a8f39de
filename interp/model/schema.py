"""The TFLite schema as the verifier walks it: every table's fields (slot, kind, size) and every
union's members, read from the ``tflite`` package's generated accessors, so that the structural
walk (``verify``) checks exactly what the parser will read."""
from __future__ import annotations

import ast
import functools
import importlib.util
import re
from dataclasses import dataclass

_SCALAR_BYTES = {"Bool": 1, "Uint8": 1, "Int8": 1, "Uint16": 2, "Int16": 2, "Uint32": 4,
                 "Int32": 4, "Float32": 4, "Uint64": 8, "Int64": 8, "Float64": 8}


@dataclass(frozen=True)
class Field:
    """One field of a schema table, as the verifier needs it."""

    name: str  # the generated accessor's name, e.g. "OperatorCodes"
    voffset: int  # its slot in the vtable (4, 6, 8, ...)
    kind: str  # "scalar", "string", "table", "union", "vector" (of scalars), "tables" (vector of)
    size: int = 4  # inline bytes of a scalar; element bytes of a vector
    target: str = ""  # table name (table, tables) or union enum name (union)
    scalar: str = ""  # element type of a scalar or a vector: "Int32", "Float32", ...
    default: object = None  # what the accessor returns for an absent scalar (0, 1, False, 0.0, ...)

    @property
    def label(self) -> str:
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", self.name).lower()


# Which enum names the members of each union (the generated accessor does not say).
_UNION_ENUMS = {
    ("Operator", "BuiltinOptions"): "BuiltinOptions",
    ("Operator", "BuiltinOptions2"): "BuiltinOptions2",
    ("QuantizationParameters", "Details"): "QuantizationDetails",
    ("DimensionMetadata", "ArraySegments"): "SparseIndexVector",
    ("DimensionMetadata", "ArrayIndices"): "SparseIndexVector",
}

# Fields of the current schema (schema_generated.h) that the installed tflite package may
# predate. A field the package knows wins.
_NEWER_FIELDS = {
    "Model": (Field("ExternalBufferGroups", 20, "tables", 4, "ExternalBufferGroup"),
              Field("ExternalBuffers", 22, "tables", 4, "ExternalBuffer")),
    "Tensor": (Field("ExternalBuffer", 24, "scalar", 4, scalar="Uint32"),),
    "SubGraph": (Field("DebugMetadataIndex", 14, "scalar", 4, scalar="Int32"),),
    "Operator": (Field("DebugMetadataIndex", 30, "scalar", 4, scalar="Int32"),),
    "ExternalBufferGroup": (Field("Name", 4, "string"),),
    "ExternalBuffer": (Field("Id", 4, "scalar", 4, scalar="Uint32"),
                       Field("Group", 6, "scalar", 4, scalar="Uint32"),
                       Field("Offset", 8, "scalar", 8, scalar="Uint64"),
                       Field("Length", 10, "scalar", 8, scalar="Uint64"),
                       Field("Packing", 12, "string")),
}

_ACCESSOR = re.compile(
    r"^    def (\w+)\(self(?:, j)?\):\n"
    r"        o = flatbuffers\.number_types\.UOffsetTFlags\.py_type\(self\._tab\.Offset\((\d+)\)\)\n"
    r"(.*?)(?=^    \S|^\S|\Z)", re.M | re.S)
_IMPORTED = re.compile(r"from tflite\.(\w+) import")
_FLAGS = re.compile(r"number_types\.(\w+)Flags, (?:a|o) \+")
# The value an absent scalar reads as: the accessor's last line.
_DEFAULT = re.compile(r"^        return (\S.*?)\s*\Z", re.M)


def _module_source(name: str) -> str | None:
    spec = importlib.util.find_spec(f"tflite.{name}")
    if spec is None or spec.origin is None:
        return None
    with open(spec.origin, encoding="utf-8") as f:
        return f.read()


@functools.cache
def table_fields(table: str) -> dict[int, Field] | None:
    """The fields of a schema table by vtable slot, or None for a table this schema lacks."""
    fields: dict[int, Field] = {}
    source = _module_source(table)
    if source is not None:
        body_start = source.find(f"class {table}(object):")
        if body_start < 0:
            raise RuntimeError(f"tflite.{table} does not define class {table}")
        end = source.find("\ndef ", body_start)
        source = source[body_start:end if end >= 0 else len(source)]
        for m in _ACCESSOR.finditer(source):
            name, voffset, body = m.group(1), int(m.group(2)), m.group(3)
            if name.endswith(("Length", "AsNumpy", "IsNone")):
                continue
            fields[voffset] = _classify(table, name, voffset, body)
    for f in _NEWER_FIELDS.get(table, ()):
        fields.setdefault(f.voffset, f)
    if source is None and table not in _NEWER_FIELDS:
        return None
    return fields


def _classify(table: str, name: str, voffset: int, body: str) -> Field:
    imported = _IMPORTED.search(body)
    flags = _FLAGS.search(body)
    if "self._tab.Union(" in body:
        enum = _UNION_ENUMS.get((table, name))
        if enum is None:
            raise RuntimeError(f"union {table}.{name}: add its enum to _UNION_ENUMS")
        return Field(name, voffset, "union", 4, enum)
    if "x = self._tab.Indirect(x)" in body and imported:
        return Field(name, voffset, "tables", 4, imported.group(1))
    if "self._tab.Indirect(o + self._tab.Pos)" in body and imported:
        return Field(name, voffset, "table", 4, imported.group(1))
    if "self._tab.String(o + self._tab.Pos)" in body:
        return Field(name, voffset, "string")
    if "a = self._tab.Vector(o)" in body and flags:
        return Field(name, voffset, "vector", _SCALAR_BYTES[flags.group(1)], scalar=flags.group(1))
    if flags:
        return Field(name, voffset, "scalar", _SCALAR_BYTES[flags.group(1)], scalar=flags.group(1),
                     default=_default(body))
    raise RuntimeError(f"cannot tell what kind of field {table}.{name} is")


def _default(body: str):
    """The literal an accessor returns when its scalar is absent, or None when its last line is no
    literal (OperatorCode.BuiltinCode, patched to fall back on the deprecated field)."""
    last = _DEFAULT.search(body)
    try:
        value = ast.literal_eval(last.group(1)) if last else None
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, (bool, int, float)) else None


@functools.cache
def union_members(enum: str) -> dict[int, str]:
    """Union type value -> table name, from the generated enum class."""
    module = importlib.import_module(f"tflite.{enum}")
    cls = getattr(module, enum)
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int) and v != 0}
