"""Configuration: the nats-server config file format, its mapping onto `Options`, durations.

`parse_file` / `parse_string` read the format into dicts; `options_from_config` turns such
a dict into `edgebus.options.Options`; `load_config` does both for a path.
"""

from importlib import import_module
from typing import Any

# lazy (PEP 562): `edgebus.conf.errors` alone must not load the parser and the option mapping,
# which a start without a config file never uses
_WHERE = {
    "parse_duration": ".durations",
    "ConfigError": ".errors", "Position": ".errors",
    "ConfigReport": ".options_map", "ConfigWarning": ".options_map",
    "load_config": ".options_map", "options_from_config": ".options_map",
    "ConfigList": ".parser", "ConfigMap": ".parser", "parse_file": ".parser",
    "parse_string": ".parser",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(name)
    return getattr(import_module(_WHERE[name], __name__), name)


__all__ = [
    "ConfigError",
    "ConfigList",
    "ConfigMap",
    "ConfigReport",
    "ConfigWarning",
    "Position",
    "load_config",
    "options_from_config",
    "parse_duration",
    "parse_file",
    "parse_string",
]
