"""Task configuration: code defaults <- YAML file (``configs/``) <- ``--set key=value`` overrides.

* A task declares its defaults as a (nested) dict; that dict *is* the schema: a key it lacks is an
  error naming the key (with a close match when there is one), in a file and on the command line.
  Sections named in ``open_sections`` (e.g. ``models``: one sub-dict per model name) accept any
  key; the task validates them itself (``build_model`` rejects unknown model config keys).
* A YAML file may start from another with ``extends: other.yaml`` (a path relative to the file).
* ``--set a.b=VALUE``: dotted keys reach into sections; VALUE is read as YAML (``8``, ``1e-3``,
  ``[16,16,5]``, ``true``, ``null``, ``relu``).
* Types are checked against the default: an int where a list is expected is an error, an int
  where a float is expected is fine.

``--config NAME`` finds ``NAME``, ``NAME.yaml`` or ``configs/NAME.yaml`` of the repository.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

__all__ = ["ConfigError", "load_config", "parse_override", "find_config", "config_dirs", "add_config_arguments",
           "config_digest", "dump_config"]


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key or file."""


#: Limits on a config file before it is parsed into Python objects: its size, its nesting depth
#: and the number of YAML nodes once aliases are expanded (a few hundred bytes of anchors and
#: aliases can otherwise stand for billions of nodes: the "billion laughs").
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 64
MAX_CONFIG_NODES = 100_000


def _check_yaml_size(node: Any, where: str) -> None:
    """Count the nodes of a composed YAML document as construction would expand them (an alias
    counts as a copy of its anchor), without expanding anything."""
    memo: dict[int, int] = {}

    def size(n: Any, depth: int) -> int:
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{where}: nested more than {MAX_CONFIG_DEPTH} levels deep (or a recursive alias)")
        if id(n) in memo:
            return memo[id(n)]
        if isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(c, depth + 1) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in n.value)
        else:
            total = 1
        if total > MAX_CONFIG_NODES:
            raise ConfigError(f"{where}: expands to more than {MAX_CONFIG_NODES:,} values (aliases included)")
        memo[id(n)] = total
        return total

    if node is not None:
        size(node, 0)


def safe_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` within :data:`MAX_CONFIG_DEPTH` and :data:`MAX_CONFIG_NODES` (checked on the
    composed node graph first), every failure a :class:`ConfigError` naming ``where``."""
    depth = 0
    for ch in text:  # flow-style nesting, counted before the (recursive) YAML parser sees it
        if ch in "[{":
            depth += 1
            if depth > MAX_CONFIG_DEPTH:
                raise ConfigError(f"{where}: nested more than {MAX_CONFIG_DEPTH} levels deep")
        elif ch in "]}":
            depth -= 1
    try:
        _check_yaml_size(yaml.compose(text, Loader=yaml.SafeLoader), where)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read") from None


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _yaml_value(text: str) -> Any:
    """YAML scalar/list parsing that also reads ``1e-3`` as a float (YAML 1.1 would keep a string)."""
    s = text.strip()
    if _FLOAT_RE.match(s) and not re.match(r"^[+-]?\d+$", s):
        return float(s)
    v = safe_yaml(s, f"cannot read value {text[:80]!r}") if s else None
    return _fix_floats(v)


def _fix_floats(v: Any) -> Any:
    # (depth and size are bounded by safe_yaml before this runs)
    if isinstance(v, str) and _FLOAT_RE.match(v.strip()):
        return float(v)
    if isinstance(v, list):
        return [_fix_floats(x) for x in v]
    if isinstance(v, dict):
        return {k: _fix_floats(x) for k, x in v.items()}
    return v


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=1"`` -> ``(["a", "b"], 1)``."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value")
    key, value = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key")
    return key.split("."), _yaml_value(value)


def config_dirs() -> list[Path]:
    """Where ``--config NAME`` looks: ``$MNFN_CONFIGS``, ``./configs``, the repository's ``configs/``."""
    dirs = []
    if os.environ.get("MNFN_CONFIGS"):
        dirs.append(Path(os.environ["MNFN_CONFIGS"]))
    dirs.append(Path.cwd() / "configs")
    dirs.append(Path(__file__).resolve().parents[3] / "configs")
    return dirs


def find_config(name: str | os.PathLike) -> Path:
    p = Path(name)
    cands = [p, p.with_name(p.name + ".yaml")] if p.suffix not in (".yaml", ".yml") else [p]
    if not p.is_absolute() and len(p.parts) == 1:
        for d in config_dirs():
            cands += [d / p.name, d / (p.name + ".yaml")]
    for c in cands:
        if c.is_file():
            return c
    raise ConfigError(f"config {str(name)!r} not found (looked in {', '.join(str(d) for d in config_dirs())})")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'extends' loop")
    if not path.exists():
        raise ConfigError(f"{path}: cannot read (file not found)")
    if not path.is_file():  # a folder, /dev/zero, a FIFO: nothing a config can be
        raise ConfigError(f"{path}: cannot read: not a regular file")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes; a config file may have at most "
                              f"{MAX_CONFIG_BYTES:,}")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    data = safe_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    data = _fix_floats(data)
    base = data.pop("extends", None)
    if base is None:
        return data
    base_path = Path(base)
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    merged = _read_yaml(base_path, (*seen, path))
    _deep_update(merged, data)
    return merged


def _deep_update(dst: dict, src: Mapping) -> dict:
    for k, v in src.items():
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def _unknown(key: str, where: str, known: Iterable[str], source: str) -> ConfigError:
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{source}: unknown config key {where + key!r}{hint} (known keys: {', '.join(known)})")


def _check_type(path: str, default: Any, value: Any, source: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {path} must be true or false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(default, dict) and not isinstance(value, dict):
        raise ConfigError(f"{source}: {path} is a section; set its keys ({path}.KEY=...)")
    if type(default) is not type(value) and not (isinstance(default, (int, float)) and isinstance(value, (int, float))
                                                 and not isinstance(value, bool)):
        raise ConfigError(f"{source}: {path} expects {type(default).__name__} like {default!r}, got {value!r}")
    return value


def _merge_checked(cfg: dict, src: Mapping, defaults: Mapping, open_sections: set[str], source: str,
                   prefix: str = "") -> None:
    for k, v in src.items():
        path = prefix + str(k)
        if k not in defaults:
            raise _unknown(str(k), prefix, defaults.keys(), source)
        d = defaults[k]
        if isinstance(d, dict):
            if not isinstance(v, Mapping):
                raise ConfigError(f"{source}: {path} is a section; give it a mapping")
            if path in open_sections:
                # open section: any sub-key; merge sub-dicts key by key
                for kk, vv in v.items():
                    if isinstance(vv, Mapping) and isinstance(cfg[k].get(kk), dict):
                        _deep_update(cfg[k][kk], vv)
                    else:
                        cfg[k][kk] = copy.deepcopy(vv)
            else:
                _merge_checked(cfg[k], v, d, open_sections, source, path + ".")
        else:
            cfg[k] = _check_type(path, d, v, source)


def load_config(defaults: Mapping[str, Any], path: str | os.PathLike | None = None,
                overrides: Sequence[str] = (), open_sections: Iterable[str] = ()) -> dict[str, Any]:
    """Defaults, then the YAML file at ``path`` (if any), then ``key=value`` overrides, checked."""
    opened = set(open_sections)
    cfg = copy.deepcopy(dict(defaults))
    if path is not None:
        p = find_config(path)
        _merge_checked(cfg, _read_yaml(p), defaults, opened, str(p))
    for item in overrides:
        keys, value = parse_override(item)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _merge_checked(cfg, nested, defaults, opened, f"--set {item}")
    return cfg


def config_digest(cfg: Mapping[str, Any]) -> str:
    """Short stable hash of a config (for run folders and resume checks)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


def dump_config(cfg: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(cfg), sort_keys=False, default_flow_style=None)


def add_config_arguments(p: argparse.ArgumentParser, default_config: str | None = None) -> None:
    """``--config FILE`` and repeatable ``--set key=value``."""
    p.add_argument("--config", default=default_config,
                   help=f"YAML config (a path, or a name in configs/){' (default ' + default_config + ')' if default_config else ''}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable; dotted keys reach into sections, e.g. models.monomial.hidden=[8,8,5])")
