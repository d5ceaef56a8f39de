"""Custom options of the signal library's operators: flexbuffers, read the way TFLM reads them.

TFLM's signal kernels do not look their parameters up by name. ``tflite::FlexbufferWrapper``
views the root map of the custom options as the vector of its values (ordered by key, as a
flexbuffer map stores them) and reads element ``i`` as a raw integer of the vector's byte
width (``ElementAsInt32(i)``: ReadInt64 then a cast to int32; ``ElementAsBool(i)``: ReadUInt64
!= 0), whatever the value's declared type. Only the element type selector "T" of Rfft, Irfft and
OverlapAdd is looked up by name (``m["T"].AsInt32()``, 0 — FLOAT32 — when the key is absent).
This module mirrors both, so a model whose map holds other keys is read exactly as TFLM
misreads it.
"""
from __future__ import annotations

from ..registry import PrepareContext

# flexbuffers type codes (flexbuffers.h enum Type)
_FBT_NULL, _FBT_INT, _FBT_UINT, _FBT_FLOAT, _FBT_BOOL = 0, 1, 2, 3, 26
_FBT_INDIRECT_INT, _FBT_INDIRECT_UINT = 6, 7
_FBT_MAP, _FBT_VECTOR = 9, 10


def _uint(buf: bytes, offset: int, width: int) -> int:
    return int.from_bytes(buf[offset:offset + width], "little", signed=False)


def _int(buf: bytes, offset: int, width: int) -> int:
    return int.from_bytes(buf[offset:offset + width], "little", signed=True)


def _wrap_int32(v: int) -> int:
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


class FlexOptions:
    """The custom options of one signal operator, with TFLM's accessors.

    Where TFLM would read outside the buffer (no options, a root that is not a vector or map,
    an element index past the end) its behaviour is undefined; that is reported as unsupported.
    """

    def __init__(self, ctx: PrepareContext):
        self.ctx = ctx
        buf = bytes(ctx.op.custom_options)
        self.buf = buf
        if len(buf) < 3:
            ctx.unsupported("the operator has no flexbuffer custom options (TFLM reads its parameters "
                            "from them: undefined behaviour)")
        root_width = buf[-1]
        packed = buf[-2]
        root_offset = len(buf) - 2 - root_width
        self.root_type = packed >> 2
        if root_width not in (1, 2, 4, 8) or root_offset < 0:
            ctx.unsupported("the custom options are not a flexbuffer")
        self.size = 0
        self.vector_offset = 0
        self.width = 1 << (packed & 3)
        if self.root_type in (_FBT_MAP, _FBT_VECTOR):
            try:
                self.vector_offset = root_offset - _uint(buf, root_offset, root_width)
                self.size = _uint(buf, self.vector_offset - self.width, self.width)
            except (IndexError, ValueError):
                self.size = 0
            if not 0 <= self.vector_offset <= len(buf) or self.vector_offset + self.size * self.width > len(buf):
                ctx.unsupported("the custom options flexbuffer is truncated")

    def _element_offset(self, index: int, name: str) -> int:
        if self.root_type not in (_FBT_MAP, _FBT_VECTOR) or index >= self.size:
            self.ctx.unsupported(
                f"TFLM reads '{name}' as element {index} of the custom options, which have "
                f"{self.size if self.root_type in (_FBT_MAP, _FBT_VECTOR) else 'no'} elements "
                f"(a read past the options: undefined behaviour)")
        return self.vector_offset + index * self.width

    def int32(self, index: int, name: str) -> int:
        """FlexbufferWrapper::ElementAsInt32(index): the element's bytes as a signed integer of
        the vector's byte width, cast to int32."""
        return _wrap_int32(_int(self.buf, self._element_offset(index, name), self.width))

    def bool(self, index: int, name: str) -> bool:
        """FlexbufferWrapper::ElementAsBool(index): ReadUInt64 != 0."""
        return _uint(self.buf, self._element_offset(index, name), self.width) != 0

    def type_selector(self) -> int:
        """``flexbuffers::GetRoot(...).AsMap()["T"].AsInt32()``: the TensorType the kernel is
        instantiated for (0 = FLOAT32 when the root is no map or has no key "T")."""
        if self.root_type != _FBT_MAP:
            return 0
        from flatbuffers import flexbuffers
        try:
            ref = flexbuffers.GetRoot(self.buf).AsMap["T"]
        except KeyError:
            return 0
        except Exception as e:  # noqa: BLE001 - a malformed map
            self.ctx.unsupported(f"cannot read the custom option 'T' ({type(e).__name__}: {e})")
        if ref.IsNull:
            return 0
        if ref.IsInt or ref.IsBool:
            return _wrap_int32(int(ref.AsInt))
        self.ctx.unsupported("the custom option 'T' is not an integer")
