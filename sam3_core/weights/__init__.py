"""Checkpoints: resolve (hub id, file, folder), load safely, convert Meta's layout, check keys."""
