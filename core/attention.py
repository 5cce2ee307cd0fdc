"""The one value for attention: every layer and head of one sentence, with the tokens on each axis.

Decoding, analyses and charts all take this type, so a chart's labels are always the tokens the model
really saw. Tensors are (L, H, T_query, T_key) softmax weights; rows sum to 1 (decoder self-attention
is zero above the diagonal).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor


@dataclass(frozen=True)
class Kind:
    """One kind of attention map: everything a page, a chart or an analysis needs to know about it."""

    name: str  # "encoder", "decoder", "cross": a key of HeadMask and a field of Attention
    label: str  # as the app names it
    letter: str  # in the link form of heads switched off (e1.3 is encoder layer 1 head 3)
    causal: bool  # keys after the query are masked (drawn grey, not as weight 0)
    rows: str  # what a row is: the query tokens
    columns: str  # what a column is: the key tokens
    reading: str  # how to read one map
    statistics: tuple[str, ...]  # the head statistics (core.analysis.head_stats) that mean something here
    timeline: tuple[str, ...]  # the statistics the Timeline charts for it
    roles: tuple[str, ...]  # the head roles (core.analysis.head_roles.ROLES) it can have, ties going to the first

    @property
    def queries_on_source(self) -> bool:
        return self.rows == "source"

    @property
    def keys_on_target(self) -> bool:
        return self.columns == "target"


_SELF_STATISTICS = ("entropy", "normalised_entropy", "confidence", "sink_share", "mean_offset", "mean_distance")
KIND = {
    kind.name: kind
    for kind in (
        Kind(
            "encoder",
            "Encoder self",
            "e",
            causal=False,
            rows="source",
            columns="source",
            reading="Row: an English token being re-read by the encoder; column: the English token it takes "
            "information from. Each row sums to 1.",
            statistics=_SELF_STATISTICS,
            timeline=("entropy", "confidence"),
            roles=("previous token", "next token", "same token", "rare words", "sink", "broad"),
        ),
        Kind(
            "decoder",
            "Decoder self",
            "d",
            causal=True,
            rows="target",
            columns="target",
            reading="Row `i·token`: the decoding step that has just read `token` and predicts the next Italian "
            "token; column: an Italian token it has already read (grey: a later token it cannot see). Each row "
            "sums to 1.",
            statistics=_SELF_STATISTICS,
            timeline=("entropy", "confidence"),
            roles=("previous token", "same token", "rare words", "sink", "broad"),  # no next token: it is masked
        ),
        Kind(
            "cross",
            "Encoder-decoder cross",
            "c",
            causal=False,
            rows="target",
            columns="source",
            reading="Row `i·token`: the decoding step that has just read `token` and predicts the next Italian "
            "token (so a row peaks on the English word it is about to translate); column: the English token it "
            "reads. Each row sums to 1.",
            statistics=("entropy", "normalised_entropy", "confidence", "sink_share", "diagonality"),
            timeline=("entropy", "confidence", "diagonality"),
            roles=("alignment", "sink", "broad"),
        ),
    )
}
KINDS = tuple(KIND)  # the order of Attention's fields and of every per-kind table
KIND_LABELS = {name: KIND[name].label for name in ("cross", "encoder", "decoder")}  # the pickers' order


@dataclass(frozen=True)
class Attention:
    """Softmax attention of one sentence: every layer and head of each kind, and the tokens it was computed on."""

    encoder: Tensor  # (L, H, S, S) source tokens attending to source tokens
    decoder: Tensor  # (L, H, T, T) decoder input tokens attending to earlier ones
    cross: Tensor  # (L, H, T, S) decoder input tokens attending to source tokens
    source_tokens: tuple[str, ...]  # encoder input: the words framed by the model's special tokens
    target_tokens: tuple[str, ...]  # decoder input (the query rows): the start token then each fed token
    source_frame: tuple[int, int] = (1, 1)  # framing tokens before and after the source words: ours
    # [SOS] ... [EOS] (1, 1), Marian's ... </s> (0, 1)

    def __post_init__(self) -> None:
        s, t = len(self.source_tokens), len(self.target_tokens)
        for kind, shape in (("encoder", (s, s)), ("decoder", (t, t)), ("cross", (t, s))):
            if tuple(getattr(self, kind).shape[-2:]) != shape:
                raise ValueError(
                    f"{kind} attention {tuple(getattr(self, kind).shape)} does not match "
                    f"{s} source and {t} target tokens"
                )

    @property
    def n_layers(self) -> int:
        return self.encoder.shape[0]

    @property
    def n_heads(self) -> int:
        return self.encoder.shape[1]

    def weights(self, kind: str) -> Tensor:
        """(L, H, Tq, Tk) weights of one kind: "encoder", "decoder" or "cross"."""
        if kind not in KINDS:
            raise ValueError(f"unknown attention kind {kind!r}: use one of {', '.join(KINDS)}")
        return getattr(self, kind)

    def queries(self, kind: str) -> list[str]:
        """Tokens down the rows of that kind's maps."""
        return list(self.source_tokens if KIND[kind].rows == "source" else self.target_tokens)

    def keys(self, kind: str) -> list[str]:
        """Tokens across the columns of that kind's maps."""
        return list(self.source_tokens if KIND[kind].columns == "source" else self.target_tokens)

    @property
    def source_words(self) -> slice:
        """Where the source's word tokens are among the source positions (the framing tokens left out)."""
        before, after = self.source_frame
        return slice(before, len(self.source_tokens) - after)

    def framing(self, kind: str) -> frozenset[int]:
        """Key positions of that kind's maps that frame the sentence (start and end tokens), not words."""
        if KIND[kind].columns == "target":
            return frozenset({0})  # the decoder's start token
        before, after = self.source_frame
        s = len(self.source_tokens)
        return frozenset([*range(before), *range(s - after, s)])

    def cpu(self) -> Attention:
        return replace(self, encoder=self.encoder.cpu(), decoder=self.decoder.cpu(), cross=self.cross.cpu())
