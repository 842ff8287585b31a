"""PHP: served by PHP's built-in server (``php -S 0.0.0.0:$PORT -t <docroot>``) with the machine's php-cli.

Detection: a ``composer.json``, or an ``index.php`` at the top or in ``public/``. The document root is
``public/`` when it holds ``index.php``, else the top; a request for a path that is not a file falls
back to the nearest ``index.php``, so front controllers work without a router script. The server forks
``PHP_CLI_SERVER_WORKERS`` (4) workers, so a slow request does not hold up the others (a readiness probe
included); each is a php-cli process of about 10 MiB. Packagist is not
reachable from the build machines: a ``composer.json`` that requires packages (anything but ``php`` and
``ext-*``/``lib-*`` platform entries) fails with one line unless ``vendor/autoload.php`` is committed.
Nothing is installed, so the build costs a file copy; ``composer.json``'s ``require.php`` is recorded as
the version asked for.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from cellplane.build.plan import BuildFailure, Plan

PLATFORM = ("php", "composer-plugin-api", "composer-runtime-api")
WORKERS = 4


class Files(Protocol):
    def is_file(self, rel: str, strict: bool = True) -> bool: ...

    def read(self, rel: str) -> str: ...


def found(files: Files) -> bool:
    return any(files.is_file(name) for name in ("composer.json", "index.php", "public/index.php"))


def _composer(files: Files) -> dict[str, Any]:
    if not files.is_file("composer.json"):
        return {}
    try:
        data = json.loads(files.read("composer.json"))
    except json.JSONDecodeError as e:
        raise BuildFailure(f"composer.json is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                           where="composer.json") from e
    if not isinstance(data, dict):
        raise BuildFailure("composer.json must hold a JSON object", where="composer.json")
    return data


def packages(data: dict[str, Any]) -> list[str]:
    """The Packagist packages ``require`` names (platform entries left out)."""
    require = data.get("require") or {}
    if not isinstance(require, dict):
        raise BuildFailure("composer.json: require must map package names to versions", where="composer.json")
    return [name for name in require if name not in PLATFORM and not name.startswith(("ext-", "lib-"))]


def check_dependencies(files: Files) -> dict[str, Any]:
    """composer.json's data; a BuildFailure when it needs packages from Packagist that are not vendored."""
    data = _composer(files)
    needed = packages(data)
    if needed and not files.is_file("vendor/autoload.php"):
        listed = ", ".join(needed[:3]) + (f" and {len(needed) - 3} more" if len(needed) > 3 else "")
        raise BuildFailure(f"composer.json requires {listed} from Packagist, which the build machine cannot reach; "
                           "commit vendor/ (composer install, then add it) or remove the requirement",
                           where="composer.json")
    return data


def plan(files: Files, component_type: str) -> Plan:
    data = check_dependencies(files)
    docroot = "public" if files.is_file("public/index.php") else "."
    run = f"php -S 0.0.0.0:$PORT -t {docroot}"
    why = "composer.json" if files.is_file("composer.json") else f"{'public/' if docroot != '.' else ''}index.php"
    vendored = " with its committed vendor/" if files.is_file("vendor/autoload.php") else ""
    result = Plan(strategy="php", language="php", run=run, env={"PHP_CLI_SERVER_WORKERS": str(WORKERS)},
                  reason=f"PHP app ({why}): PHP's built-in server serves {docroot if docroot != '.' else 'the top'}"
                         f"{vendored} on $PORT.")
    require = data.get("require") or {}
    version = require.get("php") if isinstance(require, dict) else None
    result.language_version = version if isinstance(version, str) else None
    if component_type not in ("service", "web-app", "webhook", "api-proxy"):
        raise BuildFailure(f"a PHP app without a Procfile is served by PHP's built-in server, which a {component_type} "
                           "cannot be; add a Procfile (job: php job.php) or set build.run", where="build.run")
    return result
