"""Names a package exports but imports on first use (PEP 562), so importing the package stays
light: `import sam3_core` needs no torch, `import sam3_core.metrics` no scipy."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of module `package` for `names` (exported name -> module
    that defines it): the first access imports that module and keeps the value on `package`.

    Use in a package's `__init__.py`: `__getattr__, __dir__ = lazy_exports(__name__, {...})`.
    """
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        """Import `name` from its module on first use (later reads find it on the package)."""
        source = names.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        """The package's loaded names and the ones not imported yet."""
        return sorted(set(vars(module)) | set(names))

    return __getattr__, __dir__
