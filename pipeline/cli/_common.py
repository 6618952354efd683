"""Shared pieces of the CLI: the --root option, progress on stderr, the URL printed last."""

from __future__ import annotations

import sys
import time

import click

_T0 = time.monotonic()

root_option = click.option(
    "--root",
    required=True,
    metavar="URL",
    help="Archive root: a local path, file://… or s3://bucket/prefix (AWS_ENDPOINT_URL for "
    "S3-compatible stores).",
)


def echo_progress(message: str) -> None:
    """One progress line on stderr, prefixed with the elapsed time."""
    click.echo(f"[{time.monotonic() - _T0:7.1f}s] {message}", err=True)


def print_url(url: str) -> None:
    """Print the output URL as the last line on stdout."""
    sys.stderr.flush()
    click.echo(url)


def parse_years(text: str | None, option: str = "--years") -> tuple[int, ...] | None:
    """``"2015,2016"`` → ``(2015, 2016)``; ``None``/empty → ``None``; else a usage error."""
    if not text:
        return None
    try:
        return tuple(int(y) for y in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated years, e.g. 2015,2016",
                                 param_hint=option) from None
