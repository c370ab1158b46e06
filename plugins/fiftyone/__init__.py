"""SAM 3 plugin for FiftyOne: registers the operators of the `sam3_fiftyone` package.

`pip install sam3-tools[fiftyone]` provides the package; a plain copy of this folder finds it
beside this file. The model loads on first use.
"""

import sys
from pathlib import Path

try:
    import sam3_fiftyone  # noqa: F401
except ImportError:  # this folder copied into FIFTYONE_PLUGINS_DIR without pip install
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from sam3_fiftyone.eval_operator import EvaluateLabels
from sam3_fiftyone.operators import AutoLabelConcepts, LabelFromExemplars, TrackVideos
from sam3_fiftyone.store_operator import ComputeEmbeddings


def register(plugin) -> None:
    """Register this plugin's operators with FiftyOne."""
    plugin.register(AutoLabelConcepts)
    plugin.register(LabelFromExemplars)
    plugin.register(TrackVideos)
    plugin.register(ComputeEmbeddings)
    plugin.register(EvaluateLabels)
