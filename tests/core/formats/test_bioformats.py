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
