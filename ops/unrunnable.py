"""Operators TFLM's op resolver registers that microref refuses, each with the reason.

These kernels exist so that the refusal names the operator and says *why* (an
``UnsupportedOpError`` at load, reported with every other unsupported operator), instead of a
bare "operator is not implemented", and so that ``tests/test_registry_vs_tflm.py`` can account for
every name TFLM registers. ``microref plan`` still sizes models that use them: the planner needs
lifetimes and scratch requests, not arithmetic (see interp/planner/scratch.py's rules).

* ``ethos-u``: a Vela-compiled Arm Ethos-U NPU command stream. Only the NPU executes it; TFLM's
  host builds (the tflite-micro wheel included) register no kernel for it
  (kernels/ethosu.cc: Register_ETHOSU() returns nullptr, so AddEthosU() adds nothing), and the
  wheel refuses the model as microref does.
* ``TFLM_DECODE``: TFLM's decompression of constant tensors compressed by its compression tool
  (look-up table, Huffman or pruning; kernels/decode.cc). The wheel does run it; microref does
  not implement it. Compression is lossless, so the uncompressed model computes the same values.
"""
from __future__ import annotations

from .registry import OpKernel, PrepareContext, register


class _Refused(OpKernel):
    """A registered name microref refuses at load; ``refused`` says why."""

    refused: str = ""

    def prepare(self, ctx: PrepareContext) -> None:
        ctx.unsupported(self.refused)

    def eval(self, inputs):  # never reached: prepare always refuses
        raise AssertionError(f"{self.op_name} is refused at load")


@register("ethos-u")
class EthosU(_Refused):
    supported_types = "—"
    refused = ("an Arm Ethos-U NPU command stream (compiled by Vela): only the NPU can execute it, and "
               "TFLM's host builds register no kernel for it (the tflite-micro wheel refuses the model "
               "too). `microref plan` sizes its arena; to run the network on a host, use the model as "
               "it was before Vela compiled it")
    notes = refused


@register("TFLM_DECODE")
class Decode(_Refused):
    supported_types = "—"
    refused = ("TFLM's DECODE (decompression of constant tensors compressed by TFLM's compression tool: "
               "look-up table, Huffman or pruning) is not implemented by microref; the compression is "
               "lossless, so run the uncompressed model (the tflite-micro wheel runs DECODE)")
    notes = refused
