"""Drop-in interpreters shaped like the ones existing code already calls (``litert.py``:
``Interpreter`` and ``SignatureRunner``; ``micro.py``: ``MicroInterpreter``, ``InterpreterConfig`` and
``arena_bytes_needed``; ``common.py``: what they share).

* ``Interpreter``: the ``tf.lite.Interpreter`` / ``ai_edge_litert.interpreter.Interpreter``
  surface. Change one import line and LiteRT code runs on microref, with TFLM's outputs::

      # from ai_edge_litert.interpreter import Interpreter
      from interp.compat import Interpreter

      it = Interpreter(model_path="model.tflite")
      it.allocate_tensors()
      it.set_tensor(it.get_input_details()[0]["index"], x)
      it.invoke()
      y = it.get_tensor(it.get_output_details()[0]["index"])

* ``MicroInterpreter``: the ``tflite_micro`` Python ``runtime.Interpreter`` surface::

      # from tflite_micro.python.tflite_micro import runtime; runtime.Interpreter.from_file(...)
      from interp.compat import MicroInterpreter
      it = MicroInterpreter.from_file("model.tflite", arena_size=64 * 1024)
      it.set_input(x, 0); it.invoke(); y = it.get_output(0)

Both raise the exception types their originals raise (``ValueError``, ``RuntimeError``,
``IndexError``) with the originals' messages where they have one; microref's own errors are
raised as classes deriving from both, so ``except ValueError`` and ``except interp.ModelError``
both catch a model that cannot be loaded. Where microref differs on purpose, it says so:

* ``resize_tensor_input`` changes the batch (first) dimension of inputs whose batch is 1: the
  samples run as a batch (``run_batch``), each as the batch-1 model computes it; other dimensions
  and stateful models are refused at ``allocate_tensors`` (microref runs the model's own shapes).
* ``get_tensor`` / ``tensor()`` of an intermediate tensor needs
  ``experimental_preserve_all_tensors=True`` (LiteRT returns whatever its arena holds);
  ``set_tensor`` sets the model's inputs only.
* Delegates, thread counts and op resolvers are accepted and have no effect: microref always
  computes what TFLM's reference kernels compute.
"""
from __future__ import annotations

from .litert import Interpreter, SignatureRunner
from .micro import InterpreterConfig, MicroInterpreter, arena_bytes_needed

__all__ = ["Interpreter", "InterpreterConfig", "MicroInterpreter", "SignatureRunner", "arena_bytes_needed"]
