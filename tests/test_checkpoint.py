"""Checkpoints: our round trip, the tutorial's layouts, and one clear error for each bad file."""

from __future__ import annotations

import builtins
import io
import math
import pickle
import random

import pytest
import torch

from core import CheckpointError, load_checkpoint, save_checkpoint, translate
from core.model import causal_mask
from core.tokenizer import build_tokenizer

# Tutorial size of the spec's table 4.1.
D, N, H, F, S, V_SRC, V_TGT = 64, 2, 4, 128, 32, 100, 120


def sinusoid(seq_len: int, d: int) -> torch.Tensor:
    """(1, seq_len, d) sin/cos table as the spec's section 5 defines it."""
    pe = torch.zeros(seq_len, d)
    for pos in range(seq_len):
        for k in range(d // 2):
            angle = pos * math.exp(-2 * k * math.log(10000.0) / d)
            pe[pos, 2 * k], pe[pos, 2 * k + 1] = math.sin(angle), math.cos(angle)
    return pe[None]


def tutorial_shapes(
    scalar_norms: bool = False, attention_bias: bool = False, cross_name: str = "cross_attention_block"
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a tutorial state dict, written from the spec's tables (not from our model code)."""
    norm = (1,) if scalar_norms else (D,)
    shapes: dict[str, tuple[int, ...]] = {}

    def attention_block(prefix: str) -> None:
        for w in "qkvo":
            shapes[f"{prefix}.w_{w}.weight"] = (D, D)
            if attention_bias:
                shapes[f"{prefix}.w_{w}.bias"] = (D,)

    def layer(prefix: str, blocks: list[str]) -> None:
        for block in blocks:
            attention_block(f"{prefix}.{block}")
        shapes.update(
            {
                f"{prefix}.feed_forward_block.linear_1.weight": (F, D),
                f"{prefix}.feed_forward_block.linear_1.bias": (F,),
                f"{prefix}.feed_forward_block.linear_2.weight": (D, F),
                f"{prefix}.feed_forward_block.linear_2.bias": (D,),
            }
        )
        for j in range(len(blocks) + 1):
            shapes[f"{prefix}.residual_connections.{j}.norm.alpha"] = norm
            shapes[f"{prefix}.residual_connections.{j}.norm.bias"] = norm

    for i in range(N):
        layer(f"encoder.layers.{i}", ["self_attention_block"])
    shapes.update({"encoder.norm.alpha": norm, "encoder.norm.bias": norm})
    for i in range(N):
        layer(f"decoder.layers.{i}", ["self_attention_block", cross_name])
    shapes.update(
        {
            "decoder.norm.alpha": norm,
            "decoder.norm.bias": norm,
            "src_embed.embedding.weight": (V_SRC, D),
            "tgt_embed.embedding.weight": (V_TGT, D),
            "src_pos.pe": (1, S, D),
            "tgt_pos.pe": (1, S, D),
            "projection_layer.proj.weight": (V_TGT, D),
            "projection_layer.proj.bias": (V_TGT,),
        }
    )
    return shapes


def tutorial_state_dict(seed: int = 0, **layout) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in tutorial_shapes(**layout).items():
        if key.endswith(".pe"):
            state[key] = sinusoid(S, D)
        elif key.endswith("norm.alpha"):
            state[key] = 1 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[key] = torch.randn(shape, generator=gen) / math.sqrt(shape[-1])
    return state


def write_tokenizers(folder, src_size: int = V_SRC, tgt_size: int = V_TGT) -> None:
    """tokenizer_en.json / tokenizer_it.json with exactly src_size / tgt_size tokens (4 of them special)."""
    folder.mkdir(parents=True, exist_ok=True)
    for lang, size in (("en", src_size), ("it", tgt_size)):
        words = [f"{lang}{i}" for i in range(size - 4)]
        tokenizer = build_tokenizer([" ".join(words)], min_frequency=1)
        assert tokenizer.get_vocab_size() == size
        tokenizer.save(str(folder / f"tokenizer_{lang}.json"))


def write_tutorial_checkpoint(path, state: dict, wrapped: bool = True) -> None:
    """torch.save the way the tutorial's train loop does (or a bare state dict, as its oldest revisions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    optimizer = {
        "state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(D, D), "exp_avg_sq": torch.zeros(D, D)}},
        "param_groups": [
            {
                "lr": 1e-4,
                "betas": (0.9, 0.999),
                "eps": 1e-9,
                "weight_decay": 0,
                "amsgrad": False,
                "maximize": False,
                "foreach": None,
                "params": list(range(68)),
            }
        ],
    }
    payload = {"epoch": 0, "model_state_dict": state, "optimizer_state_dict": optimizer, "global_step": 5}
    torch.save(payload if wrapped else state, path)


def test_spec_table_is_reproduced():
    shapes = tutorial_shapes()
    assert len(shapes) == 70
    params = sum(math.prod(s) for k, s in shapes.items() if not k.endswith(".pe"))
    assert params == 188_024
    assert len(tutorial_shapes(attention_bias=True)) == 94


def test_tutorial_checkpoint_loads_and_translates(tmp_path):
    state = tutorial_state_dict()
    write_tokenizers(tmp_path)
    write_tutorial_checkpoint(tmp_path / "tmodel_00.pt", state)
    bundle = load_checkpoint(tmp_path / "tmodel_00.pt", heads=4)
    assert bundle.kind == "tutorial" and bundle.notes == ()
    assert bundle.metadata == {"epoch": 0, "global_step": 5}
    c = bundle.config
    assert (c.d_model, c.n_layers, c.n_heads, c.d_ff, c.seq_len) == (D, N, H, F, S)
    assert (c.src_vocab_size, c.tgt_vocab_size, c.attention_bias) == (V_SRC, V_TGT, False)
    loaded = bundle.model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    result = translate(bundle, "en1 en2 en3 en7", max_len=6)
    assert result.source_tokens == ["[SOS]", "en1", "en2", "en3", "en7", "[EOS]"]
    assert result.attention.encoder.shape == (N, H, 6, 6)
    assert result.attention.cross.shape == (N, H, len(result.target_tokens), 6)


def test_tutorial_checkpoint_in_subfolder_finds_tokenizers_one_level_up(tmp_path):
    write_tokenizers(tmp_path)
    write_tutorial_checkpoint(tmp_path / "opus_books_weights" / "tmodel_00.pt", tutorial_state_dict())
    bundle = load_checkpoint(tmp_path / "opus_books_weights" / "tmodel_00.pt", heads=4)
    assert translate(bundle, "en5 en6", max_len=4).source_tokens == ["[SOS]", "en5", "en6", "[EOS]"]


def test_tutorial_heads_default_to_eight_with_a_note(tmp_path):
    write_tokenizers(tmp_path)
    write_tutorial_checkpoint(tmp_path / "tmodel_00.pt", tutorial_state_dict())
    bundle = load_checkpoint(tmp_path / "tmodel_00.pt")
    assert bundle.config.n_heads == 8
    assert any("assumed 8" in note for note in bundle.notes)


def test_tutorial_tokenizers_can_be_given_explicitly(tmp_path):
    write_tokenizers(tmp_path / "tok")
    write_tutorial_checkpoint(tmp_path / "w" / "deep" / "tmodel_03.pt", tutorial_state_dict())
    bundle = load_checkpoint(
        tmp_path / "w" / "deep" / "tmodel_03.pt",
        tmp_path / "tok" / "tokenizer_en.json",
        (tmp_path / "tok" / "tokenizer_it.json").read_text(),
        heads=4,
    )
    assert bundle.config.tgt_vocab_size == V_TGT


def logits_of(bundle, src_len: int = 5, tgt_len: int = 4) -> torch.Tensor:
    src = torch.arange(4, 4 + src_len)[None]
    tgt = torch.arange(5, 5 + tgt_len)[None]
    with torch.no_grad():
        return bundle.model(src, tgt, None, causal_mask(tgt_len))


@pytest.mark.parametrize(
    "layout",
    [
        {"scalar_norms": True},
        {"scalar_norms": True, "attention_bias": True},
        {"scalar_norms": True, "attention_bias": True, "cross_name": "source_attention_block"},
    ],
)
def test_older_tutorial_layouts_load(tmp_path, layout):
    write_tokenizers(tmp_path)
    state = tutorial_state_dict(**layout)
    write_tutorial_checkpoint(tmp_path / "tmodel_00.pt", state, wrapped=False)
    bundle = load_checkpoint(tmp_path / "tmodel_00.pt", heads=4)
    assert bundle.config.attention_bias == layout.get("attention_bias", False)
    # A (1,) norm gain/bias is the same function as that scalar repeated over d_model.
    loaded = bundle.model.state_dict()
    assert torch.equal(loaded["encoder.norm.alpha"], state["encoder.norm.alpha"].expand(D))
    cross = layout.get("cross_name", "cross_attention_block")
    assert torch.equal(
        loaded["decoder.layers.1.cross_attention_block.w_k.weight"], state[f"decoder.layers.1.{cross}.w_k.weight"]
    )
    assert torch.isfinite(logits_of(bundle)).all()
    translate(bundle, "en1 en2", max_len=4)


def test_round_trip_gives_identical_logits(tiny_bundle, tiny_model):
    assert tiny_bundle.kind == "native" and tiny_bundle.metadata == {"note": "test"}
    assert tiny_bundle.config == tiny_model.config
    with torch.no_grad():
        expected = tiny_model(torch.arange(4, 9)[None], torch.arange(5, 9)[None], None, causal_mask(4))
    assert torch.equal(logits_of(tiny_bundle), expected)


def test_half_checkpoint_loads_as_float32(tmp_path, tiny_model, src_tokenizer, tgt_tokenizer, tiny_bundle):
    save_checkpoint(tmp_path / "half.pt", tiny_model, src_tokenizer, tgt_tokenizer, half=True)
    full_size = (tmp_path / "half.pt").stat().st_size
    save_checkpoint(tmp_path / "full.pt", tiny_model, src_tokenizer, tgt_tokenizer)
    assert full_size < (tmp_path / "full.pt").stat().st_size
    half = load_checkpoint(tmp_path / "half.pt")
    assert all(p.dtype == torch.float32 for p in half.model.parameters())
    assert torch.allclose(logits_of(half), logits_of(tiny_bundle), atol=2e-2)


def test_loads_from_bytes_and_file_objects(tiny_checkpoint, tiny_bundle):
    data = tiny_checkpoint.read_bytes()
    assert torch.equal(logits_of(load_checkpoint(data)), logits_of(tiny_bundle))
    assert torch.equal(logits_of(load_checkpoint(io.BytesIO(data))), logits_of(tiny_bundle))


def test_native_heads_must_match(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="records 4 heads"):
        load_checkpoint(tiny_checkpoint, heads=2)


def native_payload(tiny_checkpoint) -> dict:
    return torch.load(tiny_checkpoint, weights_only=True)


def test_bad_files_each_give_a_clear_error(tmp_path, tiny_checkpoint):
    def error_for(data: bytes) -> str:
        path = tmp_path / "bad.pt"
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        return str(info.value)

    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    assert "empty file" in error_for(b"")
    assert "not a checkpoint" in error_for(b"epoch: 3\nweights: lots\n")
    assert "not a checkpoint" in error_for(random.Random(0).randbytes(4096))
    data = tiny_checkpoint.read_bytes()
    assert "truncated" in error_for(data[: len(data) // 2])
    buffer = io.BytesIO()
    torch.save({"learning_rate": 0.1, "notes": "hello"}, buffer)
    message = error_for(buffer.getvalue())
    assert "not a checkpoint" in message and "learning_rate" in message


def save_modified(tmp_path, tiny_checkpoint, change) -> str:
    payload = native_payload(tiny_checkpoint)
    change(payload)
    torch.save(payload, tmp_path / "modified.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "modified.pt")
    return str(info.value)


def test_unknown_keys(tmp_path, tiny_checkpoint):
    message = save_modified(
        tmp_path, tiny_checkpoint, lambda p: p["model_state_dict"].update({"extra.weight": torch.zeros(2)})
    )
    assert "unknown keys" in message and "extra.weight" in message


def test_missing_keys(tmp_path, tiny_checkpoint):
    message = save_modified(tmp_path, tiny_checkpoint, lambda p: p["model_state_dict"].pop("decoder.norm.bias"))
    assert "missing keys" in message and "decoder.norm.bias" in message


def test_shape_mismatch_names_the_key(tmp_path, tiny_checkpoint):
    key = "encoder.layers.1.feed_forward_block.linear_1.weight"
    message = save_modified(tmp_path, tiny_checkpoint, lambda p: p["model_state_dict"].update({key: torch.zeros(3, 3)}))
    assert "shape mismatch" in message and key in message


@pytest.mark.parametrize(("dtype", "bad"), [(torch.float32, float("nan")), (torch.float16, float("inf"))])
def test_nan_weights(tmp_path, tiny_checkpoint, dtype, bad):
    """16-bit files (what export writes) are checked in 32 bits: a value must still be caught."""

    def poison(payload):
        weights = payload["model_state_dict"]
        key = "decoder.layers.0.self_attention_block.w_q.weight"
        weights[key] = weights[key].to(dtype)
        weights[key][0, 0] = bad

    message = save_modified(tmp_path, tiny_checkpoint, poison)
    assert "NaN" in message and "decoder.layers.0.self_attention_block.w_q.weight" in message


def test_bad_config_in_checkpoint(tmp_path, tiny_checkpoint):
    message = save_modified(tmp_path, tiny_checkpoint, lambda p: p["model_config"].update({"n_heads": 5}))
    assert "divisible" in message


def test_vocab_size_must_match_tokenizer(tmp_path, tiny_checkpoint):
    other = build_tokenizer(["only a few words here"], min_frequency=1)
    with pytest.raises(CheckpointError, match="vocabulary size mismatch.*source"):
        load_checkpoint(tiny_checkpoint, src_tokenizer=other)
    write_tokenizers(tmp_path, src_size=V_SRC + 1)
    write_tutorial_checkpoint(tmp_path / "tmodel_00.pt", tutorial_state_dict())
    with pytest.raises(CheckpointError, match="vocabulary size mismatch.*101 tokens"):
        load_checkpoint(tmp_path / "tmodel_00.pt", heads=4)


def test_tutorial_checkpoint_without_tokenizers(tmp_path):
    write_tutorial_checkpoint(tmp_path / "a" / "b" / "tmodel_00.pt", tutorial_state_dict())
    with pytest.raises(CheckpointError, match="missing tokenizer.*tokenizer_en.json"):
        load_checkpoint(tmp_path / "a" / "b" / "tmodel_00.pt", heads=4)


class Payload:
    """Unpickling this creates a marker file: stands for any code an attacker could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle", "pickle-protocol-2"])
@pytest.mark.parametrize("force_unsafe_env", [False, True])
def test_code_in_pickle_is_refused(tmp_path, monkeypatch, how, force_unsafe_env):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"model_state_dict": {"w": torch.zeros(1)}, "extra": Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(Payload(marker), protocol=2 if how.endswith("2") else None))
    pickle.loads(pickle.dumps(Payload(marker))).close()  # the payload is live: an unsafe load runs it
    assert marker.exists()
    marker.unlink()
    if force_unsafe_env:  # flips torch.load's default to unsafe where weights_only is not passed
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_refused_pickle_gives_one_message_without_torchs_own_warning(tmp_path, recwarn):
    """torch warns about a pickle protocol it does not default to before its safe loader fails; the user gets
    only the CheckpointError's line (on the command line the warning printed two lines and a file path)."""
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Payload(tmp_path / "pwned"), protocol=4))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert [str(w.message) for w in recwarn] == []
    assert not (tmp_path / "pwned").exists()
