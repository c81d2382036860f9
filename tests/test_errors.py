"""Every exception the project defines derives from `EscalatorError` (issue #21 item 7), so a
caller catches all of Escalator's own errors with one `except` and tells them from bugs."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

from base.errors import EscalatorError

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("base", "events", "streams", "projections", "deploy")


def _project_exceptions() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for package in PACKAGES:
        for info in pkgutil.walk_packages([str(REPO / package)], prefix=f"{package}."):
            module = importlib.import_module(info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__ == info.name:
                    found.append(value)
    return found


def test_every_project_exception_is_an_escalator_error() -> None:
    found = _project_exceptions()
    assert len(found) >= 10, found  # the walk really reached the modules
    strays = [
        f"{e.__module__}.{e.__qualname__}" for e in found if not issubclass(e, EscalatorError)
    ]
    assert not strays
