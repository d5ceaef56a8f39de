"""The op registry. Importing this package registers every kernel module below."""
from . import registry  # noqa: F401
from . import fully_connected  # noqa: F401
from . import conv  # noqa: F401
from . import softmax  # noqa: F401
from . import elementwise  # noqa: F401
from . import shape  # noqa: F401
from . import pad  # noqa: F401
from . import pooling  # noqa: F401
from . import reduce  # noqa: F401
from . import resize  # noqa: F401
from . import argminmax  # noqa: F401
from . import activations  # noqa: F401
from . import quantize  # noqa: F401
from . import lstm  # noqa: F401
from . import signal  # noqa: F401
from . import control_flow  # noqa: F401
from . import variables  # noqa: F401
