"""What identifies a stored embedding: the image's content key and the model's signature.

The key hashes the resized uint8 pixels the model sees, so the same picture read from another
path or file format hits. The signature covers what the stored tensors depend on: the weights
of the ViT trunk and of the click head's neck, their config, and the compute precision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib

import numpy as np
import torch
from torch import nn

from sam3_core.config import Sam3Config

SIGNATURE_FORMAT = 1
FULL_BELOW = 1 << 16  # tensors up to this many elements are hashed whole, larger ones at
# this many (up to twice as many) evenly spaced elements
BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
# State-dict prefixes of the weights that the stored tensors depend on (trunk, click neck).
SIGNED_PREFIXES = (
    "detector_model.vision_encoder.backbone.",
    "tracker_neck.",
    "tracker_model.mask_decoder.conv_s0.",
    "tracker_model.mask_decoder.conv_s1.",
)


def image_key(pixels: torch.Tensor) -> str:
    """uint8 [3, S, S] model input -> 32 hex digits (blake2b of the size and the pixels)."""
    data = pixels.detach().cpu().contiguous()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(tuple(data.shape)).encode())
    digest.update(data.numpy())
    return digest.hexdigest()


def weights_digest(module: nn.Module, prefixes: tuple[str, ...] = SIGNED_PREFIXES) -> str:
    """Content digest of a module's tensors under `prefixes` -> 24 hex digits.

    Every tensor's name, shape and dtype, and a CRC-32 of its values: all of them for tensors
    up to `FULL_BELOW` elements, `FULL_BELOW` or more evenly spaced ones of larger tensors. Unlike a
    checkpoint fingerprint it also holds for models built or changed in memory; training,
    fine-tuning or merging an adapter moves nearly every weight, so it changes the digest,
    in milliseconds instead of the seconds that hashing 1.8 GB takes (a single edited weight
    of a large tensor may go unseen).
    """
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in sorted(module.state_dict().items()):
        if not name.startswith(prefixes):
            continue
        flat = tensor.detach().reshape(-1)
        if flat.numel() > FULL_BELOW:  # a strided view: nothing is copied on the device
            flat = flat[:: flat.numel() // FULL_BELOW]
        bits = flat.cpu().view(BITS[flat.element_size()]).numpy()  # numpy has no bf16
        data = np.ascontiguousarray(bits)  # one small single-threaded copy
        digest.update(
            f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|{zlib.crc32(data):08x};".encode()
        )
    return digest.hexdigest()


def model_signature(model: nn.Module, config: Sam3Config, precision: str) -> dict:
    """What a store's entries depend on, as plain JSON: weights digest, config, precision."""
    used = {"vit": dataclasses.asdict(config.vit), "neck": dataclasses.asdict(config.neck)}
    return {
        "format": SIGNATURE_FORMAT,
        "weights": weights_digest(model),
        "config": json.loads(json.dumps(used)),  # tuples -> lists, as read back from JSON
        "precision": precision,
    }


def signature_digest(signature: dict) -> str:
    """A short digest of a signature (16 hex digits), written into every entry."""
    text = json.dumps(signature, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def describe(signature: dict) -> str:
    """One line naming a signature: weights digest, ViT size, image size, precision."""
    vit = signature.get("config", {}).get("vit", {})
    return (
        f"weights {signature.get('weights')}, ViT {vit.get('hidden_size')} wide x "
        f"{vit.get('num_layers')} layers at {vit.get('image_size')} px, "
        f"precision {signature.get('precision')}"
    )


def differences(old: dict, new: dict) -> list[str]:
    """The top-level fields (and config sub-fields) in which two signatures differ."""
    out = [k for k in sorted(set(old) | set(new)) if k != "config" and old.get(k) != new.get(k)]
    old_cfg, new_cfg = old.get("config", {}), new.get("config", {})
    for part in sorted(set(old_cfg) | set(new_cfg)):
        a, b = old_cfg.get(part, {}), new_cfg.get(part, {})
        out += [f"{part}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return out
