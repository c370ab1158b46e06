"""Automatic tiling defaults shared by dataset jobs and the `sam3` CLI (no torch needed)."""

TILE_ABOVE = 4096  # px: images with a longer side are segmented in tiles by default
TILE_SIZE = 1008  # px: the tile size when tiling is automatic (the model's input size)
