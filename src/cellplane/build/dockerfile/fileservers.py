"""Node.js file servers a ``node:*`` last stage may start: ``serve`` and ``http-server`` serving built files.

``npx serve -s build``, ``serve -s dist -l 3000``, ``npx http-server dist -p 8080``: what they do is what the
platform's static server does (``-s`` / ``--single``: the single-page-app fallback), so the stage becomes a
static site. Pure string work on the start command's words.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

# Options that take a value, per server (the rest are flags); what they set (port, host, cache...) the platform's
# static server decides.
_VALUE_OPTIONS = {
    "serve": frozenset({"-l", "--listen", "-p", "--port", "-c", "--config", "--ssl-cert", "--ssl-key", "--ssl-pass"}),
    "http-server": frozenset({"-p", "--port", "-a", "-c", "-e", "--ext", "-P", "--proxy", "--proxy-options",
                              "-C", "--cert", "-K", "--key", "-t", "--timeout", "--username", "--password",
                              "--log-ip"}),
}
_NPX_VALUE_OPTIONS = frozenset({"-p", "--package", "-c", "--call"})


@dataclass
class Served:
    """A file server's start: which program, the directory it serves (relative to its working directory), and
    whether unknown pages fall back to index.html. ``directory`` None: the program's default (``serve``: its working
    directory; ``http-server``: ``./public`` when there is one, else its working directory)."""

    program: str
    directory: str | None
    spa: bool


def served(argv: list[str]) -> Served | None:
    """What ``argv`` serves when it starts ``serve`` or ``http-server`` (through ``npx`` or not), else None."""
    words = list(argv)
    if words and posixpath.basename(words[0]) == "npx":
        words.pop(0)
        while words and words[0].startswith("-"):
            option = words.pop(0)
            if option in _NPX_VALUE_OPTIONS and words:
                words.pop(0)
    if not words:
        return None
    program = posixpath.basename(words[0]).split("@", 1)[0]  # serve@14: the package at a version
    if program not in _VALUE_OPTIONS:
        return None
    values = _VALUE_OPTIONS[program]
    spa, positional, index = False, [], 1
    while index < len(words):
        word = words[index]
        index += 1
        if word in ("-s", "--single") and program == "serve":
            spa = True
        elif word.startswith("-"):
            index += 1 if word in values and "=" not in word else 0
        else:
            positional.append(word)
    return Served(program, positional[0] if positional else None, spa)
