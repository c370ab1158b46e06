"""Tiled segmentation: the seam merge on synthetic tiles, then end to end on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from sam3_core.formats.images import normalize_percentile
from sam3_core.large import tiling
from sam3_core.large.sparse import crop_to_rle, tight_crop
from sam3_core.large.tile_merge import merge_tiles, piece_from_mask, tile_grid
from sam3_core.postprocess import mask_to_rle
from sam3_core.predictor import ImagePredictor
from tests.core.helpers import make_image, tiny_model

H, W = 200, 300


def disc(cy: float, cx: float, r: float, size=(H, W)) -> np.ndarray:
    yy, xx = np.mgrid[: size[0], : size[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def objects() -> list[np.ndarray]:
    """Discs inside tiles, across seams and on a 4-tile corner, plus one larger than a tile."""
    big = np.zeros((H, W), bool)
    big[20:190, 150:290] = True
    return [
        disc(40, 40, 12),
        disc(50, 95, 10),
        disc(100, 100, 15),
        disc(150, 30, 8),
        disc(170, 90, 14),
        big,
    ]


def simulate(objs, tiles, seed=0, duplicate=False, erode=False):
    """What a perfect detector returns per tile: each object clipped to the tile."""
    rng = np.random.default_rng(seed)
    pieces = []
    for t, (x0, y0, x1, y1) in enumerate(tiles):
        for label, obj in enumerate(objs):
            local = obj[y0:y1, x0:x1].copy()
            if erode and t % 2:  # neighbours disagree slightly at the object's outline
                local[1:-1, 1:-1] &= local[:-2, 1:-1] & local[2:, 1:-1]
            for copy in range(2 if duplicate else 1):
                p = piece_from_mask(t, tiles[t], local, rng.uniform(0.5, 1.0) - copy * 0.1, 0)
                if p is not None:
                    pieces.append(p)
    return pieces


def dense(result) -> list[np.ndarray]:
    return [result.mask(i) for i in range(len(result))]


def assert_same_objects(result, objs, tol=0.0):
    masks = dense(result)
    assert len(masks) == len(objs)
    for obj in objs:
        ious = [np.count_nonzero(m & obj) / np.count_nonzero(m | obj) for m in masks]
        assert max(ious) >= 1.0 - tol


def lies_whole_in_a_tile(obj: np.ndarray, tiles: np.ndarray) -> bool:
    """The object's box inside some tile, off its inner borders (image borders may touch)."""
    ys, xs = np.nonzero(obj)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return any(
        (x0 > tx0 or tx0 == 0) and (y0 > ty0 or ty0 == 0) and (x1 < tx1 or tx1 == W)
        and (y1 < ty1 or ty1 == H)
        for tx0, ty0, tx1, ty1 in tiles
    )  # fmt: skip


@pytest.mark.parametrize(("overlap", "cut_objects"), [(30, 1), (0, 4)])
def test_merge_seams_exact(overlap, cut_objects):
    tiles = tile_grid((H, W), 100, overlap)
    objs = objects()
    result = merge_tiles(simulate(objs, tiles), tiles, (H, W), ["cell"])
    assert_same_objects(result, objs)
    assert list(result.scores) == sorted(result.scores, reverse=True)
    masks = dense(result)
    expected_cut = [  # cut: only seen in pieces cut by inner tile borders, merged as their union
        not lies_whole_in_a_tile(next(o for o in objs if (o == m).all()), tiles) for m in masks
    ]
    assert result.cut.tolist() == expected_cut and sum(expected_cut) == cut_objects
    big = int(np.argmax(result.areas()))
    assert result.cut[big]
    np.testing.assert_array_equal(result.boxes[big], [150, 20, 290, 190])


def test_merge_duplicates_and_noisy_neighbours():
    tiles = tile_grid((H, W), 100, 30)
    objs = objects()
    result = merge_tiles(simulate(objs, tiles, duplicate=True, erode=True), tiles, (H, W), ["c"])
    assert_same_objects(result, objs, tol=0.15)


def test_merge_keeps_labels_apart():
    tiles = tile_grid((H, W), 100, 30)
    obj = disc(100, 100, 15)
    pieces = [
        p for label in (0, 1) for p in simulate([obj], tiles) if not setattr(p, "label", label)
    ]
    result = merge_tiles(pieces, tiles, (H, W), ["a", "b"])
    assert sorted(result.labels) == [0, 1] and result.names() in (["a", "b"], ["b", "a"])


def test_tile_grid_covers_image():
    tiles = tile_grid((250, 130), 112, 16)
    cover = np.zeros((250, 130), int)
    for x0, y0, x1, y1 in tiles:
        assert x1 - x0 == 112 and y1 - y0 == 112
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    assert tile_grid((50, 60), 112, 16).tolist() == [[0, 0, 60, 50]]
    with pytest.raises(ValueError, match="overlap"):
        tile_grid((50, 60), 112, 112)


def test_sparse_outputs():
    tiles = tile_grid((H, W), 100, 30)
    objs = objects()
    result = merge_tiles(simulate(objs, tiles), tiles, (H, W), ["cell"])
    for i in range(len(result)):
        assert result.rle(i) == mask_to_rle(result.mask(i))
    labels = result.to_label_image(np.uint16)
    assert labels.dtype == np.uint16 and labels.max() == len(objs)
    for i, m in enumerate(dense(result)):
        assert (labels[m] == i + 1).all()
    inst = result.to_instances()
    assert inst.masks.shape == (len(objs), H, W) and len(result[:2]) == 2
    box, crop = tight_crop(objs[0])
    assert crop_to_rle(box, crop, (H, W)) == mask_to_rle(objs[0])


# ----------------------------------------------------------------- end to end (tiny model)
@pytest.fixture(scope="module")
def predictor():
    return ImagePredictor(tiny_model(), device="cpu")


def capture_pieces(monkeypatch):
    seen = {}

    def fake_merge(pieces, tiles, size, names, *args):
        seen.update(pieces=pieces, tiles=tiles, names=names)
        return merge_tiles(pieces, tiles, size, names, *args)

    monkeypatch.setattr(tiling, "merge_tiles", fake_merge)
    return seen


def test_segment_tiled_batches_and_global_coordinates(predictor, monkeypatch):
    image = make_image(300, 400, seed=1)
    seen, batches, progress = capture_pieces(monkeypatch), [], []
    set_images = predictor.set_images
    monkeypatch.setattr(
        predictor, "set_images", lambda ims: batches.append(len(ims)) or set_images(ims)
    )
    result = tiling.segment_tiled(
        predictor,
        image,
        "cell",
        tile_size=112,
        overlap=16,
        batch_size=5,
        score_threshold=0.0,
        progress=lambda done, total: progress.append((done, total)),
    )
    tiles = seen["tiles"]
    assert len(tiles) == 12 and batches == [5, 5, 2] and progress[-1] == (12, 12)
    assert len(result) >= 1 and result.image_size == (300, 400)
    t = 6  # an inner tile: its pieces are the tile's own prediction, shifted by its origin
    x0, y0, x1, y1 = tiles[t]
    own = predictor.predict(predictor.set_image(image[y0:y1, x0:x1]), "cell", score_threshold=0.0)
    got = [p for p in seen["pieces"] if p.tile == t]
    assert len(got) == len(own)
    for p, m in zip(got, own.masks):
        full = np.zeros((300, 400), bool)
        full[y0:y1, x0:x1] = m
        np.testing.assert_array_equal(full[p.box[1] : p.box[3], p.box[0] : p.box[2]], p.crop)
        assert full.sum() == p.crop.sum()


def test_exemplars_local_translated_and_dropped(predictor, monkeypatch):
    image = make_image(200, 300, seed=2)
    calls = []
    predict = predictor.predict
    monkeypatch.setattr(
        predictor, "predict", lambda s, c, **kw: calls.append(c) or predict(s, c, **kw)
    )
    tiling.segment_tiled(
        predictor,
        image,
        ["cell", tiling.Concept(None, (tiling.Exemplar((110, 120, 150, 160)),))],
        tile_size=112,
        overlap=16,
        score_threshold=0.0,
        exemplar_mode="local",
    )
    tiles = tile_grid((200, 300), 112, 16)
    holding = [
        t
        for t, (x0, y0, x1, y1) in enumerate(tiles)
        if x0 <= 110 and x1 >= 150 and y0 <= 120 and y1 >= 160
    ]
    for t, concepts in enumerate(calls):
        if t in holding:  # the text concept and the translated exemplar-only concept
            ex = concepts[1].exemplars[0].box
            assert ex == (
                110 - tiles[t][0],
                120 - tiles[t][1],
                150 - tiles[t][0],
                160 - tiles[t][1],
            )
        elif len(concepts) == 1:  # elsewhere: the text alone, the exemplar-only concept skipped
            assert concepts[0].text == "cell" and not concepts[0].exemplars
    assert holding and sum(len(c) == 1 for c in calls) >= len(tiles) - 4


def test_exemplars_transfer_match_home_tile(predictor, monkeypatch):
    image = make_image(200, 300, seed=3)
    seen = capture_pieces(monkeypatch)
    box = (150, 90, 190, 130)
    result = tiling.segment_tiled(
        predictor, image, "cell", exemplars=[box], tile_size=112, overlap=16, score_threshold=0.0
    )
    tiles = seen["tiles"]
    home = tiling._home_tile(box, tiles)
    x0, y0, x1, y1 = tiles[home]
    local = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
    own = predictor.predict(
        predictor.set_image(image[y0:y1, x0:x1]), "cell", [local], score_threshold=0.0
    )
    got = [p for p in seen["pieces"] if p.tile == home]
    assert len(got) == len(own) and result.label_names == ["cell"]
    np.testing.assert_allclose([p.score for p in got], own.scores, atol=1e-4)


def test_lazy_16bit_image_reads_tiles_only(predictor, tmp_path):
    import tifffile

    arr = make_image(150, 220)[..., 0].astype(np.uint16) * 200
    tifffile.imwrite(tmp_path / "big.tif", arr)
    reader = tiling.TileReader(str(tmp_path / "big.tif"))
    assert isinstance(reader.array, np.memmap)
    tile = reader.read(np.array([100, 50, 212, 150]))
    expected = normalize_percentile(arr)[50:150, 100:212]  # global contrast, not per tile
    assert tile.shape == (100, 112, 3) and tile.dtype == np.uint8
    assert np.abs(tile[..., 0].astype(int) - expected).max() <= 1
    result = tiling.segment_tiled(
        predictor, str(tmp_path / "big.tif"), "cell", tile_size=112, overlap=16, score_threshold=0.0
    )
    assert result.image_size == (150, 220)
    with pytest.raises(ValueError, match="to_axes"):
        tiling.TileReader(np.zeros((8, 50, 60), np.uint16).transpose(1, 2, 0))


def test_tiled_overlay_on_a_thumbnail():
    """Large images get their overlay on every step-th pixel: masks land where they belong."""
    from sam3_core.formats.overlay import draw_tiled_overlay

    image = np.zeros((H, W), np.uint16)
    image[::7] = 1000  # not uint8: the thumbnail uses the image's intensity range
    tiles = tile_grid((H, W), 100, 30)
    objs = objects()
    result = merge_tiles(simulate(objs, tiles), tiles, (H, W), ["cell"])
    thumb, step = tiling.TileReader(image).thumbnail(max_side=120)
    assert step == 3 and thumb.shape == (67, 100, 3) and thumb.dtype == np.uint8
    overlay = np.asarray(draw_tiled_overlay(thumb, step, result))
    assert overlay.shape == thumb.shape
    tinted = (overlay != thumb).any(-1)
    covered = np.zeros((H, W), bool)
    for i in range(len(result)):
        covered |= result.mask(i)
    inside = covered[::step, ::step]
    assert tinted[inside].all()  # every sampled mask pixel is tinted...
    edges = np.zeros_like(inside)  # ...and outside the masks only box outlines and labels are
    for x0, y0, x1, y1 in (result.boxes / step).astype(int):
        edges[max(y0 - 2, 0) : y1 + 3, max(x0 - 2, 0) : x1 + 3] = True
        edges[max(y0 - 2, 0) : y0 + 14, max(x0 - 2, 0) : x0 + 70] = True  # "cell 0.87"
    assert (~inside & ~edges).sum() > 1000 and not tinted[~inside & ~edges].any()
