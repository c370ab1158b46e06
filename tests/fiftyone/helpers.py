"""Helpers for the FiftyOne tests: the `sam3_fiftyone` modules the plugin registers from."""

from __future__ import annotations

AUTO = "@sam3/fiftyone/auto_label_concepts"


def load_plugin_module(name: str = ""):
    """A module of `sam3_fiftyone`, after FiftyOne has registered the plugin (the same module
    objects the operators use)."""
    import importlib

    import fiftyone.operators as foo

    foo.get_operator(AUTO)  # registers the plugin (it finds sam3_fiftyone beside it if needed)
    return importlib.import_module(f"sam3_fiftyone.{name}" if name else "sam3_fiftyone")
