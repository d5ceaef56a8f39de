"""KISS FFT v130 as TFLM builds it (signal/src/kiss_fft_wrappers, third_party/kissfft with
TFLM's patch): the complex FFT ``kiss_fft`` and the real transforms ``kiss_fftr`` /
``kiss_fftri``, in the three instantiations the signal library uses:

* ``int16``: FIXED_POINT 16 — kiss_fft_scalar int16_t, products in int32 (SAMPPROD), every
  stage divides by its radix (C_FIXDIV), results are stored back into int16 (wrapping);
* ``int32``: FIXED_POINT 32 — int32_t scalars, int64 products;
* ``float32``: float scalars, every operation rounded to float32 (SSE, no contraction).

Fixed-point values are held in int64 arrays and wrapped to the scalar width wherever C stores
into a kiss_fft_scalar; sums in C are exact-then-stored, so wrapping at the store gives C's
result. Float values are float32 arrays and every expression keeps C's evaluation order.

The recursion of ``kf_work`` is flattened: the leaves copy the input in a fixed permutation and
each level's butterflies run on all of that level's sub-transforms at once (they are
independent; a level only needs its children finished). TFLM's patch makes KISS_FFT_TMP_ALLOC
return NULL, so a length with a radix other than 2, 3, 4 or 5 (kf_bfly_generic writes to that
NULL scratch) crashes TFLM; ``KissFft`` refuses such lengths.
"""
from __future__ import annotations

import math

import numpy as np

SUPPORTED_RADICES = (2, 3, 4, 5)


class FixedArith:
    """_kiss_fft_guts.h macros for FIXED_POINT 16 or 32 (values as int64 arrays)."""

    def __init__(self, bits: int):
        self.bits = bits
        self.frac_bits = bits - 1  # FRACBITS
        self.samp_max = (1 << (bits - 1)) - 1  # SAMP_MAX
        self.dtype = np.dtype(np.int16 if bits == 16 else np.int32)

    def store(self, x):
        """Assignment to a kiss_fft_scalar: two's-complement wrap to the scalar width."""
        return np.asarray(x, np.int64).astype(self.dtype).astype(np.int64)

    def sround(self, x):
        # (kiss_fft_scalar)((x + (1 << (FRACBITS-1))) >> FRACBITS); no SAMPPROD overflow is
        # possible: |a.r*b.r - a.i*b.i| < 2**(2*bits-1) - 2**bits with |twiddle| <= SAMP_MAX.
        return self.store((x + (1 << (self.frac_bits - 1))) >> self.frac_bits)

    def s_mul(self, a, b):
        return self.sround(a * b)

    def c_mul(self, ar, ai, br, bi):
        return self.sround(ar * br - ai * bi), self.sround(ar * bi + ai * br)

    def fixdiv(self, x, div: int):
        # DIVSCALAR: x = sround(smul(x, SAMP_MAX/div)), integer division of the constant.
        return self.sround(x * (self.samp_max // div))

    def half(self, x):
        return x >> 1  # HALF_OF on a stored scalar

    def half_of_sum(self, a, b):
        """HALF_OF(a + b) stored: for int16 the sum is an exact int; for int32 it wraps first."""
        s = a + b if self.bits == 16 else self.store(a + b)
        return self.store(s >> 1)

    def twiddle(self, phase: float) -> tuple[int, int]:
        # KISS_FFT_COS/SIN: floor(.5 + SAMP_MAX * cos(phase)) in double, assigned to the scalar.
        return (int(math.floor(0.5 + self.samp_max * math.cos(phase))),
                int(math.floor(0.5 + self.samp_max * math.sin(phase))))

    def zeros(self, shape):
        return np.zeros(shape, np.int64)

    def asarray(self, values):
        return np.asarray(values, np.int64)


class FloatArith:
    """The same macros for float scalars (C_FIXDIV is a no-op; HALF_OF(x) is x * 0.5f)."""

    dtype = np.dtype(np.float32)
    _HALF = np.float32(0.5)

    def store(self, x):
        return x

    def s_mul(self, a, b):
        return a * b

    def c_mul(self, ar, ai, br, bi):
        return ar * br - ai * bi, ar * bi + ai * br

    def fixdiv(self, x, div: int):
        return x

    def half(self, x):
        return x * self._HALF

    def half_of_sum(self, a, b):
        return (a + b) * self._HALF

    def twiddle(self, phase: float) -> tuple[float, float]:
        # (kiss_fft_scalar) cos(phase): the double libm result rounded to float.
        return float(np.float32(math.cos(phase))), float(np.float32(math.sin(phase)))

    def zeros(self, shape):
        return np.zeros(shape, np.float32)

    def asarray(self, values):
        return np.asarray(values, np.float32)


def arith_for(kind: str):
    return {"int16": FixedArith(16), "int32": FixedArith(32), "float32": FloatArith()}[kind]


def kf_factor(n: int) -> list[tuple[int, int]]:
    """kf_factor: (radix p, remaining length m) pairs — powers of 4, then 2, then odd numbers,
    and the remainder as one radix once p passes floor(sqrt(original n))."""
    factors = []
    p = 4
    floor_sqrt = math.floor(math.sqrt(float(n)))
    while True:
        while n % p:
            p = {4: 2, 2: 3}.get(p, p + 2)
            if p > floor_sqrt:
                p = n
        n //= p
        factors.append((p, n))
        if n <= 1:
            return factors


def _leaf_order(factors: list[tuple[int, int]]) -> np.ndarray:
    """Where kf_work's leaves read each output slot from: order[k] is the input index whose
    value lands in Fout[k] before the first butterfly (in_stride 1)."""
    nfft = factors[0][0] * factors[0][1]
    order = np.zeros(nfft, np.int64)

    def work(out_offset: int, in_offset: int, fstride: int, level: int) -> None:
        p, m = factors[level]
        if m == 1:
            order[out_offset:out_offset + p] = in_offset + fstride * np.arange(p)
            return
        for q in range(p):
            work(out_offset + q * m, in_offset + q * fstride, fstride * p, level + 1)

    work(0, 0, 1, 0)
    return order


class KissFft:
    """A kiss_fft_cfg: the complex FFT of length ``nfft`` (forward or inverse) for one scalar kind."""

    def __init__(self, nfft: int, inverse: bool, kind: str):
        self.nfft = nfft
        self.inverse = inverse
        self.kind = kind
        self.arith = arith_for(kind)
        self.factors = kf_factor(nfft)
        bad = [p for p, _ in self.factors if p not in SUPPORTED_RADICES]
        if bad:
            raise UnsupportedLength(nfft, bad[0])
        tw = [self.arith.twiddle(self._phase(i)) for i in range(nfft)]
        self.tw_r = self.arith.asarray([t[0] for t in tw])
        self.tw_i = self.arith.asarray([t[1] for t in tw])
        self.order = _leaf_order(self.factors)

    def _phase(self, i: int) -> float:
        pi = 3.141592653589793238462643383279502884197169399375105820974944
        phase = -2 * pi * i / self.nfft
        return -phase if self.inverse else phase

    def __call__(self, in_r: np.ndarray, in_i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """kiss_fft(cfg, fin, fout) on arrays of shape (..., nfft); returns (fout.r, fout.i)."""
        fr = in_r[..., self.order].copy()
        fi = in_i[..., self.order].copy()
        lead = fr.shape[:-1]
        strides = [1]
        for p, _ in self.factors[:-1]:
            strides.append(strides[-1] * p)
        # Deepest level first: kf_work runs a node's butterfly after all of its children.
        for (p, m), fstride in reversed(list(zip(self.factors, strides))):
            shape = lead + (fstride, p, m)
            xr = [fr.reshape(shape)[..., q, :] for q in range(p)]
            xi = [fi.reshape(shape)[..., q, :] for q in range(p)]
            yr, yi = getattr(self, f"_bfly{p}")(xr, xi, fstride, m)
            fr = np.stack(yr, axis=-2).reshape(lead + (self.nfft,))
            fi = np.stack(yi, axis=-2).reshape(lead + (self.nfft,))
        return fr, fi

    def _tw(self, multiple: int, fstride: int, m: int):
        idx = multiple * fstride * np.arange(m)
        return self.tw_r[idx], self.tw_i[idx]

    def _bfly2(self, xr, xi, fstride, m):
        a = self.arith
        f0r, f0i = a.fixdiv(xr[0], 2), a.fixdiv(xi[0], 2)
        f1r, f1i = a.fixdiv(xr[1], 2), a.fixdiv(xi[1], 2)
        twr, twi = self._tw(1, fstride, m)
        tr, ti = a.c_mul(f1r, f1i, twr, twi)
        return ([a.store(f0r + tr), a.store(f0r - tr)],
                [a.store(f0i + ti), a.store(f0i - ti)])

    def _bfly4(self, xr, xi, fstride, m):
        a = self.arith
        r = [a.fixdiv(x, 4) for x in xr]
        i = [a.fixdiv(x, 4) for x in xi]
        s0 = a.c_mul(r[1], i[1], *self._tw(1, fstride, m))
        s1 = a.c_mul(r[2], i[2], *self._tw(2, fstride, m))
        s2 = a.c_mul(r[3], i[3], *self._tw(3, fstride, m))
        s5r, s5i = a.store(r[0] - s1[0]), a.store(i[0] - s1[1])
        f0r, f0i = a.store(r[0] + s1[0]), a.store(i[0] + s1[1])
        s3r, s3i = a.store(s0[0] + s2[0]), a.store(s0[1] + s2[1])
        s4r, s4i = a.store(s0[0] - s2[0]), a.store(s0[1] - s2[1])
        f2r, f2i = a.store(f0r - s3r), a.store(f0i - s3i)
        f0r, f0i = a.store(f0r + s3r), a.store(f0i + s3i)
        if self.inverse:
            f1r, f1i = a.store(s5r - s4i), a.store(s5i + s4r)
            f3r, f3i = a.store(s5r + s4i), a.store(s5i - s4r)
        else:
            f1r, f1i = a.store(s5r + s4i), a.store(s5i - s4r)
            f3r, f3i = a.store(s5r - s4i), a.store(s5i + s4r)
        return [f0r, f1r, f2r, f3r], [f0i, f1i, f2i, f3i]

    def _bfly3(self, xr, xi, fstride, m):
        a = self.arith
        epi3_i = self.tw_i[fstride * m]
        r = [a.fixdiv(x, 3) for x in xr]
        i = [a.fixdiv(x, 3) for x in xi]
        s1r, s1i = a.c_mul(r[1], i[1], *self._tw(1, fstride, m))
        s2r, s2i = a.c_mul(r[2], i[2], *self._tw(2, fstride, m))
        s3r, s3i = a.store(s1r + s2r), a.store(s1i + s2i)
        s0r, s0i = a.store(s1r - s2r), a.store(s1i - s2i)
        f1r, f1i = a.store(r[0] - a.half(s3r)), a.store(i[0] - a.half(s3i))
        s0r, s0i = a.s_mul(s0r, epi3_i), a.s_mul(s0i, epi3_i)  # C_MULBYSCALAR
        f0r, f0i = a.store(r[0] + s3r), a.store(i[0] + s3i)
        f2r, f2i = a.store(f1r + s0i), a.store(f1i - s0r)
        f1r, f1i = a.store(f1r - s0i), a.store(f1i + s0r)
        return [f0r, f1r, f2r], [f0i, f1i, f2i]

    def _bfly5(self, xr, xi, fstride, m):
        a = self.arith
        ya_r, ya_i = self.tw_r[fstride * m], self.tw_i[fstride * m]
        yb_r, yb_i = self.tw_r[fstride * 2 * m], self.tw_i[fstride * 2 * m]
        r = [a.fixdiv(x, 5) for x in xr]
        i = [a.fixdiv(x, 5) for x in xi]
        s0r, s0i = r[0], i[0]
        s1 = a.c_mul(r[1], i[1], *self._tw(1, fstride, m))
        s2 = a.c_mul(r[2], i[2], *self._tw(2, fstride, m))
        s3 = a.c_mul(r[3], i[3], *self._tw(3, fstride, m))
        s4 = a.c_mul(r[4], i[4], *self._tw(4, fstride, m))
        s7r, s7i = a.store(s1[0] + s4[0]), a.store(s1[1] + s4[1])
        s10r, s10i = a.store(s1[0] - s4[0]), a.store(s1[1] - s4[1])
        s8r, s8i = a.store(s2[0] + s3[0]), a.store(s2[1] + s3[1])
        s9r, s9i = a.store(s2[0] - s3[0]), a.store(s2[1] - s3[1])
        f0r, f0i = a.store(s0r + (s7r + s8r)), a.store(s0i + (s7i + s8i))
        s5r = a.store(s0r + a.s_mul(s7r, ya_r) + a.s_mul(s8r, yb_r))
        s5i = a.store(s0i + a.s_mul(s7i, ya_r) + a.s_mul(s8i, yb_r))
        s6r = a.store(a.s_mul(s10i, ya_i) + a.s_mul(s9i, yb_i))
        s6i = a.store(-a.s_mul(s10r, ya_i) - a.s_mul(s9r, yb_i))
        f1r, f1i = a.store(s5r - s6r), a.store(s5i - s6i)
        f4r, f4i = a.store(s5r + s6r), a.store(s5i + s6i)
        s11r = a.store(s0r + a.s_mul(s7r, yb_r) + a.s_mul(s8r, ya_r))
        s11i = a.store(s0i + a.s_mul(s7i, yb_r) + a.s_mul(s8i, ya_r))
        s12r = a.store(-a.s_mul(s10i, yb_i) + a.s_mul(s9i, ya_i))
        s12i = a.store(a.s_mul(s10r, yb_i) - a.s_mul(s9r, ya_i))
        f2r, f2i = a.store(s11r + s12r), a.store(s11i + s12i)
        f3r, f3i = a.store(s11r - s12r), a.store(s11i - s12i)
        return [f0r, f1r, f2r, f3r, f4r], [f0i, f1i, f2i, f3i, f4i]


class UnsupportedLength(ValueError):
    """A transform length TFLM's patched kissfft cannot run (it would crash)."""

    def __init__(self, nfft: int, radix: int):
        super().__init__(f"a complex FFT of length {nfft} needs a radix-{radix} butterfly, which TFLM's "
                         f"kissfft runs in a NULL scratch buffer (KISS_FFT_TMP_ALLOC is patched to "
                         f"return 0): TFLM crashes")
        self.nfft = nfft
        self.radix = radix


class KissFftr:
    """kiss_fftr_alloc(nfft, inverse): the real FFT of even length ``nfft`` through a complex
    FFT of nfft/2 points and the 'super twiddles'."""

    def __init__(self, nfft: int, inverse: bool, kind: str):
        if nfft % 2:
            raise ValueError(f"kiss_fftr_alloc refuses the odd length {nfft} (returns NULL)")
        self.nfft = nfft
        self.inverse = inverse
        self.kind = kind
        self.arith = arith_for(kind)
        self.ncfft = nfft // 2
        self.substate = KissFft(self.ncfft, inverse, kind)
        pi = 3.14159265358979323846264338327
        st = []
        for i in range(self.ncfft // 2):
            phase = -pi * (float(i + 1) / self.ncfft + 0.5)
            if inverse:
                phase *= -1
            st.append(self.arith.twiddle(phase))
        self.st_r = self.arith.asarray([t[0] for t in st])
        self.st_i = self.arith.asarray([t[1] for t in st])

    def forward(self, timedata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """kiss_fftr: ``timedata`` (..., nfft) scalars -> freqdata (..., ncfft + 1) as (r, i)."""
        a, n = self.arith, self.ncfft
        tr, ti = self.substate(timedata[..., 0::2], timedata[..., 1::2])
        out_r = a.zeros(tr.shape[:-1] + (n + 1,))
        out_i = a.zeros(tr.shape[:-1] + (n + 1,))
        tdc_r, tdc_i = a.fixdiv(tr[..., 0], 2), a.fixdiv(ti[..., 0], 2)
        out_r[..., 0] = a.store(tdc_r + tdc_i)
        out_r[..., n] = a.store(tdc_r - tdc_i)
        k = np.arange(1, n // 2 + 1)
        if k.size:
            fpk_r, fpk_i = a.fixdiv(tr[..., k], 2), a.fixdiv(ti[..., k], 2)
            fpnk_r = a.fixdiv(tr[..., n - k], 2)
            fpnk_i = a.fixdiv(a.store(-ti[..., n - k]), 2)
            f1k_r, f1k_i = a.store(fpk_r + fpnk_r), a.store(fpk_i + fpnk_i)
            f2k_r, f2k_i = a.store(fpk_r - fpnk_r), a.store(fpk_i - fpnk_i)
            tw_r, tw_i = a.c_mul(f2k_r, f2k_i, self.st_r[k - 1], self.st_i[k - 1])
            out_r[..., k] = a.half_of_sum(f1k_r, tw_r)
            out_i[..., k] = a.half_of_sum(f1k_i, tw_i)
            # For k == ncfft - k (even ncfft) these second stores are the ones that stay.
            out_r[..., n - k] = a.half_of_sum(f1k_r, -tw_r)
            out_i[..., n - k] = a.half_of_sum(tw_i, -f1k_i)
        return out_r, out_i

    def inverse_transform(self, freq_r: np.ndarray, freq_i: np.ndarray) -> np.ndarray:
        """kiss_fftri: freqdata (..., ncfft + 1) as (r, i) -> timedata (..., nfft) scalars."""
        a, n = self.arith, self.ncfft
        tmp_r = a.zeros(freq_r.shape[:-1] + (n,))
        tmp_i = a.zeros(freq_r.shape[:-1] + (n,))
        tmp_r[..., 0] = a.fixdiv(a.store(freq_r[..., 0] + freq_r[..., n]), 2)
        tmp_i[..., 0] = a.fixdiv(a.store(freq_r[..., 0] - freq_r[..., n]), 2)
        k = np.arange(1, n // 2 + 1)
        if k.size:
            fk_r, fk_i = a.fixdiv(freq_r[..., k], 2), a.fixdiv(freq_i[..., k], 2)
            fnkc_r = a.fixdiv(freq_r[..., n - k], 2)
            fnkc_i = a.fixdiv(a.store(-freq_i[..., n - k]), 2)
            fek_r, fek_i = a.store(fk_r + fnkc_r), a.store(fk_i + fnkc_i)
            t_r, t_i = a.store(fk_r - fnkc_r), a.store(fk_i - fnkc_i)
            fok_r, fok_i = a.c_mul(t_r, t_i, self.st_r[k - 1], self.st_i[k - 1])
            tmp_r[..., k] = a.store(fek_r + fok_r)
            tmp_i[..., k] = a.store(fek_i + fok_i)
            tmp_r[..., n - k] = a.store(fek_r - fok_r)
            tmp_i[..., n - k] = a.store(-a.store(fek_i - fok_i))  # then .i *= -1
        out_r, out_i = self.substate(tmp_r, tmp_i)
        out = a.zeros(out_r.shape[:-1] + (self.nfft,))
        out[..., 0::2] = out_r
        out[..., 1::2] = out_i
        return out
