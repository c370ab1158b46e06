"""SAM 3 plugin for FiftyOne: registers the operators (the model loads on first use)."""

from .sam3_ops import AutoLabelConcepts, LabelFromExemplars, TrackVideos


def register(plugin) -> None:
    """Register this plugin's operators with FiftyOne."""
    plugin.register(AutoLabelConcepts)
    plugin.register(LabelFromExemplars)
    plugin.register(TrackVideos)
