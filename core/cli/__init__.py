"""The command-line entry points, one module per command: `python -m core <command> --help`.

A command's module is its name with dashes as underscores (align-corpus: core/cli/align_corpus.py).
"""

COMMANDS = {
    "translate": "translate sentences, optionally as JSON with every attention map",
    "evaluate": "score a checkpoint on a test file (BLEU, chrF, CER, WER)",
    "train": "train a model (resumable; runs under torchrun too)",
    "export": "make a small weights-only file to ship, optionally averaging checkpoints",
    "alignment": "score cross-attention heads against gold word alignments",
    "align-corpus": "word-align training pairs with eflomal (links for train --alignments)",
    "timeline": "follow one sentence through every checkpoint of a training run",
    "compare": "compare two models head by head (Jensen-Shannon divergence of their maps)",
    "heads": "what each head does and which ones matter (statistics, ablation, gradient score, pruning)",
    "attribution-eval": "score the attribution methods (AER, deletion, soft sufficiency and comprehensiveness)",
}
