"""Every ```python block of README.md runs, on the tiny model and small synthetic files.

Blocks run in order, one namespace per `## ` section (its `###` subsections included), in a
temporary folder holding the files the blocks name. Loading weights (`from_pretrained()`, the
hub; `facebook/sam3.1` by a tiny SAM 3.1) is replaced by a tiny random checkpoint; nothing else is stubbed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from sam3_core.build import build_model
from sam3_core.weights.config_record import save_checkpoint as record_config
from tests.core.helpers import make_image, save_checkpoint, tiny_model

README = Path(__file__).resolve().parents[2] / "README.md"
H, W, T = 240, 400, 41  # big enough for every pixel and frame index the examples use


def python_sections(text: str) -> dict[str, list[tuple[int, str]]]:
    """README text -> {'## section title': [(first line number, code), ...]} in order."""
    sections: dict[str, list[tuple[int, str]]] = {}
    title, block, start = "(top)", None, 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = line.strip()
        if block is not None:
            if fence == "```":
                sections.setdefault(title, []).append((start, "\n".join(block)))
                block = None
            else:
                block.append(line)
        elif re.match(r"^##\s", line):
            title = line[3:].strip()
        elif fence.startswith("```python"):
            block, start = [], number + 1
    return sections


SECTIONS = python_sections(README.read_text())


def test_python_sections_parse():
    text = "# t\n```python\na = 1\n```\n## A\n```bash\nx\n```\n```python\nb = a\n```\n## B\n"
    assert python_sections(text) == {"(top)": [(3, "a = 1")], "A": [(10, "b = a")]}
    assert SECTIONS, "README.md has no ```python block"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The files the README names, small and synthetic, plus a tiny checkpoint."""
    from tests.core.helpers import write_mp4
    from tests.fiftyone.env import configure

    configure()  # the Hosts block's FiftyOne: a private database, before fiftyone is imported
    root = tmp_path_factory.mktemp("readme")
    save_checkpoint(tiny_model(), root / "tiny.safetensors")
    record_config(build_model("sam3.1_tiny"), root / "tiny31.safetensors")
    Image.fromarray(make_image(H, W, seed=1)).save(root / "street.jpg")
    Image.fromarray(make_image(H, W, seed=2)).save(root / "a.jpg")
    Image.fromarray(make_image(H // 2, W // 2, seed=3)).save(root / "b.png")
    frames = np.full((T, H, W, 3), 120, np.uint8)  # plain frames: few random detections, fast
    frames[:, 150:230, 280:360] = 200  # an object under the README's click (320, 200)
    write_mp4(root / "clip.mp4", frames)
    write_mp4(root / "crowd.mp4", frames[::-1].copy())
    gray = (make_image(300, 420, seed=5)[..., 0].astype(np.uint16) * 200).astype(np.uint16)
    tifffile.imwrite(root / "slide.ome.tif", gray, ome=True, metadata={"axes": "YX"})
    movie = np.stack([[np.roll(gray[:96, :128], 3 * z + t, 1) for z in range(3)] for t in range(2)])
    tifffile.imwrite(root / "embryo.tif", movie, imagej=True, metadata={"axes": "TZYX"})
    return root


@pytest.fixture
def tiny_weights(workdir, monkeypatch):
    """`load_model` (behind every `from_pretrained`) loads the tiny checkpoint instead."""
    import sam3_core
    from sam3_core import build

    real = build.load_model

    def load_tiny(checkpoint=None, *, config=None, token=None):
        if checkpoint is not None and Path(checkpoint).exists():  # a file the block wrote
            return real(checkpoint, config=config)
        if "sam3.1" in str(checkpoint):  # the SAM 3.1 hub id
            return real(workdir / "tiny31.safetensors")
        return real(workdir / "tiny.safetensors", config="sam3_tiny")

    monkeypatch.setattr(build, "load_model", load_tiny)
    monkeypatch.setattr(sam3_core, "load_model", load_tiny)
    monkeypatch.chdir(workdir)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_readme_section_runs(section, tiny_weights):
    namespace: dict = {"__name__": "readme"}
    for line, code in SECTIONS[section]:
        compiled = compile("\n" * (line - 1) + code, str(README), "exec")
        try:
            exec(compiled, namespace)  # noqa: S102 - running the README is the test
        except Exception as err:  # noqa: BLE001 - report which block, then fail
            pytest.fail(
                f"README.md block at line {line} ('## {section}') raised "
                f"{type(err).__name__}: {err}"
            )
