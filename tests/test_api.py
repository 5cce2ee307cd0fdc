"""The public API: `from core import translate` is the function whatever was imported before it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDERS = {
    "function first": "from core import translate\nimport core.cli.translate\nfrom core import translate as again",
    "command first": "import core.cli.translate\nfrom core import translate\nfrom core import translate as again",
    "attribute after the command": "import core.cli.translate\nimport core\ntranslate = core.translate\n"
    "from core.decoding import translate as again",
}


@pytest.mark.parametrize("order", ORDERS)
def test_core_translate_is_always_the_function(order):
    code = (
        ORDERS[order] + "\nimport types\nassert isinstance(translate, types.FunctionType), translate\n"
        "assert translate is again\nprint(translate.__module__)"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "core.decoding.sentence"  # the decoding package's translate(), not a command


def test_python_m_core_lists_its_commands_and_refuses_unknown_ones():
    from core.__main__ import main

    assert main(["--help"]) == 0
    assert main(["nonsense"]) == 2
    assert main([]) == 2
