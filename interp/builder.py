"""``interp.builder`` is ``interp.model.builder`` (the public path the README documents)."""
from .model.builder import TENSOR_TYPE_CODES, ModelBuilder, options_table_for  # noqa: F401
