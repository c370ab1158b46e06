"""Large images and stacks: tiled segmentation, merging across seams, sparse masks, z/t stacks."""
