"""TFLite_Detection_PostProcess (a custom operator): TFLM's detection_postprocess.cc.

The SSD head: decode the center-size box encodings against the anchors, then non-max suppression,
either "regular" (per class, then the best max_detections over all classes) or "fast" (each anchor
ranked by its best class). Inputs: box encodings [1, boxes, >=4], class scores
[1, boxes, classes (+1 background)], anchors [boxes, 4] (y, x, h, w); all float32 (TFLM's Eval
handles no other type). Outputs, all float32: boxes [.., 4] (ymin, xmin, ymax, xmax), classes,
scores, and the number of detections.

The arithmetic is TFLM's, operation for operation: the decode in double with the C library's
``exp`` (ops/libm.py calls it), rounded to float; box corners, areas and intersection-over-union
in float32; the score sorts as the C++ standard library orders them (see ``_decreasing_partial_argsort``).

What TFLM leaves undefined, and what microref does there:
* Output entries TFLM does not write keep whatever the arena held (the wheel shows NaNs and
  denormals there): in fast NMS everything past the detections, and, with more than one class per
  detection, the entries its index arithmetic skips (TFLM writes detection k at
  ``ncpa * k + k % ncpa``, ncpa = classes per anchor); in regular NMS everything past
  max_detections. microref writes 0 there. The defined entries are the first max_detections
  (regular) or those ``num_detections`` indices (fast).
* A decoded box with ymin >= ymax or xmin >= xmax makes TFLM's Invoke fail (ValidateBoxes): run()
  raises InvokeError (ops/data_movement.py's: an InputError).
* Inputs that make TFLM write past a scratch buffer or an output tensor (its scratch sizes
  depend on max_detections; fast NMS with several classes per anchor writes past
  ``ncpa * max_detections``; the wheel crashes on some): run() raises InvokeError.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from flatbuffers import flexbuffers

from interp.errors import InvokeError

from .c_semantics import double_function
from .registry import OpKernel, PrepareContext, register

NUM_COORD_BOX = 4
BATCH_SIZE = 1
NUM_DETECTIONS_PER_CLASS = 100  # kNumDetectionsPerClass: detections_per_class when the options omit it
_F32 = np.float32


# ------------------------------------------------------------------------------ flexbuffer options
class _OptionError(Exception):
    pass


def _map_lookup(root, key: str):
    """flexbuffers::Map::operator[] on the root (an EmptyMap when the root is no map): glibc's
    bsearch over the keys with strcmp; the element's Ref, or None for FlexBuffers' Null."""
    if root._type is not flexbuffers.Type.MAP:
        return None
    m = root.AsMap
    keys = m.Keys
    wanted = key.encode()
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        have = keys[mid].AsKeyBytes
        if wanted < have:
            hi = mid
        elif wanted > have:
            lo = mid + 1
        else:
            return m.Values[mid]
    return None


def _scalar(ref):
    """(kind, value) of a Ref as flexbuffers' accessors see it: kind is "null", "int", "uint",
    "float" or "bool"; other types (strings, vectors…) are refused."""
    T = flexbuffers.Type
    if ref is None or ref._type is T.NULL:
        return "null", 0
    if ref._type in (T.INT, T.INDIRECT_INT):
        return "int", ref.AsInt
    if ref._type in (T.UINT, T.INDIRECT_UINT):
        return "uint", ref.AsInt
    if ref._type in (T.FLOAT, T.INDIRECT_FLOAT):
        width = ref._parent_width if ref._type is T.FLOAT else ref._byte_width
        if width not in (4, 8):
            raise _OptionError(f"a {8 * width}-bit float")
        return "float", ref.AsFloat
    if ref._type is T.BOOL:
        return "bool", int(ref.AsBool)
    raise _OptionError(f"a value of flexbuffer type {ref._type.name}")


def _as_int32(ref) -> int:
    """Reference::AsInt32: static_cast<int32_t>(AsInt64())."""
    kind, v = _scalar(ref)
    if kind == "float":
        # static_cast<int64_t>(double): truncation; undefined outside the int64 range.
        if not -(2.0 ** 63) <= v < 2.0 ** 63:
            raise _OptionError(f"the float {v!r} read as an integer (undefined in C)")
        v = int(v)
    v &= (1 << 64) - 1  # an unsigned value read as int64, then the cut to int32
    v &= (1 << 32) - 1
    return v - (1 << 32) if v >= (1 << 31) else v


def _as_float(ref) -> float:
    """Reference::AsFloat: static_cast<float>(AsDouble()), as a Python float holding a float32."""
    kind, v = _scalar(ref)
    with np.errstate(over="ignore"):
        return float(np.float32(float(v)))


def _as_bool(ref) -> bool:
    """Reference::AsBool: the bool's bits, or AsUInt64() != 0."""
    kind, v = _scalar(ref)
    if kind == "float":
        if not -1.0 < v < 2.0 ** 64:
            raise _OptionError(f"the float {v!r} read as a bool (undefined in C)")
        return int(v) != 0
    return v != 0


@dataclass(frozen=True)
class DetectionPostProcessParams:
    max_detections: int                 # OpData.max_detections
    max_classes_per_detection: int      # classes kept per anchor (fast NMS)
    detections_per_class: int           # boxes kept per class (regular NMS); 100 when omitted
    non_max_suppression_score_threshold: float  # float32: scores >= this are candidates
    intersection_over_union_threshold: float    # float32: a box overlapping a kept one by more is dropped
    num_classes: int                    # classes without the background
    use_regular_non_max_suppression: bool
    scale_values: tuple[float, float, float, float]  # float32 y_scale, x_scale, h_scale, w_scale
    num_boxes: int                      # box encodings dim 1
    box_code_size: int                  # box encodings dim 2 (>= 4; only the first 4 are read)
    num_classes_with_background: int    # class predictions dim 2
    label_offset: int                   # num_classes_with_background - num_classes (0 or 1)


def parse_options(options: bytes) -> dict:
    """DetectionPostProcessInit: the OpData fields from the custom options' flexbuffer map."""
    root = flexbuffers.GetRoot(bytes(options))

    def get(key):
        return _map_lookup(root, key)

    dpc = get("detections_per_class")
    regular = get("use_regular_nms")
    return dict(
        max_detections=_as_int32(get("max_detections")),
        max_classes_per_detection=_as_int32(get("max_classes_per_detection")),
        detections_per_class=NUM_DETECTIONS_PER_CLASS if _scalar(dpc)[0] == "null" else _as_int32(dpc),
        use_regular_non_max_suppression=False if _scalar(regular)[0] == "null" else _as_bool(regular),
        non_max_suppression_score_threshold=_as_float(get("nms_score_threshold")),
        intersection_over_union_threshold=_as_float(get("nms_iou_threshold")),
        num_classes=_as_int32(get("num_classes")),
        scale_values=tuple(_as_float(get(k)) for k in ("y_scale", "x_scale", "h_scale", "w_scale")),
    )


# ------------------------------------------------------------------------------ the kernel
@register("TFLite_Detection_PostProcess")
class DetectionPostProcess(OpKernel):
    supported_types = "float32 boxes, scores, anchors"
    notes = ("custom op (SSD head): decode in double with the C library's `exp`, IoU in float32, regular and fast "
             "NMS, flexbuffer options read as TFLM reads them; NaN scores ordered as libstdc++'s `partial_sort` "
             "orders them; fast NMS with several classes per anchor writes where TFLM's index arithmetic does "
             "(detection k at ncpa·k + k mod ncpa). Entries TFLM leaves unwritten (arena bytes there) are 0; "
             "invalid decoded boxes (TFLM's Invoke fails) and inputs that overrun TFLM's buffers are an "
             "`InvokeError`")

    def prepare(self, ctx: PrepareContext):
        if not ctx.op.custom_options:
            ctx.fail("no custom options: TFLM's Init reads the options' flexbuffer unconditionally")
        try:
            opts = parse_options(ctx.op.custom_options)
        except _OptionError as e:
            ctx.unsupported(f"custom option holding {e}")
        except Exception as e:  # noqa: BLE001 - a malformed flexbuffer
            ctx.fail(f"the custom options are not a readable flexbuffer ({type(e).__name__}: {e})")
        ctx.check(len(ctx.op.inputs) == 3, f"takes 3 inputs, has {len(ctx.op.inputs)}")
        boxes = ctx.require_input(0, "box encodings")
        scores = ctx.require_input(1, "class predictions")
        anchors = ctx.require_input(2, "anchors")
        ctx.check(len(boxes.shape) == 3, f"box encodings must be 3-D, has shape {list(boxes.shape)}", boxes)
        ctx.check(len(scores.shape) == 3, f"class predictions must be 3-D, has shape {list(scores.shape)}", scores)
        ctx.check(len(anchors.shape) == 2, f"anchors must be 2-D, has shape {list(anchors.shape)}", anchors)
        ctx.check(len(ctx.op.outputs) == 4, f"takes 4 outputs, has {len(ctx.op.outputs)}")
        outs = [ctx.output(i) for i in range(4)]
        num_boxes = boxes.shape[1]
        md, nc = opts["max_detections"], opts["num_classes"]
        # The scratch buffers Prepare requests, in its order (sizes in C int arithmetic).
        requests = [num_boxes, num_boxes * NUM_COORD_BOX * 4, scores.shape[1] * scores.shape[2] * 4,
                    num_boxes * 4, num_boxes * 4, md * num_boxes * 4, md * num_boxes * 4, num_boxes * 4,
                    md * num_boxes * 4, max(nc, md) * num_boxes * 4, min(num_boxes, md) * num_boxes * 4]
        if min(requests) < 0:
            ctx.fail(f"max_detections {md} / num_classes {nc} give a scratch buffer of negative size, which "
                     "TFLM cannot allocate")
        self.scratch_bytes.extend(requests)
        # Eval's checks, all on shapes and options: TFLM's Invoke fails on them.
        ctx.check(boxes.shape[0] == BATCH_SIZE, f"box encodings batch must be 1, is {boxes.shape[0]}", boxes)
        ctx.check(boxes.shape[2] >= NUM_COORD_BOX, f"box encodings need >= 4 values per box, have {boxes.shape[2]}",
                  boxes)
        ctx.check(boxes.type_name == "FLOAT32", f"box encodings of type {boxes.type_name}: TFLM's Eval handles "
                                                "float32 only", boxes)
        ctx.check(scores.shape[0] == BATCH_SIZE, f"class predictions batch must be 1, is {scores.shape[0]}", scores)
        ctx.check(scores.shape[1] == num_boxes, f"class predictions for {scores.shape[1]} boxes, box encodings "
                                                f"for {num_boxes}", scores)
        ncwb = scores.shape[2]
        ctx.check(ncwb - nc <= 1 and ncwb >= nc, f"{ncwb} class scores per box for num_classes {nc} (at most one "
                                                 "background class)", scores)
        ctx.check(scores.type_name == "FLOAT32", f"class predictions of type {scores.type_name}: TFLM's Eval "
                                                 "handles float32 only", scores)
        iou = opts["intersection_over_union_threshold"]
        iou_checked = (nc > 0) if opts["use_regular_non_max_suppression"] else True
        if opts["use_regular_non_max_suppression"]:
            ctx.check(opts["detections_per_class"] > 0,
                      f"detections_per_class must be positive, is {opts['detections_per_class']}")
        else:
            ctx.check(opts["max_classes_per_detection"] > 0,
                      f"max_classes_per_detection must be positive, is {opts['max_classes_per_detection']}")
            if nc <= 0:
                ctx.unsupported(f"num_classes {nc}: fast NMS sorts num_classes scores per box and reads the first "
                                "(TFLM's result is undefined)")
            ctx.check(md >= 0, f"max_detections must not be negative, is {md}")
        if iou_checked:
            ctx.check(0.0 < iou <= 1.0, f"nms_iou_threshold must be in (0, 1], is {iou}")
        # TFLM reads the anchors as float32 whatever their type, 4 per box whatever their shape.
        if anchors.type_name != "FLOAT32":
            ctx.unsupported(f"anchors of type {anchors.type_name}: TFLM reads their bytes as float32", anchors)
        if anchors.size < num_boxes * NUM_COORD_BOX:
            ctx.unsupported(f"anchors hold {anchors.size} values; TFLM reads 4 per box ({num_boxes * 4}) past them "
                            "(its result is undefined)", anchors)
        for i, (t, name) in enumerate(zip(outs, ("detection boxes", "detection classes", "detection scores",
                                                 "num detections"))):
            if t.type_name != "FLOAT32":
                ctx.unsupported(f"output {i} ({name}) of type {t.type_name}: TFLM writes float32 into it", t)
        if outs[3].size < 1:
            ctx.unsupported("num detections output is empty: TFLM writes past it (its result is undefined)", outs[3])
        self.capacity = (outs[0].size // NUM_COORD_BOX, outs[1].size, outs[2].size)
        if opts["use_regular_non_max_suppression"]:
            # Regular NMS writes max_detections entries of every output whatever the inputs.
            if min(self.capacity) < md:
                ctx.unsupported(f"outputs hold {min(self.capacity)} detections; regular NMS writes {md} "
                                "(max_detections) past them (TFLM's result is undefined)", outs[0])
        self.out_shapes = [tuple(t.shape) for t in outs]
        self.params = DetectionPostProcessParams(
            **opts, num_boxes=num_boxes, box_code_size=boxes.shape[2], num_classes_with_background=ncwb,
            label_offset=ncwb - nc)
        self.location = ctx.location()

    def describe(self):
        return dataclasses.asdict(self.params)

    def eval(self, inputs):
        box_encodings, class_predictions, anchors = inputs
        n = max(box_encodings.shape[0], class_predictions.shape[0], anchors.shape[0])
        outputs = [np.zeros((n,) + shape, np.float32) for shape in self.out_shapes]
        for s in range(n):
            boxes = box_encodings[s if box_encodings.shape[0] > 1 else 0]
            scores = class_predictions[s if class_predictions.shape[0] > 1 else 0]
            anchor = anchors[s if anchors.shape[0] > 1 else 0]
            decoded = decode_center_size_boxes(self.params, boxes, anchor)
            result = self._non_max_suppression_multi_class(decoded, scores.reshape(self.params.num_boxes, -1))
            for out, values in zip(outputs, result):
                out[s].reshape(-1)[:values.size] = values
        return outputs

    # -------------------------------------------------------------------- NMS
    def _non_max_suppression_multi_class(self, decoded: np.ndarray, scores: np.ndarray):
        """(boxes, classes, scores, num_detections) as flat float32 arrays of the written prefix."""
        if self.params.use_regular_non_max_suppression:
            return self._regular(decoded, scores)
        return self._fast(decoded, scores)

    def _single_class(self, decoded, scores, max_detections: int) -> list[int]:
        """NonMaxSuppressionSingleClassHelper: the selected box indices, best first."""
        p = self.params
        if not validate_boxes(decoded):
            raise InvokeError(f"{self.location}: a decoded box has ymin >= ymax or xmin >= xmax (ValidateBoxes: "
                              "TFLM's Invoke fails)")
        threshold = _F32(p.non_max_suppression_score_threshold)
        keep_indices = np.nonzero(scores >= threshold)[0]
        num_boxes_kept = keep_indices.size
        # DecreasingArgSort is TFLM's stable merge sort; see _decreasing_argsort.
        self._check_scratch(num_boxes_kept, p.max_detections * p.num_boxes, "sorted_indices")
        candidates = keep_indices[_decreasing_argsort(scores[keep_indices])]
        output_size = min(num_boxes_kept, max_detections)
        active = np.ones(num_boxes_kept, bool)
        selected: list[int] = []
        i = 0
        iou_threshold = _F32(p.intersection_over_union_threshold)
        corners = _Corners(decoded[candidates])  # the candidates' boxes in sorted order
        while len(selected) < output_size:
            # The next active candidate (the loop's `continue` over inactive ones); none left ends it.
            rest = np.flatnonzero(active[i:])
            if rest.size == 0:
                break
            i += int(rest[0])
            selected.append(int(candidates[i]))
            active[i] = False
            # Every later candidate still active is dropped when it overlaps candidate i too much.
            if i + 1 < num_boxes_kept:
                overlapping = corners.intersection_over_union(i, i + 1) > iou_threshold
                active[i + 1:] &= ~overlapping
            i += 1
        return selected

    def _regular(self, decoded, scores):
        """NonMaxSuppressionMultiClassRegularHelper."""
        p = self.params
        md, nb, ncwb = p.max_detections, p.num_boxes, p.num_classes_with_background
        box_indices = np.zeros(0, np.int64)  # box_indices_after_regular_non_max_suppression[:size]
        best_scores = np.zeros(0, np.float32)  # scores_after_regular_non_max_suppression[:size]
        for col in range(p.num_classes):
            class_scores = scores[:, col + p.label_offset]
            selected = np.array(self._single_class(decoded, class_scores, p.detections_per_class), np.int64)
            self._check_scratch(selected.size, min(nb, md) * nb, "selected")
            box_indices = np.concatenate([box_indices, selected * ncwb + col + p.label_offset])
            best_scores = np.concatenate([best_scores, class_scores[selected]])
            output_index = box_indices.size
            self._check_scratch(output_index, md * nb, "scores_after_regular_non_max_suppression")
            num_indices_to_sort = min(output_index, md)
            order = _decreasing_partial_argsort(best_scores, num_indices_to_sort)
            box_indices, best_scores = box_indices[order], best_scores[order]
        size = box_indices.size
        out_boxes = np.zeros((md, NUM_COORD_BOX), np.float32)
        out_classes = np.zeros(md, np.float32)
        out_scores = np.zeros(md, np.float32)
        anchor_index = box_indices // ncwb
        out_boxes[:size] = decoded[anchor_index]
        out_classes[:size] = box_indices - anchor_index * ncwb - p.label_offset
        out_scores[:size] = best_scores
        return out_boxes.ravel(), out_classes, out_scores, np.array([size], np.float32)

    def _fast(self, decoded, scores):
        """NonMaxSuppressionMultiClassFastHelper."""
        p = self.params
        nc = p.num_classes
        ncpa = min(p.max_classes_per_detection, nc)
        box_scores = scores[:, p.label_offset:p.label_offset + nc]
        class_indices = np.stack([_decreasing_partial_argsort(row, ncpa) for row in box_scores]) \
            if np.isnan(box_scores).any() else _top_classes(box_scores, ncpa)
        max_scores = box_scores[np.arange(p.num_boxes), class_indices[:, 0]]
        selected = self._single_class(decoded, max_scores, p.max_detections)
        self._check_scratch(len(selected), min(p.num_boxes, p.max_detections) * p.num_boxes, "selected")
        count = len(selected) * ncpa  # output_box_index
        # Write k (k = 0 .. count-1) goes to ncpa * k + k % ncpa: TFLM's box_offset uses the running
        # output_box_index where the per-anchor index was meant.
        k = np.arange(count)
        offsets = ncpa * k + k % ncpa
        last = int(offsets[-1]) + 1 if count else 0
        if last > min(self.capacity):
            raise InvokeError(f"{self.location}: fast NMS writes detection entry {last - 1} on these inputs, past "
                              f"outputs holding {min(self.capacity)}: out of bounds (TFLM's result is undefined)")
        anchors = np.repeat(np.array(selected, np.int64), ncpa)
        cols = np.tile(np.arange(ncpa), len(selected))
        chosen = class_indices[anchors, cols] if count else np.zeros(0, np.int64)
        out_boxes = np.zeros((last, NUM_COORD_BOX), np.float32)
        out_classes = np.zeros(last, np.float32)
        out_scores = np.zeros(last, np.float32)
        out_boxes[offsets] = decoded[anchors]
        out_classes[offsets] = chosen
        out_scores[offsets] = box_scores[anchors, chosen]
        return out_boxes.ravel(), out_classes, out_scores, np.array([count], np.float32)

    def _check_scratch(self, used: int, capacity: int, name: str):
        if used > capacity:
            raise InvokeError(f"{self.location}: on these inputs TFLM writes {used} entries into its {name} scratch "
                              f"buffer of {capacity} (sized from max_detections): out of bounds (TFLM's result is "
                              "undefined)")


# ------------------------------------------------------------------------------ arithmetic
_EXP = double_function("exp")  # the C library's double exp (std::exp(double)), element by element


def decode_center_size_boxes(p: DetectionPostProcessParams, box_encodings: np.ndarray, anchors: np.ndarray):
    """DecodeCenterSizeBoxes: (num_boxes, 4) float32 corners (ymin, xmin, ymax, xmax).

    The centers and half sizes are computed in double from the float32 inputs, then rounded to
    float; the corners are float32 differences and sums.
    """
    nb = p.num_boxes
    enc = np.asarray(box_encodings, np.float32).reshape(nb, p.box_code_size)[:, :NUM_COORD_BOX].astype(np.float64)
    anc = np.asarray(anchors, np.float32).reshape(-1)[:nb * NUM_COORD_BOX].reshape(nb, 4).astype(np.float64)
    sy, sx, sh, sw = (np.float64(v) for v in p.scale_values)
    y, x, h, w = enc.T
    ay, ax, ah, aw = anc.T
    with np.errstate(all="ignore"):
        ycenter = (y / sy * ah + ay).astype(np.float32)
        xcenter = (x / sx * aw + ax).astype(np.float32)
        half_h = (np.float64(0.5) * _EXP(h / sh) * ah).astype(np.float32)
        half_w = (np.float64(0.5) * _EXP(w / sw) * aw).astype(np.float32)
        return np.stack([ycenter - half_h, xcenter - half_w, ycenter + half_h, xcenter + half_w], axis=1)


def validate_boxes(decoded: np.ndarray) -> bool:
    """ValidateBoxes: false if any box has ymin >= ymax or xmin >= xmax (NaN compares false)."""
    return not bool(np.any((decoded[:, 0] >= decoded[:, 2]) | (decoded[:, 1] >= decoded[:, 3])))


def _fmax(a, b):
    """std::max<float>(a, b): (a < b) ? b : a."""
    return np.where(a < b, b, a)


def _fmin(a, b):
    """std::min<float>(a, b): (b < a) ? b : a."""
    return np.where(b < a, b, a)


class _Corners:
    """Boxes (ymin, xmin, ymax, xmax) as float32 columns, for ComputeIntersectionOverUnion of one
    box against a run of others."""

    def __init__(self, boxes: np.ndarray):
        self.ymin, self.xmin, self.ymax, self.xmax = (np.ascontiguousarray(boxes[:, k]) for k in range(4))
        with np.errstate(all="ignore"):
            # area = (ymax - ymin) * (xmax - xmin), as TFLM computes it for each box of a pair.
            self.area = (self.ymax - self.ymin) * (self.xmax - self.xmin)
        # std::max / std::min differ from np.maximum / np.minimum only with a NaN operand, and in
        # the sign of a zero result; a zero's sign only reaches the IoU as a ±0 intersection, and
        # ±0 / denominator > threshold is false either way (the threshold is > 0). So without NaN
        # the faster ufuncs give the same comparisons.
        self.exact = bool(np.isnan(boxes).any())

    def intersection_over_union(self, i: int, start: int) -> np.ndarray:
        """IoU of box i with boxes start, start + 1, … in float32, as TFLM computes each pair."""
        hi, lo = (_fmax, _fmin) if self.exact else (np.maximum, np.minimum)
        zero = _F32(0.0)
        area_i, area_j = self.area[i], self.area[start:]
        with np.errstate(all="ignore"):
            ymin = hi(self.ymin[i], self.ymin[start:])
            xmin = hi(self.xmin[i], self.xmin[start:])
            ymax = lo(self.ymax[i], self.ymax[start:])
            xmax = lo(self.xmax[i], self.xmax[start:])
            intersection = hi(ymax - ymin, zero) * hi(xmax - xmin, zero)
            iou = intersection / (area_i + area_j - intersection)
        # if (area_i <= 0 || area_j <= 0) return 0.0;
        return np.where((area_i <= zero) | (area_j <= zero), zero, iou)


def intersection_over_union(decoded: np.ndarray, i: int, js: np.ndarray) -> np.ndarray:
    """ComputeIntersectionOverUnion of box i with each box of js (exact std::max/min semantics)."""
    corners = _Corners(np.concatenate([decoded[i:i + 1], decoded[js]]))
    corners.exact = True
    return corners.intersection_over_union(0, 1)


def _decreasing_argsort(values: np.ndarray) -> np.ndarray:
    """DecreasingArgSort: TFLM's merge sort (insertion sort below 20 values, merges taking the left
    value unless the right one is strictly greater) is stable, so for values without NaN (the
    scores that passed the >= threshold test) it is the unique stable descending order — what a
    stable argsort of the negated values gives (negation is exact; 0.0 and -0.0 tie either way)."""
    return np.argsort(-values, kind="stable")


def _top_classes(box_scores: np.ndarray, count: int) -> np.ndarray:
    """DecreasingPartialArgSort of every row without NaN: the comparator (value descending, index
    ascending on ties) is then a strict total order, so std::partial_sort's first ``count``
    entries are the unique first ``count`` of that order."""
    return np.argsort(-box_scores, axis=1, kind="stable")[:, :count]


def _decreasing_partial_argsort(values: np.ndarray, num_to_sort: int) -> np.ndarray:
    """DecreasingPartialArgSort: the first ``num_to_sort`` indices of std::partial_sort(iota) with
    TFLM's comparator. Without NaN that order is total (see _top_classes); with NaN, which compares
    neither less nor greater, the result depends on the algorithm, so libstdc++'s is run."""
    if not np.isnan(values).any():
        return np.argsort(-values, kind="stable")[:num_to_sort]
    return np.array(_libstdcxx_partial_sort([float(v) for v in values], num_to_sort)[:num_to_sort], np.int64)


def _libstdcxx_partial_sort(values: list[float], middle: int) -> list[int]:
    """std::partial_sort(first, first + middle, last, comp) on iota, as libstdc++ implements it
    (__heap_select then __sort_heap), with comp(i, j) = tie(values[i], j) > tie(values[j], i)."""

    def comp(i, j):
        vi, vj = values[i], values[j]
        return vj < vi or (not vi < vj and i < j)

    def push_heap(a, hole, top, value):
        parent = (hole - 1) // 2
        while hole > top and comp(a[parent], value):
            a[hole] = a[parent]
            hole = parent
            parent = (hole - 1) // 2
        a[hole] = value

    def adjust_heap(a, hole, length, value):
        top = hole
        child = hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if comp(a[child], a[child - 1]):
                child -= 1
            a[hole] = a[child]
            hole = child
        if length % 2 == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            a[hole] = a[child - 1]
            hole = child - 1
        push_heap(a, hole, top, value)

    def pop_heap(a, last, result):
        value = a[result]
        a[result] = a[0]
        adjust_heap(a, 0, last, value)

    a = list(range(len(values)))
    if middle >= 2:  # __make_heap(first, middle)
        parent = (middle - 2) // 2
        while True:
            adjust_heap(a, parent, middle, a[parent])
            if parent == 0:
                break
            parent -= 1
    for i in range(middle, len(a)):
        if comp(a[i], a[0]):
            pop_heap(a, middle, i)
    last = middle  # __sort_heap(first, middle)
    while last > 1:
        last -= 1
        pop_heap(a, last, last)
    return a
