"""``cardiotwin config``: check a configuration file, or write the JSON schema of the model."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cardiotwin.pipeline.cli import CommandError

log = logging.getLogger(__name__)

#: where the checked-in schema lives, relative to the repository root
SCHEMA_PATH = Path("configs/schema/config.schema.json")


def schema_text() -> str:
    """The JSON schema of :class:`~cardiotwin.pipeline.config.Config`, as checked in."""
    from cardiotwin.pipeline.config import Config

    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cardiotwin configuration"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a configuration file (YAML or JSON)")
    check.add_argument("file", type=Path)
    schema = sub.add_parser("schema", help="write the JSON schema of the configuration")
    schema.add_argument("--out", type=Path, default=SCHEMA_PATH, help=f"(default {SCHEMA_PATH})")


def run(args: argparse.Namespace) -> int:
    from cardiotwin.files import write_text_atomic
    from cardiotwin.pipeline.config import ConfigError, config_hash, load_config

    if args.config_command == "schema":
        write_text_atomic(args.out, schema_text())
        log.info("wrote %s", args.out)
        return 0
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    print(f"{args.file}: valid (config_version {config.config_version}, sha256 "
          f"{config_hash(config)[:16]})")  # fmt: skip
    return 0
