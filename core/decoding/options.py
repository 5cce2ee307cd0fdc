"""What a decoding call may choose, as one value: DecodeOptions."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from core.heads_off import HeadsOff
from core.seam import HeadMask

TOP_K = 5  # candidates kept per decoder row (the Steps page shows them)


@dataclass(frozen=True)
class DecodeOptions:
    """How translate() decodes one sentence.

    max_len counts the decoder's first input: at most max_len decoder rows (None: the model's seq_len).
    beam_size > 1 runs a beam search keeping nbest hypotheses, ranked by log-probability over GNMT's length
    penalty with alpha = length_penalty (0: none). prefix (target tokens or ids, or a text the target tokenizer
    splits) forces the first output tokens. copy_unknown writes a generated unknown token as the source word it
    attended to. head_mask switches heads off for this call only (core.heads_off.HeadsOff, or a HeadMask).
    """

    max_len: int | None = None
    beam_size: int = 1
    nbest: int = 1
    length_penalty: float = 0.0
    prefix: str | list | tuple | None = None
    copy_unknown: bool = True
    head_mask: object = None  # HeadsOff | HeadMask | None

    @classmethod
    def of(cls, options: DecodeOptions | None = None, **choices) -> DecodeOptions:
        """options (or the defaults) with the given fields replaced; TypeError naming an unknown one."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(choices) - names)
        if unknown:
            raise TypeError(f"unknown decoding option {unknown[0]!r}: use one of {', '.join(sorted(names))}")
        return replace(options or cls(), **choices)

    @property
    def searches(self) -> bool:
        """A beam search or a forced prefix (the search path), rather than plain greedy decoding."""
        return self.beam_size > 1 or self.prefix is not None

    def check(self) -> None:
        check_beam_options(self.beam_size, self.nbest, self.length_penalty)


def check_beam_options(beam_size: int, nbest: int, length_penalty: float) -> None:
    """ValueError with a readable message for beam options that cannot be used."""
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"the beam size must be a whole number of at least 1, got {beam_size!r}")
    if not isinstance(nbest, int) or not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and the beam size {beam_size}, got {nbest!r}")
    if not length_penalty >= 0:  # also refuses NaN
        raise ValueError(f"the length penalty must be 0 (none) or more, got {length_penalty!r}")


def gates(head_mask: object, n_layers: int, n_heads: int) -> HeadMask | None:
    """The HeadMask of a HeadsOff (None when it switches nothing off), or the HeadMask given."""
    if isinstance(head_mask, HeadsOff):
        return head_mask.mask(n_layers, n_heads) if head_mask else None
    return head_mask
