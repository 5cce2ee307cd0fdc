"""English->Italian Transformer that returns its attention: model, tokenizers, checkpoints, decoding.

The public API is this package's names; `core.translate` is always the function (the commands live
in core/cli/, run as `python -m core <command>`).
"""

from core.attention import Attention
from core.checkpoint import CheckpointError, ModelBundle, load_checkpoint, save_checkpoint
from core.config import ModelConfig
from core.decoding import Translation, translate
from core.model import Transformer

__all__ = [
    "Attention",
    "CheckpointError",
    "ModelBundle",
    "ModelConfig",
    "Transformer",
    "Translation",
    "load_checkpoint",
    "save_checkpoint",
    "translate",
]
