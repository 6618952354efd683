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
