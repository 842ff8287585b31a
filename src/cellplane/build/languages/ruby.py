"""Ruby: run by the machine's ruby, started by a Procfile (``web: ruby app.rb``, ``bundle exec ...``).

Detection: a ``Gemfile``, ``config.ru`` or ``*.rb`` file at the top. rubygems.org is not reachable from
the build machines: a Gemfile that asks for gems fails with one line unless they are vendored
(``vendor/bundle/`` or ``vendor/cache/``). Without a Procfile nothing says how to start the app, and
that is the one line too.
"""

from __future__ import annotations

import re
from typing import Protocol

from cellplane.build.plan import BuildFailure

_GEM = re.compile(r"""^\s*gem\s+["']([^"']+)["']""", re.M)


class Files(Protocol):
    def is_file(self, rel: str, strict: bool = True) -> bool: ...

    def is_dir(self, rel: str, strict: bool = True) -> bool: ...

    def read(self, rel: str) -> str: ...

    def top_level(self, suffix: str) -> list[str]: ...


def found(files: Files) -> bool:
    return files.is_file("Gemfile") or files.is_file("config.ru") or bool(files.top_level(".rb"))


def gems(files: Files) -> list[str]:
    return _GEM.findall(files.read("Gemfile")) if files.is_file("Gemfile") else []


def check_dependencies(files: Files) -> None:
    needed = gems(files)
    if needed and not (files.is_dir("vendor/bundle", strict=False) or files.is_dir("vendor/cache", strict=False)):
        listed = ", ".join(needed[:3]) + (f" and {len(needed) - 3} more" if len(needed) > 3 else "")
        raise BuildFailure(f"the Gemfile asks for {listed} from rubygems.org, which the build machine cannot reach; "
                           "vendor them (bundle cache, then commit vendor/cache) or use only Ruby's standard library",
                           where="Gemfile")


def refuse_without_procfile(files: Files) -> None:
    """A Ruby app reached detection without a Procfile: say what to add."""
    if found(files):
        marker = next((m for m in ("Gemfile", "config.ru") if files.is_file(m)), None) or files.top_level(".rb")[0]
        raise BuildFailure(f"{marker} makes this a Ruby app, and Ruby apps start from a Procfile: add one "
                           "(web: ruby app.rb, or web: bundle exec rackup -p $PORT)", where="Procfile")
