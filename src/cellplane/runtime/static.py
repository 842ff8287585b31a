"""The platform's static file server for built web apps, with single-page-app fallback.

``python -m cellplane.runtime.static --root DIR [--port P] [--host H] [--no-spa]``

* GET and HEAD only; anything else is 405.
* Files under the root are served with their content type, ETag and Last-Modified, and
  conditional requests (If-None-Match, If-Modified-Since) get 304.
* A directory serves its ``index.html``; directories are never listed.
* Nothing outside the root is ever served: ``..`` segments (raw or percent-encoded), NUL bytes and
  symlinks that resolve outside the root are 404. Dotfiles (``.env``, ``.git/``...) are treated as
  missing, except under ``/.well-known/``.
* With SPA fallback, an unknown path that looks like a page (no extension in its last segment,
  or an Accept header asking for text/html) gets the root ``index.html`` with status 200; an
  unknown asset (``/missing.js``) is always 404, as is anything under ``/assets/`` or ``/static/``.
* ``/assets/`` and ``/static/`` hold hashed build output: cached for a year, ``immutable``.
  Everything else (HTML above all) is ``no-cache``: browsers revalidate with the ETag.
* ``/healthz`` is not special; readiness is ``GET /`` answering 200.
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.staticfiles import NotModifiedResponse, StaticFiles

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
ASSET_DIRS = frozenset({"assets", "static"})
DEFAULT_PORT = 8080

# Web types that must not depend on the host's /etc/mime.types (slim images lack it).
_WEB_TYPES = {
    ".html": "text/html", ".htm": "text/html", ".css": "text/css", ".txt": "text/plain",
    ".js": "text/javascript", ".mjs": "text/javascript", ".cjs": "text/javascript",
    ".json": "application/json", ".map": "application/json", ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm", ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp", ".avif": "image/avif",
    ".ico": "image/x-icon", ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
    ".xml": "application/xml", ".pdf": "application/pdf",
}


@dataclass(frozen=True)
class _Found:
    path: Path
    stat: os.stat_result


class _Outside(Exception):
    """The request names something outside the root (or unservable): always 404, never a fallback."""


class StaticSite:
    """Resolves request paths under one root directory and answers with files."""

    def __init__(self, root: Path, *, spa: bool = True) -> None:
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise NotADirectoryError(f"static root {root} is not a directory")
        self.spa = spa
        self._conditional = StaticFiles(directory=self.root)  # for its If-None-Match/If-Modified-Since logic

    async def serve(self, request: Request) -> Response:
        """The endpoint: a file, the SPA's index.html, or 404."""
        path = "/" + request.path_params["path"]
        try:
            found = await anyio.to_thread.run_sync(self.lookup, path)
        except _Outside:
            return _not_found()
        if found is not None:
            return self._file(found, request, _cache_control(path, found.path))
        if self.spa and _wants_page(path, request.headers):
            index = await anyio.to_thread.run_sync(self._index)
            if index is not None:
                return self._file(index, request, REVALIDATE)
        return _not_found()

    def lookup(self, url_path: str) -> _Found | None:
        """The regular file ``url_path`` names (a directory's index.html), None if there is none.

        Raises :class:`_Outside` for paths that try to leave the root.
        """
        parts = _segments(url_path)
        target = os.path.realpath(self.root.joinpath(*parts))
        found = self._stat_inside(target)
        if found is not None and stat.S_ISDIR(found.stat.st_mode):
            found = self._stat_inside(os.path.join(target, "index.html"))
        if found is None or not stat.S_ISREG(found.stat.st_mode):
            return None
        return found

    def _index(self) -> _Found | None:
        try:
            return self.lookup("/")
        except _Outside:
            return None

    def _stat_inside(self, path: str) -> _Found | None:
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(self.root):
            raise _Outside(path)
        try:
            return _Found(real, real.stat())
        except (OSError, ValueError):
            return None

    def _file(self, found: _Found, request: Request, cache_control: str) -> Response:
        response = FileResponse(found.path, stat_result=found.stat, media_type=_media_type(found.path),
                                headers={"cache-control": cache_control})
        if self._conditional.is_not_modified(response.headers, request.headers):
            return NotModifiedResponse(response.headers)
        return response


def _segments(url_path: str) -> list[str]:
    """The decoded path's segments, refusing traversal, NULs, backslashes and dotfiles."""
    parts = [p for p in url_path.split("/") if p not in ("", ".")]
    for index, part in enumerate(parts):
        if part == ".." or "\x00" in part or "\\" in part:
            raise _Outside(url_path)
        if part.startswith(".") and not (index == 0 and part == ".well-known"):
            raise _Outside(url_path)
    return parts


def _wants_page(url_path: str, headers: Headers) -> bool:
    """Whether an unknown path should get the SPA's index.html: a route, not a missing asset."""
    parts = [p for p in url_path.split("/") if p]
    if parts and parts[0] in ASSET_DIRS:
        return False
    last = parts[-1] if parts else ""
    has_extension = "." in last.strip(".")
    return not has_extension or "text/html" in headers.get("accept", "")


def _cache_control(url_path: str, file: Path) -> str:
    parts = [p for p in url_path.split("/") if p]
    if parts and parts[0] in ASSET_DIRS and file.suffix.lower() not in (".html", ".htm"):
        return IMMUTABLE
    return REVALIDATE


def _media_type(path: Path) -> str:
    return _WEB_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404, headers={"cache-control": REVALIDATE})


def create_app(root: Path, *, spa: bool = True) -> Starlette:
    """The ASGI app serving ``root``; ``spa`` turns on the index.html fallback for unknown pages."""
    site = StaticSite(root, spa=spa)
    routes = [Route("/{path:path}", site.serve, methods=["GET", "HEAD"])]
    return Starlette(routes=routes)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cellplane.runtime.static",
                                     description="Serve a built web app's files, with SPA fallback.")
    parser.add_argument("--root", required=True, type=Path, help="the directory to serve")
    parser.add_argument("--port", type=int, default=None, help=f"port (default: $PORT, else {DEFAULT_PORT})")
    parser.add_argument("--host", default="0.0.0.0", help="interface to bind (default: 0.0.0.0)")  # noqa: S104
    parser.add_argument("--no-spa", dest="spa", action="store_false",
                        help="unknown paths are 404 instead of the root index.html")
    args = parser.parse_args(argv)
    if args.port is None:
        env_port = os.environ.get("PORT", "").strip()
        if env_port and not env_port.isdigit():
            parser.error(f"$PORT is not a port number: {env_port!r}")
        args.port = int(env_port) if env_port else DEFAULT_PORT
    if not args.root.is_dir():
        parser.error(f"--root {args.root} is not a directory")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the server until SIGINT/SIGTERM.

    On a signal uvicorn stops accepting connections, finishes in-flight requests, then re-raises
    the signal: the process ends as killed by SIGTERM (exit status -15 / 143), after a clean shutdown.
    """
    import uvicorn

    args = _parse_args(argv)
    app = create_app(args.root, spa=args.spa)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, server_header=False)


if __name__ == "__main__":
    main()
