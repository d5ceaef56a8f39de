"""The op registry. Importing this package registers every kernel module below."""
from . import registry  # noqa: F401
from . import fully_connected  # noqa: F401
from . import conv  # noqa: F401
from . import softmax  # noqa: F401
