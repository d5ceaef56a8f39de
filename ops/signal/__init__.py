"""TFLM's signal library (signal/micro/kernels, signal/src): the custom operators of audio front
ends such as micro_speech's, registered under their custom_code names ("SignalWindow", …)."""
from . import spectral  # noqa: F401
