"""Old name of seqmodels.nn.attention, kept so that old checkpoints load.

Checkpoints (and configs) written before the attention modules moved to
seqmodels.nn name them in their hparams as
`_target_: seqmodels.tasks.attention.MultiplicativeAttention` (or
`AdditiveAttention`); Hydra imports that path when the task is rebuilt. New code
imports from `seqmodels.nn`.
"""

from seqmodels.nn.attention import AdditiveAttention, Attention, MultiplicativeAttention

__all__ = ["Attention", "AdditiveAttention", "MultiplicativeAttention"]
