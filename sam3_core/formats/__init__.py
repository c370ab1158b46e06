"""Reading and writing: images and arrays, bio formats (label TIFF, zarr, CTC), COCO, overlays."""
