"""The image of a static site: an nginx-class base serving the site's files, as a non-root user.

The platform's own static server (``cellplane.runtime.static``) runs on the local data plane; in an image the
base's nginx serves instead (``DEFAULT_BASE_IMAGES["static"]`` is ``nginx:1.27-alpine``; ``nginxinc/
nginx-unprivileged`` fits too: both keep their site at ``/usr/share/nginx/html`` and ``nginx`` on ``PATH``). The
site's layer, built from the artifact as deterministically as any other (``layer.from_artifact`` with a placement):

- ``/usr/share/nginx/html/...``: the site's files (the artifact's static root), over an opaque whiteout
  (``.wh..wh..opq``) that hides the base's own ``index.html`` and ``50x.html``;
- ``/etc/nginx/nginx.conf``: a whole server config in place of the base's (``nginx_conf``): no ``user``
  directive, pid and temporary files in ``/tmp``, logs to stdout/stderr, listening on an unprivileged port, so
  uid 10014 runs it; the single-page-app fallback (``try_files $uri $uri/ /index.html``) for paths without an
  extension when the build asked for it (``static.spa``, on by default), an unknown asset 404, ``/assets/`` and
  ``/static/`` cached for a year, dotfiles 404 except ``/.well-known/``, as the platform's server does;
- ``/app/manifest.json``: the artifact's record, as in every image.

The config's ``Cmd`` is nginx images' own (``nginx -g "daemon off;"``) and ``Entrypoint`` is cleared: the official
image's ``/docker-entrypoint.sh`` only edits ``conf.d/`` files that this config does not include (and that the
non-root user could not write). ``StopSignal`` is ``SIGQUIT`` (nginx's graceful stop). Cost: the same single pass
as the application layer of any artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cellplane.images import layer as image_layer

DOCROOT = "usr/share/nginx/html"
CONFIG = "etc/nginx/nginx.conf"
COMMAND = ["nginx", "-g", "daemon off;"]
STOP_SIGNAL = "SIGQUIT"
UNPRIVILEGED = 8080  # the port when the artifact names none, or one below 1024 (a non-root user cannot bind it)
_OPAQUE = ".wh..wh..opq"  # OCI's opaque whiteout: the directory's lower-layer contents are hidden
_IMMUTABLE = "public, max-age=31536000, immutable"


def is_static(meta: dict[str, Any]) -> bool:
    return meta.get("language") == "static" or bool(meta.get("static"))


def listen_port(port: object) -> int:
    """The port nginx listens on in the image: the artifact's when it is unprivileged, else 8080."""
    return port if isinstance(port, int) and 1024 <= port <= 65535 else UNPRIVILEGED


def nginx_conf(port: int, spa: bool) -> str:
    """The whole nginx.conf of a static site's image (see the module's docstring)."""
    fallback = "try_files $uri $uri/ /index.html;" if spa else "try_files $uri $uri/ =404;"
    return f"""# Written by Cellplane: a static site served by nginx as a non-root user.
worker_processes auto;
pid /tmp/nginx.pid;
error_log /dev/stderr warn;

events {{
    worker_connections 1024;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    server_tokens off;
    client_body_temp_path /tmp/nginx-client-body;
    proxy_temp_path /tmp/nginx-proxy;
    fastcgi_temp_path /tmp/nginx-fastcgi;
    uwsgi_temp_path /tmp/nginx-uwsgi;
    scgi_temp_path /tmp/nginx-scgi;

    server {{
        listen {port};
        root /{DOCROOT};
        index index.html;
        add_header Cache-Control "no-cache";

        location ~ "(^|/)\\.(?!well-known/)" {{
            return 404;
        }}
        location ^~ /assets/ {{
            add_header Cache-Control "{_IMMUTABLE}";
            try_files $uri =404;
        }}
        location ^~ /static/ {{
            add_header Cache-Control "{_IMMUTABLE}";
            try_files $uri =404;
        }}
        location ~ "\\.[^/]+$" {{
            try_files $uri =404;
        }}
        location / {{
            {fallback}
        }}
    }}
}}
"""


def site_layer(artifact: Path, meta: dict[str, Any], dest: Path) -> image_layer.Layer:
    """The layer of a static site's image: its files at the docroot, the nginx config, the manifest."""
    static = meta.get("static") or {}
    root = str(static.get("root") or "files").strip("/")
    spa = static.get("spa") is not False
    conf = nginx_conf(listen_port(meta.get("port")), spa).encode()

    def place(name: str) -> str | None:
        if name == "manifest.json":
            return f"{image_layer.ROOT}/manifest.json"
        if name.startswith(root + "/"):
            return f"{DOCROOT}/{name.removeprefix(root + '/')}"
        return None  # the root itself is in ``extra``; nothing else of a static artifact runs

    parents = ["etc", "etc/nginx", "usr", "usr/share", "usr/share/nginx", DOCROOT]
    extra: list[tuple[str, bytes | None]] = [(image_layer.ROOT, None), *((p, None) for p in parents),
                                             (CONFIG, conf), (f"{DOCROOT}/{_OPAQUE}", b"")]
    return image_layer.from_artifact(artifact, dest, place=place, extra=extra)
