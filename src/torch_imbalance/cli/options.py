"""The training flags, generated from :class:`~torch_imbalance.engine.config.RunConfig`'s fields
and their metadata: a setting is declared once (type, default, help, choices) and appears here
as ``--name-with-dashes`` (``--no-name`` for one that is on by default)."""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, fields
from typing import Any

from torch_imbalance.engine.config import GROUPS, RunConfig

SUPPRESS = argparse.SUPPRESS


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with the value read as YAML (``gamma=2`` -> ``("gamma", 2)``)."""
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def _value_type(annotation: Any) -> type:
    """``int``, ``float``, ``str``, ``bool`` or ``dict`` of an annotation (``X | None`` -> X)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _value_type(inner[0])
    return typing.get_origin(annotation) or annotation


def _default_text(default: Any) -> str:
    return (
        "" if default in (None, MISSING) or isinstance(default, bool) else f" (default {default})"
    )


def add_run_options(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """Every command-line setting of :class:`RunConfig` as a flag, in groups. Defaults are
    suppressed so that only the flags given override a YAML file and the presets (the
    defaults live in ``RunConfig``)."""
    hints = typing.get_type_hints(RunConfig)
    groups: dict[str, Any] = {}
    group: Any = parser
    for spec in fields(RunConfig):
        if spec.name in GROUPS:
            group = groups[spec.name] = parser.add_argument_group(GROUPS[spec.name])
        meta = spec.metadata
        if not meta.get("command_line", True) or spec.name in exclude:
            continue
        kind = _value_type(hints[spec.name])
        options: dict[str, Any] = {"dest": spec.name, "default": SUPPRESS, "help": meta["help"]}
        flag = meta.get("flag") or "--" + spec.name.replace("_", "-")
        if kind is bool:
            if spec.default:
                flag = meta.get("flag") or "--no-" + spec.name.replace("_", "-")
                options["action"] = "store_false"
            else:
                options["action"] = "store_true"
        elif kind is dict:
            options.update(action="append", type=key_value)
        else:
            options["type"] = kind
            options["help"] += _default_text(spec.default)
            if meta.get("choices") is not None:
                options["choices"] = list(meta["choices"])
        if meta.get("metavar"):
            options["metavar"] = meta["metavar"]
        group.add_argument(flag, **options)
    groups["out"].add_argument(
        "--config", default=None, help="YAML file of settings (flags override it)"
    )
