"""Ruby: run by the machine's ruby, started by a Procfile (``web: ruby app.rb``, ``bundle exec ...``).

Detection: a ``Gemfile``, ``config.ru`` or ``*.rb`` file at the top. rubygems.org is not reachable from
the build machines: a Gemfile that asks for gems fails with one line unless they are vendored. Gems in
``vendor/cache/`` (``bundle cache``) are installed by the build with ``bundle install --local`` into
``vendor/bundle/``, recorded in ``.bundle/config``, so ``bundle exec`` in the artifact finds them with
no network and no home directory (about 0.6 s for a few pure-Ruby gems); a committed ``vendor/bundle/``
is used as it is. ``Gemfile.lock``'s exact versions go into the manifest. Without a Procfile nothing says
how to start the app, and that is the one line too.
"""

from __future__ import annotations

import re
from typing import Protocol

from cellplane.build.plan import BuildFailure, Plan

_GEM = re.compile(r"""^\s*gem\s+["']([^"']+)["']""", re.M)
_RUBY = re.compile(r"""^\s*ruby\s+["']([^"']+)["']""", re.M)
_LOCKED = re.compile(r"^    ([A-Za-z0-9_.-]+) \(([^)\s]+)\)$", re.M)  # a spec of Gemfile.lock: 4 spaces, name (version)


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


def add_build(plan: Plan, files: Files) -> None:
    """Check the Gemfile's gems can be had; install vendor/cache's into vendor/bundle; record the version asked."""
    check_dependencies(files)
    if gems(files) and files.is_dir("vendor/cache", strict=False) and not files.is_dir("vendor/bundle", strict=False):
        plan.build_commands = ["bundle config set --local path vendor/bundle", "bundle install --local"]
    plan.language_version = plan.language_version or version(files)


def version(files: Files) -> str | None:
    """The Ruby the source asks for: ``.ruby-version``, else the Gemfile's ``ruby "x"`` line."""
    if files.is_file(".ruby-version"):
        text = files.read(".ruby-version").strip()
        if text:
            return text.splitlines()[0].removeprefix("ruby-")
    found = _RUBY.search(files.read("Gemfile")) if files.is_file("Gemfile") else None
    return found.group(1) if found else None


def locked_gems(text: str) -> list[tuple[str, str]]:
    """(name, version) of every gem a Gemfile.lock pins."""
    return sorted(set(_LOCKED.findall(text)))


def refuse_without_procfile(files: Files) -> None:
    """A Ruby app reached detection without a Procfile: say what to add."""
    if found(files):
        marker = next((m for m in ("Gemfile", "config.ru") if files.is_file(m)), None) or files.top_level(".rb")[0]
        raise BuildFailure(f"{marker} makes this a Ruby app, and Ruby apps start from a Procfile: add one "
                           "(web: ruby app.rb, or web: bundle exec rackup -p $PORT)", where="Procfile")
