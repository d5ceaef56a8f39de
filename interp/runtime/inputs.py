"""Inputs for a model when the user gives none: seeded values over each input's whole range."""
from __future__ import annotations

import numpy as np


def random_inputs(it, rng) -> list[np.ndarray]:
    """Seeded inputs over each input's whole range (float inputs: standard normal)."""
    xs = []
    for d in it.input_details:
        dt = np.dtype(d["dtype"])
        shape = tuple(int(s) for s in d["shape"])
        if dt.kind == "f":
            xs.append(rng.standard_normal(shape).astype(dt))
        elif dt.kind == "b":
            xs.append(rng.integers(0, 2, shape).astype(dt))
        else:
            info = np.iinfo(dt)
            xs.append(rng.integers(info.min, info.max, shape, endpoint=True, dtype=np.int64).astype(dt))
    return xs
