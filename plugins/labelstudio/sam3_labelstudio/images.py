"""Fetch task images: Label Studio uploads and local storage, and http(s) from allowed hosts only."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from io import BytesIO
from urllib.parse import parse_qs, urljoin, urlparse

import numpy as np
import requests
import urllib3

log = logging.getLogger("sam3_labelstudio")
DEFAULT_MAX_MB = 200.0  # --max-image-mb / SAM3_LS_MAX_IMAGE_MB
MAX_MB_ENV = "SAM3_LS_MAX_IMAGE_MB"


class ImageFetchError(RuntimeError):
    """A task's image could not be fetched; `status` is the HTTP code: 502, its source failed."""

    status = 502


class ImageDataError(ImageFetchError):
    """A task's file arrived but is unusable (not a readable image, or over the size limit)."""

    status = 422


def _jwt_exp(token: str) -> float | None:
    """The `exp` claim of a JWT (unverified), or None when `token` is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return float(payload.get("exp", 0)) or None


def resolve_url(url: str, ls_url: str | None) -> str:
    """Make a task URL absolute: `/data/upload/...` and `upload/...` are on the Label Studio host."""
    if url.startswith(("http://", "https://")):
        return url
    if not ls_url:
        raise ImageFetchError(
            f"The image {url!r} is stored in Label Studio, but the backend has no Label Studio URL: "
            "start it with --label-studio-url http://HOST:PORT --label-studio-token TOKEN."
        )
    if url.startswith(("upload/", "/upload/")):
        url = "/data/" + url.lstrip("/")
    return urljoin(ls_url.rstrip("/") + "/", url.lstrip("/"))


def local_storage_path(url: str, root: str | None) -> str | None:
    """The file behind a `/data/local-files/?d=...` URL under `root`, or None to fetch it."""
    if not root or "/data/local-files" not in url:
        return None
    rel = (parse_qs(urlparse(url).query).get("d") or [""])[-1]
    if not rel:
        raise ImageDataError(
            f"{url} names no file: a local storage URL is /data/local-files/?d=PATH."
        )
    base = os.path.realpath(root)
    path = os.path.realpath(os.path.join(base, rel.lstrip("/")))
    if os.path.commonpath([base, path]) != base:
        raise ImageDataError(f"Local storage path {rel!r} leaves the document root {root}.")
    return path


class ImageFetcher:
    """Downloads images from Label Studio (with its token) and from hosts the user allows."""

    def __init__(
        self,
        ls_url: str | None = None,
        token: str | None = None,
        allow_hosts: tuple[str, ...] = (),
        local_root: str | None = None,
        timeout: float = 30.0,
        max_mb: float = DEFAULT_MAX_MB,
    ) -> None:
        if not max_mb > 0:
            raise ValueError(f"max_mb={max_mb!r}: give the largest file to accept, in MB (> 0).")
        self.ls_url = ls_url.rstrip("/") if ls_url else None
        self.max_mb = float(max_mb)
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.token = token
        self.local_root = local_root
        self.timeout = timeout
        ls_host = urlparse(self.ls_url).netloc if self.ls_url else None
        self.ls_host = ls_host
        self.allowed = {h.lower() for h in allow_hosts} | ({ls_host.lower()} if ls_host else set())
        self._access: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self._session = requests.Session()

    def _auth_header(self, refresh: bool = False) -> dict[str, str]:
        """`Authorization` for Label Studio: a PAT is exchanged for a short-lived access token."""
        if not self.token:
            return {}
        exp = _jwt_exp(self.token)
        if exp is None:  # legacy API token
            return {"Authorization": f"Token {self.token}"}
        with self._lock:
            if refresh or not self._access or self._access[1] < time.time() + 30:
                url = f"{self.ls_url}/api/token/refresh/"
                resp = self._session.post(url, json={"refresh": self.token}, timeout=self.timeout)
                if resp.status_code != 200:
                    raise ImageFetchError(
                        f"Label Studio refused the token at {url} (HTTP {resp.status_code}): give a "
                        "valid personal access token (Account & Settings) with --label-studio-token."
                    )
                access = resp.json()["access"]
                self._access = (access, _jwt_exp(access) or time.time() + 60)
            return {"Authorization": f"Bearer {self._access[0]}"}

    def too_large(self, source: str, size: int | None) -> ImageDataError:
        """The error for a file over `max_bytes`, naming the limit and how to raise it."""
        what = f"{size / 2**20:.1f} MB" if size is not None else "larger than that"
        return ImageDataError(
            f"{source} is {what}, over the backend's {self.max_mb:g} MB limit on task files: "
            f"start it with a larger --max-image-mb (env {MAX_MB_ENV})."
        )

    def fetch_bytes(self, url: str) -> bytes:
        """The bytes behind a task URL (at most `max_bytes`), following redirects only to
        allowed hosts."""
        local = local_storage_path(url, self.local_root)
        if local is not None:
            try:
                size = os.path.getsize(local)
                if size > self.max_bytes:
                    raise self.too_large(url, size)
                with open(local, "rb") as f:
                    return f.read()
            except OSError as exc:
                raise ImageDataError(
                    f"Cannot read local storage file {local} ({exc.strerror}): check that "
                    "--local-files-root (LOCAL_FILES_DOCUMENT_ROOT) is Label Studio's."
                ) from exc
        target = resolve_url(url, self.ls_url)
        for _ in range(4):
            host = urlparse(target).netloc.lower()
            if host not in self.allowed:
                raise ImageFetchError(
                    f"Refusing to fetch {target}: host {host!r} is not the Label Studio host nor "
                    "allowed. Start the backend with --allow-host " + (host or "HOST") + "."
                )
            resp = self._get(target, host == (self.ls_host or "").lower())
            if resp.is_redirect:
                resp.close()
                target = urljoin(target, resp.headers.get("Location", ""))
                continue
            if resp.status_code != 200:
                resp.close()
                raise ImageFetchError(
                    f"Fetching {target} gave HTTP {resp.status_code}: check the URL and, for Label "
                    "Studio files, --label-studio-url and --label-studio-token."
                )
            return self._read_body(resp, target)
        raise ImageFetchError(f"Too many redirects fetching {url}.")

    def _get(self, target: str, with_auth: bool) -> requests.Response:
        """One GET, retried once with a fresh access token on 401."""
        try:
            for attempt in range(2):
                headers = self._auth_header(refresh=attempt > 0) if with_auth else {}
                resp = self._session.get(
                    target,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                )
                if resp.status_code != 401 or not with_auth or _jwt_exp(self.token or "") is None:
                    break
                resp.close()
            return resp
        except requests.RequestException as exc:
            raise ImageFetchError(f"Cannot reach {target} ({exc}): is the host up?") from exc

    def _read_body(self, resp: requests.Response, target: str) -> bytes:
        """The body of a streamed response, refused by name when over `max_bytes`."""
        try:
            size = resp.headers.get("Content-Length", "")
            if size.isdigit() and int(size) > self.max_bytes:
                raise self.too_large(target, int(size))
            data = resp.raw.read(self.max_bytes + 1, decode_content=True)
            if len(data) > self.max_bytes:  # no (or a false) Content-Length, or compressed
                raise self.too_large(target, None)
            return data
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise ImageFetchError(f"Lost the connection reading {target} ({exc}).") from exc
        finally:
            resp.close()

    def fetch_image(self, url: str) -> np.ndarray:
        """A task image as uint8 HxWx3 (`sam3_core.formats.images.load_image` handles gray, RGBA,
        16-bit); an ImageDataError naming `url` when the bytes are not a readable image."""
        from PIL import Image, UnidentifiedImageError

        from sam3_core.formats.images import SUPPORTED, load_image

        data = self.fetch_bytes(url)
        try:
            return load_image(Image.open(BytesIO(data)))
        except UnidentifiedImageError as exc:
            raise ImageDataError(
                f"{url} is not an image the backend can read ({len(data)} bytes starting "
                f"{data[:12]!r}; it reads {SUPPORTED}): check or re-import that file."
            ) from exc
        except Exception as exc:  # truncated or corrupt data, an unusable pixel format
            raise ImageDataError(
                f"{url} is not a readable image ({exc}): check or re-import that file."
            ) from exc
