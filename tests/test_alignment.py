"""Word alignment from cross-attention (core.analysis.alignment) and `python -m core alignment`."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import cli_subprocess
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from core import Attention, ModelConfig, Transformer, load_checkpoint, save_checkpoint, translate
from core.analysis.alignment import (
    Method,
    Score,
    Tally,
    aer,
    align_sentence,
    all_methods,
    cross_attention,
    diagonal_links,
    encode_pair,
    format_links,
    gold_matrix,
    link_matrix,
    links_of,
    method_matrix,
    opening_head,
    pair_readings,
    parse_links,
    parse_method,
    read_gold,
    read_pairs,
    score_links,
    shares,
    token_word_index,
    tune_thresholds,
    with_layer_means,
    word_attention,
    word_matrix,
    word_of_token,
)
from core.cli.alignment import main
from core.tokenizer import SPECIAL_TOKENS, build_tokenizer


def one_hot_cross(columns: list[int], n_source_tokens: int, heads: int = 1) -> np.ndarray:
    """(1, heads, len(columns), 2 + n_source_tokens) cross-attention whose row r puts all weight on columns[r]."""
    cross = np.zeros((1, heads, len(columns), n_source_tokens + 2))
    for row, col in enumerate(columns):
        cross[..., row, col] = 1.0
    return cross


def test_aer_counts_every_gold_link_as_sure():
    gold = {(0, 0), (1, 1), (2, 2)}
    assert aer(gold, gold) == 0
    assert aer(set(), gold) == 1
    assert aer({(0, 0), (2, 1)}, gold) == pytest.approx(1 - 2 * 1 / 5)


def test_a_perfect_diagonal_scores_aer_zero_when_read_at_the_predicting_rows():
    n = 5
    # rows 0..n-1 predict target words 0..n-1 and look at source word r (column r + 1); the last row ([EOS]) at [EOS]
    cross = one_hot_cross([*range(1, n + 1), n + 1], n)
    words = list(range(n))
    predict = word_attention(cross, words, words, n, n, "predict")
    diagonal = frozenset((i, i) for i in range(n))
    assert links_of(method_matrix(predict, Method(1, 1, "predict", "argmax")), "argmax") == diagonal
    assert score_links(diagonal, diagonal) == Score(0.0, 1.0, 1.0)
    assert links_of(shares(predict)[0, 0], "threshold", 0.5) == diagonal
    # Read where each word is the decoder input (Shift-Att), the same map is one word late: word j on source j + 1
    shifted = links_of(shares(word_attention(cross, words, words, n, n, "input"))[0, 0], "argmax")
    assert shifted == {(j + 1, j) for j in range(n - 1)}  # the last word's input row looks at [EOS]: no link
    assert diagonal_links(n, n) == diagonal


def test_known_precision_and_recall_on_a_constructed_case():
    shares = np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.1, 0.1, 0.8]])  # (target words, source words)
    gold = frozenset({(0, 0), (1, 1), (0, 1), (1, 2)})  # (source, target)
    argmax = links_of(shares, "argmax")
    assert argmax == {(0, 0), (1, 1), (2, 2)}  # 2 of 3 are gold; 2 of 4 gold found
    s = score_links(argmax, gold)
    assert (s.precision, s.recall, s.aer) == pytest.approx((2 / 3, 2 / 4, 1 - 2 * 2 / 7))
    thresholded = links_of(shares, "threshold", 0.35)
    assert thresholded == {(0, 0), (0, 1), (1, 1), (2, 2)}  # 3 of 4 are gold; 3 of 4 gold found
    s = score_links(thresholded, gold)
    assert (s.precision, s.recall, s.aer) == pytest.approx((3 / 4, 3 / 4, 1 - 2 * 3 / 8))
    assert not link_matrix(np.zeros((2, 3)), "argmax").any()  # a word without tokens gets no link


def test_tally_pools_links_over_pairs_like_the_single_pair_functions(reverser_bundle):
    rng = np.random.default_rng(0)
    pairs = [(["1", "2", "3", "4"], ["4", "3", "2", "1"]), (["5", "6", "7"], ["7", "6", "5"])]
    golds = [frozenset({(0, 3), (1, 2), (2, 1), (3, 0), (1, 1)}), frozenset({(0, 2), (2, 0)})]
    cfg = reverser_bundle.config
    thresholds = rng.uniform(0.1, 0.6, (2, cfg.n_layers, cfg.n_heads + 1))
    encoded = [encode_pair(reverser_bundle, s, t) for s, t in pairs]
    tally = Tally(cfg.n_layers, cfg.n_heads)
    by_method = {m.name: [0, 0] for m in all_methods(cfg.n_layers, cfg.n_heads)}
    for pair, gold, cross in zip(encoded, golds, cross_attention(reverser_bundle, encoded)):
        tally.add(pair_readings(cross, pair), gold_matrix(gold, pair.n_src, pair.n_tgt), thresholds)
        for method in all_methods(cfg.n_layers, cfg.n_heads):
            words = word_attention(cross, pair.src_words, pair.tgt_words, pair.n_src, pair.n_tgt, method.rows)
            tau = thresholds[method.index(cfg.n_heads)[1:]]
            links = links_of(method_matrix(words, method), method.decision, tau)
            by_method[method.name][0] += len(links & gold)
            by_method[method.name][1] += len(links)
    n_gold = sum(map(len, golds))
    for name, (hits, predicted) in by_method.items():
        assert tally.score(parse_method(name, cfg.n_layers, cfg.n_heads)) == pytest.approx(
            Score.of_counts(hits, predicted, n_gold)
        )
    diagonal = [diagonal_links(len(s), len(t)) for s, t in pairs]
    assert tally.baseline().aer == pytest.approx(
        Score.of_counts(sum(len(d & g) for d, g in zip(diagonal, golds)), 7, n_gold).aer
    )


def test_tune_thresholds_picks_the_threshold_that_recovers_the_gold():
    shares = np.array([[0.6, 0.4, 0.0], [0.0, 0.3, 0.7]])[None, None, None]  # (rows, L, H + 1, Tw, Sw)
    gold = np.array([[True, True, False], [False, False, True]])  # 0.4 belongs, 0.3 does not
    tau = tune_thresholds([(shares, gold)], grid=(0.2, 0.35, 0.5))
    assert tau.shape == (1, 1, 1) and tau[0, 0, 0] == 0.35


def test_tokens_map_back_to_the_gold_words_they_come_from():
    tok = build_tokenizer(["dell' acqua , grazie", "dell'acqua"], min_frequency=1)  # word-level, Whitespace
    text, words = word_of_token(tok, ["dell'", "acqua", ",", "grazie"])
    assert text == "dell' acqua , grazie"
    assert words == [0, 0, 1, 2, 3]  # "dell'" is two tokens: dell + '
    assert word_of_token(tok, ["dell'acqua", "grazie"])[1] == [0, 0, 0, 1]  # an unsplit elision is one word


def subword_tokenizer(kind: str) -> Tokenizer:
    texts = ["l'acqua è fredda", "dell'acqua calda", "acquazzone forte e freddo"] * 5
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordPieceTrainer(vocab_size=45, special_tokens=SPECIAL_TOKENS)
    else:
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace() if kind == "metaspace" else pre_tokenizers.ByteLevel(False)
        alphabet = pre_tokenizers.ByteLevel.alphabet() if kind == "bytelevel" else []
        size = 262 if kind == "bytelevel" else 32  # a few merges over the alphabet: words come out in pieces
        trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


@pytest.mark.parametrize("kind", ["wordpiece", "metaspace", "bytelevel"])
def test_subword_tokens_map_to_their_words(kind):
    tok = subword_tokenizer(kind)
    words = ["dell'acqua", "fredda", "acquazzone"]
    text, index = word_of_token(tok, words)
    enc = tok.encode(text, add_special_tokens=False)
    assert len(enc.tokens) > len(words) + 1  # really split into pieces, not only at the apostrophe
    # independent check: the pieces of each word, stripped of their markers, spell the word
    for w, word in enumerate(words):
        pieces = [t for t, i in zip(enc.tokens, index) if i == w]
        assert "".join(p.replace("##", "").replace("▁", "").replace("Ġ", "") for p in pieces) == word
    assert index == sorted(index)


def test_token_word_index_uses_the_first_non_space_character():
    text = "ab  cd e"  # words start at 0, 4, 7
    assert token_word_index(text, [(0, 2), (2, 6), (6, 8), (3, 4)]) == [0, 1, 2, 1]
    assert token_word_index(text, [(2, 4)]) == [1]  # a token of spaces only belongs to the next word


def test_word_matrix_averages_rows_and_sums_columns():
    weights = np.array([[0.5, 0.5, 0.0], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])  # 3 query tokens x 3 key tokens
    words = word_matrix(weights, row_words=[0, 1, 1], col_words=[0, 0, 1], n_rows=2, n_cols=2)
    np.testing.assert_allclose(words, [[1.0, 0.0], [0.4, 0.6]])


def test_word_attention_drops_sos_and_eos_and_renormalises():
    cross = np.array([[[[0.1, 0.3, 0.1, 0.5], [0.5, 0.1, 0.4, 0.0]]]])  # (1, 1, 2 rows, [SOS] a b [EOS])
    predict = word_attention(cross, [0, 1], [0], 2, 1, "predict")
    np.testing.assert_allclose(predict[0, 0], [[0.3, 0.1]])
    np.testing.assert_allclose(shares(predict)[0, 0], [[0.75, 0.25]])
    np.testing.assert_allclose(shares(word_attention(cross, [0, 1], [0], 2, 1, "input"))[0, 0], [[0.2, 0.8]])
    two_heads = np.concatenate([cross, cross[:, :, ::-1, :]], axis=1)  # head 2: the rows swapped
    means = with_layer_means(word_attention(two_heads, [0, 1], [0], 2, 1, "predict"))
    np.testing.assert_allclose(means[0, 2], [[(0.3 + 0.1) / (0.4 + 0.5), (0.1 + 0.4) / (0.4 + 0.5)]])
    with pytest.raises(ValueError, match="does not fit"):
        word_attention(cross, [0], [0], 1, 1, "predict")


def test_parse_method_names_and_errors():
    assert parse_method("L2H3-input-argmax", 2, 4) == Method(2, 3, "input", "argmax")
    assert parse_method("L1mean-predict-threshold", 2, 4).name == "L1mean-predict-threshold"
    for bad, message in [
        ("L3H1-input-argmax", "layers 1-2"),
        ("head 3", "not a method"),
        ("L1H9-input-argmax", "heads 1-4"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_method(bad, 2, 4)


@pytest.mark.parametrize(
    "line, message",
    [
        ("a b\tc d\n", "3 tab-separated columns"),
        ("a b\tc d\t0-0 2-1\n", "outside the sentences"),
        ("a b\tc d\t0-x\n", "is not a link"),
        ("\tc d\t0-0\n", "empty"),
    ],
)
def test_read_gold_rejects_malformed_lines(tmp_path, line, message):
    bad = tmp_path / "bad.tsv"
    bad.write_text(line, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_gold(bad)


def test_read_gold_and_pairs_say_why_a_file_cannot_be_read(tmp_path):
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("perché\tperché\t0-0\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        read_gold(latin1)
    with pytest.raises(ValueError, match="cannot read"):
        read_pairs(tmp_path / "missing.tsv")
    assert parse_links(format_links({(2, 1), (0, 0)})) == {(0, 0), (2, 1)}


def test_batched_cross_attention_equals_one_pass_per_pair(reverser_bundle):
    pairs = [(["1", "2", "3"], ["3", "2", "1"]), (["4", "5", "6", "7", "8"], ["8", "7", "6", "5", "4"])]
    encoded = [encode_pair(reverser_bundle, s, t) for s, t in pairs]
    for (src, tgt), cross in zip(pairs, cross_attention(reverser_bundle, encoded, batch_size=2)):
        alone = translate(reverser_bundle, " ".join(src), reference=" ".join(tgt)).attention.cross
        torch.testing.assert_close(torch.from_numpy(cross), alone, atol=1e-5, rtol=1e-4)
    assert encode_pair(reverser_bundle, ["1"] * 20, ["1"]) is None  # over seq_len: skipped, not truncated


@pytest.fixture
def reversed_gold(tmp_path):
    """Digit strings and their reversal, linked word i to word n - 1 - i: what the reverser model learnt."""
    lines = []
    for src in ["1 2 3 4 5", "9 8 7 6", "3 1 4 1 5 9", "2 7 1 8", "6 0 2"]:
        words = src.split()
        n = len(words)
        links = " ".join(f"{i}-{n - 1 - i}" for i in range(n))
        lines.append(f"{src}\t{' '.join(reversed(words))}\t{links}")
    path = tmp_path / "gold.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cli_json_has_the_documented_schema_and_links_use_the_best_method(
    reverser_bundle, reversed_gold, tmp_path, capsys
):
    out, links = tmp_path / "scores.json", tmp_path / "links.txt"
    argv = ["--checkpoint", str(reverser_bundle.source), "--data", str(reversed_gold)]
    assert main([*argv, "--json", str(out), "--links", str(links)]) == 0
    printed = capsys.readouterr().out
    assert "diagonal baseline" in printed and "best:" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    cfg = reverser_bundle.config
    assert set(report) == {"methods", "heads", "baseline", "best"}
    assert set(report["methods"]) == {m.name for m in all_methods(cfg.n_layers, cfg.n_heads)}
    assert all(set(v) == {"aer", "precision", "recall"} for v in report["methods"].values())
    assert np.asarray(report["heads"]).shape == (cfg.n_layers, cfg.n_heads)
    best = report["best"]
    assert best["aer"] == min(v["aer"] for v in report["methods"].values()) == report["methods"][best["method"]]["aer"]
    assert best["aer"] < report["baseline"]  # the model reverses, the diagonal does not
    method = parse_method(best["method"], cfg.n_layers, cfg.n_heads)
    # the heads table uses the best method's rows and decision
    head_names = [Method(layer, head, method.rows, method.decision).name for layer in (1, 2) for head in (1, 2, 3, 4)]
    np.testing.assert_allclose(np.ravel(report["heads"]), [report["methods"][n]["aer"] for n in head_names], atol=1e-6)

    written = links.read_text(encoding="utf-8").splitlines()
    gold_pairs = read_gold(reversed_gold)
    assert len(written) == len(gold_pairs)
    predicted = [parse_links(line) for line in written]
    pooled = Score.of_counts(
        sum(len(p & g.links) for p, g in zip(predicted, gold_pairs)),
        sum(map(len, predicted)),
        sum(len(g.links) for g in gold_pairs),
    )
    assert pooled.aer == pytest.approx(best["aer"])  # the written links are the ones the best method scored


def test_cli_aligns_a_plain_tsv_with_a_chosen_method(reverser_bundle, tmp_path):
    plain, links = tmp_path / "plain.tsv", tmp_path / "links.txt"
    plain.write_text("1 2 3\t3 2 1\n" + "1 " * 12 + "\t1\n4 5\t5 4\n", encoding="utf-8")  # line 2 is too long
    argv = ["--checkpoint", str(reverser_bundle.source), "--data", str(plain), "--links", str(links)]
    assert main([*argv, "--method", "L2mean-predict-argmax"]) == 0
    lines = links.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""  # one line per pair, an empty one when skipped
    pair = encode_pair(reverser_bundle, ["1", "2", "3"], ["3", "2", "1"])
    cross = next(cross_attention(reverser_bundle, [pair]))
    words = word_attention(cross, [0, 1, 2], [0, 1, 2], 3, 3, "predict")
    expected = links_of(words[1].mean(0), "argmax")  # an argmax needs no renormalising
    assert parse_links(lines[0]) == expected
    assert all(j < 2 and i < 2 for i, j in parse_links(lines[2]))


@pytest.mark.parametrize(
    "content, extra, message",
    [
        ("a\tb\n", [], "has no gold links"),
        ("a b\tb\tx\n", [], "is not a link"),
        ("1\t1\t0-0\n", ["--method", "L9H1-input-argmax"], "layers 1-2"),
        (None, [], "cannot read"),
    ],
)
def test_cli_bad_input_gets_one_line_error(reverser_bundle, tmp_path, capsys, content, extra, message):
    data = tmp_path / "data.tsv"
    if content is not None:
        data.write_text(content, encoding="utf-8")
    assert main(["--checkpoint", str(reverser_bundle.source), "--data", str(data), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_a_subword_model_is_aligned_on_words(tmp_path):
    """End to end with WordPiece tokenizers: the word matrix equals one built here from the '##' continuation rule."""
    tok = subword_tokenizer("wordpiece")
    torch.manual_seed(0)
    config = ModelConfig(tok.get_vocab_size(), tok.get_vocab_size(), d_model=16, n_layers=1, n_heads=2, d_ff=32)
    save_checkpoint(tmp_path / "wp.pt", Transformer(config).eval(), tok, tok)
    bundle = load_checkpoint(tmp_path / "wp.pt")
    source, reference = "acquazzone freddo", "dell'acqua fredda"
    result = translate(bundle, source, reference=reference)
    got = align_sentence(result.attention, tok, tok, source, reference, Method(1, 2, "predict", "argmax"))
    assert got.source_words == ["acquazzone", "freddo"] and got.target_words == ["dell'acqua", "fredda"]

    def words_by_rule(tokens):  # a new word starts at a token without '##', except right after an apostrophe
        index, previous = [], None
        for t in tokens:
            starts = not t.startswith("##") and previous not in (None, "'") and t != "'"
            index.append(0 if previous is None else index[-1] + starts)
            previous = t
        return index

    src_words = words_by_rule(result.source_tokens[1:-1])
    tgt_words = words_by_rule(result.target_tokens[1:])
    assert len(result.target_tokens) - 1 > 2 and max(tgt_words) == 1
    cross = result.attention.cross[0, 1].numpy()[:-1, 1:-1]  # head 2, predicting rows, word columns
    manual = np.zeros((2, 2))
    for t in range(2):
        rows = cross[[i for i, w in enumerate(tgt_words) if w == t]].mean(0)
        manual[t] = [rows[[i for i, w in enumerate(src_words) if w == s]].sum() for s in range(2)]
    np.testing.assert_allclose(got.matrix, manual / manual.sum(-1, keepdims=True), rtol=1e-5)
    assert got.links == {(int(s), t) for t, s in enumerate(manual.argmax(-1))}


def test_alignment_command_smoke(reverser_bundle, reversed_gold):
    """`python -m core alignment` in a fresh interpreter."""
    run = cli_subprocess("alignment", "--checkpoint", reverser_bundle.source, "--data", reversed_gold)
    assert run.returncode == 0, run.stderr
    assert "diagonal baseline" in run.stdout


def _cross(n_layers: int, n_heads: int, rows: int, columns: int) -> Attention:
    """Uniform maps of every kind over '[SOS] w1 .. [EOS]' sources: only the cross maps get changed below."""
    source = ("[SOS]",) + tuple(f"w{i}" for i in range(1, columns - 1)) + ("[EOS]",)
    target = ("[SOS]",) + tuple(f"t{i}" for i in range(1, rows))
    return Attention(
        encoder=torch.full((n_layers, n_heads, columns, columns), 1 / columns),
        decoder=torch.full((n_layers, n_heads, rows, rows), 1 / rows),
        cross=torch.full((n_layers, n_heads, rows, columns), 1 / columns),
        source_tokens=source,
        target_tokens=target,
    )


def test_opening_head_is_the_sharpest_on_words_not_on_the_end_token(tiny_bundle):
    attention = _cross(2, 4, rows=4, columns=6)
    attention.cross[0, 2] = 0
    attention.cross[0, 2, :, -1] = 1  # parked on [EOS]: as sharp as can be, but on no word
    attention.cross[1, 2] = 0
    attention.cross[1, 2, torch.arange(4), torch.tensor([4, 3, 2, 1])] = 0.8  # 80% on one word per row
    attention.cross[1, 2, :, 0] = 0.2
    opened = opening_head(tiny_bundle, attention)
    assert (opened.layer, opened.head) == (2, 3)
    assert "80%" in opened.hint and "Layer 2, head 3" in opened.hint


def test_opening_head_is_the_cards_alignment_head(tiny_bundle):
    card = {"alignment": {"method": "L1H3-predict-threshold", "aer": 0.25, "threshold": 0.3, "data": "gold pairs"}}
    bundle = dataclasses.replace(tiny_bundle, metadata={"model_card": card})
    opened = opening_head(bundle, _cross(2, 4, rows=4, columns=6))
    assert (opened.layer, opened.head) == (1, 3)
    assert "alignment head (AER 0.25 on gold pairs)" in opened.hint
    mean_only = {"alignment": {"method": "L1mean-predict-threshold", "aer": 0.25}}  # no single head: the sharpest
    attention = _cross(2, 4, rows=4, columns=6)
    attention.cross[1, 3, :, 2] = 1
    opened = opening_head(dataclasses.replace(tiny_bundle, metadata={"model_card": mean_only}), attention)
    assert (opened.layer, opened.head) == (2, 4)


# ---- cases mutation testing found unchecked (bench/mutation.py) --------------------------------------------------


def pooled_aer_by_hand(readings: list[np.ndarray], golds: list[np.ndarray], tau: float, index: tuple) -> float:
    """AER of one method (index into rows, L, H + 1) pooled over pairs, every link counted in a loop."""
    hits = predicted = gold = 0
    for reading, g in zip(readings, golds):
        matrix = reading[index]
        for j in range(matrix.shape[0]):
            for i in range(matrix.shape[1]):
                linked = matrix[j, i] >= tau  # "at least a share T"
                predicted += linked
                hits += linked and g[j, i]
                gold += g[j, i]
    return 1.0 - 2.0 * hits / max(1, predicted + gold)


def test_tune_thresholds_pools_every_pair_as_a_loop_over_links_does():
    rng = np.random.default_rng(3)
    grid = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)
    readings, golds = [], []
    for n_tgt, n_src in ((3, 4), (5, 2), (2, 6), (4, 4)):
        raw = rng.integers(0, 5, (2, 2, 3, n_tgt, n_src)).astype(float)  # shares on a 1/20 grid: ties with T
        raw[..., 0] += 1  # no empty row
        readings.append(np.round(raw / raw.sum(-1, keepdims=True) * 20) / 20)
        golds.append(readings[-1][0, 0, 0] >= 0.3)  # the gold follows one method's shares, so the methods differ
    tau = tune_thresholds(list(zip(readings, golds)), grid=grid)
    assert tau.shape == (2, 2, 3)
    for index in np.ndindex(2, 2, 3):
        rates = [pooled_aer_by_hand(readings, golds, t, index) for t in grid]
        assert tau[index] == grid[int(np.argmin(rates))], index
    assert len(set(tau.ravel().tolist())) > 1  # the methods differ: the answer is not one grid value everywhere
    # a share exactly at the threshold links: 0.5 and 0.5 against gold on word 0 only
    assert tune_thresholds([(np.array([[[[[0.5, 0.5]]]]]), np.array([[True, False]]))], grid=(0.5, 0.6))[0, 0, 0] == 0.5
    with pytest.raises(ValueError, match="no sentence pairs"):
        tune_thresholds([], grid=grid)


def test_a_share_equal_to_the_threshold_links():
    matrix = np.array([[0.25, 0.75], [0.5, 0.5]])
    assert link_matrix(matrix, "threshold", 0.25).tolist() == [[True, True], [True, True]]
    assert link_matrix(matrix, "threshold", 0.5).tolist() == [[False, True], [True, True]]
    assert links_of(matrix, "threshold") == {(1, 0), (0, 1), (1, 1)}  # the default threshold is 0.5
    with pytest.raises(ValueError, match="unknown decision 'vote': use one of argmax, threshold"):
        link_matrix(matrix, "vote")


def test_tally_head_aer_counts_pairs_and_every_heads_score():
    rng = np.random.default_rng(4)
    tally = Tally(2, 3)
    thresholds = np.full((2, 2, 4), 0.3)
    for n_tgt, n_src in ((3, 3), (2, 4), (4, 2)):
        raw = rng.random((2, 2, 4, n_tgt, n_src))
        tally.add(raw / raw.sum(-1, keepdims=True), rng.random((n_tgt, n_src)) < 0.4, thresholds)
    assert tally.pairs == 3
    for rows in ("predict", "input"):
        for decision in ("argmax", "threshold"):
            expected = [
                [tally.score(Method(layer, head, rows, decision)).aer for head in (1, 2, 3)] for layer in (1, 2)
            ]
            np.testing.assert_allclose(tally.head_aer(rows, decision), expected)


def test_links_on_the_last_word_are_outside_and_line_numbers_are_right(tmp_path):
    from core.analysis.alignment import check_links

    check_links({(2, 3)}, 3, 4)  # the last words, counted from 0
    for link in ((3, 0), (0, 4)):
        with pytest.raises(ValueError, match=f"link {link[0]}-{link[1]} is outside"):
            check_links({link}, 3, 4)
    gold = tmp_path / "gold.tsv"
    gold.write_text("a b\tc d\t0-0\na b\tc d\t0-2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"gold.tsv:2: link 0-2 is outside"):
        read_gold(gold)
    plain = tmp_path / "plain.tsv"
    plain.write_text("a b\tc d\na b\tc d\t0-0\na\t\n", encoding="utf-8")  # a third column is allowed
    with pytest.raises(ValueError, match=r"plain.tsv:3: a sentence is empty"):
        read_pairs(plain)
    plain.write_text("a b\tc d\na b\tc d\t0-0\n", encoding="utf-8")
    assert read_pairs(plain) == [(["a", "b"], ["c", "d"])] * 2
    plain.write_text("a b\tc d\n\tc d\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"plain.tsv:2: a sentence is empty"):
        read_pairs(plain)
    plain.write_text("a b\tc d\na\tb\tc\td\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"plain.tsv:2: expected 2 tab-separated columns \(English, Italian\), found 4"
    ):
        read_pairs(plain)
    for read, empty in ((read_pairs, "empty.tsv"), (read_gold, "empty_gold.tsv")):
        (tmp_path / empty).write_text("", encoding="utf-8")
        with pytest.raises(ValueError, match="no sentence pairs"):
            read(tmp_path / empty)


def test_pairs_as_long_as_seq_len_fit_and_one_token_more_does_not(reverser_bundle):
    seq_len = reverser_bundle.config.seq_len  # 10: a source of 8 digits and its [SOS] [EOS]; 9 target tokens + [SOS]
    assert encode_pair(reverser_bundle, ["1"] * (seq_len - 2), ["1"] * (seq_len - 1)) is not None
    assert encode_pair(reverser_bundle, ["1"] * (seq_len - 1), ["1"]) is None
    assert encode_pair(reverser_bundle, ["1"], ["1"] * seq_len) is None
    assert encode_pair(reverser_bundle, ["1"], ["1"]).first == 1  # [SOS] before the source words


def test_cross_attention_in_batches_gives_every_pair_once_in_order(reverser_bundle):
    pairs = [(list(s), list(reversed(s))) for s in ("123", "45678", "9", "2468", "13", "777")]
    encoded = [encode_pair(reverser_bundle, s, t) for s, t in pairs]
    maps = list(cross_attention(reverser_bundle, encoded, batch_size=4))  # two batches, the second not full
    assert len(maps) == len(pairs)
    for (src, tgt), cross in zip(pairs, maps):
        alone = translate(reverser_bundle, " ".join(src), reference=" ".join(tgt)).attention.cross
        torch.testing.assert_close(torch.from_numpy(cross), alone, atol=1e-5, rtol=1e-4)


def test_aligning_generated_tokens_and_a_source_without_a_start_token():
    # Without a reference each generated token is a target word: the matrix is the head's predicting rows over
    # the word columns, renormalised. Marian's source has no start token (frame (0, 1)): the words start at 0.
    tok = build_tokenizer(["a b c x y"], min_frequency=1)
    cross = torch.tensor(
        [[[[0.1, 0.6, 0.3, 0.0], [0.2, 0.2, 0.2, 0.4], [0.0, 0.0, 0.5, 0.5]]]]
    )  # (1, 1, [SOS] x y rows, a b c </s>)
    eye_s, eye_t = torch.eye(4)[None, None], torch.eye(3)[None, None]
    att = Attention(eye_s, eye_t, cross, ("a", "b", "c", "</s>"), ("[SOS]", "x", "y"), source_frame=(0, 1))
    got = align_sentence(att, tok, tok, "a b c", None, Method(1, 1, "predict", "argmax"))
    assert got.source_words == ["a", "b", "c"] and got.target_words == ["x", "y"]
    expected = np.array([[0.1, 0.6, 0.3], [0.2, 0.2, 0.2]]) / np.array([[1.0], [0.6]])  # rows [SOS] and x
    np.testing.assert_allclose(got.matrix, expected, rtol=1e-6)
    assert got.links == {(1, 0), (0, 1)}  # argmax: b for x; a, b, c tie for y and the first wins
    threshold = align_sentence(att, tok, tok, "a b c", None, Method(1, 1, "input", "threshold"), threshold=0.5)
    np.testing.assert_allclose(threshold.matrix, [[1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]], rtol=1e-6)
    assert threshold.links == {(2, 1)}
    with pytest.raises(ValueError, match="do not tokenize to the tokens"):
        align_sentence(att, tok, tok, "a b", None, Method(1, 1, "input", "threshold"))


def test_the_card_names_the_alignment_method():
    from heads_fixtures import tiny_bundle

    from core.analysis.alignment import RecordedAlignment, recorded_alignment

    bundle = tiny_bundle(layers=2, heads=2)  # 2 layers x 2 heads

    def card(entry):
        bundle.metadata.clear()
        if entry is not ...:
            bundle.metadata["model_card"] = {"alignment": entry}
        return recorded_alignment(bundle)

    entry = {"method": "L2H1-predict-threshold", "aer": "0.25", "threshold": 0.3, "data": "XL-WA dev"}
    assert card(entry) == RecordedAlignment(Method(2, 1, "predict", "threshold"), 0.25, 0.3, "XL-WA dev")
    assert card({"method": "L1mean-input-argmax"}) == RecordedAlignment(
        Method(1, None, "input", "argmax"), None, None, ""
    )
    for bad in (..., None, "L1H1-input-argmax", {"aer": 0.2}, {"method": 3}, {"method": "L3H1-input-argmax"}):
        assert card(bad) is None, bad  # no card, no entry, not a dict, no method, not a name, not this model's
    assert card({"method": "L1H2-input-argmax", "aer": "high"}) is None
    assert card({"method": "L1H2-input-argmax", "threshold": [0.3]}) is None
