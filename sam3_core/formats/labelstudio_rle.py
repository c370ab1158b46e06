"""Label Studio brush RLE in numpy: byte-identical to `label_studio_sdk.converter.brush.mask2rle`
(the format of brushlabels `value.rle`), 15-45x faster; no Label Studio package needed.

The format (thi-ng rle-pack, as the SDK writes it): a 53-bit header (32-bit value count, 5-bit
word size - 1 = 7, four 4-bit run-size classes - 1 = 3/4/8/16 bits), then one token per run of
the RGBA-expanded mask: 1 flag bit (0: one literal, 1: a repeated value), a 2-bit class, the run
length - 1 in that class's width, and the 8-bit value. Runs over 65,536 are split into full
65,536 tokens plus the rest. The bit stream is zero-padded to whole bytes, with a whole zero byte
when it already ends on one (the SDK's quirk, kept). The SDK builds it as a Python string of
'0'/'1', one run at a time (0.01-1 s for a 1600x1200 mask, by its number of runs); here
every step is an array operation.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 8  # each value is written as one byte
RUN_BITS = (3, 4, 8, 16)  # widths of the run-length field per class
MAX_RUN = 1 << RUN_BITS[-1]  # a longer run is split into tokens of this many values
HEADER_BITS = 32 + 5 + 4 * len(RUN_BITS)
MAX_VALUES = (1 << 32) - 1  # the header stores the value count in 32 bits


def mask2rle(mask: np.ndarray) -> list[int]:
    """A 2-D [H, W] integer mask (values 0..255) -> Label Studio brush RLE bytes, as ints.

    Same output as the SDK's `mask2rle` (each pixel becomes 4 RGBA values of its value), e.g.
    `mask2rle(binary.astype(np.uint8) * 255)`.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"A brush mask must be 2-D [H, W]; got shape {mask.shape}.")
    if mask.dtype.kind not in "ui":
        raise ValueError(
            f"A brush mask must hold integers 0..255; got dtype {mask.dtype} "
            "(for a boolean mask pass mask.astype(np.uint8) * 255)."
        )
    check_count(4 * mask.size)  # before any work on a mask too large to write
    values, lengths = pixel_runs(mask.ravel())
    return encode_runs(values, 4 * lengths, 4 * mask.size)


def encode_rle(array: np.ndarray) -> list[int]:
    """A 1-D array [N] of values 0..255 -> RLE bytes, as the SDK's `encode_rle` (default sizes)."""
    array = np.asarray(array)
    if array.ndim != 1 or array.dtype.kind not in "ui":
        raise ValueError(f"encode_rle needs a 1-D integer array; got {array.dtype} {array.shape}.")
    values, lengths = pixel_runs(array)
    return encode_runs(values, lengths, array.size)


def pixel_runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of equal values in a 1-D array [N]: (values [R], lengths [R] int64); none if N is 0."""
    if flat.size == 0:
        return flat[:0], np.zeros(0, np.int64)
    ends = np.flatnonzero(flat[1:] != flat[:-1])
    ends = np.append(ends, flat.size - 1)
    lengths = np.diff(ends, prepend=-1)
    return flat[ends], lengths


def encode_runs(values: np.ndarray, lengths: np.ndarray, num: int) -> list[int]:
    """Runs (values [R] 0..255, lengths [R] >= 1, summing to num) -> the SDK's RLE byte list."""
    check_runs(values, lengths, num)
    values, lengths = np.asarray(values, np.uint64), np.asarray(lengths, np.uint64)
    # The SDK's token kind per run: 0 a literal (length 1), then 1 + the class of 2..8, 9..16,
    # 17..256 and longer runs; every piece of a split run keeps the kind of the whole run.
    kind = np.zeros(lengths.shape, np.uint8)
    for bound in (1, 8, 16, 256):
        kind += lengths > bound
    pieces = (lengths - 1) // MAX_RUN + 1
    if pieces.max() > 1:  # runs over MAX_RUN: full MAX_RUN tokens, then one of the rest
        last = np.cumsum(pieces) - 1
        tok_len = np.full(int(last[-1]) + 1, MAX_RUN, np.uint64)
        tok_len[last] = lengths - (pieces - 1) * MAX_RUN
        pieces = pieces.astype(np.int64)
        kind, values, lengths = np.repeat(kind, pieces), np.repeat(values, pieces), tok_len
    # Per kind: the flag + class bits (3) and the run-length field's width.
    prefix = np.array([0b000, 0b100, 0b101, 0b110, 0b111], np.uint64)[kind]
    field = np.array((RUN_BITS[0],) + RUN_BITS, np.uint64)[kind]
    codes = (((prefix << field) | (lengths - 1)) << np.uint64(WORD_BITS)) | values
    header = (WORD_BITS - 1) << 16 | sum((b - 1) << (12 - 4 * i) for i, b in enumerate(RUN_BITS))
    codes = np.concatenate([np.array([num, header], np.uint64), codes])
    widths = np.concatenate([np.array([32, HEADER_BITS - 32], np.uint64), field + (3 + WORD_BITS)])
    return pack_bits(codes, widths.astype(np.int64))


def check_count(num: int) -> None:
    """Raise a ValueError unless `num` values (>= 1) fit the header's 32-bit count."""
    if num < 1 or num > MAX_VALUES:
        raise ValueError(
            f"Label Studio RLE holds 1..{MAX_VALUES} values (4 per mask pixel); got {num}: "
            "a mask needs at least one pixel and under 2**30 pixels."
        )


def check_runs(values: np.ndarray, lengths: np.ndarray, num: int) -> None:
    """Raise a ValueError naming the problem if runs cannot be written in this format."""
    check_count(num)
    if len(values) != len(lengths) or len(values) == 0:
        raise ValueError(f"Runs need as many values as lengths; got {len(values)}, {len(lengths)}")
    if int(np.min(lengths)) < 1 or int(np.sum(lengths, dtype=np.int64)) != num:
        raise ValueError(f"Run lengths must be >= 1 and sum to {num}.")
    if int(np.min(values)) < 0 or int(np.max(values)) > 255:
        raise ValueError(
            f"Values must be 0..255 (one byte each); got {np.min(values)}..{np.max(values)} "
            "(scale a binary mask with mask.astype(np.uint8) * 255)."
        )


def pack_bits(codes: np.ndarray, widths: np.ndarray) -> list[int]:
    """Concatenate codes [T] uint64 of widths [T] (<= 32 bits each), most significant bit first.

    The stream is zero-padded to whole bytes plus, as the SDK does, a zero byte if it ends on a
    byte boundary. Each code lands in one or two big-endian 64-bit words.
    """
    starts = np.cumsum(widths) - widths
    total = int(starts[-1] + widths[-1])
    n_bytes = total // 8 + 1
    words = np.zeros((n_bytes + 7) // 8 + 1, np.uint64)
    word, end = starts >> 6, (starts & 63) + widths  # end: bit after the code in its word
    spill = end > 64
    head = (codes << np.where(spill, 0, 64 - end).astype(np.uint64)) >> np.where(
        spill, end - 64, 0
    ).astype(np.uint64)
    scatter_or(words, word, head)
    tail = codes[spill] << (128 - end[spill]).astype(np.uint64)
    scatter_or(words, word[spill] + 1, tail)
    return words.astype(">u8").view(np.uint8)[:n_bytes].tolist()


def scatter_or(words: np.ndarray, index: np.ndarray, bits: np.ndarray) -> None:
    """words[index] |= bits for a sorted index [K] (repeats allowed), in place."""
    if index.size == 0:
        return
    first = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    words[index[first]] |= np.bitwise_or.reduceat(bits, first)
