"""Names of a package loaded from their sub-modules on first use (PEP 562), so that importing one sub-module
does not import them all (``semcom --help`` imports neither torch nor Sionna)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module


def lazy_exports(module: str, exports: Mapping[str, str],
                 names: Sequence[str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of package ``module`` whose public ``names`` live in the sub-modules
    ``exports`` maps them to; a name is imported once, then cached in the package's namespace."""

    def getattr_(name: str):
        if name not in exports:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(import_module(exports[name]), name)
        setattr(sys.modules[module], name, value)
        return value

    def dir_() -> list[str]:
        return sorted(set(vars(sys.modules[module])) | set(names))

    return getattr_, dir_
