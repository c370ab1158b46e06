"""The FiftyOne model zoo entry points of the remote source in `plugins/fiftyone/zoo`.

"Downloading" resolves the weights (the hub's `facebook/sam3` into the Hugging Face cache, or
the file in $SAM3_CHECKPOINT) and records their local path in the zoo's model file, so the
3.4 GB checkpoint is not copied; loading builds a `Sam3Model` from that path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .model import Sam3Model
from .predictors import CHECKPOINT_ENV


def download_model(model_name: str, model_path: str) -> None:
    """Resolve the weights of `model_name` (a hub id, unless $SAM3_CHECKPOINT names others)
    and write their local path to `model_path`."""
    from sam3_core.weights.checkpoint import resolve_checkpoint

    weights = resolve_checkpoint(os.environ.get(CHECKPOINT_ENV) or model_name)
    Path(model_path).parent.mkdir(parents=True, exist_ok=True)
    Path(model_path).write_text(json.dumps({"checkpoint": str(weights)}))


def load_model(model_name: str, model_path: str, **kwargs) -> Sam3Model:
    """A `Sam3Model` on the recorded weights; `kwargs` are `Sam3ModelConfig` keys (classes,
    confidence_thresh, output, device, ... and checkpoint to use other weights)."""
    try:
        recorded = json.loads(Path(model_path).read_text())["checkpoint"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(
            f"The zoo's record of {model_name} at {model_path} is unreadable ({err}): "
            f"download it again with foz.download_zoo_model('{model_name}', overwrite=True)."
        ) from None
    return Sam3Model({"checkpoint": recorded, **kwargs})
