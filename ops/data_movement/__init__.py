"""More data-movement operators, one module per family (each mirrors the TFLM kernels named, with
their reference_ops headers):

* ``spatial.py``: BATCH_TO_SPACE_ND, SPACE_TO_BATCH_ND (batch_to_space_nd.cc, space_to_batch_nd.cc),
  DEPTH_TO_SPACE, SPACE_TO_DEPTH (depth_to_space.cc, space_to_depth.cc);
* ``broadcast.py``: BROADCAST_ARGS, BROADCAST_TO, FILL, SHAPE (broadcast_args.cc, broadcast_to.cc,
  fill.cc, shape.cc);
* ``slicing.py``: SLICE, DYNAMIC_UPDATE_SLICE (slice.cc, dynamic_update_slice.cc);
* ``mirror.py``: MIRROR_PAD, REVERSE_V2 (mirror_pad.cc, reverse.cc);
* ``common.py``: what they share: Refusal, C integer division, read maps and the Eval applying them.

GATHER, GATHER_ND and EMBEDDING_LOOKUP are in ops/gather.py (built on ``common.py``).

No arithmetic: every output element is a bit-for-bit copy of an input element (or a fill
value), so what matters is TFLM's validation and its index logic, mirrored exactly:

* Parameter tensors (block shapes, crops, paddings, begin/size, axes, start indices, shapes) need
  not be constant: TFLM reads most of them at every Eval. A constant one is resolved at load
  into a flat *read map* (for each output element the flat input index it copies); a computed
  one is resolved at run time, per sample.
* Where TFLM's Eval fails (an axis it cannot reverse) or aborts (BROADCAST_ARGS on
  unbroadcastable shapes, a division by a zero block width), a constant parameter makes microref
  refuse the model at load, as TFLM refuses at its first Invoke; a computed one makes ``run``
  raise :class:`InvokeError` naming the operator.
* Where TFLM's result is undefined (it would read outside its input tensor, or leave output
  elements unwritten, holding whatever the arena held), microref refuses in the same two ways:
  it never returns a value TFLM does not define.
* Where TFLM's behaviour is defined but surprising, it is mirrored: SLICE and MIRROR_PAD address
  the input through flat offsets, so an index past the end of one dimension reads the next row
  (as long as it stays inside the tensor); SPACE_TO_BATCH_ND pads with zero bytes (its
  ``output_offset`` lives in an OpData TFLM never initialises; in a fresh arena it is 0) — a
  0.0 or an int8 0, not the zero point; MIRROR_PAD with a paddings tensor of a type other than
  int32/int64 pads by nothing.

Several TFLM kernels (DEPTH_TO_SPACE, SPACE_TO_DEPTH, GATHER, GATHER_ND, EMBEDDING_LOOKUP) write
the output shape they compute over the model's; microref needs the model to declare that shape.
"""
from __future__ import annotations

# Importing the modules registers their kernels; the names below are the package's public ones.
from .broadcast import BroadcastArgs, BroadcastTo, Fill, Shape
from .common import Refusal, check_int32, constant_sample, raise_at_run, refuse_at_load
from .mirror import MirrorPad, ReverseV2
from .slicing import DynamicUpdateSlice, Slice
from .spatial import BatchToSpaceNd, DepthToSpace, SpaceToBatchNd, SpaceToDepth

__all__ = [
    "BatchToSpaceNd", "BroadcastArgs", "BroadcastTo", "DepthToSpace", "DynamicUpdateSlice", "Fill", "MirrorPad",
    "Refusal", "ReverseV2", "Shape", "Slice", "SpaceToBatchNd", "SpaceToDepth", "check_int32", "constant_sample",
    "raise_at_run", "refuse_at_load",
]
