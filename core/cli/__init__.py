"""The command-line entry points, one module per command: `python -m core <command> --help`."""

COMMANDS = {
    "translate": "translate sentences, optionally as JSON with every attention map",
    "evaluate": "score a checkpoint on a test file (BLEU, chrF, CER, WER)",
    "train": "train a model (resumable; runs under torchrun too)",
    "export": "make a small weights-only file to ship, optionally averaging checkpoints",
    "alignment": "score cross-attention heads against gold word alignments",
    "heads": "what each head does and which ones matter (statistics, ablation, gradient score, pruning)",
}
