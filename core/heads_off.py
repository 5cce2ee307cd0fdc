"""Which heads are switched off, as a small value: a set of (kind, layer, head), 1-based as the app shows them.

`HeadsOff` is what a user picks (the app, a link, the command line); `.mask(L, H)` turns it into the
HeadMask that model and decoding calls take (core/model.py). Its text form, used in links, is compact:
`e1.3,c2.5` is encoder self-attention layer 1 head 3 and cross-attention layer 2 head 5 (d: decoder self).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.attention import KIND, KINDS
from core.seam import HeadMask

KIND_LETTERS = {name: kind.letter for name, kind in KIND.items()}
LETTER_KINDS = {letter: kind for kind, letter in KIND_LETTERS.items()}


@dataclass(frozen=True)
class HeadsOff:
    heads: frozenset[tuple[str, int, int]] = frozenset()  # (kind, layer, head), both 1-based

    def __post_init__(self) -> None:
        for kind, layer, head in self.heads:
            if kind not in KINDS or layer < 1 or head < 1:
                raise ValueError(f"not a head: {kind} layer {layer} head {head}")

    def __bool__(self) -> bool:
        return bool(self.heads)

    def __len__(self) -> int:
        return len(self.heads)

    def sorted(self) -> list[tuple[str, int, int]]:
        """Heads in kind order (encoder, decoder, cross), then layer, then head."""
        return sorted(self.heads, key=lambda h: (KINDS.index(h[0]), h[1], h[2]))

    def check(self, n_layers: int, n_heads: int) -> None:
        """ValueError naming the first head this model does not have."""
        for kind, layer, head in self.sorted():
            if layer > n_layers or head > n_heads:
                raise ValueError(
                    f"{kind} layer {layer} head {head} does not exist: this model has {n_layers} layers x {n_heads} heads"
                )

    def mask(self, n_layers: int, n_heads: int) -> HeadMask:
        """The HeadMask: (L, H) float gates for each kind with a head off (kinds with none are left out)."""
        self.check(n_layers, n_heads)
        gates: dict[str, torch.Tensor] = {}
        for kind, layer, head in self.heads:
            gates.setdefault(kind, torch.ones(n_layers, n_heads))[layer - 1, head - 1] = 0.0
        return gates

    def to_param(self) -> str:
        """'e1.3,c2.5': the text form used in links."""
        return ",".join(f"{KIND_LETTERS[k]}{layer}.{head}" for k, layer, head in self.sorted())

    @classmethod
    def from_param(cls, text: str) -> HeadsOff:
        """Parse to_param's form; ValueError for anything else."""
        heads = set()
        for item in filter(None, (part.strip() for part in text.split(","))):
            kind, (layer, dot, head) = LETTER_KINDS.get(item[:1]), item[1:].partition(".")
            if kind is None or not dot or not layer.isdigit() or not head.isdigit():
                raise ValueError(f"{item!r} is not a head: write e1.3 (encoder layer 1 head 3), d2.1 or c4.8")
            heads.add((kind, int(layer), int(head)))
        return cls(frozenset(heads))


def label(kind: str, layer: int, head: int) -> str:
    """'e1.3' for one head (the same letters as HeadsOff.to_param)."""
    return f"{KIND_LETTERS[kind]}{layer}.{head}"
