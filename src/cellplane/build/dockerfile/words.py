"""Docker's word rules: quotes, backslash escapes and ``$VAR`` substitution, and RUN's shell lines as simple commands.

One left-to-right pass over the text (:class:`Lexer`); no shell is run. What a shell would do that
Cellplane cannot do faithfully without one (pipes, command substitution, ``$?``...) fails naming the line."""

from __future__ import annotations

import glob
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cellplane.build.dockerfile.parsing import fail

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])(.*))?", re.S)
RAW_WORD = re.compile(r"""(?:[^\s"'\\]|\\.?|"(?:[^"\\]|\\.)*"?|'[^']*'?)+""", re.S)


@dataclass
class Word:
    """A shell word after quote removal and substitution; ``pattern`` is set when it has unquoted globs."""

    text: str
    pattern: str | None = None


@dataclass
class _Op:
    symbol: str


@dataclass
class Command:
    """One simple command of a RUN line, with an optional ``>`` / ``>>`` redirection."""

    words: list[Word]
    redirect: tuple[str, Word] | None = None


class _Lexer:
    """Docker's word rules: quotes, backslash escapes, ``$VAR``, ``${VAR}``, ``${VAR:-x}``, ``${VAR:+x}``.

    In word mode the whole text is one word (instruction arguments, split beforehand by
    ``RAW_WORD``). In shell mode (RUN) it splits on whitespace, recognises shell operators, splits
    unquoted substitutions into fields and remembers unquoted glob characters, like ``sh`` would;
    variables the Dockerfile does not define are collected in ``unknown`` and expand to nothing.
    """

    def __init__(
        self, text: str, env: Mapping[str, str], line: int, *, shell_syntax: bool, unknown: list[str] | None = None
    ) -> None:
        self.text, self.env, self.line, self.shell = text, env, line, shell_syntax
        self.unknown = unknown if unknown is not None else []
        self.pos = 0
        self.tokens: list[Word | _Op] = []
        self._chars: list[str] = []
        self._pattern: list[str] = []
        self._glob = False
        self._open = False

    def tokenize(self) -> list[Word | _Op]:
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
            raise fail(self.line, "unterminated single quote")
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
                raise fail(self.line, "command substitution (`...`) is not supported without Docker")
            else:
                self._add(char, quoted=True)
                self.pos += 1
        raise fail(self.line, "unterminated double quote")

    def _dollar(self) -> str:
        """The value of the substitution at ``self.pos`` (a ``$``), moving past it."""
        rest = self.text[self.pos + 1 :]
        if rest.startswith("{"):
            end = self.text.find("}", self.pos)
            if end < 0:
                raise fail(self.line, "unterminated ${...}")
            body = self.text[self.pos + 2 : end]
            self.pos = end + 1
            return self._braced(body)
        if self.shell and rest.startswith("("):
            raise fail(self.line, "command substitution $(...) is not supported without Docker")
        if name := NAME.match(rest):
            self.pos += 1 + name.end()
            return self._lookup(name.group())
        if self.shell and rest[:1] and rest[0] in "0123456789@*#?$!-":
            raise fail(self.line, f"the shell parameter ${rest[0]} is not supported without Docker")
        self.pos += 1
        return "$"

    def _braced(self, body: str) -> str:
        match = _BRACED.fullmatch(body)
        if not match:
            raise fail(self.line, f"the substitution ${{{body}}} is not supported")
        name, operator, word = match.groups()
        if operator is None:
            return self._lookup(name)
        value = self.env.get(name)
        alternative = expand(word, self.env, self.line)
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
            raise fail(self.line, "command substitution (`...`) is not supported without Docker")
        if symbol in (">", ">>", "<") and self._open and "".join(self._chars).isdigit():
            raise fail(self.line, f"the redirection {''.join(self._chars)}{symbol} is not supported without Docker")
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
            self.tokens.append(Word("".join(self._chars), pattern))
        self._chars, self._pattern, self._glob, self._open = [], [], False, False


def expand(text: str, env: Mapping[str, str], line: int) -> str:
    """One instruction word with quotes removed and ``$VAR`` substituted (unknown variables: empty)."""
    tokens = _Lexer(text, env, line, shell_syntax=False).tokenize()
    return "".join(token.text for token in tokens if isinstance(token, Word))


def split_words(args: str, env: Mapping[str, str], line: int) -> list[str]:
    """An instruction's arguments split into words, each expanded."""
    return [expand(raw, env, line) for raw in RAW_WORD.findall(args)]


def shell_commands(text: str, env: Mapping[str, str], line: int, unknown: list[str]) -> list[Command]:
    """A RUN shell line as simple commands (split on ``&&`` and ``;``); other operators fail."""
    tokens = _Lexer(text, env, line, shell_syntax=True, unknown=unknown).tokenize()
    commands, current = [], Command([])
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if isinstance(token, Word):
            current.words.append(token)
        elif token.symbol in ("&&", ";"):
            commands.append(current)
            current = Command([])
        elif token.symbol in (">", ">>") and current.redirect is None and isinstance(following, Word):
            current.redirect = (token.symbol, following)
            index += 1
        else:
            raise fail(
                line,
                f"RUN uses the shell operator '{token.symbol}', which is not supported without Docker "
                "(supported: commands joined with && or ;, and > or >> into a file)",
            )
        index += 1
    commands.append(current)
    return [command for command in commands if command.words]
