"""`sam3-labelstudio --help` answers before torch or the model load."""

from __future__ import annotations

from tests.core.helpers import loaded_after


def test_cli_help_needs_no_torch() -> None:
    code = (
        "import contextlib, io\n"
        "from sam3_labelstudio.cli import build_parser\n"
        "for command in ([], ['serve'], ['embed'], ['preannotate']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        build_parser().parse_args([*command, '--help'])"
    )
    assert loaded_after(code, ["torch", "sam3_labelstudio.cli"]) == {
        "torch": False,
        "sam3_labelstudio.cli": True,
    }
