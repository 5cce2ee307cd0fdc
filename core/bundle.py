"""ModelBundle: a model of any family with its tokenizers and config, what the app, the command line and every
analysis take (core.load_checkpoint makes one)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.seam import LayerStack, Specials, Tokenizer
from core.tokenizer import as_tokenizer


@dataclass(frozen=True)
class ModelBundle:
    """A model ready for inference (eval mode, float32) with its tokenizers and config: what the app, the command
    line and every analysis take. `kind` names where it came from: "native" (our checkpoint), "tutorial" (a
    tutorial tmodel_XX.pt) or a Hugging Face family ("marian")."""

    model: LayerStack
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    config: object  # core.config.ModelConfig: the sizes every family reports the same way
    source: str
    kind: str
    metadata: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for side in ("src_tokenizer", "tgt_tokenizer"):  # our `tokenizers` objects, given bare, get their wrapper
            object.__setattr__(self, side, as_tokenizer(getattr(self, side)))

    @property
    def specials(self) -> Specials:
        return self.model.specials

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())
