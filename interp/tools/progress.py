"""The progress bar of every long-running command (eval, the sweeps of compare and vectors over a
folder, vectors --count, compare --float over many samples, run --profile): a tqdm bar on stderr
with rate and ETA when stderr is a terminal, nothing otherwise or with --quiet."""
from __future__ import annotations

import sys


class Progress:
    """A tqdm bar on stderr (count, rate, ETA) when stderr is a terminal and not ``quiet``;
    nothing otherwise. Call it with (done, total); ``total`` None when unknown."""

    def __init__(self, label: str, quiet: bool = False, stream=None, mininterval: float = 0.1,
                 unit: str = "sample"):
        self.stream = stream if stream is not None else sys.stderr
        self.mininterval = mininterval  # seconds between redraws
        self.enabled = not quiet and isatty(self.stream)
        self.label = label
        self.unit = unit
        self.bar = None
        self.done = 0

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            try:
                from tqdm import tqdm
            except ImportError:  # the bar is a convenience: without tqdm, none
                self.enabled = False
                return
            self.bar = tqdm(total=total, desc=self.label, unit=self.unit, file=self.stream, dynamic_ncols=True,
                            smoothing=0.1, leave=False, mininterval=self.mininterval)
        self.bar.update(done - self.done)
        self.done = done

    def phase(self, label: str, unit: str | None = None) -> Progress:
        """This bar closed, and a new one for the next phase of the work (same stream and quietness)."""
        self.close()
        return Progress(label, quiet=not self.enabled, stream=self.stream, mininterval=self.mininterval,
                        unit=unit or self.unit)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.refresh()  # the final count drawn once (redraws are at most every mininterval)
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
