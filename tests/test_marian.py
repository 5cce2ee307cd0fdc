"""Hugging Face Marian models through the model seam, checked against transformers itself on tiny random models
built in the test (tests/marian_fixtures.py): attention, greedy and beam outputs, switching heads off, the
tokens on the axes, loading and refusing folders and hub ids."""

from __future__ import annotations

import json
import shutil
import threading
import warnings

import numpy as np
import pytest
import torch
from marian_fixtures import ENGLISH, ITALIAN, hf_model, hf_tokenizer, make_marian

from core import CheckpointError, load_checkpoint, translate
from core.families.marian import label_piece, piece_label

SENTENCES = ENGLISH[:4] + ["where is the big dog ?", "thank you for the train"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_marian(tmp_path_factory.mktemp("marian") / "opus-mt-en-it")


@pytest.fixture(scope="module")
def bundle(folder):
    return load_checkpoint(folder)


@pytest.fixture(scope="module")
def reference(folder):
    return hf_model(folder), hf_tokenizer(folder)


def hf_ids(tokenizer, sentence: str) -> torch.Tensor:
    return tokenizer(sentence, return_tensors="pt").input_ids


def test_the_folder_loads_as_a_bundle_with_what_the_config_says(bundle, folder):
    config = json.loads((folder / "config.json").read_text())
    assert bundle.kind == "marian"
    assert (bundle.config.n_layers, bundle.config.n_heads, bundle.config.d_model) == (2, 4, 32)
    assert bundle.config.src_vocab_size == config["vocab_size"] and bundle.config.seq_len == 128
    card = bundle.metadata["model_card"]
    assert card["languages"] == "en → it" and card["config"]["encoder_attention_heads"] == 4
    assert bundle.specials.start == bundle.specials.pad == config["pad_token_id"] and bundle.specials.eos == 0
    assert bundle.specials.source_prefix == () and bundle.specials.banned == (config["pad_token_id"],)


@pytest.mark.parametrize("sentence", SENTENCES)
def test_every_map_equals_transformers_output_attentions(bundle, reference, sentence):
    model, tokenizer = reference
    result = translate(bundle, sentence, max_len=10)
    src = hf_ids(tokenizer, sentence)
    assert result.source_ids == src[0].tolist()
    with torch.no_grad():
        out = model(input_ids=src, decoder_input_ids=torch.tensor([result.target_ids]), output_attentions=True)
        logits = out.logits[0]
    for ours, theirs in (
        (result.attention.encoder, out.encoder_attentions),
        (result.attention.decoder, out.decoder_attentions),
        (result.attention.cross, out.cross_attentions),
    ):
        torch.testing.assert_close(ours, torch.stack(theirs)[:, 0], atol=1e-5, rtol=0)
    top = logits.index_fill(-1, torch.tensor(bundle.specials.banned), -torch.inf).softmax(-1).topk(5)
    torch.testing.assert_close(result.top_probs, top.values, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sentence", SENTENCES)
def test_greedy_writes_what_generate_writes(bundle, reference, sentence):
    """generate(num_beams=1, do_sample=False), its generation config (pad banned) as it is; forced_eos off:
    generate forces </s> at its length limit, where ours stops with the tokens written so far."""
    model, tokenizer = reference
    result = translate(bundle, sentence, max_len=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.generate(
            hf_ids(tokenizer, sentence), num_beams=1, do_sample=False, max_new_tokens=15, forced_eos_token_id=None
        )
    assert result.output_ids == out[0, 1:].tolist()
    assert result.target_ids[0] == bundle.specials.start


@pytest.mark.parametrize("beams", [2, 3, 4])
def test_beam_search_writes_what_generate_writes_without_length_penalty(bundle, reference, beams):
    """Where the definitions match: no length penalty (transformers divides by length ** alpha, we by GNMT's
    ((5 + length) / 6) ** alpha; they agree only at alpha 0), and early stopping once `beams` are finished."""
    model, tokenizer = reference
    for sentence in SENTENCES:
        result = translate(bundle, sentence, beam_size=beams, max_len=12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = model.generate(
                hf_ids(tokenizer, sentence),
                num_beams=beams,
                do_sample=False,
                max_new_tokens=11,
                forced_eos_token_id=None,
                length_penalty=0.0,
                early_stopping=True,
            )
        assert result.output_ids == out[0, 1:].tolist()[: len(result.output_ids)]


def test_switching_a_head_off_equals_zeroing_its_slice_of_out_proj_in_transformers(bundle, folder):
    """Ablation checked independently: transformers' own forward with head h's slice of the out_proj input
    zeroed (a pre-hook on a separate copy of the model) gives the same logits as our gates."""
    model, tokenizer = hf_model(folder), hf_tokenizer(folder)
    sentence, target = ENGLISH[0], ITALIAN[0]
    src = hf_ids(tokenizer, sentence)
    tgt = tokenizer(text_target=target, return_tensors="pt").input_ids
    dec = torch.cat([torch.tensor([[bundle.specials.start]]), tgt[:, :-1]], dim=1)
    head_dim = bundle.config.d_model // bundle.config.n_heads
    for kind, module in (
        ("encoder", model.model.encoder.layers[1].self_attn),
        ("decoder", model.model.decoder.layers[0].self_attn),
        ("cross", model.model.decoder.layers[1].encoder_attn),
    ):
        layer = 1 if kind != "decoder" else 0
        head = 2

        def zero_head(_, inputs, head=head):
            x = inputs[0].clone()
            x[..., head * head_dim : (head + 1) * head_dim] = 0
            return (x,)

        hook = module.out_proj.register_forward_pre_hook(zero_head)
        try:
            with torch.no_grad():
                expected = model(input_ids=src, decoder_input_ids=dec).logits
        finally:
            hook.remove()
        gates = torch.ones(bundle.config.n_layers, bundle.config.n_heads)
        gates[layer, head] = 0
        with torch.no_grad():
            ours = bundle.model(
                src, dec, None, torch.ones(1, 1, dec.size(1), dec.size(1)).tril().bool(), head_mask={kind: gates}
            )
        torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
        assert not torch.allclose(ours, model(input_ids=src, decoder_input_ids=dec).logits, atol=1e-4)


def test_two_sessions_switching_off_different_heads_at_once_each_get_their_own(bundle):
    """Heads off are an argument of the call: threads running the shared model at the same moment with different
    masks each get what a call alone gives."""
    masks = []
    for layer in range(bundle.config.n_layers):
        for kind in ("encoder", "decoder", "cross"):
            gates = torch.ones(bundle.config.n_layers, bundle.config.n_heads)
            gates[layer, 1] = 0
            masks.append({kind: gates})
    alone = [translate(bundle, SENTENCES[0], max_len=10, head_mask=m) for m in masks]
    assert len({tuple(a.attention.cross.flatten().tolist()) for a in alone}) > 1  # the masks do differ
    together, barrier = [None] * len(masks), threading.Barrier(len(masks))

    def run(i: int) -> None:
        barrier.wait()
        for _ in range(3):
            together[i] = translate(bundle, SENTENCES[0], max_len=10, head_mask=masks[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(masks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together):
        torch.testing.assert_close(a.attention.cross, b.attention.cross)
        assert a.output_ids == b.output_ids


def test_the_axes_are_the_pieces_the_model_read_with_word_starts_shown_as_the_app_shows_them(bundle, reference):
    _, tokenizer = reference
    sentence = "the dog sleeps ."
    result = translate(bundle, sentence, max_len=6)
    pieces = tokenizer.convert_ids_to_tokens(hf_ids(tokenizer, sentence)[0].tolist())
    specials = frozenset(tokenizer.all_special_tokens)
    assert result.source_tokens == [piece_label(p, specials) for p in pieces]
    assert [label_piece(t, specials) for t in result.source_tokens] == pieces  # labels name the pieces exactly
    assert result.source_tokens[-1] == "</s>" and result.target_tokens[0] == "<pad>"
    starts = [t for t, p in zip(result.source_tokens, pieces) if p.startswith("▁")]
    assert starts and all(t == p[1:] or (t == p == "▁") for t, p in zip(starts, [p for p in pieces if p[0] == "▁"]))
    continuing = [t for t, p in zip(result.source_tokens, pieces) if not p.startswith("▁") and p not in specials]
    assert all(t.startswith("##") for t in continuing)
    encoded = bundle.src_tokenizer.encode(sentence)
    assert max(encoded.word_index) == len(sentence.split()) - 1 and encoded.word_index == sorted(encoded.word_index)


def test_labels_round_trip_for_every_piece_of_the_vocabulary(bundle, reference):
    _, tokenizer = reference
    side = bundle.tgt_tokenizer
    for piece, token_id in tokenizer.get_vocab().items():
        assert side.token_to_id(side.id_to_token(token_id)) == token_id, piece


def test_a_reference_and_a_prefix_use_the_target_pieces(bundle, reference):
    _, tokenizer = reference
    result = translate(bundle, ENGLISH[0], reference=ITALIAN[0])
    expected = tokenizer(text_target=ITALIAN[0], add_special_tokens=False).input_ids
    assert result.target_ids == [bundle.specials.start, *expected]
    assert result.translation == ITALIAN[0]
    forced = translate(bundle, ENGLISH[0], prefix="il gatto", max_len=8)
    assert (
        forced.output_ids[: forced.prefix_length]
        == tokenizer(text_target="il gatto", add_special_tokens=False).input_ids
    )


# ---------------------------------------------------------------- loading, refusing


def test_a_folder_without_config_or_weights_or_tokenizer_gets_one_line(folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="not a Hugging Face model folder"):
        load_checkpoint(empty)
    for missing, message in (("model.safetensors", "holds no weights"), ("source.spm", "lacks the tokenizer files")):
        copy = tmp_path / f"without-{missing}"
        shutil.copytree(folder, copy)
        (copy / missing).unlink()
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(copy)


def test_other_families_and_broken_configs_are_refused(folder, tmp_path):
    for family in ("t5", "mbart", "m2m_100", None):
        copy = tmp_path / f"family-{family}"
        shutil.copytree(folder, copy)
        config = json.loads((copy / "config.json").read_text())
        config["model_type"] = family
        (copy / "config.json").write_text(json.dumps(config))
        with pytest.raises(CheckpointError, match="not supported"):
            load_checkpoint(copy)
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable JSON config"):
        load_checkpoint(broken)


def test_truncated_weights_and_a_pickle_that_runs_code_are_refused(folder, tmp_path):
    truncated = tmp_path / "truncated"
    shutil.copytree(folder, truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot load the Marian model"):
        load_checkpoint(truncated)
    evil = tmp_path / "evil"
    shutil.copytree(folder, evil)
    (evil / "model.safetensors").unlink()
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model.shared.weight": Payload()}, evil / "pytorch_model.bin")
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    assert not marker.exists()


def test_a_hub_id_downloads_through_huggingface_hub_and_fails_in_one_line_offline(monkeypatch, folder):
    import huggingface_hub

    from core.families import pretrained

    asked = []
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo, **kw: asked.append((repo, kw)) or str(folder)
    )
    bundle = load_checkpoint("hf:Helsinki-NLP/opus-mt-en-it")
    assert asked[0][0] == "Helsinki-NLP/opus-mt-en-it" and "config.json" in asked[0][1]["allow_patterns"]
    assert bundle.kind == "marian" and bundle.source == "hf:Helsinki-NLP/opus-mt-en-it"
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the real call, without a network: one line, no traceback
    with pytest.raises(CheckpointError, match="cannot download Helsinki-NLP/opus-mt-xx-yy"):
        pretrained.hub_folder("Helsinki-NLP/opus-mt-xx-yy")
    with pytest.raises(CheckpointError, match="not a Hugging Face model id"):
        load_checkpoint("hf:../../etc")


def test_the_model_is_held_once(bundle):
    """The seam's modules reuse the loaded weights: every parameter is counted once, and the tied embeddings and
    output projection are one tensor."""
    params = list(bundle.model.parameters())
    assert len({p.data_ptr() for p in params}) == len(params)
    assert bundle.model.lm_head.weight.data_ptr() == bundle.model.src_embed.weight.data_ptr()
    assert np.isclose(bundle.num_parameters, sum(p.numel() for p in params))


def test_the_ablation_sweep_matches_transformers_with_a_head_zeroed(bundle, folder):
    """core.analysis.importance.ablation restarts the stack at the masked layer through the seam; each delta
    must equal the change of the mean reference log-probability transformers gives with that head zeroed."""
    from core.analysis.importance import ablation

    model, tokenizer = hf_model(folder), hf_tokenizer(folder)
    pairs = list(zip(ENGLISH[:3], ITALIAN[:3]))
    deltas, base, tokens = ablation(bundle, pairs)
    head_dim = bundle.config.d_model // bundle.config.n_heads

    def mean_logprob(module=None, head=None) -> float:
        hook = None
        if module is not None:

            def zero(_, inputs):
                x = inputs[0].clone()
                x[..., head * head_dim : (head + 1) * head_dim] = 0
                return (x,)

            hook = module.out_proj.register_forward_pre_hook(zero)
        total, count = 0.0, 0
        try:
            for en, it in pairs:
                labels = tokenizer(text_target=it, return_tensors="pt").input_ids
                with torch.no_grad():
                    logits = model(input_ids=hf_ids(tokenizer, en), labels=labels).logits[0]
                total += float(logits.log_softmax(-1).gather(-1, labels[0, :, None]).sum())
                count += labels.size(1)
        finally:
            if hook is not None:
                hook.remove()
        return total / count

    plain = mean_logprob()
    assert base == pytest.approx(plain, abs=1e-4)
    layers = model.model.encoder.layers, model.model.decoder.layers
    for kind, layer, head, module in (
        ("encoder", 0, 1, layers[0][0].self_attn),
        ("decoder", 1, 3, layers[1][1].self_attn),
        ("cross", 0, 0, layers[1][0].encoder_attn),
    ):
        assert deltas[kind][layer, head] == pytest.approx(mean_logprob(module, head) - plain, abs=1e-4)


def test_the_gradient_score_matches_transformers_with_a_gate_on_a_head(bundle, folder):
    """core.analysis.importance.gradient_importance feeds Marian's decoder start and end tokens (its own specials):
    each score must equal the mean over sentences of |d loss / d gate| with transformers' own loss (the mean token
    NLL of the reference) and a gate of 1 multiplying that head's slice of the attention output."""
    from core.analysis.importance import gradient_importance

    model, tokenizer = hf_model(folder), hf_tokenizer(folder)
    pairs = list(zip(ENGLISH[:3], ITALIAN[:3]))
    scores = gradient_importance(bundle, pairs)
    head_dim = bundle.config.d_model // bundle.config.n_heads
    layers = model.model.encoder.layers, model.model.decoder.layers
    for kind, layer, head, module in (
        ("encoder", 1, 2, layers[0][1].self_attn),
        ("decoder", 0, 0, layers[1][0].self_attn),
        ("cross", 1, 3, layers[1][1].encoder_attn),
    ):
        total = 0.0
        for en, it in pairs:
            gate = torch.ones((), requires_grad=True)

            def gated(_, inputs, gate=gate, head=head):
                scale = torch.ones(bundle.config.d_model)
                scale = torch.cat([scale[: head * head_dim], gate.expand(head_dim), scale[(head + 1) * head_dim :]])
                return (inputs[0] * scale,)

            hook = module.out_proj.register_forward_pre_hook(gated)
            try:
                labels = tokenizer(text_target=it, return_tensors="pt").input_ids
                loss = model(input_ids=hf_ids(tokenizer, en), labels=labels).loss  # mean NLL over the labels
                total += abs(float(torch.autograd.grad(loss, gate)[0]))
            finally:
                hook.remove()
        assert scores[kind][layer, head] == pytest.approx(total / len(pairs), rel=1e-3, abs=1e-6), kind
