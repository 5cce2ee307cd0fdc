"""What translate() returns: a Translation (the source, its hypotheses, the search tree), each Hypothesis with
its tokens, score and attention labelled as the model saw them."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from core.attention import Attention
from core.decoding.beam import BeamNode


@dataclass(frozen=True)
class Hypothesis:
    """One output of a beam search (or the greedy output, or a reference fed to the decoder), with its tokens,
    score and attention."""

    translation: str  # its text (a generated unknown token written as the copied source word)
    target_ids: list[int]  # decoder input rows: the start token then each generated token
    output_ids: list[int]  # generated tokens, ending with the end of sentence when finished; for a reference fed
    # to the decoder, the model's most likely token at each row
    tokens: tuple[str, ...]  # output_ids as tokens
    log_prob: float  # log-probability of output_ids under the model (forced tokens included)
    score: float  # log_prob / GNMT length penalty; the ranking
    finished: bool  # ended with the end of sentence, rather than cut at max_len
    top_ids: Tensor  # (T, TOP_K) most likely next tokens at each of its rows
    top_probs: Tensor  # (T, TOP_K)
    attention: Attention
    node: int = -1  # its last node in Translation.beam_tree (-1: greedy, no tree)
    copied: tuple[tuple[int, int, str], ...] = ()  # (output position, source position, word shown) per copied
    # unknown token


@dataclass(frozen=True)
class Translation:
    """One translated (or teacher-forced) sentence: the source, the hypotheses best first (one for greedy
    decoding, none in teacher-forced mode, whose pass is `reference_pass`) and the search tree. The fields of
    the output shown (translation, ids, tokens, attention) are the best hypothesis's, read through it."""

    source: str
    source_ids: list[int]  # encoder input: the sentence's tokens framed by the model's special tokens
    hypotheses: tuple[Hypothesis, ...] = ()  # the n best outputs, best first
    beam_tree: tuple[BeamNode, ...] = ()  # every node a beam search or a forced prefix scored, root first
    prefix_length: int = 0  # how many leading output tokens were forced (what-if decoding)
    reference: str | None = None  # set in teacher-forced mode
    reference_pass: Hypothesis | None = None  # the reference fed to the decoder, in teacher-forced mode
    unknown_words: tuple[str, ...] = ()  # source words the tokenizer read as unknown

    @property
    def shown(self) -> Hypothesis:
        """The output on view: the reference pass in teacher-forced mode, else the best hypothesis."""
        return self.reference_pass if self.reference_pass is not None else self.hypotheses[0]

    @property
    def translation(self) -> str:
        return self.shown.translation

    @property
    def target_ids(self) -> list[int]:
        return self.shown.target_ids

    @property
    def output_ids(self) -> list[int]:
        return self.shown.output_ids

    @property
    def top_ids(self) -> Tensor:
        return self.shown.top_ids

    @property
    def top_probs(self) -> Tensor:
        return self.shown.top_probs

    @property
    def attention(self) -> Attention:
        return self.shown.attention

    @property
    def copied(self) -> tuple[tuple[int, int, str], ...]:
        return self.shown.copied

    @property
    def source_tokens(self) -> list[str]:
        return list(self.attention.source_tokens)

    @property
    def target_tokens(self) -> list[str]:
        return list(self.attention.target_tokens)
