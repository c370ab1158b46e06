"""CLIP byte-level BPE tokenizer for SAM 3's text encoder, built on the `tokenizers` library.

The vocabulary ships as package data (`assets/bpe_simple_vocab_16e6.txt.gz`, from open_clip,
MIT); a checkpoint's own `vocab.json` + `merges.txt` can be used through `from_files`. The ids
and attention masks equal those of transformers' `CLIPTokenizer` called with
`padding="max_length", max_length=32, truncation=True` (pad id = end-of-text id).
"""

from __future__ import annotations

import gzip
import json
import os
from importlib import resources
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
CONTEXT_LENGTH = 32
END_OF_WORD = "</w>"
BPE_VOCAB_ASSET = "bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps the first 49152 - 256 - 2 merges of the open_clip file: 49408 tokens in all.
NUM_MERGES = 49152 - 256 - 2
# CLIP's word split: special tokens, English contractions, letter runs, single digits, and
# runs of anything else that is not whitespace.
WORD_PATTERN = (
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"
    r"|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)


def byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for the bytes 0..255, in CLIP's vocabulary order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    printable_set = set(printable)
    others = [b for b in range(256) if b not in printable_set]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def vocab_and_merges_from_bpe_gz(
    path: str | os.PathLike | None = None,
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Read open_clip's gzipped merge list into (token -> id, ordered merges); None = shipped."""
    if path is None:
        source = resources.files("sam3_core") / "assets" / BPE_VOCAB_ASSET
        with source.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    else:
        try:
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                lines = fh.read().split("\n")
        except (OSError, EOFError) as err:
            raise ValueError(
                f"cannot read the BPE merges file {path}: {err}; pass open_clip's "
                "bpe_simple_vocab_16e6.txt.gz or use ClipTokenizer.from_files(vocab, merges)"
            ) from err
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    if len(merges) != NUM_MERGES or any(len(pair) != 2 for pair in merges):
        raise ValueError(
            f"the BPE merges file {path or BPE_VOCAB_ASSET} holds fewer than {NUM_MERGES} "
            "valid merges; pass open_clip's bpe_simple_vocab_16e6.txt.gz"
        )
    alphabet = byte_alphabet()
    tokens = alphabet + [ch + END_OF_WORD for ch in alphabet]
    tokens += ["".join(pair) for pair in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def read_merges_txt(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Read a `merges.txt` (optional `#version` header, one `a b` pair per line)."""
    merges = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#version"):
            continue
        pair = tuple(line.split(" "))
        if len(pair) != 2:
            raise ValueError(
                f"{path}: line {line!r} is not a merge pair 'a b'; pass the merges.txt that "
                "belongs to the CLIP vocab.json"
            )
        merges.append(pair)
    return merges


class ClipTokenizer:
    """Text -> (input_ids [N, L], attention_mask [N, L]) for SAM 3's CLIP text encoder."""

    def __init__(
        self,
        vocab: dict[str, int] | None = None,
        merges: list[tuple[str, str]] | None = None,
        context_length: int = CONTEXT_LENGTH,
    ) -> None:
        """Build from a vocabulary and merges; both None loads the shipped open_clip file."""
        if (vocab is None) != (merges is None):
            raise ValueError("pass both vocab and merges, or neither to use the shipped ones")
        if vocab is None:
            vocab, merges = vocab_and_merges_from_bpe_gz()
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2 (bos + eos), got {context_length}")
        for special in (BOS_TOKEN, EOS_TOKEN):
            if special not in vocab:
                raise ValueError(
                    f"the vocabulary lacks {special}; pass a CLIP vocab.json (49408 tokens)"
                )
        self.context_length = context_length
        self.bos_id = vocab[BOS_TOKEN]
        self.eos_id = vocab[EOS_TOKEN]
        self.pad_id = self.eos_id
        self._tokenizer = self._build(vocab, merges)

    @staticmethod
    def _build(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Tokenizer:
        """The `tokenizers` pipeline: NFC, whitespace folding, lower case, CLIP split, BPE."""
        model = BPE(
            vocab=vocab,
            merges=merges,
            unk_token=EOS_TOKEN,
            end_of_word_suffix=END_OF_WORD,
            continuing_subword_prefix="",
            fuse_unk=False,
        )
        tokenizer = Tokenizer(model)
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
        )
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tokenizer.add_special_tokens([BOS_TOKEN, EOS_TOKEN])
        return tokenizer

    @classmethod
    def from_files(
        cls,
        vocab_json: str | os.PathLike,
        merges_txt: str | os.PathLike,
        context_length: int = CONTEXT_LENGTH,
    ) -> ClipTokenizer:
        """Build from a hub-style `vocab.json` + `merges.txt` pair (e.g. from a checkpoint)."""
        for path in (vocab_json, merges_txt):
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"tokenizer file {path} not found; pass the vocab.json and merges.txt that "
                    "come with the checkpoint, or use ClipTokenizer() for the shipped vocabulary"
                )
        vocab = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        return cls(vocab, read_merges_txt(merges_txt), context_length)

    @property
    def vocab_size(self) -> int:
        """Number of tokens, special ones included (49408 for CLIP)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of one text without bos/eos, truncation or padding."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def __call__(self, texts: list[str] | str) -> tuple[torch.LongTensor, torch.BoolTensor]:
        """Tokenise N texts to ids [N, L] (bos, tokens, eos, eos padding) and a mask [N, L]."""
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of strings, e.g. ['a cat', 'a dog']")
        keep = self.context_length - 2
        ids = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), self.context_length), dtype=torch.bool)
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        for row, encoding in enumerate(encodings):
            tokens = [self.bos_id, *encoding.ids[:keep], self.eos_id]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = True
        return ids, mask
