"""Beam search and what-if (prefix) decoding, checked against greedy decoding, teacher-forced passes, a beam search
written again here over full teacher-forced passes (the k best kept at every step), and an exhaustive search over a
tiny vocabulary."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch
from conftest import EN_SENTENCES, digit_string

from core import ModelConfig, Transformer, translate
from core.decoding import beam_batch, beam_search, greedy_decode, length_penalty_factor, teacher_forced
from core.evaluation import evaluate
from core.model import causal_mask
from core.tokenizer import EOS_ID, SOS_ID

REVERSER_INPUTS = [digit_string(random.Random(seed)) for seed in range(6)]


@pytest.fixture
def eos_prone(tiny_bundle):
    """The tiny random model with [EOS] made likely, so hypotheses finish at different lengths."""
    with torch.no_grad():
        tiny_bundle.model.projection_layer.proj.bias[EOS_ID] += 2.5
    return tiny_bundle


def sources(bundle, sentences):
    return [translate(bundle, s, max_len=2).source_ids for s in sentences]


def path_log_prob(model, src_ids: list[int], output_ids: list[int]) -> float:
    """log P(output_ids | source) from one teacher-forced pass, summed over the output tokens."""
    tgt = torch.tensor([[SOS_ID, *output_ids[:-1]]])
    with torch.no_grad():
        logits = model(torch.tensor([src_ids]), tgt, None, causal_mask(tgt.size(1)))  # (1, T, V)
    log_probs = logits[0].log_softmax(-1)
    return float(log_probs[torch.arange(len(output_ids)), torch.tensor(output_ids)].sum())


def assert_matches_teacher_forcing(model, src_ids, hyp) -> None:
    _, argmax, top_ids, top_probs, maps = teacher_forced(model, src_ids, hyp.target_ids[1:])
    for name, forced in zip(("encoder", "decoder", "cross"), maps):
        torch.testing.assert_close(getattr(hyp.attention, name), forced, atol=1e-5, rtol=0, msg=name)
    assert torch.equal(hyp.top_ids, top_ids)
    torch.testing.assert_close(hyp.top_probs, top_probs, atol=1e-5, rtol=0)
    assert hyp.log_prob == pytest.approx(path_log_prob(model, src_ids, hyp.output_ids), abs=1e-4)
    assert len(hyp.attention.target_tokens) == len(hyp.target_ids) == len(argmax)


@pytest.mark.parametrize("boost_eos", [False, True])
def test_beam_of_one_is_exactly_greedy(tiny_bundle, boost_eos):
    model = tiny_bundle.model
    if boost_eos:
        with torch.no_grad():
            model.projection_layer.proj.bias[EOS_ID] += 2.5
    for src_ids in sources(tiny_bundle, EN_SENTENCES):
        for max_len in (tiny_bundle.config.seq_len, 5):
            inputs, outputs, top_ids, top_probs, maps = greedy_decode(model, src_ids, max_len)
            (path,), _ = beam_search(model, src_ids, 1, max_len)
            assert (path.target_ids, path.output_ids) == (inputs, outputs)
            assert all(torch.equal(a, b) for a, b in zip(path.maps, maps))
            assert torch.equal(path.top_ids, top_ids) and torch.equal(path.top_probs, top_probs)
    if boost_eos:
        assert any(greedy_decode(model, s, 24)[1][-1] == EOS_ID for s in sources(tiny_bundle, EN_SENTENCES))


def test_beam_of_one_is_greedy_on_a_trained_model(reverser_bundle):
    for sentence in REVERSER_INPUTS:
        greedy = translate(reverser_bundle, sentence)
        beam = translate(reverser_bundle, sentence, prefix=[])  # a prefix runs the beam search, here of 1
        assert beam.output_ids == greedy.output_ids and beam.translation == greedy.translation
        assert torch.equal(beam.attention.cross, greedy.attention.cross)
        assert torch.equal(beam.attention.decoder, greedy.attention.decoder)
        assert beam.hypotheses[0].log_prob == pytest.approx(greedy.hypotheses[0].log_prob, abs=1e-5)


@pytest.mark.parametrize("length_penalty", [0.0, 0.6])
def test_every_hypothesis_equals_a_teacher_forced_pass(eos_prone, reverser_bundle, length_penalty):
    for bundle, sentences in ((eos_prone, EN_SENTENCES), (reverser_bundle, REVERSER_INPUTS[:3])):
        for sentence in sentences:
            result = translate(bundle, sentence, beam_size=4, nbest=4, length_penalty=length_penalty)
            assert len(result.hypotheses) == 4
            for hyp in result.hypotheses:
                assert_matches_teacher_forcing(bundle.model, result.source_ids, hyp)
                gnmt = ((5 + len(hyp.output_ids)) / 6) ** length_penalty  # Wu et al. (2016), written out
                assert hyp.score == pytest.approx(hyp.log_prob / gnmt, rel=1e-9)
                assert hyp.tokens == tuple(bundle.tgt_tokenizer.id_to_token(i) for i in hyp.output_ids)
                assert hyp.finished == (hyp.output_ids[-1] == EOS_ID)
            scores = [h.score for h in result.hypotheses]
            assert scores == sorted(scores, reverse=True)
            assert len({tuple(h.output_ids) for h in result.hypotheses}) == 4  # four different hypotheses
            best = result.hypotheses[0]
            assert (result.output_ids, result.translation, result.attention) == (
                best.output_ids,
                best.translation,
                best.attention,
            )


def test_gnmt_length_penalty_by_hand():
    # lp(Y) = ((5 + |Y|) / 6) ** alpha
    assert length_penalty_factor(1, 0.6) == pytest.approx(1.0)  # (6 / 6) ** alpha
    assert length_penalty_factor(7, 1.0) == pytest.approx(2.0)  # 12 / 6
    assert length_penalty_factor(13, 0.5) == pytest.approx(math.sqrt(3))  # (18 / 6) ** 0.5
    assert length_penalty_factor(4, 2.0) == pytest.approx(2.25)  # (9 / 6) ** 2
    assert length_penalty_factor(25, 1.0) == pytest.approx(5.0)  # 30 / 6
    assert length_penalty_factor(10, 0.6) == pytest.approx(1.732862, abs=1e-6)  # 2.5 ** 0.6
    assert length_penalty_factor(30, 0.0) == 1.0  # alpha 0: plain log-probability


# ---- the k best kept at every step: a beam search written again over full teacher-forced passes -----------------


def tiny_vocabulary_model(seed: int, eos_bias: float = 0.0) -> Transformer:
    """A random 2-layer model writing 6 tokens ([UNK] [PAD] [SOS] [EOS] a b; nothing is banned), its logits scaled
    up so its choices are far from uniform (no near-ties), [EOS] raised by eos_bias."""
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(10, 6, d_model=16, n_layers=2, n_heads=2, d_ff=32, dropout=0.0, seq_len=8)).eval()
    with torch.no_grad():
        model.projection_layer.proj.weight *= 4.0
        model.projection_layer.proj.bias[EOS_ID] += eos_bias
    return model


def next_log_probs(model, src_ids: list[int], outputs: tuple[int, ...]) -> list[float]:
    """log P(each token | source, outputs so far): one full teacher-forced pass, no cache, float64 from there on."""
    tgt = torch.tensor([[SOS_ID, *outputs]])
    with torch.no_grad():
        logits = model(torch.tensor([src_ids]), tgt, None, causal_mask(tgt.size(1)))[0, -1]
    return model.specials.choosable(logits).double().log_softmax(-1).tolist()


def gnmt_score(log_prob: float, length: int, alpha: float) -> float:
    return log_prob / ((5 + length) / 6) ** alpha


def beam_by_hand(model, src_ids: list[int], k: int, max_len: int, alpha: float):
    """The search the module docstring describes, written again: at each step every live beam's extensions are
    scored by one full pass each and the 2k best looked at, best first: an [EOS] among the best k finishes a
    hypothesis, the first k others go on; the search stops once k are finished or after max_len - 1 tokens.
    Returns (each step's 2k candidates, {token tuple: "kept", "finished" or "pruned"}: chosen ones are "pruned"
    too at the step the search ends on; every hypothesis, best score first, as (tokens, log-probability))."""
    live, finished, steps = [((), 0.0)], [], []
    for _ in range(max_len - 1):
        candidates = []
        for tokens, log_prob in live:
            for token, lp in enumerate(next_log_probs(model, src_ids, tokens)):
                candidates.append((log_prob + lp, tokens + (token,)))
        candidates.sort(key=lambda c: -c[0])
        chosen, status = [], {}
        for rank, (log_prob, tokens) in enumerate(candidates[: 2 * k]):
            if tokens[-1] == EOS_ID:
                status[tokens] = "finished" if rank < k else "pruned"
                if rank < k:
                    finished.append((tokens, log_prob))
            elif len(chosen) < k:
                chosen.append((tokens, log_prob))
                status[tokens] = "kept"
            else:
                status[tokens] = "pruned"
        steps.append(status)
        if len(finished) >= k or not chosen:
            status.update({tokens: "pruned" for tokens, _ in chosen})  # chosen, but never fed
            live = []
            break
        live = chosen
    ends = sorted(finished + live, key=lambda end: -gnmt_score(end[1], len(end[0]), alpha))
    return steps, ends


def statuses_per_step(tree) -> list[dict[tuple[int, ...], str]]:
    """The beam search tree's nodes, step by step: {token tuple of the node's path: its status}."""

    def tokens(i):
        path = []
        while tree[i].parent >= 0:
            path.append(tree[i].token_id)
            i = tree[i].parent
        return tuple(reversed(path))

    steps = max(n.step for n in tree)
    return [{tokens(i): n.status for i, n in enumerate(tree) if n.step == step} for step in range(1, steps + 1)]


@pytest.mark.parametrize(
    ("seed", "eos_bias", "k", "max_len", "alpha"),
    [(0, 0.0, 2, 6, 0.0), (1, 1.5, 3, 7, 0.6), (2, 2.5, 2, 7, 1.0), (3, -1.0, 4, 5, 0.6), (4, 1.0, 3, 8, 2.0)],
)
def test_beam_keeps_the_k_best_at_every_step_as_a_search_written_again(seed, eos_bias, k, max_len, alpha):
    model = tiny_vocabulary_model(seed, eos_bias)
    for src_ids in ([SOS_ID, 5, 6, 7, EOS_ID], [SOS_ID, 9, 4, EOS_ID]):
        steps, ends = beam_by_hand(model, src_ids, k, max_len, alpha)
        paths, tree = beam_search(model, src_ids, k, max_len, alpha, nbest=k)
        assert statuses_per_step(tree) == steps
        root = tree[0]  # the start token: fed, not forced, the empty path's log-probability 0
        assert (root.token_id, root.status, root.forced, root.log_prob) == (SOS_ID, "kept", False, 0.0)
        assert [tuple(p.output_ids) for p in paths] == [tokens for tokens, _ in ends[:k]]
        for path, (tokens, log_prob) in zip(paths, ends):
            assert path.log_prob == pytest.approx(log_prob, abs=1e-4)
            assert path.score == pytest.approx(gnmt_score(log_prob, len(tokens), alpha), abs=1e-4)
            assert path.finished == (tokens[-1] == EOS_ID)


def exhaustive(model, src_ids: list[int], max_len: int, alpha: float) -> list[tuple[tuple[int, ...], float]]:
    """Every output a search with max_len can return (ending with [EOS], or cut after max_len - 1 tokens), with
    its GNMT score from one full pass over it, best first."""
    vocab = model.config.tgt_vocab_size
    words = [t for t in range(vocab) if t != EOS_ID]
    outputs = [(*body, EOS_ID) for n in range(max_len - 1) for body in itertools.product(words, repeat=n)]
    outputs += list(itertools.product(words, repeat=max_len - 1))
    after = {}  # prefix -> log-probabilities of the next token (31 prefixes for 156 outputs)
    scored = []
    for tokens in outputs:
        log_prob = 0.0
        for i, t in enumerate(tokens):
            if tokens[:i] not in after:
                after[tokens[:i]] = next_log_probs(model, src_ids, tokens[:i])
            log_prob += after[tokens[:i]][t]
        scored.append((tokens, gnmt_score(log_prob, len(tokens), alpha)))
    return sorted(scored, key=lambda s: -s[1])


@pytest.mark.parametrize(("seed", "eos_bias", "alpha"), [(0, 0.0, 0.0), (1, 1.5, 0.6), (2, 3.0, 1.0)])
def test_a_beam_as_wide_as_every_path_finds_the_exhaustive_best(seed, eos_bias, alpha):
    model, max_len, src_ids = tiny_vocabulary_model(seed, eos_bias), 4, [SOS_ID, 5, 6, 7, EOS_ID]
    every = exhaustive(model, src_ids, max_len, alpha)
    assert len(every) == 1 + 5 + 25 + 125  # [EOS] after 0, 1 or 2 of the 5 other tokens; or 3 tokens, cut
    wide = 6**3  # at least every path's extensions at every step: nothing is ever pruned
    paths, _ = beam_search(model, src_ids, wide, max_len, alpha, nbest=len(every))
    assert [tuple(p.output_ids) for p in paths] == [tokens for tokens, _ in every]
    assert [p.score for p in paths] == pytest.approx([score for _, score in every], abs=1e-4)
    (best,), _ = beam_search(model, src_ids, wide, max_len, alpha)
    assert tuple(best.output_ids) == every[0][0]
    # a narrow beam never beats the exhaustive best (with seed 1 it misses it: -1.74 against -1.13)
    assert beam_search(model, src_ids, 2, max_len, alpha)[0][0].score <= every[0][1] + 1e-5


def test_finished_hypotheses_of_different_lengths(eos_prone):
    result = translate(eos_prone, EN_SENTENCES[0], beam_size=4, nbest=4)
    assert all(h.finished for h in result.hypotheses)
    assert len({len(h.output_ids) for h in result.hypotheses}) > 1


def test_beam_scores_at_least_greedy(tiny_bundle, reverser_bundle):
    for bundle, sentences in ((tiny_bundle, EN_SENTENCES), (reverser_bundle, REVERSER_INPUTS)):
        for sentence in sentences:
            greedy = translate(bundle, sentence).hypotheses[0]
            beam = translate(bundle, sentence, beam_size=4).hypotheses[0]
            assert beam.log_prob >= greedy.log_prob - 1e-5
            assert greedy.log_prob == pytest.approx(
                path_log_prob(bundle.model, translate(bundle, sentence).source_ids, greedy.output_ids), abs=1e-4
            )
    # the untrained model: the beam finds strictly better paths than greedy on some sentence
    gains = [
        translate(tiny_bundle, s, beam_size=4).hypotheses[0].log_prob - translate(tiny_bundle, s).hypotheses[0].log_prob
        for s in EN_SENTENCES
    ]
    assert max(gains) > 1e-3


def test_tree_kept_nodes_reconstruct_every_hypothesis(eos_prone):
    beam = 3
    result = translate(eos_prone, EN_SENTENCES[2], beam_size=beam, nbest=beam)
    tree = result.beam_tree
    assert tree[0].parent == -1 and tree[0].token_id == SOS_ID and tree[0].step == 0
    for hyp in result.hypotheses:
        path, node = [], hyp.node
        while node > 0:
            path.append(tree[node])
            node = tree[node].parent
        path.reverse()
        assert [n.token_id for n in path] == hyp.output_ids
        assert [n.step for n in path] == list(range(1, len(path) + 1))
        assert all(n.status == "kept" for n in path[:-1])
        assert path[-1].status == ("finished" if hyp.finished else "kept")
        assert path[-1].log_prob == pytest.approx(hyp.log_prob, abs=1e-6)
    # the tree's own rules: parents come first, one step up; at most `beam` kept per step; pruned nodes have
    # no children; statuses are one of the three
    children = {}
    for i, n in enumerate(tree[1:], 1):
        assert 0 <= n.parent < i and tree[n.parent].step == n.step - 1
        assert n.status in ("kept", "finished", "pruned")
        children.setdefault(n.parent, []).append(n)
    for step in range(1, max(n.step for n in tree) + 1):
        assert sum(n.status == "kept" for n in tree if n.step == step) <= beam
        assert sum(1 for n in tree if n.step == step) <= 2 * beam
    for i, n in enumerate(tree):
        if n.status != "kept":
            assert i not in children
        assert all(c.token_id != EOS_ID or c.status != "kept" for c in children.get(i, []))


def test_forcing_the_greedy_output_reproduces_greedy(eos_prone, reverser_bundle):
    for bundle, sentence in ((eos_prone, EN_SENTENCES[1]), (reverser_bundle, "4 0 7 1"), (eos_prone, "a dog")):
        greedy = translate(bundle, sentence)
        written = [i for i in greedy.output_ids if i != EOS_ID]
        for prefix in (written, [bundle.tgt_tokenizer.id_to_token(i) for i in written], written[:2]):
            forced = translate(bundle, sentence, prefix=prefix)
            assert forced.output_ids == greedy.output_ids and forced.translation == greedy.translation
            assert forced.prefix_length == len(prefix)
            for kind in ("encoder", "decoder", "cross"):
                assert torch.equal(forced.attention.weights(kind), greedy.attention.weights(kind))


def test_prefix_forces_tokens_and_continues_greedily(reverser_bundle, eos_prone):
    for bundle, sentence, prefix in ((reverser_bundle, "1 2 3 4", ["9", "9"]), (eos_prone, EN_SENTENCES[3], ["il"])):
        result = translate(bundle, sentence, prefix=prefix)
        forced_ids = [bundle.tgt_tokenizer.token_to_id(t) for t in prefix]
        assert result.output_ids[: len(prefix)] == forced_ids and result.prefix_length == len(prefix)
        # After the prefix each token is its row's argmax over the whole sequence: a teacher-forced pass says so
        _, argmax, _, _, maps = teacher_forced(bundle.model, result.source_ids, result.target_ids[1:])
        assert result.output_ids[len(prefix) :] == argmax[len(prefix) : len(result.output_ids)]
        assert_matches_teacher_forcing(bundle.model, result.source_ids, result.hypotheses[0])
        assert [n.forced for n in result.beam_tree[1 : len(prefix) + 1]] == [True] * len(prefix)
    beamed = translate(reverser_bundle, "1 2 3 4", prefix="9 9", beam_size=3, nbest=3)  # text: split by the tokenizer
    assert all(h.output_ids[:2] == beamed.output_ids[:2] for h in beamed.hypotheses)
    for hyp in beamed.hypotheses:
        assert_matches_teacher_forcing(reverser_bundle.model, beamed.source_ids, hyp)


def test_forced_eos_ends_the_translation(reverser_bundle):
    result = translate(reverser_bundle, "1 2 3", prefix=["3", "[EOS]"])
    assert result.output_ids == [reverser_bundle.tgt_tokenizer.token_to_id("3"), EOS_ID]
    assert result.translation == "3" and result.hypotheses[0].finished
    tree = result.beam_tree
    assert [(n.token_id, n.status, n.forced) for n in tree] == [
        (SOS_ID, "kept", False),
        (result.output_ids[0], "kept", True),
        (EOS_ID, "finished", True),
    ]


def test_beam_batch_passes_its_options_to_the_search(tiny_bundle):
    model, srcs = tiny_bundle.model, sources(tiny_bundle, EN_SENTENCES)
    plain = beam_batch(model, srcs, 3, 12)  # the defaults: no length penalty, no cross-attention, every head on
    assert isinstance(plain, list) and all(isinstance(ids, list) for ids in plain)
    assert plain == [[i for i in beam_search(model, s, 3, 12)[0][0].output_ids if i != EOS_ID] for s in srcs]
    for s in srcs:  # beam_search's default is no length penalty too
        assert beam_search(model, s, 3, 12)[0][0].score == beam_search(model, s, 3, 12, 0.0)[0][0].score
    encoder_off = {"encoder": torch.tensor([[0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])}
    cross_off = {"cross": torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])}
    for options in ({"length_penalty": 2.0}, {"head_mask": encoder_off}, {"head_mask": cross_off}):
        got = beam_batch(model, srcs, 3, 12, **options)
        alpha, head_mask = options.get("length_penalty", 0.0), options.get("head_mask")
        want = [beam_search(model, s, 3, 12, alpha, head_mask=head_mask)[0][0].output_ids for s in srcs]
        assert got == [[i for i in ids if i != EOS_ID] for ids in want]
        assert got != plain, options  # the option changes some sentence's best hypothesis


def test_beam_batch_has_no_length_penalty_by_default():
    # a case where GNMT's alpha 1 picks another hypothesis than plain log-probability (alpha 0)
    model, srcs = tiny_vocabulary_model(3, 0.0), [[SOS_ID, 5, 6, 7, EOS_ID], [SOS_ID, 7, EOS_ID]]
    default = beam_batch(model, srcs, 3, 7)
    for alpha in (0.0, 1.0):
        best = [[t for t in beam_by_hand(model, s, 3, 7, alpha)[1][0][0] if t != EOS_ID] for s in srcs]
        assert (default == best) == (alpha == 0.0), alpha


def test_beam_batch_cross_attention_is_each_best_paths_own(tiny_bundle):
    # Each sentence's best hypothesis, fed to the decoder alone: its rows' cross-attention, averaged over layers
    # and heads. Hypotheses whose beams moved between slots, several sentences per batch.
    srcs = [[SOS_ID, 5, 6, 7, EOS_ID], [SOS_ID, 9, 4, EOS_ID], [SOS_ID, 8, 8, 5, 4, EOS_ID], [SOS_ID, 7, EOS_ID]]
    for seed in range(4):
        model = tiny_vocabulary_model(seed, 0.5)
        outputs, crosses = beam_batch(model, srcs, 3, 6, need_cross=True)
        for src, ids, cross in zip(srcs, outputs, crosses):
            maps = teacher_forced(model, src, ids)[4]
            torch.testing.assert_close(cross, maps[2].mean((0, 1)), atol=1e-5, rtol=0)


def test_beam_batch_keeps_every_token_of_a_hypothesis_cut_at_max_len(tiny_bundle):
    with torch.no_grad():
        tiny_bundle.model.projection_layer.proj.bias[EOS_ID] = -1e4  # no hypothesis ever finishes
    srcs = sources(tiny_bundle, EN_SENTENCES[:3])
    outputs = beam_batch(tiny_bundle.model, srcs, 2, 5)
    assert [len(ids) for ids in outputs] == [4, 4, 4]  # max_len 5 counts [SOS]
    assert outputs == [beam_search(tiny_bundle.model, s, 2, 5)[0][0].output_ids for s in srcs]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix": ["gatto", "zebra-xyz"]}, "'zebra-xyz' is not a token"),
        ({"prefix": "il zebraxyz"}, "not in the model's target vocabulary: 'zebraxyz'"),
        ({"prefix": [10**6]}, "not a target token id"),
        ({"prefix": ["[EOS]", "il"]}, "only as the last"),
        ({"prefix": ["il"] * 5, "max_len": 5}, "the prefix has 5 tokens; with max_len 5"),
        ({"beam_size": 0}, "beam size"),
        ({"beam_size": 2, "nbest": 3}, "nbest must be between 1 and the beam size 2"),
        ({"beam_size": 2, "length_penalty": -1.0}, "length penalty"),
        ({"beam_size": 2, "reference": "il gatto"}, "reference"),
        ({"prefix": ["il"], "reference": "il gatto"}, "reference"),
    ],
)
def test_bad_options_give_readable_errors(tiny_bundle, options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        translate(tiny_bundle, "the cat sleeps", **options)


def test_a_prefix_filling_max_len_still_gets_every_row(tiny_bundle):
    result = translate(tiny_bundle, "the cat", max_len=4, prefix=["il", "gatto", "dorme"])
    assert result.target_tokens == ["[SOS]", "il", "gatto", "dorme"] and len(result.output_ids) == 3
    assert result.attention.cross.shape[-2] == 4 and not result.hypotheses[0].finished


def test_batched_beams_match_one_sentence_at_a_time(reverser_bundle, eos_prone):
    for bundle, sentences in ((reverser_bundle, REVERSER_INPUTS), (eos_prone, EN_SENTENCES)):
        srcs = sources(bundle, sentences)  # different lengths: padded in the batch
        outputs, crosses = beam_batch(bundle.model, srcs, 3, 12, 0.6, need_cross=True)
        for src_ids, ids, cross in zip(srcs, outputs, crosses):
            (best,), _ = beam_search(bundle.model, src_ids, 3, 12, 0.6)
            assert ids == [i for i in best.output_ids if i != EOS_ID]
            torch.testing.assert_close(cross, best.maps[2].mean((0, 1)), atol=1e-5, rtol=0)


def test_evaluate_with_a_beam_scores_the_beams_text(reverser_bundle):
    pairs = [(s, " ".join(reversed(s.split()))) for s in REVERSER_INPUTS]
    metrics, hyps, kept = evaluate(reverser_bundle, pairs, batch_size=8, progress=False, beam_size=4)
    assert kept == pairs and metrics["bleu"] > 50
    assert hyps == [translate(reverser_bundle, s, beam_size=4, max_len=10).translation for s, _ in pairs]


def test_cli_beam_json_lists_the_hypotheses(tiny_checkpoint, tiny_bundle, cli):
    run = cli("translate", "--checkpoint", tiny_checkpoint, "--json", "--beam", "3", "--nbest", "2", "the cat sleeps .")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    want = translate(tiny_bundle, "the cat sleeps .", beam_size=3, nbest=2)
    assert [h["text"] for h in record["hypotheses"]] == [h.translation for h in want.hypotheses]
    assert [h["tokens"] for h in record["hypotheses"]] == [list(h.tokens) for h in want.hypotheses]
    assert [h["score"] for h in record["hypotheses"]] == pytest.approx([h.score for h in want.hypotheses], abs=1e-5)
    assert record["translation"] == want.translation and record["prefix_length"] == 0
    run = cli(
        "translate", "--checkpoint", tiny_checkpoint, "--prefix", "il gatto", "--max-len", "6", "the cat sleeps ."
    )
    assert run.returncode == 0 and run.stdout.startswith("il gatto")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--beam", "2", "--nbest", "3"], "nbest must be between"),
        (["--prefix", "qwertyuiop"], "not in the model's target vocabulary"),
        (["--beam", "2", "--reference", "il gatto"], "--reference"),
        (["--beam", "2", "--length-penalty", "-0.5"], "length penalty"),
    ],
)
def test_cli_beam_errors_exit_2(tiny_checkpoint, args, message, capsys):
    from core.cli.translate import main  # in this process: the subprocess runs above cover the entry point

    assert main(["--checkpoint", str(tiny_checkpoint), *args, "the cat"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_tree_frame_ranks_each_step_and_links_parents(eos_prone):
    from core.charts import beam_tree_chart, beam_tree_frame, tree_path

    result = translate(eos_prone, EN_SENTENCES[0], beam_size=3, nbest=3)
    tree, ends = result.beam_tree, [h.node for h in result.hypotheses]
    frame = beam_tree_frame(tree, eos_prone.tgt_tokenizer.id_to_token, ends[1], ends)
    assert frame["node"].tolist() == list(range(len(tree)))
    for _, nodes in frame.groupby("step"):
        assert sorted(nodes["rank"]) == list(range(len(nodes)))  # every rank once per step
        assert nodes.sort_values("rank")["log_prob"].is_monotonic_decreasing  # best path first
    for n, row in zip(tree[1:], frame.iloc[1:].itertuples()):
        parent = frame.iloc[n.parent]
        assert (row.parent_step, row.parent_rank) == (parent["step"], parent["rank"])
        assert row.prob == pytest.approx(float(torch.tensor(n.log_prob - tree[n.parent].log_prob).exp()), rel=1e-6)
    assert frame.loc[frame["chosen"], "node"].tolist() == tree_path(tree, ends[1])
    assert frame.loc[frame["hypothesis"] > 0].set_index("node")["hypothesis"].to_dict() == {
        end: rank for rank, end in enumerate(ends, 1)
    }
    assert beam_tree_chart(frame).to_dict()["height"] >= 34 * (frame["step"].max() + 1)
