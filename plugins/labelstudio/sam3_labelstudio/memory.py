"""Keep a long-running server's RSS flat: fewer glibc malloc arenas, freed pages given back.

Requests run on many threads (Starlette's thread pool) and decode images into large, short-lived
buffers; glibc gives each thread its own arena (up to 8 per core) and keeps freed memory in
them, so RSS creeps up by tens of MB under load. Both calls are no-ops off glibc (macOS, musl,
Windows).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("sam3_labelstudio")
M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def _libc():
    """glibc, or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (raises AttributeError when not glibc)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def limit_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for threads created from now on; True when applied."""
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(M_ARENA_MAX, int(arenas)))
    if not ok:
        log.debug("mallopt(M_ARENA_MAX, %d) refused", arenas)
    return ok


def trim() -> None:
    """Give freed heap memory back to the OS (glibc `malloc_trim(0)`)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
