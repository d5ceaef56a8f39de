"""The public Interpreter: the runtime's, plus the arena plan TFLM would make for the model.

The plan lives a layer above the runtime (it reads the prepared kernels' scratch requests), so
the class users import is assembled here, on top of both.
"""
from __future__ import annotations

from . import planner
from .runtime import Interpreter as _RuntimeInterpreter


class Interpreter(_RuntimeInterpreter):
    __doc__ = _RuntimeInterpreter.__doc__

    @property
    def plan(self) -> planner.ArenaPlan:
        """The arena plan TFLM would make for this model (see interp.planner)."""
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = self.__dict__["_plan"] = planner.plan_arena(self)
        return plan
