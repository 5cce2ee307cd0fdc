"""English->Italian Transformer that returns its attention: model, tokenizers, checkpoints, decoding."""

from core.checkpoint import CheckpointError, ModelBundle, load_checkpoint, save_checkpoint
from core.config import ModelConfig
from core.decode import Attention, Translation, translate
from core.model import Transformer

__all__ = ["Attention", "CheckpointError", "ModelBundle", "ModelConfig", "Transformer", "Translation",
           "load_checkpoint", "save_checkpoint", "translate"]
