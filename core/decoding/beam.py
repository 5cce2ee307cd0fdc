"""Beam search over a key/value cache, with its tree of scored candidates (and forced prefixes: what-if decoding).

Every sentence has beam_size slots in one decoder batch of (sentences x beam_size) rows, so each step is one
decoder call; after each step the self-attention caches are reordered so slot j holds the keys and values of the
beam now in slot j (cross-attention keys and values are the same for all beams of a sentence and never move).
Each step scores the 2 x beam_size best extensions of a sentence's beams: an end-of-sentence among the best
beam_size finishes a hypothesis, the best beam_size others go on; a sentence stops once beam_size hypotheses are
finished. Hypotheses rank by log P / ((5 + length) / 6) ** alpha, GNMT's length penalty (Wu et al., 2016).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.decoding.greedy import causal_rows, top
from core.seam import HeadMask, LayerStack, model_device, pad_rows, padding_mask, reorder_cache


@dataclass(frozen=True)
class BeamNode:
    """One node of a beam search's tree: a token scored as the continuation of its parent's path."""

    token_id: int
    parent: int  # index of the parent node in the tree; -1 for the root (the decoder's start token)
    step: int  # position in the decoder input: 0 for the start token, 1 for the first generated token
    log_prob: float  # log-probability of the whole path from the root to this node
    status: str  # "kept": in the beam after its step; "finished": an end of sentence that ended a hypothesis;
    # "pruned": scored among the step's best candidates, then dropped (or chosen as the search stopped)
    forced: bool = False  # a prefix token, forced rather than searched


@dataclass(frozen=True)
class BeamPath:
    """One hypothesis as ids, found by beam_search (before tokens and text are attached by translate)."""

    target_ids: list[int]  # decoder input rows: the start token then each generated token (never the end)
    output_ids: list[int]  # generated tokens, ending with the end of sentence when finished
    log_prob: float  # sum of the log-probabilities of output_ids (forced tokens included)
    score: float  # log_prob / GNMT length penalty of len(output_ids)
    finished: bool  # ended with the end of sentence (else cut at max_len)
    node: int  # its last node in the tree
    top_ids: Tensor | None  # (T, TOP_K) with attention recorded, else None
    top_probs: Tensor | None
    maps: tuple[Tensor, Tensor, Tensor] | None  # (encoder, decoder, cross) (L, H, Tq, Tk), when recorded
    cross_mean: Tensor | None  # (T, S) cross-attention averaged over layers and heads, when asked for


def length_penalty_factor(length: int, alpha: float) -> float:
    """GNMT's length penalty lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al., 2016); a hypothesis scores log P(Y) / lp(Y).
    alpha 0 gives 1: plain log-probability."""
    return ((5 + length) / 6) ** alpha


class _Node:
    """A tree node while the search runs (statuses change as later steps decide)."""

    __slots__ = ("token", "parent", "step", "log_prob", "status", "forced", "slot")

    def __init__(self, token: int, parent: int, step: int, log_prob: float, status: str, forced: bool = False):
        self.token, self.parent, self.step, self.log_prob = token, parent, step, log_prob
        self.status, self.forced = status, forced
        self.slot = 0  # the beam slot this node's row is decoded in, once it is kept


class _Search:
    """One sentence's beam: its tree so far, the live nodes (in slot order) and the finished ones."""

    def __init__(self, start: int, eos: int) -> None:
        self.nodes = [_Node(start, -1, 0, 0.0, "kept")]
        self.eos = eos
        self.live = [0]
        self.finished: list[int] = []
        self.done = False

    def add(self, token: int, parent: int, log_prob: float, status: str, forced: bool = False) -> int:
        self.nodes.append(_Node(token, parent, self.nodes[parent].step + 1, log_prob, status, forced))
        return len(self.nodes) - 1

    def path(self, end: int) -> list[_Node]:
        nodes = []
        while end >= 0:
            nodes.append(self.nodes[end])
            end = self.nodes[end].parent
        return nodes[::-1]

    def force(self, token: int, log_prob: float) -> list[tuple[int, int]]:
        """A forced step: the one live beam (slot 0) takes `token`. Returns the (node, parent slot) going on."""
        finishing = token == self.eos
        node = self.add(token, self.live[0], log_prob, "finished" if finishing else "kept", forced=True)
        if finishing:
            self.finished.append(node)
            return []
        return [(node, 0)]

    def expand(self, scores: list[float], indices: list[int], beam_size: int, vocab: int) -> list[tuple[int, int]]:
        """Score the step's best candidates (flat slot * vocab + token indices, best first): an end of sentence
        among the best beam_size finishes a hypothesis, the best beam_size others go on."""
        chosen = []
        for rank, (score, index) in enumerate(zip(scores, indices)):
            if score == -torch.inf:
                break  # fewer live beams than slots (the first step), or a tiny vocabulary
            slot, token = divmod(index, vocab)
            if token == self.eos:
                status = "finished" if rank < beam_size else "pruned"
            else:
                status = "kept" if len(chosen) < beam_size else "pruned"
            node = self.add(token, self.live[slot], score, status)
            if status == "finished":
                self.finished.append(node)
            elif status == "kept":
                chosen.append((node, slot))
        return chosen

    def settle(self, chosen: list[tuple[int, int]], beam_size: int) -> bool:
        """Make the chosen nodes the live beams (slot order); True while the search goes on."""
        if len(self.finished) >= beam_size or not chosen:
            self.done = True
            for node, _ in chosen:
                self.nodes[node].status = "pruned"  # chosen, but the search ended before feeding it
            self.live = []
            return False
        self.live = [node for node, _ in chosen]
        for j, (node, _) in enumerate(chosen):
            self.nodes[node].slot = j
        return True


@dataclass(frozen=True)
class _Plan:
    """What one search call does: its beams, limits, forced tokens and what to record."""

    beam_size: int
    max_len: int
    length_penalty: float = 0.0
    nbest: int = 1
    prefix: tuple[int, ...] = ()
    record: bool = False  # every map and the top candidates of each row
    need_cross: bool = False  # the mean cross-attention rows only (unknown-word copying in evaluation)
    head_mask: HeadMask | None = None


def _score(end: _Node, length_penalty: float) -> float:
    """The rank of the hypothesis ending at `end`: its log-probability over the length penalty of its outputs."""
    return end.log_prob / length_penalty_factor(end.step, length_penalty)


def _step_scores(searches: list[_Search], scores: Tensor, pos: int, plan: _Plan):
    """Each sentence's candidates of this step: (node, parent slot) lists, the forced token or the 2k best."""
    n, k = len(searches), plan.beam_size
    forced = plan.prefix[pos] if pos < len(plan.prefix) else None
    if forced is not None:
        forced_scores = scores[::k, forced].tolist()  # during forced steps slot 0 holds the one live beam
        return [[] if s.done else s.force(forced, forced_scores[i]) for i, s in enumerate(searches)]
    vocab = scores.size(-1)
    top_scores, top_index = scores.view(n, k * vocab).topk(min(2 * k, k * vocab), dim=-1)
    top_scores, top_index = top_scores.tolist(), top_index.tolist()
    return [[] if s.done else s.expand(top_scores[i], top_index[i], k, vocab) for i, s in enumerate(searches)]


@torch.inference_mode()
def _search(model: LayerStack, sources: list[list[int]], plan: _Plan) -> tuple[list[list[BeamPath]], list[_Search]]:
    """Beam search of several encoder inputs at once over a key/value cache (see the module docstring).
    max_len counts the start token, as in greedy_decode; paths cut there are hypotheses too (unfinished)."""
    specials, device = model.specials, model_device(model)
    n, k = len(sources), plan.beam_size
    src = pad_rows(sources, specials.pad, device)
    src_mask = None if len({len(s) for s in sources}) == 1 else padding_mask(src, specials.pad)  # (n, 1, 1, S)
    memory, enc_probs = model.encode(src, src_mask, need_weights=plan.record, head_mask=plan.head_mask)
    memory = memory.repeat_interleave(k, 0)  # (n * k, S, D): the slots of a sentence read the same source
    slot_mask = None if src_mask is None else src_mask.repeat_interleave(k, 0)
    caches = model.new_cache()
    searches = [_Search(specials.start, specials.eos) for _ in sources]
    tokens = torch.full((n * k, 1), specials.start, dtype=torch.long, device=device)
    log_probs = torch.full((n * k,), -torch.inf, device=device)
    log_probs[::k] = 0.0  # one live beam per sentence at first: slot 0
    steps = []  # per decoder step, what every slot's row saw
    weights = plan.record or plan.need_cross
    for pos in range(plan.max_len):
        if pos == plan.max_len - 1 and not weights:
            break  # the last step would only give the newest tokens their attention rows
        hidden, self_p, cross_p = model.decode(
            tokens, memory, slot_mask, None, weights, caches, start=pos, head_mask=plan.head_mask
        )
        logits = specials.choosable(model.project_rows(hidden[:, -1]))  # (n * k, V)
        if plan.record:
            # (L, n*k, H, pos+1) self rows, (L, n*k, H, S) cross rows, (n*k, TOP_K) candidates
            steps.append((torch.stack(self_p)[:, :, :, 0], torch.stack(cross_p)[:, :, :, 0], *top(logits)))
        elif plan.need_cross:
            steps.append(torch.stack(cross_p)[:, :, :, -1].mean((0, 2)))  # (n*k, S)
        if pos == plan.max_len - 1:
            break  # the decoder input is full: this step only gave the newest tokens their attention rows
        scores = log_probs[:, None] + logits.float().log_softmax(-1)  # (n * k, V) path log-probabilities
        chosen = _step_scores(searches, scores, pos, plan)
        order = list(range(n * k))  # slot j of the next step continues slot order[j]
        next_tokens, next_log_probs = [specials.start] * (n * k), [-torch.inf] * (n * k)
        for i, (search, picks) in enumerate(zip(searches, chosen)):
            if search.done or not search.settle(picks, k):
                continue
            for j, (node, parent_slot) in enumerate(picks):
                order[i * k + j] = i * k + parent_slot
                next_tokens[i * k + j] = search.nodes[node].token
                next_log_probs[i * k + j] = search.nodes[node].log_prob
        if all(s.done for s in searches):
            break
        reorder_cache(caches, torch.tensor(order, device=device))
        tokens = torch.tensor(next_tokens, device=device)[:, None]
        log_probs = torch.tensor(next_log_probs, device=device)
    recorded = _Recorded(steps, enc_probs, k)
    results = []
    for i, search in enumerate(searches):
        ends = search.finished + search.live  # live beams are left only where max_len cut them
        ends.sort(key=lambda end: -_score(search.nodes[end], plan.length_penalty))  # stable: earlier first on ties
        results.append([_beam_path(search, end, i, len(sources[i]), plan, recorded) for end in ends[: plan.nbest]])
    return results, searches


@dataclass(frozen=True)
class _Recorded:
    steps: list  # per step: (self rows, cross rows, top ids, top probs), or the mean cross rows
    enc_probs: list  # per layer (n, H, S, S) encoder maps, when recorded
    beam_size: int


def _beam_path(search: _Search, end: int, sentence: int, src_len: int, plan: _Plan, recorded: _Recorded) -> BeamPath:
    """One hypothesis's ids and, from the recorded steps (with record, every map and the candidates; else the
    mean cross-attention rows, if any), the rows its own beams were decoded in."""
    base = sentence * recorded.beam_size
    path = search.path(end)
    finished = path[-1].token == search.eos
    rows = path[:-1] if finished else path  # the end of sentence is an output, never a row
    top_ids = top_probs = maps = cross_mean = None
    if plan.record:
        self_rows, cross_rows, ids, probs = zip(*recorded.steps[: len(rows)])
        layers, _, heads, _ = cross_rows[0].shape
        slots = [base + node.slot for node in rows]
        decoder = causal_rows([self_rows[p][:, slot] for p, slot in enumerate(slots)], layers, heads)
        cross = torch.stack([cross_rows[p][:, slot, :, :src_len] for p, slot in enumerate(slots)], dim=2)
        maps = (torch.stack(recorded.enc_probs)[:, sentence, :, :src_len, :src_len], decoder, cross)
        top_ids = torch.stack([ids[p][slot] for p, slot in enumerate(slots)])
        top_probs = torch.stack([probs[p][slot] for p, slot in enumerate(slots)])
    elif recorded.steps:
        cross_mean = torch.stack([recorded.steps[p][base + node.slot, :src_len] for p, node in enumerate(rows)])
    return BeamPath(
        target_ids=[node.token for node in rows],
        output_ids=[node.token for node in path[1:]],
        log_prob=path[-1].log_prob,
        score=_score(path[-1], plan.length_penalty),
        finished=finished,
        node=end,
        top_ids=top_ids,
        top_probs=top_probs,
        maps=maps,
        cross_mean=cross_mean,
    )


def beam_search(
    model: LayerStack,
    src_ids: list[int],
    beam_size: int,
    max_len: int,
    length_penalty: float = 0.0,
    nbest: int = 1,
    prefix: list[int] = (),
    *,
    head_mask: HeadMask | None = None,
) -> tuple[list[BeamPath], list[BeamNode]]:
    """Beam search of one sentence with every attention map: (the nbest hypotheses, best score first, and the
    search tree, root first). Each hypothesis's attention and top candidates are the rows its own beams were
    decoded in. The first len(prefix) tokens are forced. Beam size 1 is greedy decoding."""
    plan = _Plan(beam_size, max_len, length_penalty, nbest, tuple(prefix), record=True, head_mask=head_mask)
    results, searches = _search(model, [src_ids], plan)
    tree = [BeamNode(n.token, n.parent, n.step, n.log_prob, n.status, n.forced) for n in searches[0].nodes]
    return results[0], tree


def beam_batch(
    model: LayerStack,
    sources: list[list[int]],
    beam_size: int,
    max_len: int,
    length_penalty: float = 0.0,
    need_cross: bool = False,
    *,
    head_mask: HeadMask | None = None,
):
    """Beam-search several encoder inputs at once, for evaluation; returns what greedy_batch returns: each
    sentence's best hypothesis ids (up to, not including, the end of sentence) and, with need_cross, its (T, S)
    cross-attention averaged over layers and heads."""
    plan = _Plan(beam_size, max_len, length_penalty, need_cross=need_cross, head_mask=head_mask)
    results, _ = _search(model, sources, plan)
    best = [paths[0] for paths in results]
    outputs = [p.output_ids[:-1] if p.finished else p.output_ids for p in best]
    return (outputs, [p.cross_mean for p in best]) if need_cross else outputs
