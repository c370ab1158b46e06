"""napari plugin for SAM 3: concept, exemplar and click segmentation (a thin layer on sam3_core).

Nothing heavy happens at import: napari imports the widget and sample modules only when used.
"""

__all__: list[str] = []
