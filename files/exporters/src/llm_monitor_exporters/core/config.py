"""YAML configuration: loading and strict validation into typed dataclasses.

Every error names the file and the offending key, e.g.
``/etc/x.yml: key 'gpu.simulation.gpus': expected an integer >= 1, got 'many'``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem; the message names the file and the key."""


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping (an empty file is an empty mapping)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read {what}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: cannot read {what}: not UTF-8 text ({exc.reason})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}: malformed YAML{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level of the {what} must be a mapping, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{p}: key {key!r}: keys must be strings")
    return data


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if isinstance(tp, type) and tp in names:
        return names[tp]
    return str(tp)


def _convert(value: object, tp: Any, where: str, meta: typing.Mapping[str, Any]) -> object:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _convert(value, args[0], where, meta)
        raise TypeError(f"unsupported union {tp}")  # pragma: no cover - programming error
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        return [_convert(item, item_tp, _index(where, i), {}) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ConfigError(f"{where}: expected a mapping of strings to strings, got {_describe(value)}")
        return dict(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected a boolean (true/false), got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_describe(value)}")
        result: object = value
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_describe(value)}")
        result = float(value)
    elif tp is str:
        if not isinstance(value, str) or (not value and not meta.get("allow_empty", False)):
            raise ConfigError(f"{where}: expected a non-empty string, got {_describe(value)}")
        result = value
    else:  # pragma: no cover - programming error
        raise TypeError(f"unsupported config type {tp}")
    choices = meta.get("choices")
    if choices is not None and result not in choices:
        raise ConfigError(f"{where}: expected one of {', '.join(map(str, choices))}; got {_describe(value)}")
    minimum = meta.get("minimum")
    if minimum is not None and isinstance(result, (int, float)) and result < minimum:
        raise ConfigError(f"{where}: expected {_type_name(tp)} >= {minimum}, got {_describe(value)}")
    return result


def _build(cls: type[T], data: typing.Mapping[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{_join(where, key)}: unknown key (known keys here: {known})")
    kwargs: dict[str, object] = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], _join(where, name), field.metadata)
    return cls(**kwargs)


def _index(where: str, i: int) -> str:
    return where[:-1] + f"[{i}]'" if where.endswith("'") else f"{where}[{i}]"


def _join(where: str, name: str) -> str:
    # where looks like "<file>: key 'a.b'" or "<file>"
    if where.endswith("'"):
        return where[:-1] + "." + name + "'"
    return f"{where}: key '{name}'"


def build_config(cls: type[T], data: typing.Mapping[str, Any], source: str) -> T:
    """Validate ``data`` (from ``source``) into dataclass ``cls``; unknown keys and wrong types fail."""
    return _build(cls, data, source)


def opt(
    default: Any = None,
    *,
    factory: typing.Callable[[], Any] | None = None,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    help: str = "",
    allow_empty: bool = False,
) -> Any:
    """A dataclass field with validation metadata (choices, minimum) and a help text for docs."""
    meta = {"choices": choices, "minimum": minimum, "help": help, "allow_empty": allow_empty}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclasses.dataclass
class ServerConfig:
    """Keys shared by every exporter (top level of the YAML file)."""

    listen_address: str = opt(":0", help="host:port to listen on (':PORT' = all interfaces)")
    web_config_file: str | None = opt(None, help="exporter-toolkit web config (TLS, basic auth)")
    interval: float = opt(5.0, minimum=0.05, help="seconds between collection cycles")
    log_level: str = opt("info", choices=LOG_LEVELS, help="debug, info, warning or error")
    metrics_path: str = opt("/metrics", help="HTTP path serving metrics")
