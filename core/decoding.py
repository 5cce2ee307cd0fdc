"""Greedy decoding with a key/value cache, and teacher-forced passes, returning everything a viewer needs.

Row labels are the tokens the decoder was really fed: [SOS] then each generated token (a final [EOS]
is an output, never an input). Attention tensors are (L, H, T_query, T_key) for one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.attention import Attention
from core.checkpoint import ModelBundle
from core.heads_off import HeadsOff
from core.model import HeadMask, Transformer, causal_mask, padding_mask
from core.tokenizer import EOS_ID, PAD_ID, SOS_ID, SPECIAL_TOKENS, UNK, UNK_ID, encode, tokens_to_text

TOP_K = 5


@dataclass(frozen=True)
class Translation:
    """One translated (or teacher-forced) sentence: ids, tokens and attention, labelled as the model saw them."""

    source: str
    translation: str  # generated text, or the reference text in teacher-forced mode
    source_ids: list[int]  # encoder input: [SOS] + words + [EOS]
    target_ids: list[int]  # decoder input (the query rows): [SOS] then each generated/reference token
    output_ids: list[int]  # generated after [SOS], ending with [EOS] when produced; argmax per row if forced
    top_ids: Tensor  # (T, TOP_K) most likely next tokens at each decoder position
    top_probs: Tensor  # (T, TOP_K) their probabilities
    attention: Attention
    reference: str | None = None  # set in teacher-forced mode
    unknown_words: tuple[str, ...] = ()  # source words the tokenizer mapped to [UNK]
    copied: tuple[tuple[int, int, str], ...] = ()  # (output position, source position, word shown): a
    # generated [UNK] written in `translation` as the source word its cross-attention picked (copy_sources)
    hypotheses: tuple[Hypothesis, ...] = ()  # the n best outputs, best first (the fields above are the first);
    # one for greedy decoding, none in teacher-forced mode
    beam_tree: tuple[BeamNode, ...] = ()  # every node a beam search or a forced prefix scored, root first
    prefix_length: int = 0  # how many leading output tokens were forced (what-if decoding)

    @property
    def source_tokens(self) -> list[str]:
        return list(self.attention.source_tokens)

    @property
    def target_tokens(self) -> list[str]:
        return list(self.attention.target_tokens)


def _top(logits: Tensor) -> tuple[Tensor, Tensor]:
    probs, ids = logits.float().softmax(-1).topk(min(TOP_K, logits.size(-1)), dim=-1)
    return ids, probs


@torch.inference_mode()
def greedy_decode(model: Transformer, src_ids: list[int], max_len: int, *, head_mask: HeadMask | None = None):
    """Encode once, then decode one token per step over a key/value cache.

    Returns (decoder input ids, output ids, (T, k) top ids, (T, k) top probs, (encoder, decoder, cross)
    attention as (L, H, Tq, Tk) tensors). max_len counts
    [SOS], as in the tutorial's loop: at most max_len decoder tokens. The model must be in eval mode.
    head_mask switches heads off (core.model.HeadMask).
    """
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], device=device)  # (1, S)
    memory, enc_probs = model.encode(src, None, True, head_mask)  # no padding, so no source mask
    caches = model.new_cache()
    inputs, outputs, self_rows, cross_rows, top_ids, top_probs = [SOS_ID], [], [], [], [], []
    last_row_only = False
    while True:
        token = torch.tensor([[inputs[-1]]], device=device)  # (1, 1): only the newest token is run
        hidden, self_p, cross_p = model.decode(
            token, memory, None, None, True, caches, start=len(inputs) - 1, head_mask=head_mask
        )
        self_rows.append(torch.stack(self_p)[:, 0, :, 0])  # (L, H, len(inputs))
        cross_rows.append(torch.stack(cross_p)[:, 0, :, 0])  # (L, H, S)
        ids, probs = _top(model.project(hidden[:, -1]))  # (1, k)
        top_ids.append(ids[0])
        top_probs.append(probs[0])
        if last_row_only:
            break
        next_id = int(ids[0, 0])
        outputs.append(next_id)
        if next_id == EOS_ID:
            break
        inputs.append(next_id)
        # At max_len the tutorial stops with the last token never fed; feed it once more, emitting
        # nothing, so every generated token has its attention row as in a teacher-forced pass.
        last_row_only = len(inputs) == max_len
    t = len(inputs)
    decoder = torch.zeros(model.config.n_layers, model.config.n_heads, t, t, device=device)
    for i, row in enumerate(self_rows):
        decoder[:, :, i, : i + 1] = row  # causal: keys after the query stay 0
    maps = (torch.stack(enc_probs)[:, 0], decoder, torch.stack(cross_rows, dim=2))
    return inputs, outputs, torch.stack(top_ids), torch.stack(top_probs), maps


@torch.inference_mode()
def teacher_forced(model: Transformer, src_ids: list[int], tgt_ids: list[int], *, head_mask: HeadMask | None = None):
    """One full pass with decoder input [SOS] + tgt_ids; returns (inputs, argmax ids, top ids, top probs, maps)
    with maps the (encoder, decoder, cross) attention as (L, H, Tq, Tk) tensors."""
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], device=device)
    tgt = torch.tensor([[SOS_ID, *tgt_ids]], device=device)
    logits, maps = model(src, tgt, None, causal_mask(tgt.size(1), device), True, head_mask)
    ids, probs = _top(logits[0])
    return tgt[0].tolist(), ids[:, 0].tolist(), ids, probs, tuple(m[:, 0] for m in maps)


def copy_sources(
    cross: Tensor, output_ids: list[int], source_tokens: list[str], source_words: list[str]
) -> list[tuple[int, int]]:
    """Where each generated [UNK] copies from: (output position, source position), as in Luong et al. (2015).

    cross is (T, S) attention of the decoder rows on the encoder input ([SOS] + words + [EOS]), averaged
    over layers and heads; source_tokens/source_words are the words only. An [UNK] takes the most
    attended source word that has a letter or digit, preferring words the model read as [UNK] itself
    (a name or rare word it cannot translate is what it cannot spell either).
    """
    readable = [any(ch.isalnum() for ch in w) for w in source_words]
    unknown = [r and t == UNK for r, t in zip(readable, source_tokens)]
    allowed = torch.tensor(unknown if any(unknown) else readable, device=cross.device)
    if not allowed.any():
        return []
    copies = []
    for row, token_id in enumerate(output_ids):
        if token_id == UNK_ID:
            scores = cross[row, 1 : len(source_words) + 1].masked_fill(~allowed, -1.0)
            copies.append((row, int(scores.argmax()) + 1))
    return copies


def copy_unknown_words(
    tgt_tokenizer, cross: Tensor, output_ids: list[int], source_tokens: list[str], source_words: list[str]
) -> list[tuple[int, int, str]]:
    """(output position, source position, word as shown) for each generated [UNK]; see copy_sources.

    The word is written as the target side writes words (its tokenizer's normalizer applied).
    """
    normalize = tgt_tokenizer.normalizer.normalize_str if tgt_tokenizer.normalizer else str
    return [
        (row, col, normalize(source_words[col - 1]))
        for row, col in copy_sources(cross, output_ids, source_tokens, source_words)
    ]


def copied_text(tgt_tokenizer, output_ids: list[int], copies: list[tuple[int, int, str]]) -> str:
    """Output text with each copied [UNK] (copy_unknown_words) written as its word."""
    replace = {row: word for row, _, word in copies}
    tokens = [
        replace[row] if row in replace else tgt_tokenizer.id_to_token(token_id)
        for row, token_id in enumerate(output_ids)
        if token_id not in (PAD_ID, SOS_ID, EOS_ID)
    ]
    return tokens_to_text(tgt_tokenizer, tokens)


def _tokens(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.id_to_token(i) for i in ids]


def _encode_checked(tokenizer, text: str, limit: int, what: str, specials: str):
    """Ids, tokens and words of text, or a ValueError a user can act on (empty, unreadable, too long)."""
    if not text or not text.strip():
        raise ValueError(f"the {what} is empty: type a sentence to translate")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, surrogate-escaped by Python (command line, stdin)
        raise ValueError(f"the {what} is not UTF-8 text; save or type it as UTF-8") from None
    ids, tokens, words = encode(tokenizer, text)
    if not ids:
        raise ValueError(f"the {what} has no words the tokenizer can read")
    if len(ids) > limit:
        raise ValueError(
            f"the {what} is {len(ids)} tokens long; this model takes at most {limit} (its seq_len includes {specials})"
        )
    return ids, tokens, words


def translate(
    bundle: ModelBundle,
    sentence: str,
    max_len: int | None = None,
    reference: str | None = None,
    copy_unknown: bool = True,
    *,
    beam_size: int = 1,
    nbest: int = 1,
    length_penalty: float = 0.0,
    prefix: str | list[str | int] | None = None,
    head_mask: HeadMask | HeadsOff | None = None,
) -> Translation:
    """Translate one sentence greedily (or, given a reference, feed it to the decoder) with all attention maps.

    With copy_unknown, each [UNK] the model generates is shown in the text as the source word it attended
    to most (tokens and ids keep the [UNK]). Raises ValueError with a readable message for empty or
    overlong input, or a head the model does not have.

    beam_size > 1 runs a beam search (beam_search) and keeps its nbest hypotheses, ranked by log-probability
    over GNMT's length penalty (length_penalty is its alpha; 0: none), and its tree; the result's fields are
    the best hypothesis's. prefix (target tokens or ids, or a text the target tokenizer splits) forces the
    first output tokens and continues greedily or with the beam: what the model writes after them.
    head_mask switches heads off for this call only (HeadsOff, or a HeadMask of (L, H) gates).
    """
    model, src_tok, tgt_tok, seq_len = bundle.model, bundle.src_tokenizer, bundle.tgt_tokenizer, bundle.config.seq_len
    if isinstance(head_mask, HeadsOff):
        head_mask = head_mask.mask(bundle.config.n_layers, bundle.config.n_heads) if head_mask else None
    ids, tokens, words = _encode_checked(src_tok, sentence, seq_len - 2, "sentence", "[SOS] and [EOS]")
    src_ids = [SOS_ID, *ids, EOS_ID]
    unknown = tuple(w for w, t in zip(words, tokens) if t == src_tok.id_to_token(UNK_ID))
    copies: list[tuple[int, int, str]] = []
    if reference is not None:
        if beam_size != 1 or prefix is not None:
            raise ValueError("a reference translation is fed to the decoder as it is: no beam search or prefix with it")
        ref_ids, ref_tokens, _ = _encode_checked(tgt_tok, reference, seq_len - 1, "reference translation", "[SOS]")
        inputs, outputs, top_ids, top_probs, maps = teacher_forced(model, src_ids, ref_ids, head_mask=head_mask)
        text = tokens_to_text(tgt_tok, ref_tokens)
    else:
        max_len = seq_len if max_len is None else max_len
        if not 2 <= max_len <= seq_len:
            raise ValueError(f"max_len must be between 2 and the model's seq_len {seq_len}, got {max_len}")
        check_beam_options(beam_size, nbest, length_penalty)
        if beam_size > 1 or prefix is not None:
            forced = [] if prefix is None else prefix_ids(tgt_tok, prefix)
            if len(forced) > max_len - 1:
                raise ValueError(
                    f"the prefix has {len(forced)} tokens; with max_len {max_len} the decoder writes at most "
                    f"{max_len - 1}"
                )
            paths, tree = beam_search(
                model, src_ids, beam_size, max_len, length_penalty, nbest, forced, head_mask=head_mask
            )
            source = (_tokens(src_tok, src_ids), tokens, words)
            hypotheses = tuple(_hypothesis(tgt_tok, source, path, copy_unknown) for path in paths)
            return _translation_of(sentence, src_ids, unknown, hypotheses, tuple(tree), len(forced))
        inputs, outputs, top_ids, top_probs, maps = greedy_decode(model, src_ids, max_len, head_mask=head_mask)
        if copy_unknown and UNK_ID in outputs:
            copies = copy_unknown_words(tgt_tok, maps[2].mean((0, 1)), outputs, tokens, words)
        text = copied_text(tgt_tok, outputs, copies)
    attention = Attention(*(m.cpu() for m in maps), tuple(_tokens(src_tok, src_ids)), tuple(_tokens(tgt_tok, inputs)))
    greedy = (
        ()
        if reference is not None
        else (_greedy_hypothesis(tgt_tok, text, inputs, outputs, attention, copies, top_ids, top_probs),)
    )
    return Translation(
        source=sentence,
        translation=text,
        source_ids=src_ids,
        target_ids=inputs,
        output_ids=outputs,
        top_ids=top_ids.cpu(),
        top_probs=top_probs.cpu(),
        attention=attention,
        reference=reference,
        unknown_words=unknown,
        copied=tuple(copies),
        hypotheses=greedy,
    )


@torch.inference_mode()
def greedy_batch(
    model: Transformer,
    sources: list[list[int]],
    max_len: int,
    need_cross: bool = False,
    *,
    head_mask: HeadMask | None = None,
):
    """Greedy-decode several encoder inputs at once over a key/value cache; for validation and evaluation.

    Returns each sentence's generated ids (up to, not including, [EOS]); with need_cross, also each
    sentence's (T, S) cross-attention averaged over layers and heads (for copy_sources). head_mask: HeadMask,
    (L, H) gates for all sentences or (B, L, H) one set per sentence.
    """
    device = next(model.parameters()).device
    width = max(len(s) for s in sources)
    src = torch.full((len(sources), width), PAD_ID, dtype=torch.long, device=device)
    for row, ids in enumerate(sources):
        src[row, : len(ids)] = torch.tensor(ids, device=device)
    src_mask = padding_mask(src, PAD_ID)  # (B, 1, 1, S)
    memory, _ = model.encode(src, src_mask, head_mask=head_mask)
    caches = model.new_cache()
    tokens = torch.full((len(sources), 1), SOS_ID, dtype=torch.long, device=device)
    done = torch.zeros(len(sources), dtype=torch.bool, device=device)
    generated, cross_rows = [], []
    for step in range(max_len - 1):
        hidden, _, cross = model.decode(
            tokens, memory, src_mask, None, need_cross, caches, start=step, head_mask=head_mask
        )
        if need_cross:
            cross_rows.append(torch.stack(cross)[:, :, :, -1].mean((0, 2)))  # (B, S)
        tokens = model.project(hidden[:, -1]).argmax(-1, keepdim=True)  # (B, 1)
        generated.append(tokens[:, 0])
        done |= tokens[:, 0] == EOS_ID
        if done.all():
            break
    out = [row[: row.index(EOS_ID)] if EOS_ID in row else row for row in torch.stack(generated, dim=1).tolist()]
    if not need_cross:
        return out
    cross = torch.stack(cross_rows, dim=1).cpu()  # (B, T, S)
    return out, [cross[b, : len(ids) + 1] for b, ids in enumerate(out)]


# ---- Beam search -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeamNode:
    """One node of a beam search's tree: a token scored as the continuation of its parent's path."""

    token_id: int
    parent: int  # index of the parent node in the tree; -1 for the root ([SOS])
    step: int  # position in the decoder input: 0 for [SOS], 1 for the first generated token
    log_prob: float  # log-probability of the whole path from the root to this node
    status: str  # "kept": in the beam after its step; "finished": an [EOS] that ended a hypothesis;
    # "pruned": scored among the step's best candidates, then dropped (or chosen as the search stopped)
    forced: bool = False  # a prefix token, forced rather than searched


@dataclass(frozen=True)
class BeamPath:
    """One hypothesis as ids, found by beam_search (before tokens and text are attached by translate)."""

    target_ids: list[int]  # decoder input rows: [SOS] then each generated token ([EOS] is never a row)
    output_ids: list[int]  # generated tokens, ending with [EOS] when finished
    log_prob: float  # sum of the log-probabilities of output_ids (forced tokens included)
    score: float  # log_prob / GNMT length penalty of len(output_ids)
    finished: bool  # ended with [EOS] (else cut at max_len)
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

    def __init__(self) -> None:
        self.nodes = [_Node(SOS_ID, -1, 0, 0.0, "kept")]
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


def _project_rows(model: Transformer, hidden: Tensor) -> Tensor:
    """(B, D) -> (B, V) logits. For a few rows, weight @ hidden.T reads the (V, D) weight in its stored layout and
    ran about 2.5x faster on one CPU thread than nn.Linear's hidden @ weight.T (4 rows, V 22400); one row keeps
    nn.Linear, so a beam of 1 computes exactly what greedy decoding does."""
    if hidden.size(0) == 1:
        return model.project(hidden)
    proj = model.projection_layer.proj
    return torch.addmm(proj.bias[:, None], proj.weight, hidden.T).T.contiguous()  # rows contiguous for the softmaxes


@torch.inference_mode()
def _search(
    model: Transformer,
    sources: list[list[int]],
    beam_size: int,
    max_len: int,
    length_penalty: float,
    nbest: int,
    prefix: list[int],
    record: bool,
    need_cross: bool,
    head_mask: HeadMask | None = None,
) -> tuple[list[list[BeamPath]], list[_Search]]:
    """Beam search of several encoder inputs at once over a key/value cache.

    Every sentence has beam_size slots in one decoder batch of (sentences x beam_size) rows, so each step is
    one decoder call; after each step the self-attention caches are reordered so slot j holds the keys and
    values of the beam now in slot j (cross-attention keys and values are the same for all beams of a
    sentence and never move). Each step scores the 2 x beam_size best extensions of a sentence's beams: an
    [EOS] among the best beam_size finishes a hypothesis, the best beam_size others go on; a sentence stops
    once beam_size hypotheses are finished. The first len(prefix) steps take the forced tokens instead.
    max_len counts [SOS], as in greedy_decode; paths cut there are hypotheses too (unfinished).
    """
    device = next(model.parameters()).device
    n, k = len(sources), beam_size
    width = max(len(s) for s in sources)
    src = torch.full((n, width), PAD_ID, dtype=torch.long, device=device)
    for row, ids in enumerate(sources):
        src[row, : len(ids)] = torch.tensor(ids, device=device)
    src_mask = None if all(len(s) == width for s in sources) else padding_mask(src, PAD_ID)  # (n, 1, 1, S)
    memory, enc_probs = model.encode(src, src_mask, need_weights=record, head_mask=head_mask)
    memory = memory.repeat_interleave(k, 0)  # (n * k, S, D): the slots of a sentence read the same source
    slot_mask = None if src_mask is None else src_mask.repeat_interleave(k, 0)
    caches = model.new_cache()
    searches = [_Search() for _ in sources]
    tokens = torch.full((n * k, 1), SOS_ID, dtype=torch.long, device=device)
    log_probs = torch.full((n * k,), -torch.inf, device=device)
    log_probs[::k] = 0.0  # one live beam per sentence at first: slot 0
    steps = []  # per decoder step, what every slot's row saw
    for pos in range(max_len):
        if pos == max_len - 1 and not (record or need_cross):
            break  # the last step would only give the newest tokens their attention rows
        hidden, self_p, cross_p = model.decode(
            tokens, memory, slot_mask, None, record or need_cross, caches, start=pos, head_mask=head_mask
        )
        logits = _project_rows(model, hidden[:, -1])  # (n * k, V)
        if record:
            ids, probs = _top(logits)
            # (L, n*k, H, pos+1) self rows, (L, n*k, H, S) cross rows, (n*k, TOP_K) candidates
            steps.append((torch.stack(self_p)[:, :, :, 0], torch.stack(cross_p)[:, :, :, 0], ids, probs))
        elif need_cross:
            steps.append(torch.stack(cross_p)[:, :, :, -1].mean((0, 2)))  # (n*k, S)
        if pos == max_len - 1:
            break  # the decoder input is full: this step only gave the newest tokens their attention rows
        scores = log_probs[:, None] + logits.float().log_softmax(-1)  # (n * k, V) path log-probabilities
        vocab = scores.size(-1)
        forced = prefix[pos] if pos < len(prefix) else None
        if forced is None:
            top_scores, top_index = scores.view(n, k * vocab).topk(min(2 * k, k * vocab), dim=-1)
            top_scores, top_index = top_scores.tolist(), top_index.tolist()
        else:
            forced_scores = scores[::k, forced].tolist()  # during forced steps slot 0 holds the one live beam
        order = list(range(n * k))  # slot j of the next step continues slot order[j]
        next_tokens, next_log_probs = [SOS_ID] * (n * k), [-torch.inf] * (n * k)
        for i, search in enumerate(searches):
            if search.done:
                continue
            chosen = []  # (node, parent slot)
            if forced is not None:
                status = "finished" if forced == EOS_ID else "kept"
                node = search.add(forced, search.live[0], forced_scores[i], status, forced=True)
                if forced == EOS_ID:
                    search.finished.append(node)
                else:
                    chosen.append((node, 0))
            else:
                for rank, (score, index) in enumerate(zip(top_scores[i], top_index[i])):
                    if score == -torch.inf:
                        break  # fewer live beams than slots (the first step), or a tiny vocabulary
                    slot, token = divmod(index, vocab)
                    if token == EOS_ID:
                        status = "finished" if rank < k else "pruned"
                    else:
                        status = "kept" if len(chosen) < k else "pruned"
                    node = search.add(token, search.live[slot], score, status)
                    if status == "finished":
                        search.finished.append(node)
                    elif status == "kept":
                        chosen.append((node, slot))
            if len(search.finished) >= k or not chosen:
                search.done = True
                for node, _ in chosen:
                    search.nodes[node].status = "pruned"  # chosen, but the search ended before feeding it
                search.live = []
                continue
            search.live = [node for node, _ in chosen]
            for j, (node, parent_slot) in enumerate(chosen):
                order[i * k + j] = i * k + parent_slot
                next_tokens[i * k + j] = search.nodes[node].token
                next_log_probs[i * k + j] = search.nodes[node].log_prob
                search.nodes[node].slot = j
        if all(s.done for s in searches):
            break
        index = torch.tensor(order, device=device)
        for self_cache, _ in caches:
            self_cache.k, self_cache.v = self_cache.k.index_select(0, index), self_cache.v.index_select(0, index)
        tokens = torch.tensor(next_tokens, device=device)[:, None]
        log_probs = torch.tensor(next_log_probs, device=device)
    results = []
    for i, search in enumerate(searches):
        ends = search.finished + search.live  # live beams are left only where max_len cut them
        ends.sort(key=lambda end: -_score(search.nodes[end], length_penalty))  # stable: earlier ones first on ties
        results.append(
            [
                _beam_path(search, end, i, k, len(sources[i]), length_penalty, record, steps, enc_probs)
                for end in ends[:nbest]
            ]
        )
    return results, searches


def _score(end: _Node, length_penalty: float) -> float:
    """The rank of the hypothesis ending at `end`: its log-probability over the length penalty of its outputs."""
    return end.log_prob / length_penalty_factor(end.step, length_penalty)


def _beam_path(
    search: _Search,
    end: int,
    sentence: int,
    beam_size: int,
    src_len: int,
    length_penalty: float,
    record: bool,
    steps: list,
    enc_probs,
) -> BeamPath:
    """One hypothesis's ids and, from the recorded steps (with record, every map and the candidates; else the
    mean cross-attention rows, if any), the rows its own beams were decoded in."""
    base = sentence * beam_size
    path = search.path(end)
    finished = path[-1].token == EOS_ID
    rows = path[:-1] if finished else path  # [EOS] is an output, never a row
    output_ids = [node.token for node in path[1:]]
    top_ids = top_probs = maps = cross_mean = None
    if record:
        self_rows, cross_rows, ids, probs = zip(*steps[: len(rows)])
        layers, _, heads, _ = cross_rows[0].shape
        t = len(rows)
        decoder = torch.zeros(layers, heads, t, t, device=cross_rows[0].device)
        for p, node in enumerate(rows):
            decoder[:, :, p, : p + 1] = self_rows[p][:, base + node.slot]  # causal: keys after the query stay 0
        cross = torch.stack([cross_rows[p][:, base + node.slot, :, :src_len] for p, node in enumerate(rows)], dim=2)
        maps = (torch.stack(enc_probs)[:, sentence, :, :src_len, :src_len], decoder, cross)
        top_ids = torch.stack([ids[p][base + node.slot] for p, node in enumerate(rows)])
        top_probs = torch.stack([probs[p][base + node.slot] for p, node in enumerate(rows)])
    elif steps:
        cross_mean = torch.stack([steps[p][base + node.slot, :src_len] for p, node in enumerate(rows)])
    return BeamPath(
        target_ids=[node.token for node in rows],
        output_ids=output_ids,
        log_prob=path[-1].log_prob,
        score=_score(path[-1], length_penalty),
        finished=finished,
        node=end,
        top_ids=top_ids,
        top_probs=top_probs,
        maps=maps,
        cross_mean=cross_mean,
    )


def beam_search(
    model: Transformer,
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
    results, searches = _search(
        model, [src_ids], beam_size, max_len, length_penalty, nbest, list(prefix), True, False, head_mask
    )
    tree = [BeamNode(n.token, n.parent, n.step, n.log_prob, n.status, n.forced) for n in searches[0].nodes]
    return results[0], tree


def beam_batch(
    model: Transformer,
    sources: list[list[int]],
    beam_size: int,
    max_len: int,
    length_penalty: float = 0.0,
    need_cross: bool = False,
    *,
    head_mask: HeadMask | None = None,
):
    """Beam-search several encoder inputs at once, for evaluation; returns what greedy_batch returns: each
    sentence's best hypothesis ids (up to, not including, [EOS]) and, with need_cross, its (T, S)
    cross-attention averaged over layers and heads."""
    results, _ = _search(model, sources, beam_size, max_len, length_penalty, 1, [], False, need_cross, head_mask)
    best = [paths[0] for paths in results]
    outputs = [p.output_ids[:-1] if p.finished else p.output_ids for p in best]
    return (outputs, [p.cross_mean for p in best]) if need_cross else outputs


@dataclass(frozen=True)
class Hypothesis:
    """One output of a beam search (or the greedy output), with its tokens, score and attention."""

    translation: str  # its text (a generated [UNK] written as the copied source word, as in Translation)
    target_ids: list[int]  # decoder input rows: [SOS] then each generated token
    output_ids: list[int]  # generated tokens, ending with [EOS] when finished
    tokens: tuple[str, ...]  # output_ids as tokens
    log_prob: float  # log-probability of output_ids under the model (forced tokens included)
    score: float  # log_prob / GNMT length penalty; the ranking
    finished: bool  # ended with [EOS], rather than cut at max_len
    top_ids: Tensor  # (T, TOP_K) most likely next tokens at each of its rows
    top_probs: Tensor  # (T, TOP_K)
    attention: Attention
    node: int = -1  # its last node in Translation.beam_tree (-1: greedy, no tree)
    copied: tuple[tuple[int, int, str], ...] = ()


def check_beam_options(beam_size: int, nbest: int, length_penalty: float) -> None:
    """ValueError with a readable message for beam options that cannot be used."""
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"the beam size must be a whole number of at least 1, got {beam_size!r}")
    if not isinstance(nbest, int) or not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and the beam size {beam_size}, got {nbest!r}")
    if not length_penalty >= 0:  # also refuses NaN
        raise ValueError(f"the length penalty must be 0 (none) or more, got {length_penalty!r}")


def prefix_ids(tgt_tokenizer, prefix: str | list[str | int]) -> list[int]:
    """Target ids of a forced prefix: a text (split and normalized as the target tokenizer does), or a list of
    tokens (normalized the same way) or ids. Any token the model can write may be forced (an untrained model
    writes [SOS] or [PAD] too); ValueError for a word outside the vocabulary, an id out of range, or [EOS]
    anywhere but last (it ends the translation)."""
    normalize = tgt_tokenizer.normalizer.normalize_str if tgt_tokenizer.normalizer else str
    vocab = tgt_tokenizer.get_vocab_size()
    if isinstance(prefix, str):
        if not prefix.strip():
            return []
        ids, tokens, words = encode(tgt_tokenizer, prefix)
        unknown = [w for w, t in zip(words, tokens) if t == UNK]
        if unknown:
            raise ValueError(f"not in the model's target vocabulary: {', '.join(map(repr, unknown))}")
        items = ids
    else:
        items = list(prefix)
    out = []
    for item in items:
        if isinstance(item, str):
            token_id = tgt_tokenizer.token_to_id(item if item in SPECIAL_TOKENS else normalize(item))
            if token_id is None:
                raise ValueError(f"{item!r} is not a token of the model's target vocabulary")
        elif isinstance(item, int) and 0 <= item < vocab:
            token_id = item
        else:
            raise ValueError(f"{item!r} is not a target token id (0 to {vocab - 1})")
        out.append(token_id)
    if EOS_ID in out[:-1]:
        raise ValueError("[EOS] can be forced only as the last prefix token (it ends the translation)")
    return out


def _hypothesis(tgt_tok, source: tuple[list[str], list[str], list[str]], path: BeamPath, copy_unknown: bool):
    """A Hypothesis of a BeamPath: tokens, text (with copied unknown words) and labelled attention.
    source is (encoder input tokens, word tokens, words) of the sentence."""
    source_tokens, tokens, words = source
    encoder, decoder, cross = (m.cpu() for m in path.maps)
    copies = []
    if copy_unknown and UNK_ID in path.output_ids:
        copies = copy_unknown_words(tgt_tok, cross.mean((0, 1)), path.output_ids, tokens, words)
    return Hypothesis(
        translation=copied_text(tgt_tok, path.output_ids, copies),
        target_ids=path.target_ids,
        output_ids=path.output_ids,
        tokens=tuple(_tokens(tgt_tok, path.output_ids)),
        log_prob=path.log_prob,
        score=path.score,
        finished=path.finished,
        top_ids=path.top_ids.cpu(),
        top_probs=path.top_probs.cpu(),
        attention=Attention(encoder, decoder, cross, tuple(source_tokens), tuple(_tokens(tgt_tok, path.target_ids))),
        node=path.node,
        copied=tuple(copies),
    )


def _greedy_hypothesis(tgt_tok, text, inputs, outputs, attention, copies, top_ids, top_probs) -> Hypothesis:
    """The greedy output as a Hypothesis (no length penalty: there is nothing to rank): each output token
    was its row's most likely one."""
    log_prob = float(top_probs[: len(outputs), 0].log().sum())
    return Hypothesis(
        translation=text,
        target_ids=inputs,
        output_ids=outputs,
        tokens=tuple(_tokens(tgt_tok, outputs)),
        log_prob=log_prob,
        score=log_prob,
        finished=bool(outputs) and outputs[-1] == EOS_ID,
        top_ids=top_ids.cpu(),
        top_probs=top_probs.cpu(),
        attention=attention,
        copied=tuple(copies),
    )


def _translation_of(sentence, src_ids, unknown, hypotheses, tree, prefix_length) -> Translation:
    """A Translation whose fields are its best hypothesis's."""
    best = hypotheses[0]
    return Translation(
        source=sentence,
        translation=best.translation,
        source_ids=src_ids,
        target_ids=best.target_ids,
        output_ids=best.output_ids,
        top_ids=best.top_ids,
        top_probs=best.top_probs,
        attention=best.attention,
        unknown_words=unknown,
        copied=best.copied,
        hypotheses=hypotheses,
        beam_tree=tree,
        prefix_length=prefix_length,
    )
