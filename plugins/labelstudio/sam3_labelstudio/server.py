"""The ML backend protocol of Label Studio 1.23 on Starlette: health, setup, predict, webhook."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sam3_labelstudio.backend import Backend, BackendError

log = logging.getLogger("sam3_labelstudio")


def check_basic_auth(header: str | None, credentials: str | None) -> bool:
    """True when no credentials are configured or the `Authorization` header carries them."""
    if not credentials:
        return True
    if not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:]).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(given.encode(), credentials.encode())


def error(message: str, status: int) -> JSONResponse:
    """A JSON error body that Label Studio shows to the user, also written to the log."""
    log.error("HTTP %d: %s", status, message)
    return JSONResponse({"error": message, "status": "error"}, status_code=status)


async def _json(request: Request) -> dict:
    """The request body as a JSON object, or a 400 naming the problem."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackendError(f"The body is not JSON ({exc}): send Content-Type application/json.")
    if not isinstance(body, dict):
        raise BackendError("The body must be a JSON object.")
    return body


def create_app(backend: Backend, basic_auth: str | None = None) -> Starlette:
    """The ASGI app serving `backend` (HTTP Basic auth on every route when `basic_auth`)."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {"status": "UP", "model_class": "SAM3", "model_version": backend.model_version}
        )

    async def setup(request: Request) -> JSONResponse:
        body = await _json(request)
        if body.get("schema"):
            await run_in_threadpool(backend.schema, body["schema"])  # a 422 when unusable
        return JSONResponse({"model_version": backend.model_version})

    async def predict(request: Request) -> JSONResponse:
        body = await _json(request)
        start = time.perf_counter()
        out = await run_in_threadpool(backend.predict, body)
        log.info("predict: %d task(s) in %.2f s", len(body["tasks"]), time.perf_counter() - start)
        return JSONResponse(out)

    async def webhook(request: Request) -> JSONResponse:
        body = await _json(request)
        log.info("webhook %s ignored: SAM 3 is not trained from Label Studio", body.get("action"))
        return JSONResponse({"status": "ok", "result": None}, status_code=201)

    async def versions(request: Request) -> JSONResponse:
        return JSONResponse({"versions": [backend.model_version], "model_dir": None})

    async def metrics(request: Request) -> JSONResponse:
        stats = dict(backend.store.stats)
        hits = stats["memory_hits"] + stats["disk_hits"]
        return JSONResponse({"cache_hits": hits, "cache_misses": stats["misses"]} | stats)

    routes = [
        Route("/", health, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/setup", setup, methods=["POST"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/webhook", webhook, methods=["POST"]),
        Route("/versions", versions, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]

    async def guard(request: Request, call_next):
        if not check_basic_auth(request.headers.get("authorization"), basic_auth):
            return JSONResponse(
                {
                    "error": "Unauthorized: set the backend's Basic auth user/password in Label "
                    "Studio (Settings > Model > Edit > Authentication).",
                    "status": "error",
                },
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="sam3"'},
            )
        try:
            return await call_next(request)
        except BackendError as exc:
            return error(str(exc), exc.status)
        except Exception as exc:  # never a dead server: report, log the traceback, go on
            log.exception("unexpected error on %s", request.url.path)
            return error(f"{type(exc).__name__}: {exc}", 500)

    return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)])
