"""Round trips: label TIFF, zarr (lazy open, axes), Cell Tracking Challenge folders."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from sam3_core.formats import bioformats
from sam3_core.formats.images import AxesView, open_array, to_axes


def volume(t=3, h=20, w=30):
    vol = np.zeros((t, h, w), np.uint32)
    vol[:, 2:8, 3:9] = 1
    vol[1:, 10:15, 12:20] = 2
    vol[0, 15:19, 25:29] = 3
    return vol


def test_label_tiff_round_trip(tmp_path):
    vol = volume()
    path = bioformats.write_label_tiff(tmp_path / "labels.tif", vol, axes="ZYX")
    back = bioformats.read_label_tiff(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, vol)
    big = vol.astype(np.uint32) * 30000
    back = bioformats.read_label_tiff(bioformats.write_label_tiff(tmp_path / "big.tif", big))
    assert back.dtype == np.uint32 and back.max() == 90000
    with pytest.raises(ValueError, match="uint32"):
        bioformats.write_label_tiff(tmp_path / "x.tif", big, dtype=np.uint16)
    with pytest.raises(ValueError, match="integers"):
        bioformats.write_label_tiff(tmp_path / "x.tif", vol.astype(np.float32))


def test_ctc_round_trip(tmp_path):
    vol = volume()
    folder = bioformats.write_ctc(tmp_path / "01_RES", vol)
    assert sorted(p.name for p in folder.iterdir()) == [
        "mask000.tif",
        "mask001.tif",
        "mask002.tif",
        "res_track.txt",
    ]
    assert (folder / "res_track.txt").read_text() == "1 0 2 0\n2 1 2 0\n3 0 0 0\n"
    back, tracks = bioformats.read_ctc(folder)
    np.testing.assert_array_equal(back, vol)
    assert tracks.tolist() == [[1, 0, 2, 0], [2, 1, 2, 0], [3, 0, 0, 0]]
    with_parent = np.array([[1, 0, 2, 0], [2, 1, 2, 1], [3, 0, 0, 0]])
    bioformats.write_ctc(tmp_path / "02_RES", vol, with_parent)
    assert bioformats.read_ctc(tmp_path / "02_RES")[1].tolist() == with_parent.tolist()
    with pytest.raises(ValueError, match="track row"):
        bioformats.write_ctc(tmp_path / "03_RES", vol, with_parent[:2])
    with pytest.raises(FileNotFoundError, match="CTC"):
        bioformats.read_ctc(tmp_path)


def test_zarr_round_trip_and_lazy_axes(tmp_path):
    zarr = pytest.importorskip("zarr")
    vol = volume()
    bioformats.write_label_zarr(tmp_path / "labels.zarr", vol)
    lazy = open_array(tmp_path / "labels.zarr")
    assert isinstance(lazy, zarr.Array) and lazy.dtype == np.uint16
    np.testing.assert_array_equal(lazy[1, 10:15], vol[1, 10:15])
    view = to_axes(lazy, "TYX", "YXT")
    assert isinstance(view, AxesView) and view.shape == (20, 30, 3)
    np.testing.assert_array_equal(view[10:15, :, 1], vol[1, 10:15])
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    group.attrs["multiscales"] = [{"datasets": [{"path": "0"}, {"path": "1"}]}]
    group.create_array("0", shape=vol.shape, dtype=vol.dtype)[...] = vol
    group.create_array("1", shape=(3, 10, 15), dtype=vol.dtype)[...] = vol[:, ::2, ::2]
    np.testing.assert_array_equal(open_array(tmp_path / "ome.zarr", level=1)[...], vol[:, ::2, ::2])


def test_open_array_tiff_and_npy(tmp_path):
    arr = np.arange(2 * 3 * 16 * 16, dtype=np.uint16).reshape(2, 3, 16, 16)
    tifffile.imwrite(tmp_path / "s.tif", arr)
    np.save(tmp_path / "s.npy", arr)
    for name in ("s.tif", "s.npy"):
        lazy = open_array(tmp_path / name)
        assert isinstance(lazy, np.memmap)
        np.testing.assert_array_equal(to_axes(lazy, "TCYX", "TYXC")[1, ..., 2], arr[1, 2])


def test_to_axes_errors_and_optional():
    arr = np.zeros((4, 1, 5, 6))
    assert to_axes(arr, "ZCYX", "ZYX(C)").shape == (4, 5, 6, 1)
    assert to_axes(arr, "ZCYX", "ZYX").shape == (4, 5, 6)
    assert to_axes(arr[:, 0], "ZYX", "ZYX(C)").shape == (4, 5, 6)
    assert to_axes(arr[0, 0], "YX", "ZYX").shape == (1, 5, 6)
    with pytest.raises(ValueError, match="axis Z has 4"):
        to_axes(arr, "ZCYX", "YX")
    with pytest.raises(ValueError, match="does not fit"):
        to_axes(arr, "ZYX", "ZYX")


def test_ctc_splits_a_track_at_its_gaps(tmp_path):
    """A label missing inside [B, E] becomes one track per run, each the child of the last."""
    vol = np.zeros((6, 10, 10), np.uint16)
    vol[[0, 1, 3, 5], 1:4, 1:4] = 1  # label 1: frames 0-1, 3, 5 (two gaps)
    vol[1:3, 6:9, 6:9] = 2  # label 2: a daughter of label 1 from frame 1
    tracks = np.array([[1, 0, 5, 0], [2, 1, 2, 1]])
    back, rows = bioformats.read_ctc(bioformats.write_ctc(tmp_path / "01_RES", vol, tracks))
    assert rows.tolist() == [[1, 0, 1, 0], [2, 1, 2, 1], [3, 3, 3, 1], [4, 5, 5, 3]]
    assert [sorted(set(np.unique(f)) - {0}) for f in back] == [[1], [1, 2], [2], [3], [], [4]]
    for label, begin, end, _ in rows:  # the CTC rule: the label is in every frame of [B, E]
        assert all((back[t] == label).any() for t in range(begin, end + 1))
    np.testing.assert_array_equal(back > 0, vol > 0)  # same pixels, only relabelled
    assert vol[3, 2, 2] == 1  # the caller's volume is untouched
    with pytest.raises(ValueError, match="frames 0..5"):
        bioformats.write_ctc(tmp_path / "02_RES", vol, [[1, 0, 4, 0], [2, 1, 2, 1]])
    derived = bioformats.read_ctc(bioformats.write_ctc(tmp_path / "03_RES", vol))[1]
    assert derived.tolist() == [[1, 0, 1, 0], [2, 1, 2, 0], [3, 3, 3, 1], [4, 5, 5, 3]]


def test_to_axes_select_picks_a_dropped_axis(tmp_path):
    """The README's stack example: time point t of a TZYX file as a [Z, Y, X] stack, lazily."""
    movie = np.arange(3 * 4 * 5 * 6, dtype=np.uint16).reshape(3, 4, 5, 6)
    tifffile.imwrite(tmp_path / "embryo.tif", movie, imagej=True, metadata={"axes": "TZYX"})
    lazy = open_array(tmp_path / "embryo.tif")
    assert lazy.shape == (3, 4, 5, 6)
    for source in (movie, lazy, AxesView(lazy, [0, 1, 2, 3], {}, [])):  # numpy, memmap, lazy
        stack = to_axes(source, "TZYX", "ZYX", select={"T": 2})
        assert stack.shape == (4, 5, 6)
        np.testing.assert_array_equal(np.asarray(stack), movie[2])
        np.testing.assert_array_equal(stack[1], movie[2, 1])
    channels = to_axes(np.zeros((2, 3, 5, 6)), "CZYX", "ZYX", select={"c": -1})
    assert channels.shape == (3, 5, 6)
    with pytest.raises(ValueError, match=r"select=\{'T': i\}"):
        to_axes(movie, "TZYX", "ZYX")
    with pytest.raises(ValueError, match="entries 0..2"):
        to_axes(movie, "TZYX", "ZYX", select={"T": 3})
    with pytest.raises(ValueError, match="drops"):
        to_axes(movie, "TZYX", "ZYX", select={"Z": 0})
