"""seqmodels.nn: recurrent cells and layers in pure PyTorch (no Lightning/Hydra/TensorBoard).

    from seqmodels.nn import RNNCell, LSTMCell, GRUCell, RNN, LSTM, GRU

Cells (cells.py) do one step with a single i2h Linear over cat(x_t, h_{t-1});
layers (recurrent.py) unroll them with torch.nn's signature plus `lengths` and
an `engine` ("auto", "loop", "fused", "native"; engines.py, native.py, auto.py);
`LSTM.from_torch(m)` / `lstm.to_torch()` convert to and from torch.nn (interop.py).
"""

from seqmodels.nn.cells import GRUCell, LSTMCell, RNNCell
from seqmodels.nn.recurrent import GRU, LSTM, RNN

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU"]
