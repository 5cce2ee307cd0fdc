"""translate(): one sentence through any model family, greedily, with a beam, with a forced prefix, or with a
reference fed to the decoder; every attention map comes back labelled with the tokens the model saw."""

from __future__ import annotations

from core.attention import Attention
from core.bundle import ModelBundle
from core.decoding.beam import BeamPath, beam_search
from core.decoding.greedy import greedy_decode, sequence_log_prob, teacher_forced
from core.decoding.inputs import encode_checked, prefix_ids
from core.decoding.options import DecodeOptions, gates
from core.decoding.result import Hypothesis, Translation
from core.decoding.unknown import copied_text, copy_unknown_words
from core.seam import Encoded


def translate(bundle: ModelBundle, sentence: str, options: DecodeOptions | None = None, **choices) -> Translation:
    """Translate one sentence greedily (or, given reference=..., feed that translation to the decoder) with all
    attention maps.

    options (a DecodeOptions) and choices (any of its fields as keywords: max_len, beam_size, nbest,
    length_penalty, prefix, copy_unknown, head_mask; and reference) say how. With copy_unknown, each unknown token
    the model generates is shown in the text as the source word it attended to most (tokens and ids keep the
    unknown token). beam_size > 1 runs a beam search and keeps its nbest hypotheses and tree; prefix forces the
    first output tokens and continues greedily or with the beam. Raises ValueError with a readable message for
    empty or overlong input, options that do not fit together, or a head the model does not have.
    """
    reference = choices.pop("reference", None)
    options = DecodeOptions.of(options, **choices)
    source = _Source.of(bundle, sentence)
    if reference is not None:
        if options.searches:
            raise ValueError("a reference translation is fed to the decoder as it is: no beam search or prefix with it")
        return _teacher_forced(bundle, source, reference, options)
    seq_len = bundle.config.seq_len
    max_len = seq_len if options.max_len is None else options.max_len
    if not 2 <= max_len <= seq_len:
        raise ValueError(f"max_len must be between 2 and the model's seq_len {seq_len}, got {max_len}")
    options.check()
    if options.searches:
        return _search(bundle, source, options, max_len)
    return _greedy(bundle, source, options, max_len)


class _Source:
    """The sentence as the encoder reads it: framed ids, labels, and its words (for unknown-word copying)."""

    def __init__(self, bundle: ModelBundle, sentence: str, encoded: Encoded) -> None:
        self.sentence, self.encoded = sentence, encoded
        self.ids = bundle.specials.frame_source(encoded.ids)
        self.tokens = tuple(bundle.src_tokenizer.id_to_token(i) for i in self.ids)
        unk = bundle.src_tokenizer.unk_token
        self.unknown = tuple(w for w, t in zip(encoded.words, encoded.tokens) if t == unk)

    @classmethod
    def of(cls, bundle: ModelBundle, sentence: str) -> _Source:
        limit = bundle.config.seq_len - bundle.specials.source_specials
        return cls(bundle, sentence, encode_checked(bundle.src_tokenizer, sentence, limit, "sentence"))

    def translation(self, **fields) -> Translation:
        return Translation(source=self.sentence, source_ids=self.ids, unknown_words=self.unknown, **fields)


def _labelled(bundle: ModelBundle, source: _Source, maps, target_ids: list[int]) -> Attention:
    target = tuple(bundle.tgt_tokenizer.id_to_token(i) for i in target_ids)
    frame = (len(bundle.specials.source_prefix), 1)
    return Attention(*(m.cpu() for m in maps), source.tokens, target, frame)


def _copies(bundle: ModelBundle, source: _Source, cross, output_ids: list[int], options: DecodeOptions) -> list:
    if not options.copy_unknown or bundle.specials.unk not in output_ids:
        return []
    words = (source.encoded.tokens, source.encoded.words)
    return copy_unknown_words(bundle.tgt_tokenizer, cross.mean((0, 1)), output_ids, *words, bundle.specials)


def _greedy(bundle: ModelBundle, source: _Source, options: DecodeOptions, max_len: int) -> Translation:
    mask = gates(options.head_mask, bundle.config.n_layers, bundle.config.n_heads)
    inputs, outputs, top_ids, top_probs, maps = greedy_decode(bundle.model, source.ids, max_len, head_mask=mask)
    copies = _copies(bundle, source, maps[2], outputs, options)
    log_prob = float(top_probs[: len(outputs), 0].log().sum())  # each output token was its row's most likely one
    greedy = Hypothesis(
        translation=copied_text(bundle.tgt_tokenizer, outputs, copies, bundle.specials),
        target_ids=inputs,
        output_ids=outputs,
        tokens=tuple(bundle.tgt_tokenizer.id_to_token(i) for i in outputs),
        log_prob=log_prob,
        score=log_prob,  # no length penalty: there is nothing to rank
        finished=bool(outputs) and outputs[-1] == bundle.specials.eos,
        top_ids=top_ids.cpu(),
        top_probs=top_probs.cpu(),
        attention=_labelled(bundle, source, maps, inputs),
        copied=tuple(copies),
    )
    return source.translation(hypotheses=(greedy,))


def _teacher_forced(bundle: ModelBundle, source: _Source, reference: str, options: DecodeOptions) -> Translation:
    tgt = bundle.tgt_tokenizer
    ref = encode_checked(tgt, reference, bundle.config.seq_len - 1, "reference translation")
    mask = gates(options.head_mask, bundle.config.n_layers, bundle.config.n_heads)
    inputs, argmax, top_ids, top_probs, maps = teacher_forced(bundle.model, source.ids, ref.ids, head_mask=mask)
    log_prob = sequence_log_prob(bundle.model, source.ids, ref.ids)
    fed = Hypothesis(
        translation=tgt.text(ref.tokens),
        target_ids=inputs,
        output_ids=argmax,
        tokens=tuple(tgt.id_to_token(i) for i in argmax),
        log_prob=log_prob,
        score=log_prob,
        finished=True,
        top_ids=top_ids.cpu(),
        top_probs=top_probs.cpu(),
        attention=_labelled(bundle, source, maps, inputs),
    )
    return source.translation(reference=reference, reference_pass=fed)


def _search(bundle: ModelBundle, source: _Source, options: DecodeOptions, max_len: int) -> Translation:
    forced = [] if options.prefix is None else prefix_ids(bundle.tgt_tokenizer, options.prefix, bundle.specials)
    if len(forced) > max_len - 1:
        raise ValueError(
            f"the prefix has {len(forced)} tokens; with max_len {max_len} the decoder writes at most {max_len - 1}"
        )
    mask = gates(options.head_mask, bundle.config.n_layers, bundle.config.n_heads)
    paths, tree = beam_search(
        bundle.model,
        source.ids,
        options.beam_size,
        max_len,
        options.length_penalty,
        options.nbest,
        forced,
        head_mask=mask,
    )
    hypotheses = tuple(_hypothesis(bundle, source, path, options) for path in paths)
    return source.translation(hypotheses=hypotheses, beam_tree=tuple(tree), prefix_length=len(forced))


def _hypothesis(bundle: ModelBundle, source: _Source, path: BeamPath, options: DecodeOptions) -> Hypothesis:
    """A Hypothesis of a BeamPath: tokens, text (with copied unknown words) and labelled attention."""
    copies = _copies(bundle, source, path.maps[2], path.output_ids, options)
    return Hypothesis(
        translation=copied_text(bundle.tgt_tokenizer, path.output_ids, copies, bundle.specials),
        target_ids=path.target_ids,
        output_ids=path.output_ids,
        tokens=tuple(bundle.tgt_tokenizer.id_to_token(i) for i in path.output_ids),
        log_prob=path.log_prob,
        score=path.score,
        finished=path.finished,
        top_ids=path.top_ids.cpu(),
        top_probs=path.top_probs.cpu(),
        attention=_labelled(bundle, source, path.maps, path.target_ids),
        node=path.node,
        copied=tuple(copies),
    )
