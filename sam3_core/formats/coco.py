"""COCO-format export: images, concept categories and RLE-mask annotations."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sam3_core.postprocess import mask_to_rle
from sam3_core.results import Instances


class CocoWriter:
    """Accumulates per-image instances and writes one COCO JSON (masks as compressed RLE)."""

    def __init__(self, categories: list[str]) -> None:
        self.categories = [{"id": i + 1, "name": n} for i, n in enumerate(categories)]
        self._cat_ids = {n: i + 1 for i, n in enumerate(categories)}
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, file_name: str, size: tuple[int, int], instances: Instances) -> int:
        """Add one image and its instances (dense bool masks [N, H, W]); returns the image id."""
        image_id = self._add_image(file_name, size)
        for mask, box, score, name in zip(
            instances.masks, instances.boxes, instances.scores, instances.names()
        ):
            self._annotate(image_id, mask_to_rle(mask), int(mask.sum()), box, score, name)
        return image_id

    def add_tiled(self, file_name: str, tiled: Any) -> int:
        """Add one large image and its `TiledInstances` (cropped masks); returns the image id."""
        image_id = self._add_image(file_name, tiled.image_size)
        for i, area in enumerate(tiled.areas()):
            name = tiled.label_names[tiled.labels[i]]
            self._annotate(image_id, tiled.rle(i), int(area), tiled.boxes[i], tiled.scores[i], name)
        return image_id

    def _add_image(self, file_name: str, size: tuple[int, int]) -> int:
        image_id = len(self.images) + 1
        self.images.append(
            {"id": image_id, "file_name": file_name, "height": size[0], "width": size[1]}
        )
        return image_id

    def _annotate(self, image_id: int, rle: dict, area: int, box, score, name: str) -> None:
        x0, y0, x1, y1 = (float(v) for v in box)
        self.annotations.append(
            {
                "id": len(self.annotations) + 1,
                "image_id": image_id,
                "category_id": self._cat_ids.setdefault(name, len(self._cat_ids) + 1),
                "segmentation": rle,
                "area": area,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": float(score),
                "iscrowd": 0,
            }
        )

    def to_dict(self) -> dict:
        """The COCO dict: images, annotations, categories (concepts first, then any new names)."""
        names = {c["name"] for c in self.categories}
        extra = [{"id": i, "name": n} for n, i in self._cat_ids.items() if n not in names]
        return {
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories + extra,
        }

    def write(self, path: str | os.PathLike) -> None:
        """Write the JSON atomically: a reader (or a crash mid-write) never sees a partial file."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.to_dict(), fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def instance_records(inst: Instances) -> list[dict]:
    """Tracked instances -> JSON-ready dicts: track_id, label, score, box (xyxy px), RLE mask."""
    names = inst.names()
    return [
        {
            "track_id": int(inst.track_ids[i]),
            "label": names[i],
            "score": float(inst.scores[i]),
            "box": [float(v) for v in inst.boxes[i]],
            "segmentation": mask_to_rle(inst.masks[i]),
        }
        for i in range(len(inst))
    ]
