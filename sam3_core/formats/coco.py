"""COCO-format export: images, concept categories and RLE-mask annotations."""

from __future__ import annotations

from pathlib import Path

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
        """Add one image and its instances; returns the image id."""
        image_id = len(self.images) + 1
        self.images.append(
            {"id": image_id, "file_name": file_name, "height": size[0], "width": size[1]}
        )
        for mask, box, score, name in zip(
            instances.masks, instances.boxes, instances.scores, instances.names()
        ):
            x0, y0, x1, y1 = (float(v) for v in box)
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": self._cat_ids.setdefault(name, len(self._cat_ids) + 1),
                    "segmentation": mask_to_rle(mask),
                    "area": int(mask.sum()),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score),
                    "iscrowd": 0,
                }
            )
        return image_id

    def to_dict(self) -> dict:
        names = {c["name"] for c in self.categories}
        extra = [{"id": i, "name": n} for n, i in self._cat_ids.items() if n not in names]
        return {
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories + extra,
        }

    def write(self, path: str | Path) -> None:
        import json

        Path(path).write_text(json.dumps(self.to_dict()))
