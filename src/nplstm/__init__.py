"""nplstm: LSTM, GRU and RNN layers in plain NumPy, exact to PyTorch, every gate in sight.

>>> import numpy as np, nplstm
>>> lstm = nplstm.LSTM(3, 5, num_layers=2, seed=0)
>>> output, (h_n, c_n) = lstm(np.ones((7, 2, 3)))
>>> output.shape, h_n.shape, c_n.shape
((7, 2, 5), (2, 2, 5), (2, 2, 5))
"""

from typing import TYPE_CHECKING, Any

from . import gates, grad, losses, optim
from .cell_modules import GRUCell, Linear, LSTMCell, RNNCell
from .layers import GRU, LSTM, RNN
from .module import IncompatibleKeys, InputError
from .sequential import Sequential
from .trace import Trace

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "IncompatibleKeys",
    "InputError",
    "LSTMCell",
    "Linear",
    "RNNCell",
    "Sequential",
    "Trace",
    "UnsafeWeightsError",
    "WeightsFormatError",
    "__version__",
    "from_keras",
    "from_onnx",
    "gates",
    "grad",
    "load_weights",
    "losses",
    "onnx",
    "optim",
    "save_weights",
]


if TYPE_CHECKING:  # imported lazily below; type checkers read them from here
    from .io import UnsafeWeightsError, WeightsFormatError, load_weights, save_weights

_FROM_IO = ("load_weights", "save_weights", "UnsafeWeightsError", "WeightsFormatError")


def __getattr__(name: str) -> Any:
    # Weight files: imported on first use so `import nplstm` stays light.
    if name in _FROM_IO:
        from . import io

        return getattr(io, name)
    if name == "from_keras":  # Keras files: h5py only when a file is read
        from .keras import from_keras

        return from_keras
    if name in ("from_onnx", "onnx"):  # ONNX: the onnx package is imported only when used
        import importlib

        module = importlib.import_module(".onnx", __name__)
        return module if name == "onnx" else module.from_onnx
    raise AttributeError(f"module 'nplstm' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazy names too, so tab completion and dir() find them.
    return sorted(set(globals()) | set(__all__))
