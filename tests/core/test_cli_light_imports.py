"""`import sam3_core` and its configs need no torch (CLI `--help` answers at once); every public
name still loads on first use (`sam3_core.lazy`)."""

from __future__ import annotations

import pytest

import sam3_core
import sam3_core.metrics
from tests.core.helpers import loaded_after


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


def test_cli_help_needs_no_torch() -> None:
    """`sam3 <command> --help` and usage errors answer before any model code loads."""
    code = (
        "import contextlib, io\n"
        "from sam3_core.cli import build_parser\n"
        "for command in ('segment', 'embed', 'track', 'eval'):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        build_parser().parse_args([command, '--help'])"
    )
    assert loaded_after(code, ["torch", "sam3_core.cli.segment"]) == {
        "torch": False,
        "sam3_core.cli.segment": True,
    }
