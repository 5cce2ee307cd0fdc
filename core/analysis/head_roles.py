"""What each head does, in words: a named role for every head, with the statistic that earns it.

Voita et al. (2019) named positional, syntactic and rare-word heads and found that the heads a model needs are
the ones with a clear role; Clark et al. (2019) named the heads that park their attention on separators and
punctuation. Here a role is a pure function of head statistics (core.analysis.head_stats) averaged over a set of
sentences; which roles a kind can have is its `roles` entry in core.attention.KIND.

Each role reads one statistic, a share of each row's weight (for broad: each row's normalised entropy), averaged
over the rows that have a choice (`head_stats.choice_rows`: decoder self-attention leaves out its first row, which
can only look at the start token) and then over sentences:

- previous token, same token, next token: the weight on the key at offset -1, 0, +1 (`offset_share`; decoder
  self-attention has no next token: it is masked);
- rare words: the weight on the rarest word the row can see, by the number of times each token occurs as a key
  of that kind in the same set of sentences (`rare_token_share`; punctuation and the start/end tokens are not
  words; ties go to the longer token, then the earlier);
- alignment (cross-attention): the weight within one position of the scaled diagonal (`diagonality`). This is
  the one gold-free alignment that every model has: it needs no word links, and it is not read off one of the
  heads being classified (the model card's alignment method, when there is one, is a head of this model). It
  finds monotone alignment, which is most of English-Italian; a head that follows a reordering shows as mixed;
- sink: the weight on the start/end tokens and punctuation (`sink_share`, Attention.framing's positions);
- broad: each row's entropy over the log of the keys it may see (`normalised_entropy`: 1 = uniform).

A share means little without what a head that spreads every row evenly gets (`head_stats.uniform_weights`): 1/n
on the previous token, but a third of a 9-token source lies in the diagonal band, and `[SOS]`, `.` and `[EOS]` are
half of a 6-token sentence. So a share role scores its lift over uniform rows,

    lift = (share - uniform) / (1 - uniform),

0 for a head that spreads evenly and 1 for one that puts all its weight there, computed from the share and the
uniform rows' share averaged over the same rows and sentences; the role needs a lift of at least its threshold.
Broad scores the normalised entropy itself (uniform rows: 1).

The role of a head: among the share roles that clear their threshold, the one with the largest lift (ties: the
kind's order); else broad when it clears; else "mixed", whose evidence names the closest role (the largest score
over threshold). The thresholds are the constants below, fixed by what they mean, not fitted to a model.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.analysis.head_stats import (
    choice_rows,
    diagonality,
    normalised_entropy,
    offset_share,
    rare_token_share,
    sink_share,
    uniform_weights,
)
from core.attention import KIND, KINDS, Attention

# A share role needs at least half of the way from uniform rows to all of each row's weight on its keys: past
# that point the keys hold more of the weight a head could move there than the rest, whatever the sentence
# length, the language or the model.
POSITION_LIFT = 0.5  # previous, same and next token
RARE_WORD_LIFT = 0.5
ALIGNMENT_LIFT = 0.5
SINK_LIFT = 0.5
# Broad: rows whose entropy is at least 0.8 of a uniform row's spread their weight over about n^0.8 of n keys
# (6 of 9, 11 of 20): most of what they can see.
BROAD_ENTROPY = 0.8
MIXED = "mixed"


@dataclass(frozen=True)
class Role:
    """One role a head can have: the statistic it reads, its threshold, and how its evidence reads."""

    name: str  # as tables and captions show it
    short: str  # a few letters, for a text table
    statistic: str  # the statistic it reads (a key of `role_statistics`)
    threshold: float
    lift: bool  # True: the threshold is on the lift over uniform rows; False: on the statistic itself
    where: str  # what the share is on, in words

    def score(self, value: float, uniform: float) -> float:
        """The lift over uniform rows (NaN when uniform rows already put everything there), or the value."""
        if not self.lift:
            return value
        return (value - uniform) / (1.0 - uniform) if uniform < 1.0 else math.nan

    def evidence(self, value: float, uniform: float) -> str:
        if math.isnan(value):
            return "no row of these sentences to measure it on"
        if not self.lift:
            return f"row entropy {value:.0%} of a uniform row's"
        return f"{value:.0%} of each row's weight {self.where} (uniform rows: {uniform:.0%})"


ROLES = {
    role.name: role
    for role in (
        Role(
            "previous token",
            "prev",
            "previous_token_share",
            POSITION_LIFT,
            True,
            "on the token before",
        ),
        Role(
            "next token",
            "next",
            "next_token_share",
            POSITION_LIFT,
            True,
            "on the token after",
        ),
        Role("same token", "self", "same_token_share", POSITION_LIFT, True, "on its own token"),
        Role(
            "rare words",
            "rare",
            "rare_token_share",
            RARE_WORD_LIFT,
            True,
            "on the rarest word it can see",
        ),
        Role(
            "alignment",
            "align",
            "diagonality",
            ALIGNMENT_LIFT,
            True,
            "within one token of the diagonal",
        ),
        Role(
            "sink",
            "sink",
            "sink_share",
            SINK_LIFT,
            True,
            "on the start/end tokens and punctuation",
        ),
        Role(
            "broad",
            "broad",
            "normalised_entropy",
            BROAD_ENTROPY,
            False,
            "",
        ),
    )
}
ROLE_NAMES = (*ROLES, MIXED)  # every role, in the order legends list them
SHORT = {name: role.short for name, role in ROLES.items()} | {MIXED: "-"}


@dataclass(frozen=True)
class HeadRole:
    """The role of one head and the evidence for it (for a mixed head: the closest role's statistic)."""

    role: str  # a name of ROLES, or MIXED
    cites: str  # the role whose statistic the evidence quotes: the role itself, or for mixed the closest one
    statistic: str
    value: float  # the statistic, averaged over rows and sentences
    uniform: float  # the same statistic for uniform rows
    score: float  # lift over uniform rows, or the value itself (broad)
    evidence: str  # in words

    def to_json(self) -> dict:
        rounded = lambda x: None if math.isnan(x) else round(float(x), 6)
        return {
            "cites": self.cites,
            "statistic": self.statistic,
            "value": rounded(self.value),
            "uniform": rounded(self.uniform),
            "score": rounded(self.score),
            "threshold": ROLES[self.cites].threshold,
            "text": self.evidence,
        }


RoleGrid = list[list[HeadRole]]  # layers x heads


def statistics_of(kind: str) -> tuple[str, ...]:
    """The statistics the roles of this kind read."""
    return tuple(dict.fromkeys(ROLES[name].statistic for name in KIND[kind].roles))


def token_counts(attentions: Iterable[Attention], kind: str) -> Counter:
    """How often each token occurs as a key of that kind over the sentences (framing tokens left out)."""
    counts = Counter()
    for att in attentions:
        framing = att.framing(kind)
        counts.update(token for i, token in enumerate(att.keys(kind)) if i not in framing)
    return counts


def sentence_statistics(
    att: Attention, kind: str, counts: Mapping[str, int], weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """(L, H) of each statistic the kind's roles read, for one sentence (weights: other maps on the same tokens,
    such as uniform_weights). NaN where no row qualifies."""
    w = att.weights(kind).detach().cpu().double().numpy() if weights is None else weights
    causal = KIND[kind].causal
    rows = choice_rows(*w.shape[-2:], causal)
    keys, framing = att.keys(kind), att.framing(kind)
    compute = {
        "previous_token_share": lambda: offset_share(w, -1, rows),
        "next_token_share": lambda: offset_share(w, 1, rows),
        "same_token_share": lambda: offset_share(w, 0, rows),
        "rare_token_share": lambda: rare_token_share(w, keys, counts, framing, causal, rows),
        "sink_share": lambda: sink_share(w, keys, framing, rows),
        "diagonality": lambda: diagonality(w, rows=rows),
        "normalised_entropy": lambda: normalised_entropy(w, causal, rows),
    }
    return {name: compute[name]() for name in statistics_of(kind)}


def _nanmean(stack: list[np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no sentence had a row for it
        return np.nanmean(np.stack(stack), axis=0)


def role_statistics(attentions: Sequence[Attention], kind: str) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """({statistic: (L, H)}, {statistic: uniform rows' value}), each averaged over sentences (each weighs the same;
    a sentence with no row for a statistic is left out of both)."""
    if not attentions:
        raise ValueError("no sentences to average over")
    counts = token_counts(attentions, kind) if "rare_token_share" in statistics_of(kind) else Counter()
    values, uniform = [], []
    for att in attentions:
        tq, tk = att.weights(kind).shape[-2:]
        values.append(sentence_statistics(att, kind, counts))
        uniform.append(sentence_statistics(att, kind, counts, uniform_weights(tq, tk, KIND[kind].causal)))
    names = statistics_of(kind)
    return (
        {name: _nanmean([v[name] for v in values]) for name in names},
        {name: float(_nanmean([u[name][0, 0] for u in uniform])) for name in names},
    )


def head_role(kind: str, values: Mapping[str, float], uniform: Mapping[str, float]) -> HeadRole:
    """One head's role from its statistics (`role_statistics` for that head) and the uniform rows' values."""

    def quote(name: str, role: str) -> HeadRole:
        spec = ROLES[name]
        v, u = float(values[spec.statistic]), float(uniform[spec.statistic])
        text = spec.evidence(v, u) if role != MIXED else f"no clear role; closest: {name}, {spec.evidence(v, u)}"
        return HeadRole(role, name, spec.statistic, v, u, spec.score(v, u), text)

    scores = {
        name: ROLES[name].score(float(values[ROLES[name].statistic]), float(uniform[ROLES[name].statistic]))
        for name in KIND[kind].roles
    }
    clear = [name for name, s in scores.items() if s >= ROLES[name].threshold]  # NaN never clears
    shares = [name for name in clear if ROLES[name].lift]
    if shares:
        best = max(shares, key=scores.get)  # max keeps the first of equals: the kind's order
        return quote(best, best)
    if clear:
        return quote(clear[0], clear[0])
    ratios = {name: s / ROLES[name].threshold for name, s in scores.items() if not math.isnan(s)}
    closest = max(ratios, key=ratios.get) if ratios else KIND[kind].roles[-1]
    return quote(closest, MIXED)


def assign_roles(kind: str, values: Mapping[str, np.ndarray], uniform: Mapping[str, float]) -> RoleGrid:
    """Every head's role: (L, H) statistics in, L x H HeadRole out."""
    shape = next(iter(values.values())).shape
    return [
        [head_role(kind, {name: v[layer, head] for name, v in values.items()}, uniform) for head in range(shape[1])]
        for layer in range(shape[0])
    ]


def head_roles(attentions: Sequence[Attention], kinds: Sequence[str] = KINDS) -> dict[str, RoleGrid]:
    """The role of every head of each kind over these sentences (teacher-forced attention, as head_report's)."""
    return {kind: assign_roles(kind, *role_statistics(attentions, kind)) for kind in kinds}


def role_names(grid: RoleGrid) -> np.ndarray:
    """(L, H) array of role names."""
    return np.array([[r.role for r in row] for row in grid], dtype=object)


def count_roles(names: Iterable[str]) -> list[tuple[str, int]]:
    """(role, count) pairs, most frequent first (ties in ROLE_NAMES order)."""
    counts = Counter(names)
    return sorted(counts.items(), key=lambda item: (-item[1], ROLE_NAMES.index(item[0])))


def describe_counts(names: Iterable[str]) -> str:
    """'6 alignment, 2 sink, 2 mixed'."""
    return ", ".join(f"{n} {name}" for name, n in count_roles(names))


def most_important(grid: RoleGrid, importance: np.ndarray, top: int = 10) -> list[str]:
    """The roles of the `top` heads with the largest importance (such as minus the ablation delta), largest first."""
    names = role_names(grid).reshape(-1)
    order = np.argsort(-np.asarray(importance, dtype=float).reshape(-1), kind="stable")
    return [str(names[i]) for i in order[:top]]


def roles_switched_off(
    order: Sequence[tuple[str, int, int]], roles: Mapping[str, RoleGrid], counts: Sequence[int]
) -> list[str]:
    """For each point of a pruning curve (heads_off counts, switching off order[:k]), the roles of the heads that
    step switched off, as describe_counts text ('' for the first point)."""
    result, done = [], 0
    for k in counts:
        step = order[done:k]
        result.append(describe_counts(roles[kind][layer - 1][head - 1].role for kind, layer, head in step))
        done = max(done, k)
    return result
