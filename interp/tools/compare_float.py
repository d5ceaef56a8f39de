"""An int8 model against its float original, layer by layer: tensors paired by name (else by
position), real-valued inputs quantized as TFLM's QUANTIZE does, and per layer the RMSE, max error,
error in LSB, cosine and SNR over N samples (mean, min, worst sample).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ops.fixedpoint import tflite_round

from ..errors import InputError
from ..runtime import dequantize_tensor

# ----------------------------------------------------------------------------- float vs int8

@dataclass
class LayerError:
    op_index: int
    op_name: str
    tensor: str
    float_tensor: str
    paired_by: str
    scale: float
    rmse: float        # over every sample
    max_abs: float
    max_lsb: float
    cosine: float
    snr_db: float      # over every sample (total signal / total noise)
    snr_db_mean: float = math.nan  # mean of the per-sample SNRs
    snr_db_min: float = math.nan   # the worst sample's SNR
    worst_sample: int = 0          # its index
    samples: int = 1


# compare --float --data: at most this many samples per input are read (and an .npz member may
# decompress to no more than this many samples' worth: larger is refused as a zip bomb).
MAX_FLOAT_SAMPLES = 1024


@dataclass
class FloatInputs:
    """Real-valued inputs for a float comparison, and what a person should know about them."""
    samples: list[list[np.ndarray]]  # per sample, one float32 array per model input
    description: str                 # which inputs these are (the report's first line)
    warnings: list[str] = field(default_factory=list)


def quantize_like_tflm(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """TFLM QUANTIZE float->int: clamp(roundf(float32(x) / float32(scale)) + zp) (notes §2.11)."""
    q = tflite_round((np.asarray(x, np.float32) / np.float32(scale)).astype(np.float32)).astype(np.int64) + zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def model_is_quantized(it) -> bool:
    """True when the model computes in integers: some operator writes a quantized integer tensor."""
    for op in it.subgraph.operators:
        for ti in op.outputs:
            t = it.tensors[ti]
            if t.dtype is not None and t.dtype.kind in "iu" and t.quantization is not None:
                return True
    return False


def check_float_pair(int8_it, float_it, int8_name: str = "MODEL", float_name: str = "FLOAT") -> None:
    """InputError, said plainly, when the models are given the wrong way round or are the same kind."""
    int8_q, float_q = model_is_quantized(int8_it), model_is_quantized(float_it)
    usage = "usage: microref compare INT8_MODEL --float FLOAT_MODEL"
    if not int8_q and float_q:
        raise InputError(f"the models are swapped: {int8_name} is a float model and {float_name} (given as --float) "
                         f"is int8-quantized; {usage}")
    if float_q:
        raise InputError(f"{float_name} (given as --float) is an int8-quantized model, not a float one: --float "
                         f"takes the float original of {int8_name}; {usage}")
    if not int8_q:
        raise InputError(f"{int8_name} is a float model (no operator computes in int8/int16): compare --float "
                         f"measures an int8 model against its float original; {usage}")
    if len(int8_it.input_details) != len(float_it.input_details):
        raise InputError(f"{int8_name} has {len(int8_it.input_details)} inputs and {float_name} "
                         f"{len(float_it.input_details)}: they are not a model and its conversion")


def input_ranges(int8_it) -> list[tuple[float, float, float] | None]:
    """Per model input, the real range its quantization can represent: (low, high, scale); None
    when unknown. An int8 input's own quantization, or for a float input the QUANTIZE reading it."""
    out = []
    for ti in int8_it.subgraph.inputs:
        t = int8_it.tensors[ti]
        q = t.quantization if t.dtype is not None and t.dtype.kind in "iu" else None
        if q is None:
            for op in int8_it.subgraph.operators:
                if op.op_name == "QUANTIZE" and op.inputs and op.inputs[0] == ti:
                    t = int8_it.tensors[op.outputs[0]]
                    q = t.quantization
                    break
        if q is None or q.per_channel or t.dtype is None or t.dtype.kind not in "iu":
            out.append(None)
            continue
        info = np.iinfo(t.dtype)
        scale, zp = float(q.scale), int(q.zero_point)
        out.append((scale * (info.min - zp), scale * (info.max - zp), scale))
    return out


def _fmt_range(r) -> str:
    return f"[{r[0]:.4g}, {r[1]:.4g}]"


def default_float_inputs(int8_it, float_it, count: int = 4, seed: int = 0) -> FloatInputs:
    """``count`` samples drawn uniformly from each input's quantized range (standard normal where
    the range is unknown), seeded."""
    rng = np.random.default_rng(seed)
    ranges = input_ranges(int8_it)
    samples = []
    for _ in range(count):
        sample = []
        for d, r in zip(float_it.input_details, ranges):
            shape = tuple(int(x) for x in d["shape"])
            if r is None:
                sample.append(rng.standard_normal(shape).astype(np.float32))
            else:
                sample.append(rng.uniform(r[0], r[1], shape).astype(np.float32))
        samples.append(sample)
    parts = [f'input {i} "{d["name"]}" ' + ("standard normal (its quantization range is unknown)" if r is None
                                            else f"uniform over its quantized range {_fmt_range(r)}")
             for i, (d, r) in enumerate(zip(float_it.input_details, ranges))]
    description = (f"inputs: {count} seeded random sample{'s' if count != 1 else ''} (seed {seed}): "
                   + "; ".join(parts) + ". Real data measures real error: pass --data INPUTS.npz")
    return FloatInputs(samples, description)


def as_samples_of(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``a`` as N samples of an input of ``shape``: an array of that shape is one sample, ``(N,) +
    shape`` is N, and so are N rows in place of a batch of 1; None when it is none of these."""
    if a.shape == shape:
        return a[None]
    if a.shape[1:] == shape:
        return a
    if shape and shape[0] == 1 and a.ndim == len(shape) and a.shape[1:] == shape[1:]:
        return a[:, None]
    return None


def float_inputs_from_data(int8_it, float_it, arrays: dict[str, np.ndarray], source: str) -> FloatInputs:
    """Samples from named arrays (an .npz): by the float model's input names, else in key order.
    An array of the input's shape is one sample; (N,) + shape, or N rows in place of a batch of 1,
    is N samples."""
    names = [d["name"] for d in float_it.input_details]
    keys = names if all(n in arrays for n in names) else sorted(arrays)
    if len(keys) < len(names):
        raise InputError(f"{source} holds {len(keys)} arrays; the model has {len(names)} inputs")
    per_input = []
    for i, (d, k) in enumerate(zip(float_it.input_details, keys)):
        shape = tuple(int(x) for x in d["shape"])
        a = np.asarray(arrays[k])
        samples = as_samples_of(a, shape)
        if samples is None:
            raise InputError(f'{source}: "{k}" has shape {list(a.shape)}; input {i} takes {list(shape)} '
                             f"(or N samples of it: [N, {', '.join(map(str, shape))}])")
        if samples.dtype.kind not in "biuf":
            raise InputError(f'{source}: "{k}" holds {samples.dtype} values; input {i} takes real numbers')
        samples = samples.astype(np.float32)
        finite = np.isfinite(samples.reshape(len(samples), -1)).all(axis=1)
        if not finite.all():
            first = int(np.argmin(finite))
            raise InputError(f'{source}: sample {first} of "{k}" (input {i}) holds NaN or infinity'
                             + (f" ({int((~finite).sum())} samples do)" if (~finite).sum() > 1 else ""))
        per_input.append(samples)
    counts = {a.shape[0] for a in per_input}
    if len(counts) != 1:
        raise InputError(f"{source}: the inputs hold different numbers of samples ({sorted(counts)})")
    n = counts.pop()
    samples = [[a[s] for a in per_input] for s in range(n)]
    inputs = FloatInputs(samples, f"inputs: {n} sample{'s' if n != 1 else ''} from {source}")
    inputs.warnings = clipping_warnings(int8_it, samples)
    return inputs


def clipping_warnings(int8_it, samples: list[list[np.ndarray]]) -> list[str]:
    """One warning per input whose values fall outside its quantization range (QUANTIZE clips them)."""
    warnings_ = []
    for i, r in enumerate(input_ranges(int8_it)):
        if r is None or not samples:
            continue
        values = np.concatenate([np.asarray(s[i], np.float64).ravel() for s in samples])
        low, high, scale = r
        outside = (values < low - scale / 2) | (values > high + scale / 2)
        n = int(np.count_nonzero(outside))
        if n:
            warnings_.append(f"warning: input {i}: {n} of {values.size} values ({100 * n / values.size:.1f}%) fall "
                             f"outside its quantization range {_fmt_range(r)} (data spans "
                             f"[{values.min():.4g}, {values.max():.4g}]) and are clipped by the int8 model: "
                             f"that error is the data's, not a layer's")
    return warnings_


def _metrics(ref: np.ndarray, approx: np.ndarray) -> tuple[float, float, float, float]:
    r = ref.astype(np.float64).ravel()
    a = approx.astype(np.float64).ravel()
    err = a - r
    rmse = float(np.sqrt(np.mean(err ** 2))) if err.size else 0.0
    max_abs = float(np.max(np.abs(err))) if err.size else 0.0
    nr, na = np.linalg.norm(r), np.linalg.norm(a)
    cosine = float(r @ a / (nr * na)) if nr > 0 and na > 0 else (1.0 if nr == na else 0.0)
    noise = float(np.sum(err ** 2))
    signal = float(np.sum(r ** 2))
    snr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    return rmse, max_abs, cosine, snr


def compare_float(int8_it, float_it, real_inputs: list[np.ndarray]) -> list[LayerError]:
    """Run a float model and its int8 conversion on the same real inputs (one sample); per-layer
    error of the int8 model's dequantized tensors against the float model's, paired by tensor
    name, else by position."""
    return compare_float_samples(int8_it, float_it, [list(real_inputs)])


PROGRESS_STEPS = 50  # with a progress bar, the samples run in about this many chunks


def _run_keeping(it, inputs: list[np.ndarray], n: int, progress, done: int, total: int) -> dict[int, np.ndarray]:
    """Every tensor of ``it`` over the N samples (run_batch with keep=True). With a progress bar
    shown, a chunk at a time, the kept tensors joined along the sample axis (the same values:
    every sample is independent)."""
    if progress is None or not getattr(progress, "enabled", True) or n < 2:
        it.run_batch(inputs, keep=True)
        if progress is not None:
            progress(done + n, total)
        return it._kept
    size = max(1, math.ceil(n / PROGRESS_STEPS))
    parts: list[dict[int, np.ndarray]] = []
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        it.run_batch([x[lo:hi] for x in inputs], keep=True)
        # Copies: nothing kept may share memory with what the next chunk's run reuses.
        parts.append({k: (np.array(v), hi - lo) for k, v in it._kept.items()})
        progress(done + hi, total)
    kept = {}
    for k, (first, _) in parts[0].items():
        per_sample = all(k in p and np.ndim(p[k][0]) and np.shape(p[k][0])[0] == p[k][1] for p in parts)
        kept[k] = np.concatenate([p[k][0] for p in parts]) if per_sample else first
    return kept


def compare_float_samples(int8_it, float_it, samples: list[list[np.ndarray]], progress=None) -> list[LayerError]:
    """``compare_float`` over N samples: each layer's error over all of them, with the mean and the
    minimum of the per-sample SNRs and the worst sample's index. ``progress(done, total)``: samples
    run by the two models (2N in all)."""
    n = len(samples)
    real = [np.stack([np.asarray(s[i], np.float32) for s in samples]) for i in range(len(samples[0]))]
    q_inputs = []
    for ti, x in zip(int8_it.subgraph.inputs, real):
        t = int8_it.tensors[ti]
        if t.dtype.kind == "f":
            q_inputs.append(np.asarray(x, t.dtype))
        else:
            q_inputs.append(quantize_like_tflm(x, t.quantization.scale, t.quantization.zero_point, t.dtype))
    f_kept = _run_keeping(float_it, real, n, progress, 0, 2 * n)
    q_kept = _run_keeping(int8_it, q_inputs, n, progress, n, 2 * n)
    f_tensors = float_it.tensors
    by_name = {t.name: t.index for t in f_tensors if t.index in f_kept}
    f_ops = [op for op in float_it.subgraph.operators if op.op_name not in ("QUANTIZE", "DEQUANTIZE")]
    q_ops = [op for op in int8_it.subgraph.operators if op.op_name not in ("QUANTIZE", "DEQUANTIZE")]
    f_by_position = {}
    for pos, op in enumerate(q_ops):
        if pos < len(f_ops) and f_ops[pos].op_name == op.op_name:
            f_by_position[op.index] = f_ops[pos].outputs[0]
    rows = []
    for op in int8_it.subgraph.operators:
        for ti in op.outputs:
            t = int8_it.tensors[ti]
            if t.quantization is None or t.dtype is None or t.dtype.kind == "f":
                continue
            if t.name in by_name:
                fi, how = by_name[t.name], "name"
            elif op.index in f_by_position:
                fi, how = f_by_position[op.index], "position"
            else:
                continue
            ref = f_kept.get(fi)
            if ref is None or ref.size != n * t.size or ti not in q_kept:
                continue
            approx = dequantize_tensor(t, q_kept[ti]).reshape(ref.shape)
            rmse, max_abs, cosine, snr = _metrics(ref, approx)
            per_sample = [_metrics(ref[k], approx[k])[3] for k in range(n)]
            worst = int(np.argmin(per_sample))
            rows.append(LayerError(op.index, op.display_name, t.name, f_tensors[fi].name, how, t.quantization.scale,
                                   rmse, max_abs, max_abs / t.quantization.scale, cosine, snr,
                                   float(np.mean(per_sample)), float(per_sample[worst]), worst, n))
    return rows


def float_comparison_to_json(rows: list[LayerError], inputs: FloatInputs | None = None) -> dict:
    def number(v):
        return v if math.isfinite(v) else str(v)
    return {"inputs": None if inputs is None else inputs.description,
            "samples": rows[0].samples if rows else 0,
            "warnings": [] if inputs is None else inputs.warnings,
            "layers": [{k: number(v) if isinstance(v, float) else v for k, v in vars(r).items()} for r in rows]}


def format_float_comparison(rows: list[LayerError], inputs: FloatInputs | None = None) -> str:
    lines = []
    if inputs is not None:
        lines.append(inputs.description)
        lines += inputs.warnings
        lines.append("")
    if not rows:
        return "\n".join(lines + ["no tensors could be paired between the two models"])
    several = rows[0].samples > 1
    snr_head = f"{'SNR dB':>8s}" + (f" {'mean':>8s} {'min':>8s} {'worst':>5s}" if several else "")
    lines.append(f"{'op':>4}  {'operator':20s} {'RMSE':>10s} {'max|err|':>10s} {'max LSB':>8s} {'cosine':>9s} "
                 f"{snr_head}  tensor (paired by)")
    for r in rows:
        snr = f"{r.snr_db:8.2f}" + (f" {r.snr_db_mean:8.2f} {r.snr_db_min:8.2f} {r.worst_sample:5d}" if several else "")
        lines.append(f"{r.op_index:>4}  {r.op_name:20s} {r.rmse:10.4g} {r.max_abs:10.4g} {r.max_lsb:8.2f} "
                     f"{r.cosine:9.6f} {snr}  {r.tensor} ({r.paired_by})")
    if several:
        lines.append(f"(SNR dB over all {rows[0].samples} samples; mean and min of the per-sample SNRs, "
                     f"and the sample with the lowest)")
    ranked = sorted(rows, key=lambda r: r.snr_db)
    lines += ["", "layers losing the most (lowest SNR first):"]
    for r in ranked[:5]:
        worst = f", worst sample {r.worst_sample} at {r.snr_db_min:.2f} dB" if several else ""
        lines.append(f"  op {r.op_index} {r.op_name}: SNR {r.snr_db:.2f} dB, cosine {r.cosine:.6f}, "
                     f"max error {r.max_lsb:.2f} LSB{worst}")
    # The biggest drop in SNR from one layer to the next shows where the damage is done.
    drops = [(rows[i - 1].snr_db - rows[i].snr_db, rows[i]) for i in range(1, len(rows))
             if math.isfinite(rows[i - 1].snr_db) and math.isfinite(rows[i].snr_db)]
    if drops:
        d, r = max(drops, key=lambda p: p[0])
        if d > 0:
            lines.append(f"largest SNR drop: {d:.2f} dB at op {r.op_index} ({r.op_name})")
    return "\n".join(lines)
