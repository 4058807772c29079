#!/usr/bin/env python3
"""CDK entry point: ``cdk synth`` / ``cdk deploy`` run it, and so does ``python app.py [-c key=value ...]``.

Run directly it reads cdk.json's context itself and writes the cloud assembly to cdk.out/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

# jsii warns on every start about the Node version; the warning says nothing about this app.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

from infra.config import ConfigError  # noqa: E402
from infra.stack import build_app  # noqa: E402


def _context_flag(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    # Lists and objects as JSON (e.g. aws:cdk:bundling-stacks=[]); everything else stays a string.
    if value.startswith(("[", "{")):
        try:
            return key, json.loads(value)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{key}: not valid JSON: {exc}") from None
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Synthesize the archiver stack.")
    parser.add_argument("-c", "--context", action="append", type=_context_flag, default=[],
                        metavar="KEY=VALUE", help="override a cdk.json context value (repeatable)")
    args = parser.parse_args(argv)
    # Under the CDK CLI, CDK_OUTDIR is set; on its own the app writes where the CLI would.
    outdir = None if "CDK_OUTDIR" in os.environ else "cdk.out"
    try:
        app, _ = build_app(dict(args.context), outdir=outdir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
