"""Build a Dockerfile without Docker: replay its stages into file trees and return the last stage's :class:`Plan`.

Cellplane runs applications as plain OS processes, so a Dockerfile is never executed in a
container. :func:`prepare` works out which stages the last one needs (:mod:`cellplane.build.stages`),
and replays each, in Dockerfile order, against a directory that models that stage's filesystem root
(image path ``/app/x.py`` is ``<dir>/app/x.py``); the last stage's directory is ``work``, the artifact:

* ``FROM`` names a base image whose *kind* (:mod:`cellplane.build.baseimages`) says which of the
  machine's tools its RUN lines may use (:mod:`cellplane.build.toolchains`), or an earlier stage;
* ``COPY`` / ``ADD`` copy local files from the build context; ``.git`` and what ``.dockerignore``
  excludes are left out, no source may lead outside the context, nothing is written outside the
  stage's directory; ``COPY --from`` copies from an earlier stage's directory;
* ``WORKDIR`` creates directories; ``ARG`` / ``ENV`` values are substituted the way Docker does;
* ``RUN`` is split into simple commands: ``pip install`` and ``npm ci`` / ``npm install`` / ``yarn``
  become :class:`StepHooks` calls, user management (``adduser``, ``chown``...) and the system packages
  a runtime image adds (``ca-certificates``, ``tzdata``...) are skipped with a note, build tools of the
  stage's image (``go build``, ``mvn``...) and a short allow-list of file and script commands run
  through ``hooks.shell`` with image paths rewritten into the stage's directory, and anything else
  (other system packages, pipes...) fails;
* ``EXPOSE``, ``CMD`` and ``ENTRYPOINT`` become the plan's port and start command; ``LABEL`` is
  recorded, ``HEALTHCHECK`` of a local URL becomes the readiness probe; ``USER`` is noted.

The last stage becomes what it is: a python or node app, a Go or other native binary, a jar run by
the machine's java, or static files (nginx, httpd, caddy) served by the platform's static server.
Every refusal is a :class:`BuildFailure` whose message starts with ``Dockerfile line N:`` and whose
``where`` names the Dockerfile."""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import platform
import posixpath
import re
import shlex
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cellplane.build import toolchains
from cellplane.build.baseimages import STATIC_ROOTS, BaseImage, classify
from cellplane.build.plan import BuildFailure, Language, Plan, StepHooks
from cellplane.build.stages import StageInfo, lineage, resolve_source, targets

__all__ = ["SUPPORTED_INSTRUCTIONS", "Instruction", "parse", "prepare"]

SUPPORTED_INSTRUCTIONS = (
    "FROM", "WORKDIR", "COPY", "ADD", "RUN", "ENV", "ARG", "EXPOSE", "USER", "CMD", "ENTRYPOINT", "LABEL",
    "HEALTHCHECK",
)  # fmt: skip
MAX_DOCKERFILE_BYTES = 1024 * 1024

NodeInstall = Literal["ci", "install"]

_EXEC_FORMS = frozenset({"RUN", "CMD", "ENTRYPOINT", "COPY", "ADD"})  # may be written as a JSON array
_FLAGGED = frozenset({"RUN", "COPY", "ADD"})  # take --flags before their arguments
_HEREDOC = re.compile(r"(?:^|\s)<<-?([\"']?)[A-Za-z_]\w*\1(?:\s|$)")
_DIRECTIVE = re.compile(r"#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$")
_FLAG = re.compile(r"(--[A-Za-z][\w-]*(?:=\S*)?)(?:\s+|$)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])(.*))?", re.S)
# One word as Docker splits an instruction's arguments: quotes and escapes kept for later expansion.
_RAW_WORD = re.compile(r"""(?:[^\s"'\\]|\\.?|"(?:[^"\\]|\\.)*"?|'[^']*'?)+""", re.S)
_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?", re.I)
_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)")
_LOCAL_URL = re.compile(r"https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(?::\d+)?(/[^\s'\"|;&]*)?")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SHELL_PATH = re.compile(r"(?<![^\s='\"])/[^\s'\";&|<>()`]*")

_PYTHON = re.compile(r"python(?:3(?:\.\d+)?)?")
_PIP = re.compile(r"pip(?:3(?:\.\d+)?)?")
_USER_COMMANDS = frozenset(
    {"adduser", "addgroup", "useradd", "groupadd", "usermod", "groupmod", "deluser", "delgroup", "chown", "chgrp"}
)
_PACKAGE_MANAGERS = frozenset(
    {"apt-get", "apt", "aptitude", "dpkg", "apk", "yum", "dnf", "microdnf", "rpm", "zypper", "pacman"}
)
_SYSTEM_NOOPS = frozenset({"update-ca-certificates", "ldconfig"})
_SYSTEM_MAINTENANCE = frozenset({"update", "upgrade", "clean", "autoclean", "autoremove", "cache", "makecache"})
_SYSTEM_VALUE_OPTIONS = frozenset({"-t", "--virtual", "-o", "--option", "-X", "--repository", "--setopt"})
# Packages a runtime image installs that the platform does not need: the machine has them, or (tini,
# dumb-init: an init for PID 1) the platform's supervisor does their job.
_RUNTIME_EXTRAS = frozenset({"ca-certificates", "tzdata", "curl", "wget", "tini", "dumb-init"})
_FILE_COMMANDS = frozenset({"mkdir", "cp", "mv", "rm", "touch", "echo", "chmod", "ln", "ls", "cat", "sed"})
_SCRIPT_COMMANDS = frozenset({"node", "npx"})
_ALLOWED_RUN = (
    "pip install, npm ci/install, npm run, yarn install/build/run, npx, python, node, "
    "mkdir, cp, mv, rm, touch, echo, chmod, ln, cd, ls, cat, sed, true"
)
# What a base image holds that the machine has too: COPY --from of these, when a stage did not make them, is a no-op.
_SYSTEM_PATHS = ("/etc/ssl/", "/etc/ca-certificates", "/usr/share/zoneinfo", "/usr/share/ca-certificates",
                 "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/mime.types",
                 "/usr/local/share/ca-certificates")
_HOST_DEVICES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})
_ARCHIVE_SUFFIXES = (
    ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tbz2", ".tar.xz", ".txz", ".tar.zst", ".tzst", ".tar.lzma",
)  # fmt: skip

# pip install options: those that take a value, those that do not, and those worth a note when ignored.
_PIP_VALUE_OPTIONS = frozenset(
    {
        "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url", "--extra-index-url",
        "-f", "--find-links", "--trusted-host", "-t", "--target", "--prefix", "--root", "--progress-bar",
        "--timeout", "--retries", "--platform", "--python-version", "--implementation", "--abi", "--only-binary",
        "--no-binary", "--root-user-action", "--cache-dir", "--src", "--upgrade-strategy", "--log", "--proxy",
        "--cert", "--client-cert", "--use-feature", "--use-deprecated", "--config-settings", "-C",
        "--global-option", "--exists-action",
    }
)  # fmt: skip
_PIP_FLAGS = frozenset(
    {
        "--no-cache-dir", "--upgrade", "-U", "--user", "--prefer-binary", "--no-deps", "--quiet", "--verbose",
        "--compile", "--no-compile", "--force-reinstall", "--ignore-installed", "-I", "--pre",
        "--no-warn-script-location", "--disable-pip-version-check", "--break-system-packages",
        "--no-build-isolation", "--require-hashes", "--no-input", "--isolated", "--no-color", "--no-index",
    }
)  # fmt: skip
_PIP_NOTED = frozenset(
    {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "-t", "--target",
     "--prefix", "--root", "--no-index", "--user", "--no-deps"}
)  # fmt: skip
_PIP_SELF = frozenset({"pip", "setuptools", "wheel"})
_NPM_VALUE_OPTIONS = frozenset({"--loglevel", "--registry", "--cache", "--omit", "--include", "--prefix", "-w"})
_YARN_VALUE_OPTIONS = frozenset({"--network-timeout", "--cache-folder", "--modules-folder", "--registry"})


def _fail(line: int, message: str) -> BuildFailure:
    return BuildFailure(f"Dockerfile line {line}: {message}")


# --------------------------------------------------------------------------------------------
# Parsing


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
        keyword, args = _head(content)
        keyword = keyword.upper()
        json_form = None
        if keyword in _EXEC_FORMS:
            rest = _split_flags(args)[1] if keyword in _FLAGGED else args
            if keyword in _FLAGGED and _HEREDOC.search(rest):
                raise _fail(line, f"{keyword} with a heredoc (<<EOF) is not supported; put the text in a file")
            json_form = _json_array(rest)
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


def _head(text: str) -> tuple[str, str]:
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


def _split_flags(args: str) -> tuple[list[str], str]:
    """``(["--from=x", ...], rest)``: the leading ``--flag[=value]`` words of RUN, COPY and ADD."""
    flags = []
    rest = args
    while match := _FLAG.match(rest):
        flags.append(match.group(1))
        rest = rest[match.end() :]
    return flags, rest


def _json_array(args: str) -> list[str] | None:
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


# --------------------------------------------------------------------------------------------
# Words: quotes, escapes and variable substitution


@dataclass
class _Word:
    """A shell word after quote removal and substitution; ``pattern`` is set when it has unquoted globs."""

    text: str
    pattern: str | None = None


@dataclass
class _Op:
    symbol: str


@dataclass
class _Command:
    """One simple command of a RUN line, with an optional ``>`` / ``>>`` redirection."""

    words: list[_Word]
    redirect: tuple[str, _Word] | None = None


class _Lexer:
    """Docker's word rules: quotes, backslash escapes, ``$VAR``, ``${VAR}``, ``${VAR:-x}``, ``${VAR:+x}``.

    In word mode the whole text is one word (instruction arguments, split beforehand by
    ``_RAW_WORD``). In shell mode (RUN) it splits on whitespace, recognises shell operators, splits
    unquoted substitutions into fields and remembers unquoted glob characters, like ``sh`` would;
    variables the Dockerfile does not define are collected in ``unknown`` and expand to nothing.
    """

    def __init__(
        self, text: str, env: Mapping[str, str], line: int, *, shell_syntax: bool, unknown: list[str] | None = None
    ) -> None:
        self.text, self.env, self.line, self.shell = text, env, line, shell_syntax
        self.unknown = unknown if unknown is not None else []
        self.pos = 0
        self.tokens: list[_Word | _Op] = []
        self._chars: list[str] = []
        self._pattern: list[str] = []
        self._glob = False
        self._open = False

    def tokenize(self) -> list[_Word | _Op]:
        while self.pos < len(self.text):
            self._step()
        self._end_word()
        return self.tokens

    def _step(self) -> None:
        char = self.text[self.pos]
        if self.shell and char in " \t\r\n":
            self._end_word()
            self.pos += 1
        elif self.shell and char == "#" and not self._open:
            self.pos = len(self.text)  # a comment runs to the end
        elif char == "'":
            self._single_quoted()
        elif char == '"':
            self._double_quoted()
        elif char == "\\":
            self._add(self.text[self.pos + 1 : self.pos + 2] or "\\", quoted=True)
            self.pos += 2
        elif char == "$":
            self._add_expansion(self._dollar(), quoted=False)
        elif self.shell and char in "&;|<>()`":
            self._operator()
        else:
            self._add(char, quoted=False)
            self.pos += 1

    def _single_quoted(self) -> None:
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise _fail(self.line, "unterminated single quote")
        self._open = True
        self._add(self.text[self.pos + 1 : end], quoted=True)
        self.pos = end + 1

    def _double_quoted(self) -> None:
        self._open = True
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return
            if char == "\\" and self.text[self.pos + 1 : self.pos + 2] in ('"', "$", "\\", "`"):
                self._add(self.text[self.pos + 1], quoted=True)
                self.pos += 2
            elif char == "$":
                self._add_expansion(self._dollar(), quoted=True)
            elif char == "`" and self.shell:
                raise _fail(self.line, "command substitution (`...`) is not supported without Docker")
            else:
                self._add(char, quoted=True)
                self.pos += 1
        raise _fail(self.line, "unterminated double quote")

    def _dollar(self) -> str:
        """The value of the substitution at ``self.pos`` (a ``$``), moving past it."""
        rest = self.text[self.pos + 1 :]
        if rest.startswith("{"):
            end = self.text.find("}", self.pos)
            if end < 0:
                raise _fail(self.line, "unterminated ${...}")
            body = self.text[self.pos + 2 : end]
            self.pos = end + 1
            return self._braced(body)
        if self.shell and rest.startswith("("):
            raise _fail(self.line, "command substitution $(...) is not supported without Docker")
        if name := _NAME.match(rest):
            self.pos += 1 + name.end()
            return self._lookup(name.group())
        if self.shell and rest[:1] and rest[0] in "0123456789@*#?$!-":
            raise _fail(self.line, f"the shell parameter ${rest[0]} is not supported without Docker")
        self.pos += 1
        return "$"

    def _braced(self, body: str) -> str:
        match = _BRACED.fullmatch(body)
        if not match:
            raise _fail(self.line, f"the substitution ${{{body}}} is not supported")
        name, operator, word = match.groups()
        if operator is None:
            return self._lookup(name)
        value = self.env.get(name)
        alternative = _expand(word, self.env, self.line)
        if operator == ":-":
            return value or alternative
        if operator == "-":
            return alternative if value is None else value
        if operator == ":+":
            return alternative if value else ""
        return "" if value is None else alternative  # "+"

    def _lookup(self, name: str) -> str:
        if name in self.env:
            return self.env[name]
        if self.shell and name not in self.unknown:
            self.unknown.append(name)
        return ""

    def _operator(self) -> None:
        symbol = next(
            s for s in ("&&", "||", ">>", ";", "|", "&", ">", "<", "(", ")", "`") if self.text.startswith(s, self.pos)
        )
        if symbol == "`":
            raise _fail(self.line, "command substitution (`...`) is not supported without Docker")
        if symbol in (">", ">>", "<") and self._open and "".join(self._chars).isdigit():
            raise _fail(self.line, f"the redirection {''.join(self._chars)}{symbol} is not supported without Docker")
        self._end_word()
        self.tokens.append(_Op(symbol))
        self.pos += len(symbol)

    def _add_expansion(self, value: str, *, quoted: bool) -> None:
        if quoted or not self.shell:
            self._add(value, quoted=True)
            return
        for index, piece in enumerate(re.split(r"[ \t\n]+", value)):  # unquoted: field splitting
            if index:
                self._end_word()
            self._add(piece, quoted=False)

    def _add(self, chars: str, *, quoted: bool) -> None:
        if not chars:
            return
        self._open = True
        self._chars.append(chars)
        self._pattern.append(glob.escape(chars) if quoted else chars)
        if not quoted and any(c in chars for c in "*?["):
            self._glob = True

    def _end_word(self) -> None:
        if self._open:
            pattern = "".join(self._pattern) if self._glob else None
            self.tokens.append(_Word("".join(self._chars), pattern))
        self._chars, self._pattern, self._glob, self._open = [], [], False, False


def _expand(text: str, env: Mapping[str, str], line: int) -> str:
    """One instruction word with quotes removed and ``$VAR`` substituted (unknown variables: empty)."""
    tokens = _Lexer(text, env, line, shell_syntax=False).tokenize()
    return "".join(token.text for token in tokens if isinstance(token, _Word))


def _words(args: str, env: Mapping[str, str], line: int) -> list[str]:
    """An instruction's arguments split into words, each expanded."""
    return [_expand(raw, env, line) for raw in _RAW_WORD.findall(args)]


def _shell_commands(text: str, env: Mapping[str, str], line: int, unknown: list[str]) -> list[_Command]:
    """A RUN shell line as simple commands (split on ``&&`` and ``;``); other operators fail."""
    tokens = _Lexer(text, env, line, shell_syntax=True, unknown=unknown).tokenize()
    commands, current = [], _Command([])
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if isinstance(token, _Word):
            current.words.append(token)
        elif token.symbol in ("&&", ";"):
            commands.append(current)
            current = _Command([])
        elif token.symbol in (">", ">>") and current.redirect is None and isinstance(following, _Word):
            current.redirect = (token.symbol, following)
            index += 1
        else:
            raise _fail(
                line,
                f"RUN uses the shell operator '{token.symbol}', which is not supported without Docker "
                "(supported: commands joined with && or ;, and > or >> into a file)",
            )
        index += 1
    commands.append(current)
    return [command for command in commands if command.words]


# --------------------------------------------------------------------------------------------
# Base images


# Tools a RUN line may use, by the kind of its stage's base image (see cellplane.build.baseimages).
_STAGE_TOOLS: dict[str, frozenset[str]] = {
    "go": frozenset({"go"}),
    "maven": frozenset({"mvn", "mvnw", "java", "javac", "jar"}),
    "gradle": frozenset({"gradle", "gradlew", "java", "javac", "jar"}),
    "jdk": frozenset({"mvnw", "gradlew", "java", "javac", "jar"}),
    "jre": frozenset({"java"}),
}
_TOOL_KINDS = {
    "go": "a golang:* image",
    "mvn": "a maven:* image",
    "mvnw": "a JDK image (maven:*, eclipse-temurin:*, openjdk:*, amazoncorretto:*)",
    "gradle": "a gradle:* image",
    "gradlew": "a JDK image (gradle:*, eclipse-temurin:*, openjdk:*, amazoncorretto:*)",
    "java": "a Java image", "javac": "a JDK image", "jar": "a JDK image",
}
_GO_SUBCOMMANDS = frozenset({"build", "mod", "install", "test", "vet", "generate", "env", "version", "list", "get"})
_BASE_KINDS = (
    "python:*, node:*, golang:*, maven:*, gradle:*, JDK and JRE images (eclipse-temurin, openjdk, amazoncorretto, "
    "distroless/java), alpine/debian/ubuntu/busybox/distroless/scratch, nginx/nginx-unprivileged/httpd/caddy"
)


def _base_image(ref: str, line: int) -> BaseImage:
    """The kind of a stage's base image; anything Cellplane cannot stand in for fails naming the line."""
    image = classify(ref)
    if image is None:
        raise _fail(
            line,
            f"base image '{ref}' is not one Cellplane can build without Docker (supported: {_BASE_KINDS})",
        )
    return image


# --------------------------------------------------------------------------------------------
# The work tree and the build context


def _image_path(path: str) -> str:
    """A normalised absolute image path (``..`` stops at the root, as in an image)."""
    return "/" + posixpath.normpath("/" + path).lstrip("/")


class _Tree:
    """The work tree: the image's filesystem root on disk; nothing is written outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def host(self, image_path: str) -> Path:
        rel = _image_path(image_path).lstrip("/")
        return self.root / rel if rel else self.root

    def image(self, path: Path) -> str:
        rel = path.relative_to(self.root).as_posix()
        return "/" if rel == "." else "/" + rel

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, POSIX style ("" for the root)."""
        rel = path.relative_to(self.root).as_posix()
        return "" if rel == "." else rel

    def check(self, path: Path, line: int, shown: str) -> Path:
        """``path`` normalised, after checking that it stays inside the tree (symlinks followed)."""
        if not path.resolve().is_relative_to(self.root):
            raise _fail(line, f"the path {shown} leads outside the image's file tree")
        return Path(os.path.normpath(path))

    def mkdir(self, path: Path, line: int) -> None:
        path = self.check(path, line, str(path))
        shown = self.image(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise _fail(line, f"cannot create the directory {shown}: a file is in the way") from None
        except OSError as e:
            raise _fail(line, f"cannot create the directory {shown}: {e.strerror}") from None

    def points_into(self, image_path: str) -> bool:
        """Whether an absolute image path names something the build put into the tree."""
        host = self.host(image_path)
        if host == self.root:
            return False
        return os.path.lexists(host) or (host.parent != self.root and host.parent.is_dir())


class _IgnoreRules:
    """``.dockerignore``: path patterns (``*``, ``?``, ``[...]``, ``**``), ``!`` re-includes; the last match wins."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[tuple[re.Pattern[str], bool]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = posixpath.normpath(line.removeprefix("!").strip().lstrip("/"))
            if pattern not in (".", ""):
                self.rules.append((_pattern_regex(pattern), include))
        self.has_negations = any(include for _, include in self.rules)

    @classmethod
    def load(cls, context: Path) -> _IgnoreRules:
        path = context / ".dockerignore"
        if not path.is_file() or not path.resolve().is_relative_to(context):
            return cls([])
        return cls(path.read_text(encoding="utf-8", errors="replace").splitlines())

    def excluded(self, rel: str) -> bool:
        """Whether the context-relative POSIX path ``rel`` (or a directory above it) is excluded."""
        if not rel or not self.rules:
            return False
        parts = rel.split("/")
        prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
        result = False
        for regex, include in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not include
        return result


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A Docker path pattern as a regex: ``*`` and ``?`` stay within a path segment, ``**`` spans segments."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif char == "*":
            out.append("[^/]*")
            index += 1
        elif char == "?":
            out.append("[^/]")
            index += 1
        elif char == "[" and (end := pattern.find("]", index + 2)) > 0:
            body = pattern[index + 1 : end]
            body = "^" + body[1:] if body[0] in "!^" else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            index = end + 1
        elif char == "\\" and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
        else:
            out.append(re.escape(char))
            index += 1
    return re.compile("".join(out))


class _Context:
    """The build context: where COPY and ADD read from, as Docker would see it."""

    def __init__(self, root: Path, tree: _Tree) -> None:
        self.root = root
        self.tree = tree
        self.ignore = _IgnoreRules.load(root)

    def sources(self, source: str, keyword: str, line: int) -> list[str]:
        """The context-relative paths a COPY source names ("" is the context itself)."""
        if source.startswith("/"):
            raise _fail(line, f"{keyword} source '{source}' is an absolute path; sources are relative to the context")
        rel = posixpath.normpath(source)
        if rel == ".." or rel.startswith("../"):
            raise _fail(line, f"{keyword} source '{source}' leads outside the build context")
        matches = self._glob(rel, keyword, line)
        kept = [match for match in matches if not self._left_out(match)]
        if not kept:
            why = " (.dockerignore excludes it)" if matches else ""
            raise _fail(line, f"{keyword} source '{source}' was not found in the build context{why}")
        return kept

    def resolve(self, rel: str, keyword: str, line: int) -> Path:
        """The real path of a context entry, which must stay inside the context."""
        try:
            real = (self.root / rel).resolve(strict=True)
        except (OSError, RuntimeError):
            raise _fail(line, f"{keyword} source '{rel}' is a broken symlink") from None
        if not real.is_relative_to(self.root):
            raise _fail(line, f"{keyword} source '{rel}' is a symlink leading outside the build context")
        return real

    def copy(self, rel: str, dest: Path, into_dir: bool, keyword: str, line: int) -> None:
        """Copy a context entry to ``dest`` (a directory's contents go into ``dest``)."""
        real = self.resolve(rel, keyword, line)
        if real.is_dir():
            self._copy_tree(real, rel, dest, keyword, line, frozenset({real}))
        elif real.is_file():
            self._copy_file(real, dest / posixpath.basename(rel) if into_dir else dest, line)
        else:
            raise _fail(line, f"{keyword} source '{rel}' is not a regular file or a directory")

    def _glob(self, rel: str, keyword: str, line: int) -> list[str]:
        found = [""]
        for segment in rel.split("/"):
            if segment not in ("", "."):
                found = [match for base in found for match in self._match(base, segment, keyword, line)]
        return found

    def _match(self, base: str, segment: str, keyword: str, line: int) -> list[str]:
        if not glob.has_magic(segment):
            candidate = posixpath.join(base, segment)
            return [candidate] if os.path.lexists(self.root / candidate) else []
        directory = self.resolve(base, keyword, line)
        if not directory.is_dir():
            return []
        names = sorted(name for name in os.listdir(directory) if fnmatch.fnmatchcase(name, segment))
        return [posixpath.join(base, name) for name in names]

    def _left_out(self, rel: str) -> bool:
        return ".git" in rel.split("/") or self.ignore.excluded(rel)

    def _copy_tree(self, real: Path, rel: str, dest: Path, keyword: str, line: int, active: frozenset[Path]) -> None:
        if not self.ignore.excluded(rel):
            self.tree.mkdir(dest, line)
        for entry in sorted(os.scandir(real), key=lambda e: e.name):
            child = posixpath.join(rel, entry.name)
            if entry.name == ".git" or (self.ignore.excluded(child) and not self.ignore.has_negations):
                continue
            target = self.resolve(child, keyword, line)
            if target == self.tree.root:
                continue  # the work tree itself, when it lives inside the context
            if target.is_dir():
                if target in active:
                    raise _fail(line, f"{keyword} source '{child}' is a symlink loop")
                self._copy_tree(target, child, dest / entry.name, keyword, line, active | {target})
            elif target.is_file() and not self.ignore.excluded(child):
                self._copy_file(target, dest / entry.name, line)
            # sockets, FIFOs and devices are not copied

    def _copy_file(self, source: Path, target: Path, line: int) -> None:
        self.tree.mkdir(target.parent, line)
        if target.is_symlink():
            target.unlink()
        elif target.is_dir():
            raise _fail(line, f"cannot copy a file over the directory {self.tree.image(target)}")
        shutil.copyfile(source, target)
        shutil.copymode(source, target)


# --------------------------------------------------------------------------------------------
# The translation


@dataclass
class _StartForm:
    """A CMD or ENTRYPOINT: exec form (``argv``) or shell form (``shell``)."""

    argv: list[str] | None
    shell: str


class _Builder:
    """Replays one target stage of a Dockerfile (its lineage: ancestors first) against its own directory.

    The last stage's directory is the work tree that becomes the artifact; a build stage's is a
    scratch directory that later stages ``COPY --from``. ``built`` holds the finished targets.
    """

    def __init__(
        self,
        context: Path,
        root: Path,
        hooks: StepHooks,
        build_args: Mapping[str, str],
        display: str,
        graph: list[StageInfo] | None = None,
        built: Mapping[int, _Builder] | None = None,
    ) -> None:
        self.tree = _Tree(root)
        self.context = _Context(context, self.tree)
        self.hooks = hooks
        self.build_args = dict(build_args)
        self.display = display
        self.graph = graph or []
        self.built = built or {}
        self.stage: StageInfo | None = None
        self.last = True
        self.global_args: dict[str, str] = {}
        self.args: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.workdir = "/"
        self.image = BaseImage("", "python", "python", None)
        self.port: int | None = None
        self.extra_ports: list[str] = []
        self.cmd: _StartForm | None = None
        self.entrypoint: _StartForm | None = None
        self.pip_inputs: list[str] = []
        self.pip_packages: list[str] = []
        self.node_install: NodeInstall | None = None
        self.labels: dict[str, str] = {}
        self.readiness: dict[str, Any] | None = None
        self.notes: list[str] = []

    # -- the whole file

    def replay(self, lineage: list[list[Instruction]], infos: list[StageInfo] | None = None) -> None:
        """Run the instructions of a stage and its ancestors (oldest first) against this builder's tree."""
        handlers = {
            "WORKDIR": self._workdir,
            "COPY": self._copy,
            "ADD": self._copy,
            "RUN": self._run,
            "ENV": self._env,
            "ARG": self._arg,
            "EXPOSE": self._expose,
            "USER": self._user,
            "CMD": self._cmd,
            "ENTRYPOINT": self._entrypoint,
            "LABEL": self._label,
            "HEALTHCHECK": self._healthcheck,
        }
        for position, stage in enumerate(lineage):
            self.stage = infos[position] if infos else None
            self.args = {}  # ARGs are scoped to their stage; ENV, WORKDIR, CMD... carry over to children
            if position == 0:
                self._from(stage[0])
            for instruction in stage[1:]:
                handler = handlers.get(instruction.keyword)
                if handler is None:
                    raise _fail(
                        instruction.line,
                        f"instruction {instruction.keyword} is not supported without Docker "
                        f"(supported: {', '.join(SUPPORTED_INSTRUCTIONS)})",
                    )
                handler(instruction)

    def _plan(self) -> Plan:
        if self.extra_ports:
            self._note(f"EXPOSE also lists {', '.join(self.extra_ports)}; only port {self.port} is used")
        kind = self.image.kind
        if kind == "web":
            return self._static_plan()
        if kind in ("python", "node") and not self._runs_java():
            language: Language = kind
            if "/distroless/" in self.image.ref and self.entrypoint is None:
                program = "node" if kind == "node" else "python"  # distroless images' implicit ENTRYPOINT
                self.entrypoint = _StartForm([program], program)
        else:
            self._implicit_entrypoint()
            language = "java" if self._runs_java() else "go" if self._runs_go_binary() else "binary"
        run = self._start_command()
        if run is None:
            self._note("the Dockerfile has no CMD or ENTRYPOINT: there is no start command")
        self._env_path_notes()
        return self._new_plan(language, run=run)

    def _new_plan(self, language: Language, **fields: Any) -> Plan:
        return Plan(
            strategy="dockerfile",
            reason=f"Dockerfile at {self.display} (base image {self.image.ref}, last stage)",
            language=language,
            workdir=fields.pop("workdir", self.workdir.lstrip("/")),
            python_inputs=list(self.pip_inputs),
            python_packages=list(self.pip_packages),
            node_install=self.node_install,
            port=self.port,
            env=dict(self.env),
            language_version=self.image.version if language == self.image.kind else None,
            labels=dict(self.labels),
            readiness=dict(self.readiness) if self.readiness else None,
            notes=list(self.notes),
            **fields,
        )

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _scope(self) -> dict[str, str]:
        """What ``$VAR`` means at this point: ARG values, overridden by ENV values."""
        return {**self.args, **self.env}

    # -- FROM and ARG

    def _stage_name(self, instruction: Instruction) -> str | None:
        words = [w for w in _words(instruction.args, self.global_args, instruction.line) if not w.startswith("--")]
        return words[2].lower() if len(words) == 3 and words[1].lower() == "as" else None

    def _from(self, instruction: Instruction) -> None:
        words = _from_words(instruction, self.global_args)
        if any(w.startswith("--platform") for w in _words(instruction.args, self.global_args, instruction.line)):
            self._note(f"FROM --platform (line {instruction.line}) ignored: stages build for this machine")
        self.image = _base_image(words[0], instruction.line)

    # -- what the last stage is

    def _start_argv(self) -> list[str]:
        """The start command's words (a shell form counts as its words), for telling what it runs."""
        argv: list[str] = []
        for form in (self.entrypoint, self.cmd):
            if form is not None:
                argv += form.argv if form.argv is not None else form.shell.split()
        return argv

    def _runs_java(self) -> bool:
        argv = self._start_argv()
        return bool(argv) and posixpath.basename(argv[0]) == "java" and "-jar" in argv

    def _implicit_entrypoint(self) -> None:
        """distroless/java images start ``java -jar`` with CMD as its arguments; the JDK's java is the machine's."""
        if self.image.kind == "jre" and self.image.name.startswith("java") and self.entrypoint is None:
            self.entrypoint = _StartForm(["java", "-jar"], "java -jar")
        for form in (self.entrypoint, self.cmd):
            java = form is not None and form.argv and posixpath.basename(form.argv[0]) == "java"
            if form is not None and form.argv and java and not self.tree.points_into(form.argv[0]):
                form.argv[0] = "java"  # /opt/java/openjdk/bin/java: the machine's java

    def _runs_go_binary(self) -> bool:
        argv = self._start_argv()
        if not argv:
            return False
        program = argv[0]
        host = self.tree.host(program) if program.startswith("/") else self.tree.host(
            posixpath.join(self.workdir, program))
        return _is_go_binary(host)

    def _static_plan(self) -> Plan:
        """nginx/httpd/caddy: the files copied to the server's root, served by the platform's static server."""
        name = self.image.name
        roots = list(STATIC_ROOTS.get(name, ("/usr/share/nginx/html",)))
        configured = self._server_config_root()
        if configured:
            roots.insert(0, configured)
        for root in roots:
            if (self.tree.host(root) / "index.html").is_file():
                break
        else:
            raise BuildFailure(
                f"the last stage ({self.image.ref}) serves static files, but no index.html was copied to "
                f"{roots[0]}; COPY the built site there"
            )
        if self.cmd is not None or self.entrypoint is not None:
            self._note(f"{name}'s start command is not used: the platform's static server serves {root}")
        if self.port is not None:
            self._note(f"EXPOSE {self.port} is not used: the static server listens on the port the platform gives")
        self._note(f"{name} serves {root} with the platform's static server (single-page-app fallback on)")
        plan = self._new_plan("static", workdir="", static_root=_image_path(root).lstrip("/"))
        plan.port = None
        return plan

    def _server_config_root(self) -> str | None:
        """The ``root`` of an nginx.conf (or Caddyfile) the Dockerfile copied in, noting its SPA fallback."""
        candidates = [*self.tree.root.joinpath("etc", "nginx").rglob("*.conf")] if (
            self.tree.root / "etc" / "nginx").is_dir() else []
        candidates += [p for p in (self.tree.host("/etc/caddy/Caddyfile"),) if p.is_file()]
        root = None
        for path in candidates:
            text = path.read_text(errors="replace")
            shown = self.tree.image(path)
            if re.search(r"try_files\s+[^;]*\$uri[^;]*/index\.html", text):
                self._note(f"{shown}: try_files falls back to /index.html: the static server's SPA fallback does that")
            elif "try_files" in text:
                self._note(f"{shown}: its try_files has no /index.html fallback, but the static server's SPA "
                           "fallback still serves index.html for page routes")
            else:
                self._note(f"{shown} copied in: the static server serves the files with SPA fallback, "
                           "not this configuration")
            match = re.search(r"^\s*root\s+(?:\*\s+)?(/[^;\s]+)", text, re.M)
            if match and root is None:
                root = match.group(1)
        return root

    def _arg(self, instruction: Instruction) -> None:
        self._declare_args(instruction, self.args, self.env, self.global_args)

    def _declare_args(
        self, instruction: Instruction, target: dict[str, str], env: Mapping[str, str], inherited: Mapping[str, str]
    ) -> None:
        """``ARG NAME[=default] ...``: a build argument overrides the default; no default inherits a global ARG."""
        raws = _RAW_WORD.findall(instruction.args)
        if not raws:
            raise _fail(instruction.line, "ARG needs a name")
        for raw in raws:
            name, equals, default = raw.partition("=")
            if not _NAME.fullmatch(name):
                raise _fail(instruction.line, f"ARG name '{name}' is not a valid name")
            if name in self.build_args:
                target[name] = self.build_args[name]
            elif equals:
                target[name] = _expand(default, {**target, **env}, instruction.line)
            elif name in inherited:
                target[name] = inherited[name]

    # -- simple instructions

    def _workdir(self, instruction: Instruction) -> None:
        path = _expand(instruction.args, self._scope(), instruction.line)
        if not path:
            raise _fail(instruction.line, "WORKDIR needs a path")
        self.workdir = _image_path(posixpath.join(self.workdir, path))
        self.tree.mkdir(self.tree.host(self.workdir), instruction.line)

    def _env(self, instruction: Instruction) -> None:
        scope, line = self._scope(), instruction.line
        raws = _RAW_WORD.findall(instruction.args)
        if not raws:
            raise _fail(line, "ENV needs NAME=VALUE")
        if "=" not in raws[0]:  # the legacy form: ENV NAME the rest of the line
            name, value = _head(instruction.args)
            if not value:
                raise _fail(line, f"ENV {name} needs a value")
            pairs = [(name, _expand(value, scope, line))]
        else:
            pairs = []
            for raw in raws:
                name, equals, value = raw.partition("=")
                if not equals or not name:
                    raise _fail(line, f"ENV expects NAME=VALUE pairs, not '{raw}'")
                pairs.append((_expand(name, scope, line), _expand(value, scope, line)))
        for name, value in pairs:
            if name == "PATH":
                self._note(f"ENV PATH (line {line}) ignored: the platform sets PATH for its runtimes")
            else:
                self.env[name] = value

    def _expose(self, instruction: Instruction) -> None:
        words = _words(instruction.args, self._scope(), instruction.line)
        if not words:
            raise _fail(instruction.line, "EXPOSE needs a port")
        for word in words:
            match = _PORT.fullmatch(word)
            if not match or not 1 <= int(match.group(1)) <= 65535:
                raise _fail(instruction.line, f"EXPOSE '{word}' is not a port")
            if self.port is None:
                self.port = int(match.group(1))
            else:
                self.extra_ports.append(word)

    def _label(self, instruction: Instruction) -> None:
        """``LABEL key=value ...``: recorded in the artifact's manifest."""
        scope, line = self._scope(), instruction.line
        raws = _RAW_WORD.findall(instruction.args)
        if not raws:
            raise _fail(line, "LABEL needs key=value")
        for raw in raws:
            key, equals, value = raw.partition("=")
            if not equals or not key:
                raise _fail(line, f"LABEL expects key=value pairs, not '{raw}'")
            self.labels[_expand(key, scope, line)] = _expand(value, scope, line)

    def _healthcheck(self, instruction: Instruction) -> None:
        """``HEALTHCHECK CMD curl/wget http://localhost[:port]/path`` becomes an HTTP readiness probe of that path."""
        line = instruction.line
        flags, rest = _split_flags(instruction.args)
        keyword, command = _head(rest)
        if keyword.upper() == "NONE":
            self.readiness = None
            return
        if keyword.upper() != "CMD" or not command:
            raise _fail(line, "HEALTHCHECK expects CMD <command> or NONE")
        argv = _json_array(command)
        text = " ".join(argv) if argv is not None else command
        words = text.split()
        program = posixpath.basename(words[0]) if words else ""
        url = _LOCAL_URL.search(text)
        if program not in ("curl", "wget") or url is None:
            self._note(f"HEALTHCHECK (line {line}) not used: only curl or wget of a local URL becomes the "
                       "readiness probe (the default probe connects to the port)")
            self.readiness = None
            return
        probe: dict[str, Any] = {"path": url.group(1) or "/"}
        for flag in flags:
            name, _, value = flag.partition("=")
            if name == "--timeout" and (seconds := _duration(value)):
                probe["timeoutSeconds"] = min(seconds, 600.0)
            elif name == "--retries" and value.isdigit() and 1 <= int(value) <= 100:
                probe["failureThreshold"] = int(value)
        self.readiness = probe
        self._note(f"HEALTHCHECK (line {line}) becomes the readiness probe: HTTP GET {probe['path']} on the "
                   "replica's port")

    def _user(self, instruction: Instruction) -> None:
        user = _expand(instruction.args, self._scope(), instruction.line)
        self._note(f"USER {user} (line {instruction.line}) ignored: processes run as the platform's user")

    def _cmd(self, instruction: Instruction) -> None:
        self.cmd = _StartForm(instruction.json_form, instruction.args)

    def _entrypoint(self, instruction: Instruction) -> None:
        self.entrypoint = _StartForm(instruction.json_form, instruction.args)

    # -- COPY and ADD

    def _copy(self, instruction: Instruction) -> None:
        keyword, line = instruction.keyword, instruction.line
        flags, rest = _split_flags(instruction.args)
        source_stage = self._copy_flags(keyword, flags, line)
        words = instruction.json_form if instruction.json_form is not None else _words(rest, self._scope(), line)
        if len(words) < 2:
            raise _fail(line, f"{keyword} needs at least one source and a destination")
        *sources, dest = words
        if source_stage is not None:
            self._copy_from(source_stage, sources, dest, line)
            return
        matches = []
        for source in sources:
            if keyword == "ADD" and ("://" in source or source.startswith("git@")):
                raise _fail(line, f"ADD of a URL ({source}) is not supported without Docker; fetch it at build time")
            matches.extend(self.context.sources(source, keyword, line))
        target, into_dir = self._copy_destination(dest, multiple=len(matches) > 1 or len(sources) > 1)
        for rel in matches:
            if keyword == "ADD" and rel.lower().endswith(_ARCHIVE_SUFFIXES):
                raise _fail(
                    line,
                    f"ADD of the archive '{rel}' would unpack it, which is not supported without Docker; "
                    "unpack it in the repository or COPY it",
                )
            self.context.copy(rel, target, into_dir, keyword, line)

    def _copy_flags(self, keyword: str, flags: list[str], line: int) -> _Builder | None:
        """Check COPY/ADD options; returns the built stage a ``--from`` names (None: the build context)."""
        source: _Builder | None = None
        for flag in flags:
            name, _, value = flag.partition("=")
            if name == "--from" and keyword == "COPY":
                value = _expand(value, self._scope(), line)
                index = resolve_source(self.graph, self.stage.index, value) if self.stage else None
                if index is None or index not in self.built:
                    raise _fail(
                        line,
                        f"COPY --from={value} copies from the image {value}, which cannot be pulled without Docker; "
                        "build what you need in a stage of this Dockerfile, or COPY it from the repository",
                    )
                source = self.built[index]
            elif name not in ("--chown", "--chmod", "--link"):
                raise _fail(line, f"{keyword} option {name} is not supported without Docker")
        return source

    def _copy_from(self, stage: _Builder, sources: list[str], dest: str, line: int) -> None:
        """``COPY --from=stage SRC... DEST``: sources are paths in that stage's file tree (relative: from its /)."""
        shown = stage.stage.shown if stage.stage else "the earlier stage"
        found: list[Path] = []
        for source in sources:
            image = _image_path(source)
            if glob.has_magic(image):
                matches = [Path(m) for m in sorted(glob.glob(glob.escape(str(stage.tree.root)) + image))]
            else:
                host = stage.tree.host(image)
                matches = [host] if os.path.lexists(host) else []
            if not matches and image.startswith(_SYSTEM_PATHS):
                self._note(f"COPY --from={stage.stage.name if stage.stage else '?'} {source} (line {line}) skipped: "
                           "the machine's own system files are used")
                continue
            if not matches:
                raise _fail(line, f"COPY --from: the stage {shown} did not produce {image}")
            for match in matches:
                if not match.resolve().is_relative_to(stage.tree.root):
                    raise _fail(line, f"COPY --from: {stage.tree.image(match)} leads outside the stage's file tree")
            found.extend(matches)
        if not found:
            return
        target, into_dir = self._copy_destination(dest, multiple=len(found) > 1 or len(sources) > 1)
        for match in found:
            real = match.resolve()
            if real.is_dir():
                self.tree.mkdir(target, line)
                shutil.copytree(real, self.tree.check(target, line, dest), symlinks=True, dirs_exist_ok=True)
            else:
                file_target = target / match.name if into_dir else target
                self.tree.mkdir(file_target.parent, line)
                file_target = self.tree.check(file_target, line, dest)
                if file_target.is_dir():
                    raise _fail(line, f"cannot copy a file over the directory {self.tree.image(file_target)}")
                shutil.copyfile(real, file_target)
                shutil.copymode(real, file_target)

    def _copy_destination(self, dest: str, *, multiple: bool) -> tuple[Path, bool]:
        """Where a COPY writes, and whether that is a directory the sources go into."""
        image = _image_path(posixpath.join(self.workdir, dest))
        path = self.tree.host(image)
        into_dir = multiple or dest.endswith("/") or posixpath.basename(dest) in (".", "..") or path.is_dir()
        return path, into_dir

    # -- RUN

    def _run(self, instruction: Instruction) -> None:
        line = instruction.line
        flags, rest = _split_flags(instruction.args)
        for flag in flags:
            name = flag.partition("=")[0]
            if name not in ("--mount", "--network", "--security"):
                raise _fail(line, f"RUN option {name} is not supported without Docker")
            self._note(f"RUN {name} (line {line}) ignored")
        unknown: list[str] = []
        argv = instruction.json_form
        if argv is None:
            commands = _shell_commands(rest, self._scope(), line, unknown)
        elif len(argv) >= 3 and posixpath.basename(argv[0]) in ("sh", "bash") and argv[1] == "-c":
            commands = _shell_commands(argv[2], self._scope(), line, unknown)
        else:
            commands = [_Command([_Word(arg) for arg in argv])] if argv else []
        for name in unknown:
            self._note(f"RUN (line {line}): ${name} is not set by the Dockerfile and was replaced by nothing")
        cwd = self.tree.host(self.workdir)
        for command in commands:
            cwd = self._run_command(command, cwd, line)

    def _run_command(self, command: _Command, cwd: Path, line: int) -> Path:
        """Translate one simple command; returns the directory the next command of the RUN starts in."""
        words = list(command.words)
        assignments: dict[str, str] = {}
        while words and _ASSIGNMENT.match(words[0].text):
            name, _, value = words.pop(0).text.partition("=")
            assignments[name] = value
        if not words:
            raise _fail(line, "a RUN that only sets shell variables is not supported; use ENV or ARG")
        command = _Command(words, command.redirect)
        argv = [word.text for word in words]
        name = posixpath.basename(argv[0])
        pip_args = _pip_arguments(argv)
        if name == "cd":
            return self._cd(argv, cwd, line)
        if name in ("true", ":") or (name == "set" and all(arg.startswith(("-", "+")) for arg in argv[1:])):
            pass
        elif name in _USER_COMMANDS:
            self._note(f"RUN {name} (line {line}) skipped: Cellplane runs processes as the platform's user")
        elif name in _PACKAGE_MANAGERS:
            self._system_packages(name, argv, line)
        elif name in _SYSTEM_NOOPS:
            self._note(f"RUN {name} (line {line}) skipped: the machine's own system files are used")
        elif name in _TOOL_KINDS:
            self._tool(name, command, cwd, assignments, line)
        elif pip_args is not None:
            self._pip(pip_args, cwd, line)
        elif name == "virtualenv" or (_PYTHON.fullmatch(name) and argv[1:3] == ["-m", "venv"]):
            self._note(f"RUN {name} (line {line}) skipped: the platform provides the virtual environment")
        elif name == "npm":
            self._npm(command, cwd, assignments, line)
        elif name == "yarn":
            self._yarn(command, cwd, assignments, line)
        elif name in _FILE_COMMANDS or name in _SCRIPT_COMMANDS or _PYTHON.fullmatch(name):
            self._shell(command, cwd, assignments, line)
        else:
            raise _fail(line, f"RUN {name} is not supported without Docker (allowed: {_ALLOWED_RUN})")
        return cwd

    def _cd(self, argv: list[str], cwd: Path, line: int) -> Path:
        if len(argv) != 2:
            raise _fail(line, "RUN cd needs exactly one directory")
        target = self._host_path(argv[1], cwd, line)
        if not target.is_dir():
            raise _fail(line, f"RUN cd {argv[1]}: {self.tree.image(target)} is not a directory in the image")
        return target

    # -- RUN: pip

    def _pip(self, args: list[str], cwd: Path, line: int) -> None:
        self._require("pip", "python", line)
        if not self.last:
            raise _fail(line, "RUN pip install in a build stage is not supported without Docker (the platform "
                              "installs Python dependencies for the last stage only)")
        index = 0
        while index < len(args) and args[index].startswith("-"):  # pip's general options
            index += 2 if args[index] in _PIP_VALUE_OPTIONS else 1
        subcommand = args[index] if index < len(args) else ""
        if subcommand != "install":
            raise _fail(
                line, f"RUN pip {subcommand or '(no command)'} is not supported without Docker (only pip install is)"
            )
        inputs, packages = self._pip_install(args[:index] + args[index + 1 :], cwd, line)
        if not inputs and all(_requirement_name(p) in _PIP_SELF for p in packages):
            shown = " ".join(packages) or "(nothing)"
            self._note(f"RUN pip install {shown} (line {line}) skipped: the platform manages pip")
            return
        if any(_requirement_name(p) == "pip" for p in packages):
            self._note(f"pip install pip (line {line}) skipped: the platform manages pip")
        for item in inputs:
            if item not in self.pip_inputs:
                self.pip_inputs.append(item)
        for package in packages:
            if _requirement_name(package) != "pip" and package not in self.pip_packages:
                self.pip_packages.append(package)
        self.hooks.pip(list(self.pip_inputs), list(self.pip_packages), line)

    def _pip_install(self, args: list[str], cwd: Path, line: int) -> tuple[list[str], list[str]]:
        """``(requirement files and pyproject.toml paths relative to the tree, specifiers)`` of a pip install."""
        inputs: list[str] = []
        packages: list[str] = []
        for option, value in _pip_options(args, line):
            if option in ("-r", "--requirement"):
                inputs.append(self._requirements_file(value, cwd, line))
            elif option in (None, "-e", "--editable"):
                if _is_local_requirement(value):
                    inputs.append(self._pip_project(value, cwd, line))
                else:
                    packages.append(value)
            elif option in ("-c", "--constraint"):
                self._note(f"pip constraints file {value} (line {line}) ignored")
            elif option in _PIP_NOTED:
                self._note(f"pip option {option} (line {line}) ignored: the platform's pip settings apply")
        return inputs, packages

    def _requirements_file(self, value: str, cwd: Path, line: int) -> str:
        path = self._host_path(value, cwd, line)
        if not path.is_file():
            raise _fail(
                line,
                f"pip install -r {value}: {self.tree.image(path)} is not in the image at this point "
                "(COPY it before this RUN)",
            )
        return self.tree.relative(path)

    def _pip_project(self, value: str, cwd: Path, line: int) -> str:
        """``pip install .`` (or ``-e ./pkg[extra]``): the directory's pyproject.toml becomes an input."""
        directory = self._host_path(re.sub(r"\[[^\]]*\]$", "", value), cwd, line)
        if directory.is_file():
            raise _fail(line, f"pip install {value}: installing a local file is not supported without Docker")
        if not (directory / "pyproject.toml").is_file():
            raise _fail(
                line,
                f"pip install {value}: {self.tree.image(directory)} has no pyproject.toml "
                "(a setup.py alone is not supported without Docker)",
            )
        if value.endswith("]"):
            self._note(f"pip install {value} (line {line}): the extras are not installed")
        return self.tree.relative(directory / "pyproject.toml")

    # -- RUN: npm and yarn

    def _npm(self, command: _Command, cwd: Path, env: dict[str, str], line: int) -> None:
        self._require("npm", "node", line)
        args = [word.text for word in command.words[1:]]
        positional = _positional(args, _NPM_VALUE_OPTIONS)
        subcommand = positional[0] if positional else ""
        if subcommand in ("ci", "clean-install", "install", "i", "add"):
            what = f"npm {subcommand}"
            self._node_install(
                what, args, positional[1:], cwd, line, lock_required=subcommand in ("ci", "clean-install")
            )
        elif subcommand in ("run", "run-script"):
            self._shell(command, cwd, env, line)
        elif subcommand in ("cache", "prune"):
            self._note(f"RUN npm {subcommand} (line {line}) skipped")
        else:
            raise _fail(
                line,
                f"RUN npm {subcommand} is not supported without Docker (supported: npm ci, npm install, npm run)",
            )

    def _yarn(self, command: _Command, cwd: Path, env: dict[str, str], line: int) -> None:
        self._require("yarn", "node", line)
        args = [word.text for word in command.words[1:]]
        positional = _positional(args, _YARN_VALUE_OPTIONS)
        subcommand = positional[0] if positional else "install"
        if subcommand in ("install", "add", "global"):
            what = "yarn " + subcommand if positional else "yarn"
            self._node_install(what, args, positional[1:], cwd, line, lock_required=False)
        elif subcommand in ("build", "run"):
            self._shell(command, cwd, env, line)
        elif subcommand == "cache":
            self._note(f"RUN yarn cache (line {line}) skipped")
        else:
            raise _fail(
                line,
                f"RUN yarn {subcommand} is not supported without Docker "
                "(supported: yarn install, yarn build, yarn run)",
            )

    def _node_install(
        self, what: str, args: list[str], packages: list[str], cwd: Path, line: int, *, lock_required: bool
    ) -> None:
        """``npm ci`` / ``npm install`` / ``yarn``: the dependencies of the package.json in ``cwd``."""
        if any(arg in ("-g", "--global") or arg.startswith("--global=") for arg in args):
            raise _fail(line, f"RUN {what} -g installs globally, which is not supported without Docker")
        if packages or what.endswith((" add", " global")):
            raise _fail(
                line,
                f"RUN {what} {' '.join(packages)} installs named packages, which is not supported without Docker; "
                "declare them in package.json",
            )
        image = self.tree.image(cwd)
        if not (cwd / "package.json").is_file():
            raise _fail(line, f"RUN {what}: there is no package.json in {image} at this point (COPY it first)")
        locked = (cwd / "package-lock.json").is_file() or (cwd / "npm-shrinkwrap.json").is_file()
        if lock_required and not locked:
            raise _fail(line, f"RUN {what} needs a package-lock.json in {image}")
        kind: NodeInstall = "ci" if locked else "install"
        options = [arg for arg in args if arg.startswith("-")]
        if options:
            self._note(f"RUN {what} (line {line}): options {' '.join(options)} ignored")
        if what.startswith("yarn") and (cwd / "yarn.lock").is_file():
            self._note(f"RUN {what} (line {line}) runs as npm {kind}: yarn.lock is not used")
        self.node_install = kind
        self.hooks.npm(cwd, kind, line)

    def _require(self, tool: str, kind: str, line: int) -> None:
        if self.image.kind != kind:
            raise _fail(line, f"RUN {tool} needs a {kind}:* base image, not {self.image.ref}")

    # -- RUN: system packages and build tools

    def _system_packages(self, name: str, argv: list[str], line: int) -> None:
        """``apk add`` / ``apt-get install`` of what the machine has anyway is a no-op; anything else fails."""
        positional = _positional(argv[1:], _SYSTEM_VALUE_OPTIONS)
        subcommand = positional[0] if positional else ""
        if subcommand in _SYSTEM_MAINTENANCE:
            self._note(f"RUN {name} {subcommand} (line {line}) skipped: no system packages are installed")
            return
        if subcommand not in ("add", "install"):
            raise _fail(line, f"RUN {name} {subcommand} is not supported without Docker (system packages cannot be "
                              "installed)")
        packages = [re.split(r"[=<>~]", package, maxsplit=1)[0] for package in positional[1:]]
        refused = [package for package in packages if package not in _RUNTIME_EXTRAS]
        if refused:
            raise _fail(
                line,
                f"RUN {name} {subcommand} {' '.join(refused)} is not supported without Docker: system packages "
                f"cannot be installed; only {', '.join(sorted(_RUNTIME_EXTRAS))} are accepted (as no-ops, the "
                "machine has them or the platform does their job)",
            )
        self._note(f"RUN {name} {subcommand} {' '.join(packages)} (line {line}) skipped: the machine's own are used")

    def _tool(self, name: str, command: _Command, cwd: Path, assignments: dict[str, str], line: int) -> None:
        """``go build``, ``mvn package``, ``./mvnw``, ``gradle``, ``java``: on this machine's toolchain."""
        if name not in _STAGE_TOOLS.get(self.image.kind, frozenset()):
            raise _fail(line, f"RUN {name} needs {_TOOL_KINDS[name]} as the stage's base image, not {self.image.ref}")
        argv = [word.text for word in command.words]
        if name == "go":
            subcommand = next((arg for arg in argv[1:] if not arg.startswith("-")), "")
            if subcommand not in _GO_SUBCOMMANDS:
                raise _fail(line, f"RUN go {subcommand} is not supported without Docker "
                                  f"(supported: go {', go '.join(sorted(_GO_SUBCOMMANDS))})")
            for variable, value in (("GOOS", "linux"), ("GOARCH", _go_arch())):
                if assignments.get(variable, value) != value:
                    self._note(f"RUN (line {line}): {variable}={assignments.pop(variable)} ignored: "
                               "the binary is built for this machine")
        if name in ("mvnw", "gradlew"):
            wrapper = self._host_path(argv[0], cwd, line)
            if not wrapper.is_file():
                raise _fail(line, f"RUN {argv[0]}: there is no {name} in {self.tree.image(cwd)} at this point "
                                  "(COPY it first)")
            tool = "mvn" if name == "mvnw" else "gradle"
            if toolchains.find(tool) is not None:  # the machine's, instead of one the wrapper would download
                self._note(f"RUN {argv[0]} (line {line}) runs the machine's {tool}")
                command = _Command([_Word(tool), *command.words[1:]], command.redirect)
            elif name == "gradlew":
                raise _fail(line, f"RUN {argv[0]} needs Gradle: the wrapper downloads it from services.gradle.org, "
                                  "which builds cannot reach; install Gradle on the build machine")
        elif toolchains.find(name) is None:
            raise _fail(line, f"RUN {name} needs {toolchains.describe(name)}, which is not installed on this machine "
                              f"(install it, or build the app outside its Dockerfile)")
        self._shell(command, cwd, assignments, line)

    # -- RUN: allowed shell commands

    def _shell(self, command: _Command, cwd: Path, assignments: dict[str, str], line: int) -> None:
        """Run an allowed command through the hooks, image paths rewritten into the work tree."""
        first = command.words[0].text
        name = posixpath.basename(first)
        program = name if "/" in first else first
        if name in ("mvnw", "gradlew"):
            program = self._rewrite_arg(first, cwd, line)
        args = self._shell_args(name, command.words[1:], cwd, line)
        if name == "rm" and any(arg.rstrip("/") == str(self.tree.root) for arg in args):
            raise _fail(line, "RUN rm of / would delete the whole image file tree")
        if name == "rm" and not any(re.fullmatch(r"-[a-zA-Z]*f[a-zA-Z]*|--force", arg) for arg in args):
            args = self._existing_only(args, cwd, line)
            if not any(not arg.startswith("-") for arg in args):
                return
        text = shlex.join([program, *args])
        if command.redirect:
            operator, target = command.redirect
            text += f" {operator} {shlex.quote(self._rewrite_arg(target.text, cwd, line, path=True))}"
        env = {**self._scope(), **assignments}
        if self.image.kind == "go":  # the golang image's GOPATH, inside this stage's tree
            env["GOPATH"] = str(self.tree.check(self.tree.host(env.get("GOPATH") or "/go"), line, "GOPATH"))
        self.hooks.shell(cwd, text, env, line)

    def _existing_only(self, args: list[str], cwd: Path, line: int) -> list[str]:
        """``rm`` of files the base image would hold (nginx's default.conf) but this tree does not: left out."""
        kept = []
        for arg in args:
            if arg.startswith("-") or os.path.lexists(cwd / arg):
                kept.append(arg)
            else:
                shown = self.tree.image(Path(arg)) if Path(arg).is_relative_to(self.tree.root) else arg
                self._note(f"RUN rm (line {line}): {shown} is not in the image's file tree here, nothing to remove")
        return kept

    def _shell_args(self, name: str, words: list[_Word], cwd: Path, line: int) -> list[str]:
        texts = [word.text for word in words]
        if name == "ln":
            return self._ln_args(texts, cwd, line)
        out: list[str] = []
        for word, role in zip(words, _argument_roles(name, texts), strict=True):
            if role == "text":
                out.append(word.text)
            else:
                out.extend(self._path_args(word, cwd, line))
        return out

    def _path_args(self, word: _Word, cwd: Path, line: int) -> list[str]:
        """An argument that may be a path: globs expanded like ``sh`` would, absolute paths rewritten."""
        if word.pattern is not None:
            if word.pattern.startswith("/"):
                found = glob.glob(glob.escape(str(self.tree.root)) + word.pattern)
                matches = [self.tree.image(Path(match)) for match in found]
            else:
                matches = glob.glob(word.pattern, root_dir=cwd)
            if matches:
                return [self._rewrite_arg(match, cwd, line) for match in sorted(matches)]
        return [self._rewrite_arg(word.text, cwd, line)]

    def _rewrite_arg(self, text: str, cwd: Path, line: int, *, path: bool = False) -> str:
        """``/app/x`` becomes ``<work>/app/x``; whatever looks like a path must stay inside the tree."""
        if text in _HOST_DEVICES:
            return text
        if text.startswith("/"):
            host = self.tree.check(self.tree.host(text), line, text)
            return str(host) + ("/" if text.endswith("/") and text != "/" else "")
        if text.startswith("-"):
            option, equals, value = text.partition("=")
            return f"{option}={self._rewrite_arg(value, cwd, line)}" if equals and value else text
        if path or "/" in text or text == "..":
            self.tree.check(cwd / text, line, text)
        return text

    def _host_path(self, text: str, cwd: Path, line: int) -> Path:
        """A path argument as a path in the work tree (absolute: from its root; relative: from ``cwd``)."""
        path = self.tree.host(text) if text.startswith("/") else cwd / text
        return self.tree.check(path, line, text)

    def _ln_args(self, args: list[str], cwd: Path, line: int) -> list[str]:
        """``ln -s TARGET LINK``: an absolute target becomes relative to the link, so the tree can move."""
        positions = [index for index, arg in enumerate(args) if not arg.startswith("-")]
        symbolic = "--symbolic" in args or any(re.fullmatch(r"-[a-zA-Z]*s[a-zA-Z]*", arg) for arg in args)
        if not symbolic or len(positions) != 2:
            return [self._rewrite_arg(arg, cwd, line) for arg in args]
        out = list(args)
        target, link = (args[index] for index in positions)
        link_path = self._host_path(link, cwd, line)
        base = link_path if link_path.is_dir() else link_path.parent
        if target.startswith("/"):
            host = self.tree.check(self.tree.host(target), line, target)
            out[positions[0]] = os.path.relpath(host, base)
        else:
            self.tree.check(base / target, line, target)
        out[positions[1]] = self._rewrite_arg(link, cwd, line)
        return out

    # -- the start command

    def _start_command(self) -> str | None:
        """ENTRYPOINT and CMD combined as Docker does, as one shell command line."""
        entrypoint, cmd = self.entrypoint, self.cmd
        if entrypoint is not None and entrypoint.argv is None:
            if cmd is not None:
                self._note("CMD ignored: a shell-form ENTRYPOINT does not take CMD arguments")
            return self._rewrite_shell_line(entrypoint.shell)
        argv = list(entrypoint.argv) if entrypoint is not None and entrypoint.argv is not None else []
        if cmd is not None and cmd.argv is None:
            if not argv:
                return self._rewrite_shell_line(cmd.shell)
            argv += ["/bin/sh", "-c", cmd.shell]
        elif cmd is not None and cmd.argv is not None:
            argv += cmd.argv
        if not argv:
            return None
        if len(argv) >= 3 and posixpath.basename(argv[0]) in ("sh", "bash") and argv[1] == "-c":
            argv[2] = self._rewrite_shell_line(argv[2])
        return shlex.join([self._start_arg(arg, executable=index == 0) for index, arg in enumerate(argv)])

    def _start_arg(self, text: str, *, executable: bool) -> str:
        """An absolute image path into the tree, relative to the workdir (``./x`` for a program)."""
        if text.startswith("-") and "=" in text:
            option, _, value = text.partition("=")
            return f"{option}={self._start_arg(value, executable=False)}"
        if not text.startswith("/") or text in _HOST_DEVICES or not self.tree.points_into(text):
            return text
        rel = posixpath.relpath(_image_path(text), self.workdir)
        return "./" + rel if executable and "/" not in rel and rel != "." else rel

    def _rewrite_shell_line(self, line: str) -> str:
        def replace(match: re.Match[str]) -> str:
            rewritten = self._start_arg(match.group(), executable=True)
            return match.group() if rewritten == match.group() else shlex.quote(rewritten)

        return _SHELL_PATH.sub(replace, line.strip())

    def _env_path_notes(self) -> None:
        for name, value in self.env.items():
            for piece in value.split(":"):
                if piece.startswith("/") and self.tree.points_into(piece):
                    self._note(f"ENV {name} names the image path {piece}; the work tree is not at / when the app runs")
                    break


# --------------------------------------------------------------------------------------------
# Helpers


def _stages(instructions: list[Instruction]) -> tuple[list[Instruction], list[list[Instruction]]]:
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
            raise _fail(instruction.line, f"{instruction.keyword} comes before the first FROM")
    if not stages:
        raise BuildFailure("the Dockerfile has no FROM instruction")
    return preamble, stages


def _pip_arguments(argv: list[str]) -> list[str] | None:
    """The arguments after ``pip`` / ``python -m pip``, or None when the command is not pip."""
    name = posixpath.basename(argv[0])
    if _PIP.fullmatch(name):
        return argv[1:]
    if _PYTHON.fullmatch(name) and argv[1:3] == ["-m", "pip"]:
        return argv[3:]
    return None


def _pip_options(args: list[str], line: int) -> Iterator[tuple[str | None, str]]:
    """``(option, value)`` pairs of a pip install; positional arguments come as ``(None, value)``."""
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if not arg.startswith("-") or arg == "-":
            yield None, arg
            continue
        if arg.startswith("--") and "=" in arg:
            option, _, value = arg.partition("=")
            if option not in _PIP_VALUE_OPTIONS and option not in _PIP_FLAGS:
                raise _fail(line, f"pip option {option} is not understood")
            yield option, value
            continue
        if not arg.startswith("--") and len(arg) > 2 and arg[:2] in _PIP_VALUE_OPTIONS:
            yield arg[:2], arg[2:]  # -rrequirements.txt
            continue
        if arg in _PIP_VALUE_OPTIONS:
            if index >= len(args):
                raise _fail(line, f"pip option {arg} needs a value")
            yield arg, args[index]
            index += 1
        elif arg in _PIP_FLAGS or re.fullmatch(r"-[qvUI]+", arg):
            yield arg, ""
        else:
            raise _fail(line, f"pip option {arg} is not understood")


def _is_local_requirement(value: str) -> bool:
    """``.``, ``./pkg``, ``/app``, ``.[dev]``: a directory, not a requirement specifier or URL."""
    return value.startswith((".", "/")) and "://" not in value


def _requirement_name(specifier: str) -> str:
    return re.split(r"[\s<>=!~\[;@]", specifier, maxsplit=1)[0].lower()


def _positional(args: list[str], value_options: frozenset[str]) -> list[str]:
    """The arguments that are not options (nor the values of options that take one)."""
    out, index = [], 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("-"):
            index += 2 if arg in value_options else 1
        else:
            out.append(arg)
            index += 1
    return out


def _argument_roles(name: str, args: list[str]) -> list[str]:
    """For each argument of an allowed command: "path" (checked, rewritten) or "text" (left alone)."""
    if name == "echo":
        return ["text"] * len(args)
    roles = ["path"] * len(args)
    if name == "sed":
        _sed_roles(args, roles)
    elif _PYTHON.fullmatch(name) or name == "node":
        code_options = ("-c", "-m") if name != "node" else ("-e", "--eval", "-p", "--print")
        for index, arg in enumerate(args[:-1]):
            if arg in code_options:
                roles[index + 1] = "text"
                break
    return roles


def _sed_roles(args: list[str], roles: list[str]) -> None:
    """sed scripts (``-e SCRIPT`` or the first operand) are text; the files after them are paths."""
    script_given = False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in ("-e", "--expression") and index + 1 < len(args):
            roles[index + 1] = "text"
            script_given = True
            index += 2
            continue
        if arg.startswith("--expression="):
            roles[index] = "text"
            script_given = True
        elif arg == "-f" and index + 1 < len(args):
            script_given = True
            index += 2
            continue
        elif not arg.startswith("-") and not script_given:
            roles[index] = "text"
            script_given = True
        index += 1


def _from_words(instruction: Instruction, global_args: Mapping[str, str]) -> list[str]:
    """``[image]`` or ``[image, "AS", name]`` of a FROM line, ``--platform`` left out."""
    words = [w for w in _words(instruction.args, global_args, instruction.line) if not w.startswith("--")]
    if not (len(words) == 1 or (len(words) == 3 and words[1].lower() == "as")):
        raise _fail(instruction.line, "FROM expects an image, optionally followed by AS <name>")
    return words


def _duration(text: str) -> float | None:
    """Seconds in a Docker duration (``30s``, ``1m30s``, ``500ms``), None when it is not one."""
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _go_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def _is_go_binary(path: Path) -> bool:
    """Whether ``path`` is an executable built by Go: ELF with Go's build information (one read of the file)."""
    try:
        with path.open("rb") as f:
            if f.read(4) != b"\x7fELF":
                return False
            return b"\xff Go buildinf:" in f.read()
    except OSError:
        return False


def _display_path(dockerfile: Path, context: Path) -> str:
    real = dockerfile.resolve()
    return real.relative_to(context).as_posix() if real.is_relative_to(context) else dockerfile.name


def _read_dockerfile(path: Path) -> str:
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


# --------------------------------------------------------------------------------------------
# The entry point


def prepare(
    dockerfile: Path,
    context: Path,
    work: Path,
    hooks: StepHooks,
    build_args: dict[str, str] | None = None,
    stages_dir: Path | None = None,
) -> Plan:
    """Build ``dockerfile`` into ``work`` (the last stage's root) and return its plan.

    ``context`` is the build context COPY reads from; ``work`` an existing, empty directory. The build
    stages the last stage needs are built first, each in a directory of its own under ``stages_dir``
    (default: ``work``'s sibling ``<name>-stages``). ``hooks`` are called in build order for dependency
    installs and allowed RUN commands; ``build_args`` override ARG defaults. Anything that cannot be
    done faithfully without Docker raises :class:`BuildFailure` (``Dockerfile line N: ...``, ``where``
    the Dockerfile).
    """
    context_root = Path(context).resolve()
    work_root = Path(work).resolve()
    stages_root = Path(stages_dir).resolve() if stages_dir else work_root.with_name(work_root.name + "-stages")
    display = _display_path(Path(dockerfile), context_root)
    try:
        if not context_root.is_dir():
            raise BuildFailure(f"the build context {context} is not a directory")
        if not work_root.is_dir():
            raise BuildFailure(f"the work tree {work} is not a directory")
        if context_root.is_relative_to(work_root) or context_root.is_relative_to(stages_root):
            raise BuildFailure("the build context must not be inside the work tree")
        instructions = parse(_read_dockerfile(Path(dockerfile)))
        return _translate(instructions, context_root, work_root, stages_root, hooks, build_args or {}, display)
    except BuildFailure as e:
        if not e.where:
            e.where = display
        raise


def _translate(
    instructions: list[Instruction],
    context: Path,
    work: Path,
    stages_root: Path,
    hooks: StepHooks,
    build_args: Mapping[str, str],
    display: str,
) -> Plan:
    """Every needed stage in build order (see :mod:`cellplane.build.stages`), then the last stage's plan."""
    preamble, stage_lists = _stages(instructions)
    global_args: dict[str, str] = {}
    declarer = _Builder(context, work, hooks, build_args, display)
    for instruction in preamble:
        declarer._declare_args(instruction, global_args, {}, {})
    infos = []
    for index, stage in enumerate(stage_lists):
        words = _from_words(stage[0], global_args)
        copies = [
            (instruction.line, _expand(flag.partition("=")[2], global_args, instruction.line))
            for instruction in stage[1:]
            if instruction.keyword == "COPY"
            for flag in _split_flags(instruction.args)[0]
            if flag.startswith("--from=")
        ]
        infos.append(StageInfo(index, stage[0].line, words[0], words[2].lower() if len(words) == 3 else None, copies))
    order, notes = targets(infos)
    built: dict[int, _Builder] = {}
    for index in order:
        last = index == infos[-1].index
        root = work
        if not last:
            root = stages_root / f"{index}-{infos[index].name or 'stage'}"
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
        builder = _Builder(context, root, hooks, build_args, display, infos, built)
        builder.last = last
        builder.global_args = dict(global_args)
        chain = lineage(infos, index)
        builder.replay([stage_lists[member.index] for member in chain], chain)
        if not last:
            notes.append(f"stage {infos[index].shown} (line {infos[index].line}, {builder.image.ref}) "
                         "built on this machine's toolchain")
            notes.extend(builder.notes)
        built[index] = builder
    final = built[order[-1]]
    final.notes = [*notes, *final.notes]
    plan = final._plan()
    if plan.language == "go" and plan.language_version is None:  # the Go the binary was asked to be built with
        plan.language_version = next((b.image.version for b in built.values() if b.image.kind == "go"), None)
    if plan.language == "java" and final.image.kind in ("jre", "jdk"):
        plan.language_version = final.image.version  # eclipse-temurin:17-jre: Java 17, recorded; the machine's runs
    return plan
