"""Configuration: the nats-server config file format, its mapping onto `Options`, durations.

`parse_file` / `parse_string` read the format into dicts; `options_from_config` turns such
a dict into `edgebus.options.Options`; `load_config` does both for a path.
"""

from .durations import parse_duration
from .errors import ConfigError, Position
from .options_map import ConfigReport, ConfigWarning, load_config, options_from_config
from .parser import ConfigList, ConfigMap, parse_file, parse_string

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
