"""The public API reads as documented: every class has a docstring, every function says what it returns.

Covers core/model.py and the names core/__init__.py exports (with their methods and properties).
"""

from __future__ import annotations

import inspect

import pytest

import core
import core.model


def _classes() -> list[type]:
    defined = [obj for obj in vars(core.model).values() if inspect.isclass(obj) and obj.__module__ == "core.model"]
    exported = [getattr(core, name) for name in core.__all__ if inspect.isclass(getattr(core, name))]
    return sorted(set(defined + exported), key=lambda c: c.__qualname__)


def _functions() -> list:
    functions = [f for f in vars(core.model).values() if inspect.isfunction(f) and f.__module__ == "core.model"]
    functions += [getattr(core, name) for name in core.__all__ if inspect.isfunction(getattr(core, name))]
    for cls in _classes():
        for name, member in vars(cls).items():
            if isinstance(member, property):
                member = member.fget
            if isinstance(member, (classmethod, staticmethod)):
                member = member.__func__
            written_here = inspect.isfunction(member) and member.__code__.co_filename == inspect.getfile(cls)
            if written_here and (not name.startswith("__") or name in ("__init__", "__post_init__")):
                functions.append(member)
    return functions


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__qualname__)
def test_every_class_has_its_own_docstring(cls):
    assert (cls.__dict__.get("__doc__") or "").strip(), f"{cls.__qualname__} has no docstring"


@pytest.mark.parametrize("function", _functions(), ids=lambda f: f.__qualname__)
def test_every_function_and_method_has_a_return_annotation(function):
    assert "return" in function.__annotations__, f"{function.__qualname__} has no return type hint"
