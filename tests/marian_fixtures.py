"""Tiny Hugging Face Marian models built in the test (the hub is out of reach): random weights from a MarianConfig
shaped like opus-mt's (post-norm, swish, scaled shared embeddings), SentencePiece tokenizers trained on a few
sentences, written with save_pretrained."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

ENGLISH = [
    "the cat sleeps on the chair .",
    "i love you .",
    "where is the train station ?",
    "the dog is big and the cat is small .",
    "we will go to the sea tomorrow .",
    "thank you very much for your help .",
]
ITALIAN = [
    "il gatto dorme sulla sedia .",
    "ti amo .",
    "dov'è la stazione ?",
    "il cane è grande e il gatto è piccolo .",
    "domani andremo al mare .",
    "grazie mille per il tuo aiuto .",
]


def _sentencepiece(folder: Path, name: str, lines: list[str], vocab_size: int) -> list[str]:
    import sentencepiece as spm

    text = folder / f"{name}.txt"
    text.write_text("\n".join(lines * 20), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(folder / name),
        vocab_size=vocab_size,
        pad_id=-1,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (folder / f"{name}.model").rename(folder / f"{name}.spm")
    text.unlink()
    processor = spm.SentencePieceProcessor(model_file=str(folder / f"{name}.spm"))
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def make_marian(
    folder: Path,
    layers: int = 2,
    heads: int = 4,
    d_model: int = 32,
    seed: int = 0,
    positions: int = 128,
    *,
    ffn: int | None = None,
    vocab_size: int | None = None,
    never_ends: bool = False,
) -> Path:
    """Write a random Marian model and its tokenizer to folder (save_pretrained); returns the folder.

    Tiny by default. ffn is the feed-forward width (default 2 * d_model); vocab_size pads the shared vocabulary
    with pieces the tokenizers never write, up to that many entries (opus-mt-en-it has about 80,000), so the
    embeddings and the output projection have a real model's size; never_ends pushes the end-of-sentence logit
    down so that greedy decoding runs to its length limit (benches that time a fixed number of steps)."""
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    pieces = _sentencepiece(folder, "source", ENGLISH, 60) + _sentencepiece(folder, "target", ITALIAN, 60)
    vocab = {"</s>": 0, "<unk>": 1}
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    while vocab_size is not None and len(vocab) < vocab_size - 1:  # the pad token takes the last id
        vocab[f"▁unused{len(vocab)}"] = len(vocab)
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    config = MarianConfig(
        vocab_size=len(vocab),
        decoder_vocab_size=len(vocab),
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn or 2 * d_model,
        decoder_ffn_dim=ffn or 2 * d_model,
        max_position_embeddings=positions,
        activation_function="swish",
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        pad_token_id=vocab["<pad>"],
        eos_token_id=0,
        decoder_start_token_id=vocab["<pad>"],
        forced_eos_token_id=0,
    )
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MarianMTModel(config)
        with torch.no_grad():  # weights large enough to write varied tokens; a bias a test notices if left out
            for name, param in model.named_parameters():
                if param.dim() > 1:
                    param.normal_(0, 0.3 if "embed" in name or "shared" in name else 0.15)
            model.final_logits_bias.normal_(0, 0.2)
            if never_ends:
                model.final_logits_bias[0, 0] = -1e4  # </s> is id 0
        model.save_pretrained(folder)
        pad = vocab["<pad>"]
        GenerationConfig(  # as opus-mt's: the pad token (the decoder's start) is never written, 4 beams
            bad_words_ids=[[pad]],
            decoder_start_token_id=pad,
            eos_token_id=0,
            forced_eos_token_id=0,
            pad_token_id=pad,
            max_length=128,
            num_beams=4,
        ).save_pretrained(folder)
        tokenizer = MarianTokenizer(
            str(folder / "source.spm"),
            str(folder / "target.spm"),
            str(folder / "vocab.json"),
            source_lang="en",
            target_lang="it",
        )
        tokenizer.save_pretrained(folder)
    return folder


def hf_model(folder: Path):
    """The same model as transformers itself runs it (eager attention, eval mode)."""
    from transformers import MarianMTModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MarianMTModel.from_pretrained(folder, attn_implementation="eager").eval()


def hf_tokenizer(folder: Path):
    from transformers import MarianTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MarianTokenizer.from_pretrained(folder)
