"""Dockerfile text as instructions: logical lines, the escape directive, ``--flags``, the JSON exec form, stages.

Pure functions over text; every refusal is a :class:`BuildFailure` made by :func:`fail` (``Dockerfile line N: ...``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cellplane.build.plan import BuildFailure

SUPPORTED_INSTRUCTIONS = (
    "FROM", "WORKDIR", "COPY", "ADD", "RUN", "ENV", "ARG", "EXPOSE", "USER", "CMD", "ENTRYPOINT", "LABEL",
    "HEALTHCHECK",
)  # fmt: skip
MAX_DOCKERFILE_BYTES = 1024 * 1024
_EXEC_FORMS = frozenset({"RUN", "CMD", "ENTRYPOINT", "COPY", "ADD"})  # may be written as a JSON array
_FLAGGED = frozenset({"RUN", "COPY", "ADD"})  # take --flags before their arguments
_HEREDOC = re.compile(r"(?:^|\s)<<-?([\"']?)[A-Za-z_]\w*\1(?:\s|$)")
_DIRECTIVE = re.compile(r"#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$")
_FLAG = re.compile(r"(--[A-Za-z][\w-]*(?:=\S*)?)(?:\s+|$)")


def fail(line: int, message: str) -> BuildFailure:
    """The refusal of the instruction at ``line``: ``Dockerfile line N: message``."""
    return BuildFailure(f"Dockerfile line {line}: {message}")


@dataclass
class Instruction:
    """One Dockerfile instruction: its first line, its keyword (upper case) and its raw arguments.

    ``json_form`` is the exec form (``["gunicorn", "app:app"]``) of RUN, CMD, ENTRYPOINT, COPY and
    ADD when the arguments (after ``--flags``) are a JSON array of strings, else None.
    """

    line: int
    keyword: str
    args: str
    json_form: list[str] | None = None


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, in order.

    Comments, blank lines and parser directives are dropped, backslash continuations joined (an
    instruction's ``line`` is its first line), keywords upper-cased. Heredocs raise BuildFailure.
    """
    instructions: list[Instruction] = []
    for line, content in _logical_lines(text):
        keyword, args = head(content)
        keyword = keyword.upper()
        json_form = None
        if keyword in _EXEC_FORMS:
            rest = split_flags(args)[1] if keyword in _FLAGGED else args
            if keyword in _FLAGGED and _HEREDOC.search(rest):
                raise fail(line, f"{keyword} with a heredoc (<<EOF) is not supported; put the text in a file")
            json_form = json_array(rest)
        instructions.append(Instruction(line, keyword, args, json_form))
    return instructions


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(first line number, text)`` of each instruction, comments dropped and continuations joined."""
    lines = text.removeprefix("\ufeff").split("\n")
    escape = _escape_character(lines)
    start, parts = 0, list[str]()
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines, also inside a continuation, as Docker does
        if not parts:
            start = number
        body = raw.rstrip()
        if body.endswith(escape):
            parts.append(body[: -len(escape)])
            continue
        parts.append(body)
        yield start, "".join(parts)
        parts = []
    if parts:
        yield start, "".join(parts)


def head(text: str) -> tuple[str, str]:
    """``("RUN", "echo hi")``: the first word of a text and the (stripped) rest."""
    parts = text.strip().split(None, 1)
    return (parts[0], parts[1].strip()) if len(parts) == 2 else (parts[0] if parts else "", "")


def _escape_character(lines: list[str]) -> str:
    """The continuation character: ``\\`` unless a ``# escape=`` parser directive says otherwise."""
    for line in lines:
        match = _DIRECTIVE.match(line.strip())
        if not match:
            break
        if match.group(1).lower() == "escape" and match.group(2) in ("\\", "`"):
            return match.group(2)
    return "\\"


def split_flags(args: str) -> tuple[list[str], str]:
    """``(["--from=x", ...], rest)``: the leading ``--flag[=value]`` words of RUN, COPY and ADD."""
    flags = []
    rest = args
    while match := _FLAG.match(rest):
        flags.append(match.group(1))
        rest = rest[match.end() :]
    return flags, rest


def json_array(args: str) -> list[str] | None:
    """The exec form ``["a", "b"]`` as a list, or None when the arguments are not a JSON string array."""
    if not args.startswith("["):
        return None
    try:
        value = json.loads(args)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def split_stages(instructions: list[Instruction]) -> tuple[list[Instruction], list[list[Instruction]]]:
    """``(ARGs before the first FROM, stages)``; each stage starts with its FROM."""
    preamble: list[Instruction] = []
    stages: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            stages.append([instruction])
        elif stages:
            stages[-1].append(instruction)
        elif instruction.keyword == "ARG":
            preamble.append(instruction)
        else:
            raise fail(instruction.line, f"{instruction.keyword} comes before the first FROM")
    if not stages:
        raise BuildFailure("the Dockerfile has no FROM instruction")
    return preamble, stages


def display_path(dockerfile: Path, context: Path) -> str:
    real = dockerfile.resolve()
    return real.relative_to(context).as_posix() if real.is_relative_to(context) else dockerfile.name


def read_dockerfile(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_DOCKERFILE_BYTES:
            raise BuildFailure("the Dockerfile is larger than 1 MiB")
        data = path.read_bytes()
    except OSError as e:
        raise BuildFailure(f"cannot read the Dockerfile: {e.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BuildFailure("the Dockerfile is not UTF-8 text") from None
