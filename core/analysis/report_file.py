"""A head report saved as a file: the analysis of one model file on one file of sentence pairs, so the Heads page
opens at once on the model and sample that ship with the app (checkpoints/heads_report.json).

The file is JSON: a format version, the SHA-256 of the model file and of the pairs file it was computed from,
the pruning step, and `HeadReport.to_json()` (the `python -m core heads --json` schema). `load_report` reads it
back only when both hashes match, checking every key and shape against the model's layers x heads, and raises
ReportFileError saying why otherwise, so a caller can compute the report instead. Written by
`python -m core heads --save-report` (core/cli/heads.py).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from core.analysis.head_report import HeadReport
from core.analysis.head_roles import MIXED, ROLES, HeadRole
from core.analysis.importance import pruning_counts
from core.attention import KIND, KINDS

FORMAT = 1
PAGE_PRUNING_STEP = 16  # heads switched off per point of the Heads page's curve (each point re-translates the set)
MAX_BYTES = 1 << 20  # a report of a 6 x 8 model is about 50 KB: anything far larger is not one
TOP_KEYS = {"format", "model_sha256", "data_sha256", "pruning_step", "regenerate", "report"}
REPORT_KEYS = {
    "sentences",
    "tokens",
    "base_logprob",
    "kinds",
    "spearman",
    "pruning_curve",
    "pruning_curve_encoder",
    "pruning_order",
    "roles",
    "role_evidence",
    "role_thresholds",
}
EVIDENCE_KEYS = {"cites", "statistic", "value", "uniform", "score", "threshold", "text"}
IMPORTANCE = ("ablation_delta_logprob", "gradient_importance")


class ReportFileError(ValueError):
    """A report file that cannot be used for this model and data: the message says why, in one line."""


class OtherFiles(ReportFileError):
    """A sound report file of another model or pairs file (nothing wrong with it)."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_report(path: str | Path, report: HeadReport, model_sha256: str, data_sha256: str, regenerate: str) -> None:
    """Write the report of the Heads page's settings (pruning step PAGE_PRUNING_STEP) with the hashes it belongs to;
    regenerate: the command that wrote it, for whoever reads the file."""
    document = {
        "format": FORMAT,
        "model_sha256": model_sha256,
        "data_sha256": data_sha256,
        "pruning_step": PAGE_PRUNING_STEP,
        "regenerate": regenerate,
        "report": report.to_json(),
    }
    Path(path).write_text(_dumps(document) + "\n", encoding="utf-8")


def _dumps(value: object, indent: str = "") -> str:
    """JSON with one line per list of plain values (a layer's heads), so a regenerated file diffs by layer."""
    inner = indent + " "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(key)}: {_dumps(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        return "[\n" + ",\n".join(inner + _dumps(item, inner) for item in value) + "\n" + indent + "]"
    return json.dumps(value)


def load_report(path: str | Path, model_sha256: str, data_sha256: str, n_layers: int, n_heads: int) -> HeadReport:
    """The saved report of this model file and pairs file (by their SHA-256), checked against an n_layers x
    n_heads model; ReportFileError saying why it cannot be used."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ReportFileError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ReportFileError(f"{path.name} is larger than {MAX_BYTES} bytes: not a head report")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ReportFileError(f"{path.name} is not JSON: {str(exc).splitlines()[0]}") from None
    _check_header(document, model_sha256, data_sha256)
    return report_from_json(document["report"], n_layers, n_heads, PAGE_PRUNING_STEP)


def _check_header(document: object, model_sha256: str, data_sha256: str) -> None:
    _keys(document, TOP_KEYS, "the file")
    if document["format"] != FORMAT:
        raise ReportFileError(f"format {document['format']!r}; this version reads format {FORMAT}")
    if document["model_sha256"] != model_sha256:
        raise OtherFiles("computed for another model file (its SHA-256 differs)")
    if document["data_sha256"] != data_sha256:
        raise OtherFiles("computed on another file of sentence pairs (its SHA-256 differs)")
    if document["pruning_step"] != PAGE_PRUNING_STEP:
        raise ReportFileError(f"pruning step {document['pruning_step']!r}; the Heads page uses {PAGE_PRUNING_STEP}")


def report_from_json(data: object, n_layers: int, n_heads: int, pruning_step: int) -> HeadReport:
    """HeadReport.to_json()'s object back as a HeadReport, every key and shape checked (ReportFileError)."""
    _keys(data, REPORT_KEYS, "the report")
    sentences, tokens = data["sentences"], data["tokens"]
    if not _whole(sentences) or not _whole(tokens) or not 1 <= sentences <= tokens:
        raise ReportFileError(
            f"sentences {sentences!r} and tokens {tokens!r} are not counts (1 <= sentences <= tokens)"
        )
    base = _number(data["base_logprob"], "base_logprob", finite=True)
    thresholds = {name: role.threshold for name, role in ROLES.items()}
    if data["role_thresholds"] != thresholds:
        raise ReportFileError("its roles were named with other thresholds than this version's")
    shape = (n_layers, n_heads)
    measures = {kind: _measures(data["kinds"], kind, shape) for kind in _kinds(data["kinds"], "kinds")}
    curve = _curve(data["pruning_curve"], "pruning_curve")
    if [p["heads_off"] for p in curve] != pruning_counts(3 * n_layers * n_heads, pruning_step):
        raise ReportFileError(f"pruning_curve is not one point per {pruning_step} heads off")
    return HeadReport(
        sentences=sentences,
        tokens=tokens,
        base_logprob=base,
        measures=measures,
        spearman=_spearman(data["spearman"]),
        pruning_curve=curve,
        pruning_curve_encoder=_curve(data["pruning_curve_encoder"], "pruning_curve_encoder"),
        order=_order(data["pruning_order"], shape),
        roles={kind: _roles(data, kind, shape) for kind in _kinds(data["roles"], "roles")},
    )


def _keys(data: object, expected: set[str], what: str) -> None:
    if not isinstance(data, dict):
        raise ReportFileError(f"{what} is not a JSON object")
    missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
    if missing or extra:
        raise ReportFileError(f"{what} lacks {missing} or has unknown keys {extra}")


def _kinds(data: object, what: str) -> tuple[str, ...]:
    _keys(data, set(KINDS), what)
    return KINDS


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object, what: str, finite: bool = False) -> float:
    """A finite JSON number; where finite is False, None or NaN may stand for a statistic with no rows to average."""
    if value is None and not finite:
        return math.nan
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (math.isfinite(value) or (math.isnan(value) and not finite)):
        raise ReportFileError(f"{what} is {value!r}, not a {'finite ' if finite else ''}number")
    return float(value)


def _matrix(values: object, shape: tuple[int, int], what: str) -> list[list]:
    """An L x H nested list, checked."""
    if not isinstance(values, list) or len(values) != shape[0]:
        raise ReportFileError(f"{what} is not {shape[0]} layers x {shape[1]} heads")
    if any(not isinstance(row, list) or len(row) != shape[1] for row in values):
        raise ReportFileError(f"{what} is not {shape[0]} layers x {shape[1]} heads")
    return values


def _grid(values: object, shape: tuple[int, int], what: str, finite: bool) -> np.ndarray:
    """An L x H nested list of numbers as an (L, H) array."""
    return np.array([[_number(v, what, finite) for v in row] for row in _matrix(values, shape, what)])


def _measures(kinds: dict, kind: str, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    names = (*KIND[kind].statistics, *IMPORTANCE)
    _keys(kinds[kind], set(names), f"kinds.{kind}")
    return {name: _grid(kinds[kind][name], shape, f"kinds.{kind}.{name}", name in IMPORTANCE) for name in names}


def _spearman(data: object) -> dict[str, float]:
    _keys(data, {*KINDS, "all"}, "spearman")
    return {key: _number(data[key], f"spearman.{key}") for key in (*KINDS, "all")}


def _curve(points: object, what: str) -> list[dict]:
    if not isinstance(points, list):
        raise ReportFileError(f"{what} is not a list")
    curve = []
    for point in points:
        _keys(point, {"heads_off", "chrf", "bleu"}, f"a point of {what}")
        if not _whole(point["heads_off"]) or point["heads_off"] < 0:
            raise ReportFileError(f"{what}: heads_off {point['heads_off']!r} is not a count")
        metrics = {name: _number(point[name], f"{what}.{name}", finite=True) for name in ("chrf", "bleu")}
        curve.append({"heads_off": point["heads_off"], **metrics})
    return curve


def _order(order: object, shape: tuple[int, int]) -> list[tuple[str, int, int]]:
    """Every head of every kind exactly once, as (kind, 1-based layer, 1-based head)."""
    every = {(kind, layer + 1, head + 1) for kind in KINDS for layer, head in np.ndindex(shape)}
    plain = isinstance(order, list) and all(
        isinstance(h, list) and all(isinstance(x, str) or _whole(x) for x in h) for h in order
    )
    heads = [tuple(h) for h in order] if plain else None
    if heads is None or len(heads) != len(every) or set(heads) != every:
        raise ReportFileError(f"pruning_order is not each of the {len(every)} heads once")
    return heads


def _roles(data: dict, kind: str, shape: tuple[int, int]) -> list[list[HeadRole]]:
    _kinds(data["role_evidence"], "role_evidence")
    names = _matrix(data["roles"][kind], shape, f"roles.{kind}")
    evidence = _matrix(data["role_evidence"][kind], shape, f"role_evidence.{kind}")
    return [[_role(name, ev, kind) for name, ev in zip(*rows)] for rows in zip(names, evidence)]


def _role(name: object, evidence: object, kind: str) -> HeadRole:
    if name != MIXED and name not in KIND[kind].roles:
        raise ReportFileError(f"{name!r} is not a role a {kind} head can have")
    _keys(evidence, EVIDENCE_KEYS, f"the evidence of a {kind} head")
    cites = evidence["cites"]
    if cites not in KIND[kind].roles or (name != MIXED and cites != name):
        raise ReportFileError(f"a {name!r} {kind} head cites {cites!r}")
    if evidence["statistic"] != ROLES[cites].statistic or not isinstance(evidence["text"], str):
        raise ReportFileError(f"the evidence of a {name!r} {kind} head is not its role's statistic and text")
    value, uniform, score = (_number(evidence[key], f"evidence {key}") for key in ("value", "uniform", "score"))
    return HeadRole(name, cites, evidence["statistic"], value, uniform, score, evidence["text"])
