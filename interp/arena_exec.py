"""``interp.arena_exec`` is ``interp.planner.arena_exec`` (the public path the README documents)."""
from .planner.arena_exec import run_in_arena  # noqa: F401
