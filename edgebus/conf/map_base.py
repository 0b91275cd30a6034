"""Shared machinery for mapping config blocks onto Options: reporting and typed access.

`MapperBase` collects errors (each a positioned `ConfigError`), nats-server style warnings
(`ConfigWarning`) and edgebus notices (`ConfigReport`), and offers converters that check a
value's type and record an error naming the key, file, line and column when it is wrong.
The block mappers (`map_auth`, `map_blocks`) and the top-level mapper build on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..options import Options
from .durations import parse_duration
from .errors import ConfigError, Position
from .parser import ConfigList, ConfigMap
from .validate import go_atoi, split_host_port

__all__ = ["ConfigWarning", "ConfigReport", "Skip", "MapperBase", "go_type"]


class ConfigWarning(str):
    """A warning's text (``file:line:col: invalid use of field ...``) that also knows
    its `position` and bare `reason`, so it can be turned into a `ConfigError`."""

    position: Position
    reason: str

    def __new__(cls, position: Position, reason: str) -> ConfigWarning:
        self = super().__new__(cls, f"{position}: {reason}")
        self.position = position
        self.reason = reason
        return self

    def as_error(self) -> ConfigError:
        return ConfigError(self.reason, self.position)


@dataclass
class ConfigReport:
    """What the mapper noticed besides errors.

    `warnings` are nats-server's own warnings (``file:line:col: invalid use of field ...``);
    `notices` name settings edgebus accepts but does not act on.
    """

    warnings: list[ConfigWarning] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


class Skip(Exception):
    """Abandon the current key after its error was recorded."""


def go_type(v: Any) -> str:
    """The Go type nats-server would see for a parsed value (used in messages)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    if isinstance(v, datetime):
        return "time.Time"
    return type(v).__name__


def _show(v: Any) -> str:
    text = f'"{v}"' if isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


_WANT_NAMES = {
    "int64": "an integer",
    "bool": "a boolean",
    "string": "a string",
    "float64": "a number",
    "map[string]interface {}": "a map",
    "[]interface {}": "an array",
}


class MapperBase:
    """Error/warning/notice collection and typed value access for one config file."""

    def __init__(
        self, o: Options, filename: str, report: ConfigReport, allow_unknown: bool = False
    ) -> None:
        self.o = o
        self.filename = filename
        self.report = report
        self.allow_unknown = allow_unknown
        self.errors: list[ConfigError] = []
        self.store_dir_set = False
        self.accounts_pos: Position | None = None

    # -- reporting ------------------------------------------------------------------------

    def where(self, container: Any, key: Any) -> Position:
        pos = None
        if isinstance(container, (ConfigMap, ConfigList)):
            pos = container.position_of(key)
        return pos or Position(self.filename, 0, 0)

    def error(self, pos: Position, reason: str) -> None:
        self.errors.append(ConfigError(reason, pos))

    def fail(self, pos: Position, reason: str) -> Skip:
        self.error(pos, reason)
        return Skip()

    def warn(self, pos: Position, fieldname: str, reason: str) -> None:
        self.report.warnings.append(
            ConfigWarning(pos, f'invalid use of field "{fieldname}": {reason}')
        )

    def notice(self, pos: Position, key: str, what: str = "not supported by edgebus") -> None:
        self.report.notices.append(f'{pos}: "{key}" is {what}; ignored')

    def unknown(self, pos: Position, key: str) -> None:
        self.error(pos, f'unknown field "{key}"')

    def entries(self, m: Mapping[str, Any]) -> Iterator[tuple[str, str, Any, Position]]:
        """(lower-cased key, key, value, position) for each entry of `m`."""
        for key, value in m.items():
            yield key.lower(), key, value, self.where(m, key)

    def is_var(self, m: Mapping[str, Any], key: str) -> bool:
        return isinstance(m, ConfigMap) and m.is_used_variable(key)

    def run_block(
        self,
        m: Mapping[str, Any],
        handlers: Mapping[str, Callable[[Any, Position, str], None]],
        *,
        ignored: frozenset[str] = frozenset(),
        unknown: Callable[[Position, str], None] | None = None,
        block: str = "",
    ) -> None:
        """Dispatch each entry of `m` to its handler; errors in one entry don't stop others."""
        for low, key, value, pos in self.entries(m):
            try:
                handler = handlers.get(low)
                if handler is not None:
                    handler(value, pos, key)
                elif low in ignored:
                    self.notice(pos, f"{block}.{key}" if block else key)
                elif not self.is_var(m, key):
                    (unknown or self.unknown)(pos, key)
            except Skip:
                pass

    # -- typed access ---------------------------------------------------------------------

    def want(self, v: Any, kind: str, pos: Position, key: str) -> Any:
        if go_type(v) != kind:
            raise self.fail(
                pos,
                f'invalid value for "{key}": expected {_WANT_NAMES.get(kind, kind)}, '
                f"got {go_type(v)} {_show(v)}",
            )
        return v

    def int_(self, v: Any, pos: Position, key: str) -> int:
        return int(self.want(v, "int64", pos, key))

    def str_(self, v: Any, pos: Position, key: str) -> str:
        return str(self.want(v, "string", pos, key))

    def bool_(self, v: Any, pos: Position, key: str) -> bool:
        return bool(self.want(v, "bool", pos, key))

    def map_(self, v: Any, pos: Position, key: str) -> Mapping[str, Any]:
        return self.want(v, "map[string]interface {}", pos, key)  # type: ignore[no-any-return]

    def strings(self, v: Any, pos: Position, key: str, what: str) -> list[str]:
        """A string or an array of strings (nats-server's parseStringArray)."""
        if isinstance(v, str):
            return [v]
        if isinstance(v, list):
            out = []
            for i, item in enumerate(v):
                if isinstance(item, str):
                    out.append(item)
                else:
                    self.error(
                        self.where(v, i),
                        f"error parsing {what}: unsupported type in array {go_type(item)}",
                    )
            return out
        raise self.fail(pos, f"error parsing {what}: unsupported type {go_type(v)}")

    def duration(self, v: Any, pos: Position, key: str, name: str | None = None) -> float:
        """nats-server's parseDuration: a Go duration string, or (with a warning) seconds."""
        name = name or key
        if isinstance(v, str):
            try:
                return parse_duration(v)
            except ValueError as e:
                raise self.fail(pos, f"error parsing {name}: {e}") from None
        if isinstance(v, int) and not isinstance(v, bool):
            self.warn(pos, name, f"{name} should be converted to a duration")
            return float(v)
        raise self.fail(pos, f"error parsing {name}: expected a duration string, got {go_type(v)}")

    def strict_duration(self, v: Any, pos: Position, name: str) -> float:
        """A Go duration string and nothing else."""
        s = self.want(v, "string", pos, name)
        try:
            return parse_duration(s)
        except ValueError as e:
            raise self.fail(pos, f"error parsing {name}: {e}") from None

    def seconds(self, v: Any, pos: Position, what: str) -> float:
        """Timeouts given as int/float seconds or a duration string (auth and TLS timeouts)."""
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise self.fail(pos, f"error parsing {what}, 'timeout' wrong type")
        if isinstance(v, str):
            try:
                return parse_duration(v)
            except ValueError as e:
                raise self.fail(pos, f"error parsing {what}, 'timeout' {e}") from None
        return float(v)

    def listen(self, v: Any, pos: Position) -> tuple[str | None, int]:
        """``port`` or ``"host:port"`` (nats-server's parseListen)."""
        if isinstance(v, int) and not isinstance(v, bool):
            return None, v
        if isinstance(v, str):
            try:
                host, port = split_host_port(v)
            except ValueError:
                raise self.fail(pos, f'could not parse address string "{v}"') from None
            try:
                return host, go_atoi(port)
            except ValueError:
                raise self.fail(pos, f'could not parse port "{port}"') from None
        raise self.fail(pos, f"expected port or host:port, got {go_type(v)}")
