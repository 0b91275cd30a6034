"""Error and position types shared by the config lexer, parser and options mapper.

Every problem with a config file surfaces as a `ConfigError`. Its text always carries the
words ``Parse error`` and a ``file:line:col`` location, because tools that drive nats-server
look for both when they check that a bad file was rejected.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Position:
    """Where a key or value starts: file as given by the user, 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class ConfigError(Exception):
    """A config file (or command line) could not be turned into settings.

    `reason` is the bare message, `position` where it happened (if known). When several
    problems were found at once (the options mapper collects them all, like nats-server),
    `errors` lists each one and `str()` prints one per line.
    """

    def __init__(
        self,
        reason: str,
        position: Position | None = None,
        *,
        errors: list[ConfigError] | None = None,
    ) -> None:
        self.reason = reason
        self.position = position
        self.errors: list[ConfigError] = list(errors) if errors else []
        super().__init__(str(self))

    @property
    def file(self) -> str | None:
        return self.position.file if self.position else None

    @property
    def line(self) -> int | None:
        return self.position.line if self.position else None

    @property
    def col(self) -> int | None:
        return self.position.col if self.position else None

    def __str__(self) -> str:
        if self.errors:
            return "\n".join(_one_line(e) for e in self.errors)
        return _one_line(self)

    @classmethod
    def collect(cls, errors: list[ConfigError]) -> ConfigError:
        """One error standing for several; a single one is returned unchanged."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        return cls(first.reason, first.position, errors=errors)


def _one_line(e: ConfigError) -> str:
    where = f"{e.position}: " if e.position else ""
    return f"{where}Parse error: {e.reason}"
