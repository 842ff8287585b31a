"""Which language runtime a start command needs, read from the command itself (a Procfile's, ``build.run``).

The first word that names an interpreter or a launcher decides, after ``exec``, ``env`` and variable
assignments: ``php -S ...`` is PHP, ``bundle exec ruby app.rb`` and ``rackup`` Ruby, ``java -jar`` Java,
``gunicorn`` Python, ``node``/``npm`` Node.js, and a program under ``bin/`` with a ``go.mod`` beside it
is told by that file, not here. Pure string work, no file read.
"""

from __future__ import annotations

import shlex

_WRAPPERS = {"exec", "env", "nohup", "time"}
_BY_PROGRAM = {
    "php": "php", "php-fpm": "php", "frankenphp": "php",
    "ruby": "ruby", "bundle": "ruby", "rackup": "ruby", "puma": "ruby", "rails": "ruby", "unicorn": "ruby",
    "thin": "ruby", "rake": "ruby",
    "java": "java", "mvn": "java", "gradle": "java",
    "python": "python", "python3": "python", "gunicorn": "python", "uvicorn": "python", "flask": "python",
    "hypercorn": "python", "waitress-serve": "python", "daphne": "python", "celery": "python",
    "node": "node", "npm": "node", "npx": "node", "yarn": "node", "pnpm": "node",
    "go": "go",
}


def language_of(command: str) -> str | None:
    """"php", "ruby", "java", "python", "node", "go" or None, from the command's program."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for word in words:
        if word in _WRAPPERS or ("=" in word and not word.startswith(("-", "/", "."))):
            continue
        program = word.rsplit("/", 1)[-1]
        for name in (program, program.rstrip("0123456789.")):
            if name in _BY_PROGRAM:
                return _BY_PROGRAM[name]
        return None
    return None
