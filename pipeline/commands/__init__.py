"""Thin command modules of the ``cardiotwin`` CLI: parse arguments, call the library, write.

Each module provides ``configure_parser(parser)`` and ``run(args) -> int`` and is registered
with one line in :data:`cardiotwin.pipeline.cli.COMMANDS`.
"""
