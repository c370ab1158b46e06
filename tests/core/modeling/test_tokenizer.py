"""ClipTokenizer gives the same ids and masks as transformers' CLIP tokenizer and Sam3Processor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sam3_core.modeling.tokenizer import ClipTokenizer, vocab_and_merges_from_bpe_gz

transformers = pytest.importorskip("transformers")

TEXTS = [
    "a photo of a cat",
    "cat",
    "Yellow School Bus",
    "RED CAR",
    "person riding a bicycle, wearing a helmet.",
    "the dog's tail",
    "they're here, we've seen it, I'm sure you'll find what I'd say isn't",
    "don't!!! stop???",
    "a-b_c/d\\e",
    "12345 apples and 6.5 pears",
    "3D-printed part #42",
    "café crème brûlée",
    "Ünïcödé ÀÉÎÕÜ",
    "東京タワー",
    "кошка на крыше",
    "emoji 🐈 cat 🚗",
    "   leading and trailing spaces   ",
    "multiple     spaces\tand\ttabs\nand\nnewlines",
    "",
    " ",
    "\n\t",
    ".",
    "!@#$%^&*()",
    "mitochondria",
    "nucleus of a HeLa cell (DAPI)",
    "word " * 40,
    "supercalifragilisticexpialidocious " * 5,
    "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3",
    (
        "exactly twenty eight words here one two three four five six seven eight nine ten "
        "eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"
    ),
    "e\u0301te\u0301 decomposed accents",
    "&amp; html &lt;entities&gt;",
    "visual",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with hub-style vocab.json + merges.txt derived from the shipped merges file."""
    folder = tmp_path_factory.mktemp("clip_tokenizer")
    vocab, merges = vocab_and_merges_from_bpe_gz()
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    lines = ["#version: 0.2", *(" ".join(pair) for pair in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def reference(tokenizer_dir: Path):
    """transformers' CLIP tokenizer on the same files (the vocab_file= constructor ignores them)."""
    return transformers.CLIPTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.fixture(scope="module")
def ours() -> ClipTokenizer:
    """Our tokenizer on the shipped vocabulary."""
    return ClipTokenizer()


def test_known_ids(ours: ClipTokenizer) -> None:
    """The shipped vocabulary gives CLIP's well-known ids for a simple prompt."""
    ids, mask = ours(["a photo of a cat"])
    assert ids.shape == (1, 32) and mask.shape == (1, 32)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert (ids[0, 7:] == 49407).all()
    assert mask[0].tolist() == [True] * 7 + [False] * 25
    assert ours.vocab_size == 49408


def test_matches_transformers_tokenizer(ours: ClipTokenizer, reference) -> None:
    """Ids and masks equal CLIPTokenizer(padding='max_length', max_length=32, truncation=True)."""
    ids, mask = ours(TEXTS)
    ref = reference(
        TEXTS, padding="max_length", max_length=32, truncation=True, return_tensors="pt"
    )
    for row, text in enumerate(TEXTS):
        assert ids[row].tolist() == ref["input_ids"][row].tolist(), text
        assert mask[row].tolist() == ref["attention_mask"][row].bool().tolist(), text


def test_matches_sam3_processor(ours: ClipTokenizer, reference) -> None:
    """Ids and masks equal Sam3Processor's for texts short enough for it (it does not truncate)."""
    processor = transformers.Sam3Processor(
        image_processor=transformers.Sam3ImageProcessor(), tokenizer=reference
    )
    short = [t for t in TEXTS if len(reference(t)["input_ids"]) <= 32]
    assert len(short) >= 25
    ref = processor(text=short, return_tensors="pt")
    ids, mask = ours(short)
    assert torch.equal(ids, ref["input_ids"])
    assert torch.equal(mask, ref["attention_mask"].bool())


def test_truncation_keeps_eos(ours: ClipTokenizer) -> None:
    """Long texts keep bos, the first 30 tokens and eos, with a full mask."""
    ids, mask = ours(["word " * 40])
    assert ids[0, 0] == 49406 and ids[0, -1] == 49407
    assert ids[0, 1:31].tolist() == ours.encode("word " * 40)[:30]
    assert mask.all()


def test_from_files_matches_default(ours: ClipTokenizer, tokenizer_dir: Path) -> None:
    """A hub-style vocab.json + merges.txt pair gives the same tokenizer as the shipped file."""
    loaded = ClipTokenizer.from_files(tokenizer_dir / "vocab.json", tokenizer_dir / "merges.txt")
    for got, want in zip(loaded(TEXTS), ours(TEXTS), strict=True):
        assert torch.equal(got, want)


def test_errors(tokenizer_dir: Path) -> None:
    """Missing files and wrong inputs raise errors that say what to pass."""
    with pytest.raises(FileNotFoundError, match=r"vocab\.json"):
        ClipTokenizer.from_files(tokenizer_dir / "missing.json", tokenizer_dir / "merges.txt")
    with pytest.raises(ValueError, match="both"):
        ClipTokenizer(vocab={"a": 0})
    with pytest.raises(TypeError, match="list of strings"):
        ClipTokenizer()([1, 2])  # type: ignore[list-item]
