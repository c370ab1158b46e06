"""Regenerate official_sam3_keys.json.gz: key -> shape/dtype of Meta's official SAM 3 model.

The fixture pins the exact `sam3.pt` layout (the state dict that Meta's
`build_sam3_video_model` loads strictly) without any weights. Run it in a separate venv with
Meta's package (`pip install torch==2.14.1 "huggingface-hub<2.0" sam3 psutil setuptools`):

    python tests/core/weights/data/dump_official_keys.py BPE_VOCAB_GZ [OUT_JSON_GZ]

`sam3` hard-codes "cuda" in a few constructors, so a torch function mode rewrites those device
arguments to "cpu"; the model is built on CPU (about 3.5 GB of memory, 15 s) and never run.
"""

import sys
from importlib.metadata import version
from pathlib import Path

from layout_dump import CudaToCpu, write_layout  # the sibling module (run as a script)


def main(bpe_path: str, out_path: str) -> None:
    """Build the official video model (detector + tracker) and write its key layout."""
    import sam3.model_builder as builder

    with CudaToCpu():
        model = builder.build_sam3_video_model(
            checkpoint_path=None, load_from_HF=False, bpe_path=bpe_path, device="cpu"
        )
    write_layout(model, f"sam3=={version('sam3')} build_sam3_video_model().state_dict()", out_path)


if __name__ == "__main__":
    default_out = Path(__file__).with_name("official_sam3_keys.json.gz")
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else str(default_out))
