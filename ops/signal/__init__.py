"""TFLM's signal library (signal/micro/kernels, signal/src): the custom operators of audio front
ends such as micro_speech's, registered under their custom_code names ("SignalWindow", …)."""
from . import filter_bank, framing, spectral  # noqa: F401
