"""Mutation testing of the analyses and the beam search: mutmut over core/analysis/ and core/decoding/beam.py.

    python bench/mutation.py [--workdir /tmp/mutation] [--max-children 1] [--tests tests/test_beam.py ...]
    python bench/mutation.py --workdir /tmp/mutation --report      # the figures and survivors of a finished run

Not a benchmark, and not part of CI (it takes hours on one CPU core; docs/contributing.md has the figures): it
copies this working tree (tracked and new files, not ignored ones) into --workdir, and mutmut makes small changes
to the code under test (an operator, a constant, a comparison, a call's argument), one at a time, and runs the
tests that reach the changed function. A mutant no test notices ("survived") is a change the tests would let
through. Before mutmut sees the copy, each function decorated with @torch.inference_mode() has its body moved into
`with torch.inference_mode():`, the same thing, since mutmut leaves decorated functions alone (the beam search,
the ablation sweep and the deletion drops are such functions). Then it prints how many mutants were killed, how
many survived (each with its diff) and how long the run took, and writes the same to --workdir/report.txt.

mutmut (pip install mutmut; 3.x) times each test's call, not its fixtures, and stops a mutant's run past a few
times that (plus a constant; see configure): the models the tests train (the digit reverser, the carrier model) are kept in
--workdir/test_cache ($ATTN_TEST_CACHE, tests/app_fixtures.py) so they are trained once, not in every run.
After adding tests, `--resume` copies this tree's tests/ into --workdir again and runs there every mutant not
yet killed (survived, timed out, without tests or not yet run); `--mutant NAME...` runs only those (names as the
report shows them; shell-style wildcards work).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTATE = ["core/analysis/*", "core/decoding/beam.py"]
# the tests of those modules (AppTest pages, the browser and the shipped model's tests left out: slow, and they
# reach the same functions through these)
TESTS = [
    "tests/test_relevance.py",
    "tests/test_head_stats.py",
    "tests/test_importance.py",
    "tests/test_head_report.py",
    "tests/test_heads_cli.py",
    "tests/test_divergence.py",
    "tests/test_comparison.py",
    "tests/test_alignment.py",
    "tests/test_guided_alignment.py",
    "tests/test_head_count.py",
    "tests/test_runs.py",
    "tests/test_beam.py",
    "tests/test_head_mask.py",
    "tests/test_marian.py",
]


def copy_tree(workdir: Path) -> None:
    """This working tree's tracked and new (not ignored) files, as they are on disk, into workdir."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (workdir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, workdir / name)


def unwrap_inference_mode(path: Path) -> int:
    """Rewrite each `@torch.inference_mode()` function of the file as the same function with its body (after the
    docstring) inside `with torch.inference_mode():`, so mutmut mutates it. Returns how many were rewritten."""
    import libcst as cst  # installed with mutmut

    def is_inference_mode(decorator: cst.Decorator) -> bool:
        return cst.Module([]).code_for_node(decorator.decorator) == "torch.inference_mode()"

    class Unwrap(cst.CSTTransformer):
        count = 0

        def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
            kept = [d for d in updated.decorators if not is_inference_mode(d)]
            if len(kept) == len(updated.decorators):
                return updated
            statements = list(updated.body.body)
            docstring = []
            if statements and isinstance(statements[0], cst.SimpleStatementLine):
                first = statements[0].body[0]
                if isinstance(first, cst.Expr) and isinstance(first.value, cst.SimpleString):
                    docstring, statements = statements[:1], statements[1:]
            block = cst.With(
                items=[cst.WithItem(cst.parse_expression("torch.inference_mode()"))],
                body=cst.IndentedBlock(body=statements),
            )
            Unwrap.count += 1
            return updated.with_changes(decorators=kept, body=updated.body.with_changes(body=[*docstring, block]))

    module = cst.parse_module(path.read_text(encoding="utf-8"))
    path.write_text(module.visit(Unwrap()).code, encoding="utf-8")
    return Unwrap.count


def configure(workdir: Path, mutate: list[str], tests: list[str]) -> None:
    """mutmut's settings: this tree's pyproject.toml with a [tool.mutmut] table, in the copy."""
    config = {
        "source_paths": ["core"],
        "only_mutate": mutate,
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q"],
        "also_copy": ["checkpoints"],  # the shipped model, for the head-count tests
        # a mutant's run stops after (tests' own CPU seconds + 5) x 2 x 2: fixtures and loading a cached model fit
        # in the 5, and a mutant that loops forever (a beam search that never ends) costs minutes, not half an hour
        "timeout_constant": 5.0,
        "timeout_multiplier": 2.0,
    }
    lines = ["", "[tool.mutmut]", *(f"{key} = {json.dumps(value)}" for key, value in config.items())]
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (workdir / "pyproject.toml").write_text(text + "\n".join(lines) + "\n", encoding="utf-8")


def mutmut(workdir: Path, *args: str, capture: bool = False) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATTN_TEST_CACHE": str(workdir / "test_cache")}
    env.pop("PYTHONPATH", None)  # mutmut puts its mutated copy first on the path and must not find the original
    run = subprocess.run(
        [sys.executable, "-m", "mutmut", *args], cwd=workdir, env=env, text=True, capture_output=capture, check=False
    )
    return run.stdout if capture else ""


def not_killed(workdir: Path) -> list[str]:
    """Every mutant of the run in workdir whose last result is not a kill (mutmut's exit codes 1 and 3)."""
    names = []
    for meta in sorted((workdir / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        names += [name for name, code in codes.items() if code not in (1, 3)]
    return names


def report(workdir: Path, seconds: float | None) -> str:
    """Counts by status and every surviving mutant's diff."""
    statuses: dict[str, list[str]] = {}
    for line in mutmut(workdir, "results", "--all", "true", capture=True).splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses.setdefault(status, []).append(name)
    total = sum(map(len, statuses.values()))
    lines = [f"mutants: {total}; " + ", ".join(f"{status} {len(names)}" for status, names in sorted(statuses.items()))]
    if seconds is not None:
        lines.append(f"run time: {seconds / 60:.0f} min")
    for status in ("survived", "timeout", "suspicious", "no tests"):
        for name in statuses.get(status, []):
            lines.append(mutmut(workdir, "show", name, capture=True).rstrip())
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mutation"), help="a new folder (or --report's)")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--mutate", nargs="+", default=MUTATE, help="files to mutate (globs under the root)")
    parser.add_argument("--tests", nargs="+", default=TESTS, help="test files mutmut may run")
    parser.add_argument("--report", action="store_true", help="only print the report of the run in --workdir")
    parser.add_argument("--resume", action="store_true", help="copy tests/ into --workdir again, rerun what survived")
    parser.add_argument("--mutant", nargs="+", default=[], help="with --resume: run only these mutants")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    if args.report:
        print(report(workdir, None), end="")
        return
    if args.resume:
        if not (workdir / "mutants").is_dir():
            raise SystemExit(f"no mutmut run in {workdir}")
        shutil.rmtree(workdir / "tests")
        shutil.copytree(ROOT / "tests", workdir / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        if workdir.exists() and any(workdir.iterdir()):
            raise SystemExit(f"{workdir} is not empty: give a new --workdir, --resume, or --report")
        workdir.mkdir(parents=True, exist_ok=True)
        copy_tree(workdir)
        unwrapped = sum(unwrap_inference_mode(p) for pattern in args.mutate for p in sorted(workdir.glob(pattern)))
        print(f"copied to {workdir}; {unwrapped} @torch.inference_mode() functions unwrapped for mutmut", flush=True)
    configure(workdir, args.mutate, args.tests)
    names = args.mutant or (not_killed(workdir) if args.resume else [])
    if args.resume and not names:
        raise SystemExit("every mutant is killed already")
    start = time.monotonic()
    mutmut(workdir, "run", "--max-children", str(args.max_children), *names)
    text = report(workdir, time.monotonic() - start)
    (workdir / "report.txt").write_text(text, encoding="utf-8")
    print(text, end="")


if __name__ == "__main__":
    main()
