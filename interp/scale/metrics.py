"""What an evaluation measures, accumulated a chunk at a time (memory independent of the number of
samples, but for the lists of disagreeing sample indices).

Classifier outputs: an output whose samples have one axis of C >= 2 classes (others of size 1).
Ranking: higher score first, ties to the lower class index (what ``np.argmax`` and a C loop with
``>`` pick); top-k counts a sample when its label is among the first k.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

LSB_BINS = 8  # the LSB histogram counts |difference| = 0, 1, ..., 7 and ">= 8"


def class_scores(output: np.ndarray) -> np.ndarray | None:
    """(n, C) scores of a classifier output (n samples), or None when the output is not one."""
    sample_shape = output.shape[1:]
    big = [d for d in sample_shape if d != 1]
    if len(big) != 1 or big[0] < 2:
        return None
    return output.reshape(len(output), big[0])


def ranking(scores: np.ndarray, k: int) -> np.ndarray:
    """(n, k) class indices, best first; ties go to the lower index; NaN ranks last."""
    if scores.dtype.kind == "f":
        key = -np.nan_to_num(scores.astype(np.float64), nan=-np.inf)
    else:
        key = -scores.astype(np.int64)
    return np.argsort(key, axis=1, kind="stable")[:, :k]


@dataclass
class Accuracy:
    top1: int = 0  # samples whose best class is the label
    topk: int = 0  # samples whose label is among the k best

    def add(self, ranked: np.ndarray, labels: np.ndarray) -> None:
        self.top1 += int(np.count_nonzero(ranked[:, 0] == labels))
        self.topk += int(np.count_nonzero((ranked == labels[:, None]).any(axis=1)))

    def as_dict(self, n: int, k: int) -> dict:
        return {"top1": self.top1 / n if n else None, f"top{k}": self.topk / n if n else None,
                "correct_top1": self.top1, f"correct_top{k}": self.topk}


@dataclass
class LsbStats:
    """|microref - other| over every value of one integer output."""
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(LSB_BINS + 1, np.int64))
    max_lsb: int = 0
    samples_differing: int = 0

    def add(self, mine: np.ndarray, theirs: np.ndarray) -> None:
        d = np.abs(mine.astype(np.int64) - theirs.astype(np.int64)).reshape(len(mine), -1)
        self.histogram += np.bincount(np.minimum(d, LSB_BINS).ravel(), minlength=LSB_BINS + 1)
        self.max_lsb = max(self.max_lsb, int(d.max(initial=0)))
        self.samples_differing += int(np.count_nonzero(d.any(axis=1)))

    def as_dict(self) -> dict:
        keys = [str(i) for i in range(LSB_BINS)] + [f">={LSB_BINS}"]
        return {"histogram": dict(zip(keys, (int(v) for v in self.histogram))), "max_lsb": self.max_lsb,
                "values": int(self.histogram.sum()), "values_differing": int(self.histogram[1:].sum()),
                "samples_differing": self.samples_differing}


@dataclass
class SnrStats:
    """A float output against the int8 model's dequantized one: energy of the float signal and of
    the error over the set, and each sample's SNR."""
    signal: float = 0.0
    noise: float = 0.0
    max_abs: float = 0.0
    snr_sum: float = 0.0
    snr_min: float = math.inf
    finite_samples: int = 0

    def add(self, reference: np.ndarray, approx: np.ndarray) -> None:
        r = reference.astype(np.float64).reshape(len(reference), -1)
        e = approx.astype(np.float64).reshape(len(approx), -1) - r
        signal, noise = (r * r).sum(axis=1), (e * e).sum(axis=1)
        self.signal += float(signal.sum())
        self.noise += float(noise.sum())
        self.max_abs = max(self.max_abs, float(np.abs(e).max(initial=0.0)))
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = 10 * np.log10(signal / noise)
        snr = np.where(noise == 0, np.inf, snr)
        self.snr_min = min(self.snr_min, float(snr.min(initial=np.inf)))
        finite = snr[np.isfinite(snr)]
        self.snr_sum += float(finite.sum())
        self.finite_samples += int(finite.size)

    def as_dict(self) -> dict:
        overall = math.inf if self.noise == 0 else (10 * math.log10(self.signal / self.noise) if self.signal > 0
                                                    else -math.inf)
        return {"snr_db": _num(overall), "snr_db_min": _num(self.snr_min),
                "snr_db_mean_finite": self.snr_sum / self.finite_samples if self.finite_samples else None,
                "max_abs_error": self.max_abs}


def _num(x: float):
    """JSON has no infinity: +-inf as the strings "inf" / "-inf"."""
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


class EvalStats:
    """Everything ``interp.scale.evaluate`` reports, fed one chunk at a time with ``add``."""

    def __init__(self, output_names: list[str], *, classifier_output: int, classes: int | None, k: int,
                 labels: np.ndarray | None, with_float: bool, with_litert: bool, dequantize_outputs):
        self.output_names = output_names
        self.classifier_output = classifier_output
        self.classes = classes
        self.k = k
        self.labels = labels
        self.with_float, self.with_litert = with_float, with_litert
        self.dequantize_outputs = dequantize_outputs  # int8 outputs -> real values (list in, list out)
        self.n = 0
        self.int8 = Accuracy()
        self.float = Accuracy()
        self.agree = 0
        self.float_disagreements: list[int] = []
        self.litert_top1_differs: list[int] = []
        self.lsb = [LsbStats() for _ in output_names]
        self.snr = [SnrStats() for _ in output_names]
        self.predicted = np.zeros(classes or 0, np.int64)
        self.confusion = np.zeros((classes, classes), np.int64) if classes and labels is not None else None

    def add(self, start: int, outputs: list[np.ndarray], float_outputs: list[np.ndarray] | None = None,
            litert_outputs: list[np.ndarray] | None = None) -> None:
        count = len(outputs[0])
        index = np.arange(start, start + count)
        labels = self.labels[start:start + count] if self.labels is not None else None
        if self.classes:
            ranked = ranking(class_scores(outputs[self.classifier_output]), self.k)
            self.predicted += np.bincount(ranked[:, 0], minlength=self.classes)
            if labels is not None:
                self.int8.add(ranked, labels)
                np.add.at(self.confusion, (labels, ranked[:, 0]), 1)
            if float_outputs is not None:
                f_ranked = ranking(class_scores(float_outputs[self.classifier_output]), self.k)
                same = f_ranked[:, 0] == ranked[:, 0]
                self.agree += int(np.count_nonzero(same))
                self.float_disagreements += index[~same].tolist()
                if labels is not None:
                    self.float.add(f_ranked, labels)
            if litert_outputs is not None:
                l_top1 = ranking(class_scores(litert_outputs[self.classifier_output]), 1)[:, 0]
                self.litert_top1_differs += index[l_top1 != ranked[:, 0]].tolist()
        if float_outputs is not None:
            for stats, ref, approx in zip(self.snr, float_outputs, self.dequantize_outputs(outputs)):
                stats.add(ref, approx)
        if litert_outputs is not None:
            for stats, mine, theirs in zip(self.lsb, outputs, litert_outputs):
                stats.add(mine, theirs)
        self.n += count

    def summary(self) -> dict:
        n, k = self.n, self.k
        out: dict = {"samples": n, "classes": self.classes, "top_k": k,
                     "classifier_output": self.output_names[self.classifier_output] if self.classes else None}
        if self.classes:
            out["predicted_per_class"] = self.predicted.tolist()
            if self.labels is not None:
                out["int8"] = self.int8.as_dict(n, k)
        if self.with_float:
            f: dict = {"outputs": {name: s.as_dict() for name, s in zip(self.output_names, self.snr)}}
            if self.classes:
                f["top1_agreement"] = self.agree / n if n else None
                f["disagreeing_samples"] = self.float_disagreements
                if self.labels is not None:
                    f.update(self.float.as_dict(n, k))
            out["float"] = f
        if self.with_litert:
            lt: dict = {"outputs": {name: s.as_dict() for name, s in zip(self.output_names, self.lsb)}}
            if self.classes:
                lt["top1_differs"] = len(self.litert_top1_differs)
                lt["top1_disagreement"] = len(self.litert_top1_differs) / n if n else None
                lt["disagreeing_samples"] = self.litert_top1_differs
            out["litert"] = lt
        if self.confusion is not None:
            out["confusion"] = confusion_summary(self.confusion)
        return out


def confusion_summary(matrix: np.ndarray, pairs: int = 10) -> dict:
    """Per class (label): support, correct, recall and the class it is most often mistaken for;
    the most frequent (label, predicted) mistakes; the matrix itself up to 64 classes."""
    per_class = []
    for c, row in enumerate(matrix):
        support = int(row.sum())
        wrong = row.copy()
        wrong[c] = 0
        worst = int(np.argmax(wrong)) if wrong.any() else None
        per_class.append({"class": c, "support": support, "correct": int(row[c]),
                          "recall": row[c] / support if support else None,
                          "most_often_predicted_as": worst, "times": int(wrong[worst]) if worst is not None else 0})
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:pairs]
    mistakes = [{"label": int(i // matrix.shape[1]), "predicted": int(i % matrix.shape[1]),
                 "count": int(off.flat[i])} for i in flat if off.flat[i] > 0]
    out = {"per_class": per_class, "most_confused": mistakes}
    if len(matrix) <= 64:
        out["matrix"] = matrix.tolist()
    return out
