"""Attribution methods beyond raw attention (core/analysis/contributions.py, attribution.py), each checked against
an independent computation or a case whose answer is known by construction."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from heads_fixtures import carrier_bundle, word_map_pairs  # noqa: E402
from marian_fixtures import make_marian  # noqa: E402

from core import ModelConfig, Transformer, load_checkpoint, translate  # noqa: E402
from core.analysis.attribution import attribute, contrastive, integrated_gradients  # noqa: E402
from core.analysis.contributions import (  # noqa: E402
    alti_scores,
    block_parts,
    cross_norms,
    decomposed,
    rollout,
    traced,
    value_zeroing,
)
from core.bundle import ModelBundle  # noqa: E402
from core.seam import LayerStep  # noqa: E402
from core.tokenizer import build_tokenizer  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def biased_bundle() -> ModelBundle:
    """A tiny untrained model of ours with biases in attention (the decompositions must place them) and layer
    norms that are not the identity."""
    torch.manual_seed(3)
    words = ["the cat sleeps on the mat", "a dog runs in the park"]
    src = build_tokenizer(words, min_frequency=1)
    tgt = build_tokenizer(["il gatto dorme sul tappeto", "un cane corre nel parco"], min_frequency=1)
    config = ModelConfig(src.get_vocab_size(), tgt.get_vocab_size(), 16, 2, 2, 32, 0.0, 24, attention_bias=True)
    model = Transformer(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.3)
    return ModelBundle(model, src, tgt, config, "biased", "native")


@pytest.fixture(scope="module")
def marian(tmp_path_factory) -> ModelBundle:
    return load_checkpoint(make_marian(tmp_path_factory.mktemp("marian") / "opus-mt-en-it"))


@pytest.fixture(scope="module")
def carrier() -> ModelBundle:
    return carrier_bundle()


def test_alti_scores_by_hand():
    """The note's worked example, disjoint parts, and a row whose scores all vanish (uniform, never NaN)."""
    y = torch.tensor([[[1.0, 2.0]]])
    parts = torch.tensor([[[[1.0, 1.0], [0.0, 1.0], [-2.0, 0.0]]]])
    torch.testing.assert_close(alti_scores(y, parts)[0, 0], torch.tensor([2 / 3, 1 / 3, 0.0]))
    y = torch.tensor([[[3.0, 1.0]]])
    torch.testing.assert_close(
        alti_scores(y, torch.tensor([[[[3.0, 0.0], [0.0, 1.0]]]]))[0, 0], torch.tensor([0.75, 0.25])
    )
    degenerate = alti_scores(torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[[1.0, -1.0], [-1.0, 2.0]]]]))
    torch.testing.assert_close(degenerate[0, 0], torch.tensor([0.5, 0.5]))


def test_rollout_by_hand():
    """ALTI+'s rollout on the note's examples: one decoder row over two layers, then two rows."""
    enc = [torch.tensor([[0.8, 0.2], [0.1, 0.9]], dtype=torch.float64)]
    one = torch.tensor([[1.0]], dtype=torch.float64)
    layers = [
        (one, torch.tensor([[0.5, 0.2]], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64)),
        (one, torch.tensor([[0.4, 0.2]], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64)),
    ]
    result = rollout(layers, enc)
    torch.testing.assert_close(result.source, torch.tensor([[0.508, 0.372]], dtype=torch.float64))
    torch.testing.assert_close(result.prefix, torch.tensor([[0.12]], dtype=torch.float64))
    t = lambda rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
    layers = [
        (t([[1, 0], [0.25, 0.75]]), t([[0.6, 0.1], [0.2, 0.3]]), t([0.3, 0.5])),
        (t([[1, 0], [0.5, 0.5]]), t([[0.5, 0.0], [0.1, 0.1]]), t([0.5, 0.8])),
    ]
    result = rollout(layers, [torch.eye(2, dtype=torch.float64)])
    torch.testing.assert_close(result.source, t([[0.80, 0.05], [0.42, 0.26]]))
    torch.testing.assert_close(result.prefix, t([[0.15, 0.0], [0.17, 0.15]]))


def _sentence(bundle: ModelBundle, text: str = "the cat sleeps on the mat"):
    return translate(bundle, text, max_len=8)


def test_the_parts_of_every_block_add_up_to_its_output(biased_bundle, marian):
    """Pre-norm (ours, with biases): output = sum of the parts + the output bias. Post-norm (Marian): output =
    sum of the parts + gain * C(b_O) / sigma + beta, read from the layer norm's own parameters."""
    result = _sentence(biased_bundle)
    probe = traced(biased_bundle.model, result.source_ids, result.target_ids)
    for (kind, _), record in probe.records.items():
        parts = block_parts(record, kind != "cross")
        torch.testing.assert_close(parts.sum(2) + record.out_bias, record.output, atol=1e-5, rtol=0)
    result = _sentence(marian, "the cat sleeps on the chair .")
    probe = traced(marian.model, result.source_ids, result.target_ids)
    layers = marian.model.encoder_layers, marian.model.decoder_layers
    for (kind, layer), record in probe.records.items():
        norm = {"encoder": layers[0][layer].self_norm, "decoder": layers[1][layer].self_norm}.get(
            kind, layers[1][layer].cross_norm
        )
        with torch.no_grad():
            bias = record.out_bias - record.out_bias.mean()
            rest = norm.weight * bias / record.sigma + norm.bias
        parts = block_parts(record, kind != "cross")
        torch.testing.assert_close(parts.sum(2) + rest, record.output, atol=1e-4, rtol=0)


def test_recorded_values_are_each_heads_value_through_its_slice_of_the_output_projection(biased_bundle):
    """f_h(x_j) = (LN(x_j) W_V^h + b_V^h) W_O^h, computed here from the weights, for the first encoder layer."""
    result = _sentence(biased_bundle)
    probe = traced(biased_bundle.model, result.source_ids, result.target_ids)
    layer = biased_bundle.model.encoder.layers[0]
    attn, norm = layer.self_attention_block, layer.residual_connections[0].norm
    x = biased_bundle.model.embed_source(torch.tensor([result.source_ids]))
    v = attn.w_v(norm(x))[0]  # (S, D)
    dh = biased_bundle.config.d_model // biased_bundle.config.n_heads
    for h in range(biased_bundle.config.n_heads):
        expected = v[:, h * dh : (h + 1) * dh] @ attn.w_o.weight[:, h * dh : (h + 1) * dh].T
        torch.testing.assert_close(probe.records[("encoder", 0)].values[0, h], expected, atol=1e-5, rtol=0)


def test_norm_based_attention_equals_the_weighted_vector_norms(biased_bundle):
    """Kobayashi et al.: |sum_h alpha_htj f_h(x_j)| of the last layer's cross-attention, by an explicit loop."""
    result = _sentence(biased_bundle)
    record = traced(biased_bundle.model, result.source_ids, result.target_ids).records[("cross", 1)]
    _, heads, t, s = record.probs.shape
    expected = torch.zeros(t, s)
    for i in range(t):
        for j in range(s):
            vector = sum(record.probs[0, h, i, j] * record.values[0, h, j] for h in range(heads))
            expected[i, j] = vector.norm()
    expected = expected / expected.sum(-1, keepdim=True)
    got = cross_norms(biased_bundle.model, result.source_ids, result.target_ids)
    torch.testing.assert_close(got.float(), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(got.float(), record.probs[0].mean(0), atol=1e-3)  # not the raw weights


def test_alti_plus_rows_are_non_negative_and_split_into_source_and_prefix(biased_bundle, marian):
    for bundle, text in ((biased_bundle, "the cat sleeps on the mat"), (marian, "the cat sleeps on the chair .")):
        result = _sentence(bundle, text)
        for method in ("alti", "norm"):
            c = decomposed(bundle.model, result.source_ids, result.target_ids, method)
            assert (c.source >= 0).all() and (c.prefix >= 0).all()
            torch.testing.assert_close(
                c.source.sum(-1) + c.prefix.sum(-1), torch.ones(len(result.target_ids), dtype=torch.float64)
            )
            assert torch.equal(c.prefix.triu(1), torch.zeros_like(c.prefix))  # a row never draws on later tokens


def test_alti_plus_on_a_one_layer_model_equals_a_hand_computation():
    """One encoder and one decoder layer: the contributions written out from the weights, with loops."""
    torch.manual_seed(0)
    src = build_tokenizer(["a b c"], min_frequency=1)
    tgt = build_tokenizer(["x y"], min_frequency=1)
    config = ModelConfig(src.get_vocab_size(), tgt.get_vocab_size(), 8, 1, 2, 16, 0.0, 12)
    model = Transformer(config).eval()
    src_ids, dec_ids = [2, 4, 5, 6, 3], [2, 4, 5]
    got = decomposed(model, src_ids, dec_ids, "alti")

    def alti(y: torch.Tensor, parts: list[torch.Tensor]) -> torch.Tensor:
        scores = torch.stack([torch.clamp(y.abs().sum() - (y - p).abs().sum(), min=0) for p in parts])
        return scores / scores.sum()

    def attention_parts(block, norm_x_q, keys, x_q_residual, self_attention):
        dh = config.d_model // config.n_heads
        q = block.w_q(norm_x_q)
        k, v = block.w_k(keys), block.w_v(keys)
        rows = []
        for i in range(norm_x_q.size(0)):
            parts = []
            for j in range(keys.size(0)):
                part = torch.zeros(config.d_model)
                for h in range(config.n_heads):
                    cols = slice(h * dh, (h + 1) * dh)
                    scores = q[i, cols] @ k[:, cols].T / dh**0.5
                    if self_attention and block is model.decoder.layers[0].self_attention_block:
                        scores[i + 1 :] = -torch.inf
                    alpha = scores.softmax(-1)[j]
                    part += alpha * (v[j, cols] @ block.w_o.weight[:, cols].T)
                parts.append(part + (x_q_residual[i] if self_attention and j == i else 0))
            if not self_attention:
                parts.append(x_q_residual[i])
            rows.append(parts)
        return rows

    with torch.no_grad():
        enc = model.encoder.layers[0]
        x = model.embed_source(torch.tensor([src_ids]))[0]
        n1 = enc.residual_connections[0].norm(x)
        rows = attention_parts(enc.self_attention_block, n1, n1, x, True)
        out = x + enc.self_attention_block(n1[None], n1[None], None)[0][0]
        c_enc = torch.stack([alti(out[i], rows[i]) for i in range(len(src_ids))])
        memory = model.encoder.norm(enc(x[None], None)[0])[0]
        dec = model.decoder.layers[0]
        y = model.embed_target(torch.tensor([dec_ids]))[0]
        m1 = dec.residual_connections[0].norm(y)
        rows = attention_parts(dec.self_attention_block, m1, m1, y, True)
        causal = torch.ones(3, 3).tril().bool()[None, None]
        y2 = y + dec.self_attention_block(m1[None], m1[None], causal)[0][0]
        c_self = torch.stack([alti(y2[i], rows[i]) for i in range(3)])
        m2 = dec.residual_connections[1].norm(y2)
        rows = attention_parts(dec.cross_attention_block, m2, memory, y2, False)
        y3 = y2 + dec.cross_attention_block(m2[None], memory[None], None)[0][0]
        c_cross = torch.stack([alti(y3[i], rows[i]) for i in range(3)])
    source = c_cross[:, :-1] @ c_enc
    prefix = c_cross[:, -1:] * c_self
    torch.testing.assert_close(got.source.float(), source, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.prefix.float(), prefix, atol=1e-5, rtol=0)


def test_value_zeroing_batched_equals_the_naive_loop(biased_bundle):
    """Zero one value vector at a time, rerun the layer, compare: the batched rows are the same numbers."""
    model = biased_bundle.model
    result = _sentence(biased_bundle)
    src = torch.tensor([result.source_ids])
    s = src.size(1)
    with torch.no_grad():
        x = model.embed_source(src)
        plain, _ = model.encoder_layer(0, x, None)
        naive = torch.zeros(s, s)
        for j in range(s):
            keep = torch.ones(1, s)
            keep[0, j] = 0
            zeroed, _ = model.encoder_layer(0, x, None, LayerStep(keep=keep))
            naive[:, j] = 1 - torch.nn.functional.cosine_similarity(zeroed[0], plain[0], dim=-1)
        batched, _ = model.encoder_layer(0, x.expand(s, -1, -1), None, LayerStep(keep=1 - torch.eye(s)))
        rows = (1 - torch.nn.functional.cosine_similarity(batched, plain, dim=-1)).T
    torch.testing.assert_close(rows, naive, atol=1e-6, rtol=0)
    c = value_zeroing(model, result.source_ids, result.target_ids)
    torch.testing.assert_close(
        c.source.sum(-1) + c.prefix.sum(-1), torch.ones(len(result.target_ids), dtype=torch.float64)
    )


def test_integrated_gradients_are_complete(biased_bundle):
    """Sundararajan et al.'s completeness: a row's scores sum to log p(token) minus log p(token | words zeroed),
    the error Captum reports; and the framing tokens, equal to the baseline, get exactly 0."""
    result = _sentence(biased_bundle)
    scores, delta = integrated_gradients(biased_bundle, result)
    model = biased_bundle.model
    with torch.no_grad():
        vectors = model.source_vectors(torch.tensor([result.source_ids]))
        baseline = vectors.clone()
        baseline[:, 1:-1] = 0
        dec = torch.tensor([result.target_ids])
        mask = torch.ones(1, 1, dec.size(1), dec.size(1)).tril().bool()

        def logp(v):
            hidden, _, _ = model.decode(dec, model.encode_vectors(v, None), None, mask)
            return model.project(hidden)[0].log_softmax(-1)

        outputs = [*result.target_ids[1:], int(result.top_ids[-1, 0])]
        change = (logp(vectors) - logp(baseline))[torch.arange(len(outputs)), outputs]
    torch.testing.assert_close(scores.sum(-1), change, atol=float(delta.abs().max()) + 1e-4, rtol=0)
    assert delta.abs().max() < 0.05 * change.abs().max() + 1e-3
    assert torch.equal(scores[:, 0], torch.zeros(len(outputs))) and torch.equal(
        scores[:, -1], torch.zeros(len(outputs))
    )


@pytest.mark.parametrize("bundle_name", ["biased_bundle", "marian"])
@pytest.mark.parametrize("steps_per_pass", [None, 5])
def test_integrated_gradients_of_every_row_equal_captum_one_row_at_a_time(bundle_name, steps_per_pass, request):
    """All rows from one pass per batch of steps against Captum's IntegratedGradients called once per row, on a
    decoder input cut after that row (its default Gauss-Legendre rule, 32 steps): the same scores and completeness
    errors, with the 32 steps in one pass and in passes of 5 (the last one shorter)."""
    from captum.attr import IntegratedGradients

    from core.analysis import attribution

    bundle = request.getfixturevalue(bundle_name)
    result = _sentence(bundle, "the cat sleeps on the chair ." if bundle_name == "marian" else "the cat sleeps")
    if steps_per_pass is not None:
        tokens = len(result.source_ids) + len(result.target_ids)
        request.getfixturevalue("monkeypatch").setattr(attribution, "IG_TOKENS", steps_per_pass * tokens)
    scores, delta = integrated_gradients(bundle, result)
    model = bundle.model
    with torch.no_grad():
        vectors = model.source_vectors(torch.tensor([result.source_ids]))
    baseline = vectors.clone()
    baseline[:, bundle.specials.words(result.source_ids)] = 0
    outputs = [*result.target_ids[1:], int(result.top_ids[-1, 0])]
    assert scores.shape == (len(outputs), len(result.source_ids))
    for row, token in enumerate(outputs):
        dec = torch.tensor([result.target_ids[: row + 1]])
        mask = torch.ones(1, 1, row + 1, row + 1).tril().bool()

        def logp(v, dec=dec, mask=mask, token=token):
            hidden, _, _ = model.decode(dec.expand(len(v), -1), model.encode_vectors(v, None), None, mask)
            return model.project(hidden[:, -1]).log_softmax(-1)[:, token]

        expected, expected_delta = IntegratedGradients(logp).attribute(
            vectors, baselines=baseline, n_steps=32, return_convergence_delta=True
        )
        torch.testing.assert_close(scores[row], expected[0].sum(-1).detach(), atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(delta[row], expected_delta[0].detach(), atol=2e-5, rtol=0)


def test_contrastive_scores_sum_to_the_change_of_the_log_probability_difference(biased_bundle):
    result = _sentence(biased_bundle)
    row, foil = 1, int(result.top_ids[1, 1])
    scores, difference = contrastive(biased_bundle, result, row, foil)
    chosen = [*result.target_ids[1:], int(result.top_ids[-1, 0])][row]
    with torch.no_grad():
        model = biased_bundle.model
        vectors = model.source_vectors(torch.tensor([result.source_ids]))
        baseline = vectors.clone()
        baseline[:, 1:-1] = 0
        dec = torch.tensor([result.target_ids[: row + 1]])
        mask = torch.ones(1, 1, dec.size(1), dec.size(1)).tril().bool()

        def diff(v):
            hidden, _, _ = model.decode(dec, model.encode_vectors(v, None), None, mask)
            logp = model.project(hidden)[0, -1].log_softmax(-1)
            return logp[chosen] - logp[foil]

        assert difference == pytest.approx(float(diff(vectors)), abs=1e-5)
        assert float(scores.sum()) == pytest.approx(float(diff(vectors) - diff(baseline)), abs=2e-2)


FOLLOW_THE_LAYERS = ("norm-rollout", "alti", "value-zeroing", "integrated-gradients")


def test_the_methods_that_follow_every_layer_find_the_source_word_a_word_map_model_copies(carrier):
    """By construction: output word t of the word-map model is written from source word t alone, through one
    cross head of the first decoder layer (every other head's output projection is zero, the encoder does not
    mix). The methods that follow the information through every layer rank source word t first; read at that
    layer, so do the weighted-vector norms. The raw attention of the last layer, whose heads write nothing,
    cannot: the point of the methods beyond it."""
    hits, rows = dict.fromkeys([*FOLLOW_THE_LAYERS, "norm at the carrier layer", "attention"], 0), 0
    for source, target in word_map_pairs(6, seed=7):
        result = translate(carrier, source, reference=target)
        n = len(target.split())
        rows += n
        words = torch.arange(1, n + 1)
        tops = {m: attribute(carrier, result, m).source[:n].argmax(-1) for m in (*FOLLOW_THE_LAYERS, "attention")}
        tops["norm at the carrier layer"] = cross_norms(carrier.model, result.source_ids, result.target_ids, 0)[
            :n
        ].argmax(-1)
        for name, top in tops.items():
            hits[name] += int((top == words).sum())
    for name in (*FOLLOW_THE_LAYERS, "norm at the carrier layer"):
        assert hits[name] >= 0.9 * rows, (name, hits[name], rows)
    assert hits["attention"] < 0.5 * rows


def test_the_leaderboard_scores_methods_on_a_model_whose_answer_is_known(carrier, tmp_path, cli):
    """On the word-map model target word i comes from source word i: gold links i-i. ALTI's argmax links are
    those (AER under 0.05), deleting the word it ranks first drops the probability as much as the most damaging
    deletion (the best), far above a random word; the command writes the documented JSON."""
    from core.analysis.alignment import GoldPair
    from core.analysis.attribution_eval import leaderboard

    pairs = word_map_pairs(8, seed=11)
    gold = [GoldPair(s.split(), t.split(), frozenset((i, i) for i in range(len(s.split())))) for s, t in pairs]
    board = leaderboard(carrier, gold, [s for s, _ in pairs], ["alti", "attention"])
    result = board.to_json()
    alti = result["methods"]["alti"]
    assert alti["aer"] <= 0.05  # all but one link of the 8 sentences
    assert alti["deletion_drop"] == pytest.approx(result["deletion_best"], rel=0.05)
    assert alti["deletion_drop"] > result["deletion_random"] + 0.2  # a random word: often not the one copied
    assert result["methods"]["attention"]["aer"] > 0.5  # the last layer's heads write nothing (test above)
    assert 0 <= alti["soft_sufficiency"] <= 1 and 0 <= alti["soft_comprehensiveness"] <= 1
    assert alti["soft_comprehensiveness"] > result["methods"]["attention"]["soft_comprehensiveness"]
    checkpoint = tmp_path / "carrier.pt"
    from core import save_checkpoint

    save_checkpoint(checkpoint, carrier.model, carrier.src_tokenizer, carrier.tgt_tokenizer)
    gold_file, data_file, out = tmp_path / "gold.tsv", tmp_path / "pairs.tsv", tmp_path / "board.json"
    gold_file.write_text(
        "".join(f"{s}\t{t}\t{' '.join(f'{i}-{i}' for i in range(len(s.split())))}\n" for s, t in pairs)
    )
    data_file.write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
    run = cli(
        "attribution-eval",
        "--checkpoint",
        checkpoint,
        "--gold",
        gold_file,
        "--data",
        data_file,
        "--limit",
        4,
        "--methods",
        "alti,norm",
        "--json",
        out,
    )
    assert run.returncode == 0, run.stderr
    import json

    written = json.loads(out.read_text())
    assert set(written) == {"methods", "deletion_random", "deletion_best", "gold_pairs", "sentences", "rows"}
    assert set(written["methods"]) == {"alti", "norm"} and written["gold_pairs"] == 4 and written["sentences"] == 4
    assert set(written["methods"]["alti"]) == {
        "aer",
        "deletion_drop",
        "soft_sufficiency",
        "soft_comprehensiveness",
        "seconds_per_sentence",
    }
    run = cli("alignment", "--checkpoint", checkpoint, "--data", gold_file, "--method", "alti")
    assert run.returncode == 0 and "alti (argmax): AER 0.0" in run.stdout
    assert (
        cli(
            "attribution-eval",
            "--checkpoint",
            checkpoint,
            "--gold",
            gold_file,
            "--data",
            data_file,
            "--methods",
            "bogus",
        ).returncode
        == 2
    )


def test_low_source_shares_are_those_under_half_the_sentences_median():
    from core.analysis.attribution import low_share

    assert low_share(torch.tensor([0.6, 0.5, 0.1, 0.7, 0.15, 0.55])) == [
        False,
        False,
        True,
        False,
        True,
        False,
    ]  # median 0.525
    assert low_share(torch.tensor([0.4, 0.4, 0.4])) == [False, False, False]  # an even sentence: nothing marked
