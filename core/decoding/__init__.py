"""Decoding: one sentence (translate) or many at once (greedy_batch, beam_batch), through the model seam.

- sentence.py: translate(), the one entry point of the app, the command line and the analyses;
- options.py: DecodeOptions, what a call may choose (max_len, beam, prefix, heads off, ...);
- greedy.py: greedy decoding over a key/value cache, batched greedy decoding, the teacher-forced pass;
- beam.py: beam search and its tree, batched beam search;
- inputs.py: a sentence or reference as checked token ids, a forced prefix as ids;
- unknown.py: a generated unknown token written as the source word it attended to;
- result.py: Translation and Hypothesis.
"""

from core.decoding.beam import BeamNode, BeamPath, beam_batch, beam_search, length_penalty_factor
from core.decoding.greedy import greedy_batch, greedy_decode, sequence_log_prob, teacher_forced
from core.decoding.inputs import encode_checked, prefix_ids
from core.decoding.options import TOP_K, DecodeOptions, check_beam_options
from core.decoding.result import Hypothesis, Translation
from core.decoding.sentence import translate
from core.decoding.unknown import copied_text, copy_sources, copy_unknown_words

__all__ = [
    "TOP_K",
    "BeamNode",
    "BeamPath",
    "DecodeOptions",
    "Hypothesis",
    "Translation",
    "beam_batch",
    "beam_search",
    "check_beam_options",
    "copied_text",
    "copy_sources",
    "copy_unknown_words",
    "encode_checked",
    "greedy_batch",
    "greedy_decode",
    "length_penalty_factor",
    "prefix_ids",
    "sequence_log_prob",
    "teacher_forced",
    "translate",
]
