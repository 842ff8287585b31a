"""Project files of languages Cellplane does not build, so that such a source fails with one line naming the
file, what is missing, and what would make it work, instead of "cannot tell how to build"."""

from __future__ import annotations

from typing import Protocol

from cellplane.build.plan import BuildFailure

# (file name or suffix, language, what the machine lacks)
MARKERS: tuple[tuple[str, str, str], ...] = (
    (".csproj", ".NET (C#)", ".NET SDK"),
    (".fsproj", ".NET (F#)", ".NET SDK"),
    (".vbproj", ".NET (Visual Basic)", ".NET SDK"),
    (".sln", ".NET", ".NET SDK"),
    ("Ballerina.toml", "Ballerina", "Ballerina tool (bal)"),
    ("Cargo.toml", "Rust", "Rust build strategy"),
    ("mix.exs", "Elixir", "Elixir toolchain"),
    ("Package.swift", "Swift", "Swift toolchain"),
    ("stack.yaml", "Haskell", "Haskell toolchain"),
    ("build.sbt", "Scala (sbt)", "sbt"),
    ("pubspec.yaml", "Dart", "Dart SDK"),
    ("deno.json", "Deno", "Deno"),
)
SUPPORTED = "Go, Java, Node.js, PHP, Python, Ruby (with a Procfile) and static sites"


class Files(Protocol):
    shown: str

    def is_file(self, rel: str, strict: bool = True) -> bool: ...

    def top_level(self, suffix: str) -> list[str]: ...


def refuse(files: Files) -> None:
    """Raise the one-line failure for the first project file of an unsupported language; else return."""
    for marker, language, missing in MARKERS:
        found = files.top_level(marker) if marker.startswith(".") else ([marker] if files.is_file(marker) else [])
        if found:
            raise BuildFailure(
                f"{found[0]} makes this a {language} project, and this build machine has no {missing}: "
                f"Cellplane builds {SUPPORTED}; set build.command and build.run to build and start it with "
                "tools the machine has", where=found[0])
