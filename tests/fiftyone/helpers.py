"""Helpers for the FiftyOne tests: the plugin modules as FiftyOne loads them."""

from __future__ import annotations

PLUGIN_MODULE = "fiftyone.plugins.orgs.sam3.fiftyone"  # where FiftyOne loads @sam3/fiftyone


def load_plugin_module(name: str = ""):
    """A module of the plugin as FiftyOne registers it (the documented SDK import path)."""
    import importlib

    import fiftyone.operators as foo

    foo.get_operator("@sam3/fiftyone/auto_label_concepts")  # registers the plugin
    return importlib.import_module(f"{PLUGIN_MODULE}.{name}" if name else PLUGIN_MODULE)
