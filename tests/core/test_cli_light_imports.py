"""`import sam3_core` and its configs need no torch (CLI `--help` answers at once); every public
name still loads on first use (`sam3_core.lazy`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import sam3_core
import sam3_core.metrics


def loaded_after(code: str, modules: list[str]) -> dict[str, bool]:
    """Run `code` in a fresh interpreter; which of `modules` it left in sys.modules."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m in sys.modules for m in {modules!r}]))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return dict(zip(modules, json.loads(out.splitlines()[-1]), strict=True))


def test_package_and_configs_import_without_torch() -> None:
    code = "import sam3_core, sam3_core.config\nsam3_core.get_config('sam3_tiny')"
    assert loaded_after(code, ["torch", "sam3_core.config"]) == {
        "torch": False,
        "sam3_core.config": True,
    }


def test_first_use_loads_the_name() -> None:
    """The probe can fail: touching a lazy name does import torch."""
    code = "import sam3_core\nsam3_core.ImagePredictor"
    assert loaded_after(code, ["torch", "sam3_core.predictor"]) == {
        "torch": True,
        "sam3_core.predictor": True,
    }


@pytest.mark.parametrize("package", [sam3_core, sam3_core.metrics])
def test_every_public_name_resolves_and_is_listed(package) -> None:
    listed = dir(package)
    for name in package.__all__:
        assert name in listed
        value = getattr(package, name)
        assert getattr(value, "__name__", name) == name  # the object itself, not its module
        assert name in vars(package)  # kept on the package after the first use


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'sam3_core' has no attribute 'Nope'"):
        sam3_core.Nope  # noqa: B018
    assert not hasattr(sam3_core.metrics, "nope")
