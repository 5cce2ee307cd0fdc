"""Word alignments for a parallel corpus from a statistical aligner: eflomal (Östling and Tiedemann, 2016) run
in both directions, symmetrised with grow-diag-final-and (Koehn et al., 2003). They feed guided alignment
training (`python -m core train --alignments`); the command is `python -m core align-corpus`.

Words are what single spaces separate in each side's text (XL-WA's convention, and what Pharaoh indexes
mean everywhere in this project). eflomal reads finer, lowercased pieces, each word's runs of letters and
digits and of other marks (as the word-level tokenizer splits them: `you.` is `you` and `.`), so that a word
with punctuation attached shares its statistics with the bare word; a link between two pieces links their
words.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from core.analysis.alignment import parse_links

Links = frozenset[tuple[int, int]]

PIECE = re.compile(r"\w+|[^\w\s]+")
NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))  # grow-diag: with diagonals


def grow_diag_final_and(forward: Links, backward: Links) -> Links:
    """Symmetrise two directional alignments, each a set of (source word, target word) links.

    Start from their intersection. Grow-diag: while anything changes, visit the links in (source, target)
    order and add each of a link's 8 neighbours (left, right, up, down and the diagonals) that is in the union
    and whose source word or target word is not aligned yet. Final-and: then, for the forward and then the
    backward alignment, add each of its links whose source word and target word are both still unaligned.
    """
    union = forward | backward
    alignment = set(forward & backward)
    aligned_source, aligned_target = {i for i, _ in alignment}, {j for _, j in alignment}
    n_source = 1 + max((i for i, _ in union), default=-1)
    n_target = 1 + max((j for _, j in union), default=-1)

    def add(i: int, j: int) -> None:
        alignment.add((i, j))
        aligned_source.add(i)
        aligned_target.add(j)

    grown = True
    while grown:
        grown = False
        for i in range(n_source):
            for j in range(n_target):
                if (i, j) not in alignment:
                    continue
                for di, dj in NEIGHBOURS:
                    new = (i + di, j + dj)
                    if new in union and new not in alignment:
                        if new[0] not in aligned_source or new[1] not in aligned_target:
                            add(*new)
                            grown = True
    for directional in (forward, backward):
        for i, j in sorted(directional):
            if i not in aligned_source and j not in aligned_target:
                add(i, j)
    return frozenset(alignment)


def pieces(text: str) -> tuple[list[str], list[int]]:
    """The lowercased pieces eflomal reads for one side, and for each the index of its space-separated word."""
    out, word_of = [], []
    for index, word in enumerate(text.split(" ")):
        for piece in PIECE.findall(word.lower()):
            out.append(piece)
            word_of.append(index)
    return out, word_of


def align_corpus(pairs: Sequence[tuple[str, str]], samplers: int = 2, quiet: bool = True) -> list[Links]:
    """(source word, target word) links for each pair: eflomal both ways, grow-diag-final-and, pieces to words.

    Needs the eflomal package (`pip install eflomal`); its sampler is random, so two runs differ slightly.
    """
    try:
        import eflomal
    except ImportError:
        raise RuntimeError(
            "aligning a corpus needs eflomal: pip install eflomal (it builds from source, about a minute)"
        ) from None
    sources = [pieces(source) for source, _ in pairs]  # (pieces, word of each piece) per pair
    targets = [pieces(target) for _, target in pairs]
    with tempfile.TemporaryDirectory() as folder:
        forward_file, backward_file = Path(folder) / "forward", Path(folder) / "backward"
        aligner = eflomal.Aligner(n_samplers=samplers)
        aligner.align(
            [" ".join(source_pieces) + "\n" for source_pieces, _ in sources],
            [" ".join(target_pieces) + "\n" for target_pieces, _ in targets],
            links_filename_fwd=str(forward_file),
            links_filename_rev=str(backward_file),
            quiet=quiet,
        )
        forward = forward_file.read_text(encoding="utf-8").splitlines()
        backward = backward_file.read_text(encoding="utf-8").splitlines()
    if len(forward) != len(pairs) or len(backward) != len(pairs):
        raise RuntimeError(f"eflomal wrote {len(forward)} and {len(backward)} lines for {len(pairs)} pairs")
    result = []
    for fwd, bwd, (_, source_word), (_, target_word) in zip(forward, backward, sources, targets):
        links = grow_diag_final_and(parse_links(fwd), parse_links(bwd))
        result.append(frozenset((source_word[i], target_word[j]) for i, j in links))
    return result
