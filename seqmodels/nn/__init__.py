"""seqmodels.nn: recurrent cells and layers in pure PyTorch (no Lightning/Hydra/TensorBoard).

    from seqmodels.nn import Cell, Recurrent, RNNCell, LSTMCell, GRUCell, RNN, LSTM, GRU

Cells (cells.py) do one step: a single i2h Linear over cat(x_t, h_{t-1}), then
a pointwise `step`; `Cell` is the base class for a cell of your own, and
literature.py has three from papers (peephole LSTM, IndRNN, coupled-gate LSTM).
`Recurrent(cell, ...)` (recurrent.py) unrolls any cell with torch.nn's
signature plus `lengths` and an `engine` ("auto", "loop", "fused", "compiled",
"native"; engines.py, fused.py, compiled.py, native.py, auto.py); RNN, LSTM and GRU are Recurrent over
the built-in cells. `LSTM.from_torch(m)` / `lstm.to_torch()` convert to and
from torch.nn (interop.py).

The seq2seq pieces, for an encoder-decoder of one's own: `AdditiveAttention`
and `MultiplicativeAttention` (attention.py), `AttentionDecoder`, which steps
any cell one token at a time (decoder.py), and `greedy_search` and
`beam_search`, which take the special token ids as arguments (search.py).
`generate` and `sample_text` stream samples from a language model, one step
per token (generation.py).
"""

from seqmodels.nn.attention import AdditiveAttention, Attention, MultiplicativeAttention
from seqmodels.nn.cells import Cell, GRUCell, LSTMCell, RNNCell
from seqmodels.nn.crf import CRF
from seqmodels.nn.decoder import AttentionDecoder, DecoderState
from seqmodels.nn.generation import generate, sample_text
from seqmodels.nn.literature import CIFGLSTMCell, IndRNNCell, PeepholeLSTMCell
from seqmodels.nn.recurrent import GRU, LSTM, RNN, Recurrent, build_cell
from seqmodels.nn.search import GreedyResult, SearchDecoder, beam_search, greedy_search

__all__ = [
    "Cell",
    "Recurrent",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNN",
    "LSTM",
    "GRU",
    "PeepholeLSTMCell",
    "IndRNNCell",
    "CIFGLSTMCell",
    "build_cell",
    "Attention",
    "AdditiveAttention",
    "MultiplicativeAttention",
    "AttentionDecoder",
    "DecoderState",
    "SearchDecoder",
    "greedy_search",
    "beam_search",
    "GreedyResult",
    "generate",
    "sample_text",
    "CRF",
]
