"""List a job's inputs (files, folders, globs, `.txt`/`.parquet` lists, URIs) and fetch them."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from sam3_core.formats.images import IMAGE_EXTENSIONS, ImageReadError, iter_image_files

LIST_SUFFIXES = (".txt", ".parquet", ".jsonl", ".json")
PATH_COLUMNS = ("path", "uri", "image", "filepath", "file_name")


class InputError(ValueError):
    """Inputs that name nothing readable; the message says what to pass instead."""


def is_uri(item: str) -> bool:
    """True for `scheme://...` sources (s3://, gs://, hdfs://, file://) read through pyarrow."""
    return "://" in item and not Path(item).exists()


def list_inputs(items: Sequence[str | os.PathLike]) -> list[str]:
    """Every image a job covers, as ids: absolute local paths or URIs, sorted, each once.

    items: image files, folders (searched recursively), glob patterns, `.txt` files (one path
    or URI a line, `#` comments), `.parquet` / `.jsonl` / `.json` files (a `path`/`uri`/`image`
    column), and `s3://`, `gs://` files or prefixes (through `pyarrow.fs`).
    """
    found: set[str] = set()
    for item in items:
        found.update(expand(str(item)))
    return sorted(found)


def expand(item: str) -> list[str]:
    """The image ids one input item names."""
    if is_uri(item):
        return list_uri(item)
    path = Path(item).expanduser()
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        return [as_id(u) for u in read_list(path)]
    try:
        files = iter_image_files(path, recursive=True)
    except ImageReadError as err:
        raise InputError(
            f"{err} (or a .txt/.parquet/.jsonl/.json list of paths, or an s3:// / gs:// URI)"
        )
    return [str(f.absolute()) for f in files]


def as_id(item: str) -> str:
    """The id of one listed image: a URI as is, a local path made absolute."""
    return item if is_uri(item) else str(Path(item).expanduser().absolute())


def read_list(path: Path) -> list[str]:
    """Paths or URIs from a `.txt` (one a line), `.parquet`, `.jsonl` or `.json` (a path column)
    list; rows with an empty path are left out."""
    if path.suffix.lower() == ".txt":
        lines = (line.strip() for line in path.read_text().splitlines())
        return [line for line in lines if line and not line.startswith("#")]
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        column = path_column(path, names)
        return [str(v) for v in pq.read_table(path, columns=[column])[column].to_pylist() if v]
    rows = read_rows(path)
    paths = (row[path_column(path, row, number)] for number, row in enumerate(rows, 1))
    return [str(p) for p in paths if p]


def path_column(path: Path, names: Iterable[str], row: int | None = None) -> str:
    """The first of PATH_COLUMNS among the column `names` of a list file (or of its row number
    `row`, for files whose rows each have their own keys); InputError naming both if none."""
    names = list(names)
    column = next((c for c in PATH_COLUMNS if c in names), None)
    if column is None:
        where = path if row is None else f"{path} row {row}"
        raise InputError(
            f"{where} has no path column: name one of {', '.join(PATH_COLUMNS)} (it has "
            f"{', '.join(map(str, names)) or 'none'})."
        )
    return column


def read_rows(path: Path) -> list[dict]:
    """The rows of a `.jsonl` (one JSON object a line), `.json` (an array of objects) or
    `.parquet` table, as dicts; InputError for a file that is none of these."""
    import json

    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        text = path.read_text()
        if path.suffix.lower() == ".json":
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {path}: {err}; check the file.") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{path} must hold one JSON object per row (a path and its columns).")
    return rows


def list_uri(uri: str) -> list[str]:
    """A remote file, or every image under a remote prefix, as URIs."""
    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(root)
    except (OSError, ValueError, pafs.ArrowException) as err:
        raise InputError(f"cannot list {uri}: {err}; check the URI and your credentials.")
    scheme = uri.split("://", 1)[0]
    if info.type == pafs.FileType.File:
        return [uri]
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{uri} not found; check the bucket and prefix.")
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    return [
        f"{scheme}://{i.path}"
        for i in infos
        if i.type == pafs.FileType.File
        and PurePosixPath(i.path).suffix.lower() in IMAGE_EXTENSIONS
        and not PurePosixPath(i.path).name.startswith(".")
    ]


@contextlib.contextmanager
def local_copy(image_id: str) -> Iterator[Path]:
    """A local path to read an image from: the path itself, or a temporary copy of a URI."""
    if not is_uri(image_id):
        yield Path(image_id)
        return
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(image_id)
    suffix = PurePosixPath(path).suffix
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        with fs.open_input_stream(path) as src:
            while chunk := src.read(1 << 20):
                tmp.write(chunk)
        tmp.flush()
        yield Path(tmp.name)
