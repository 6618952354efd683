"""The ``tbcube`` command line.

Subcommands are grouped by capability and loaded lazily (so ``tbcube --help`` does not import
JAX).  Each capability lives in its own module under :mod:`pipeline.cli`; register it in
``COMMANDS``.  Conventions: ``--kebab-case`` flags, progress and logs on stderr, the output URL
printed last on stdout, exit code 0 only on success.  Expected failures (bad input, missing
store, denied access, invalid config) are :class:`pipeline.errors.TbcubeError` and are printed
as one line ``error: …`` with exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from pipeline import __version__

# name -> (module, attribute, one-line help shown by `tbcube --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "bench": ("pipeline.cli.bench", "bench", "Benchmarks (throughput, memory) written as JSON."),
    "calibrate": ("pipeline.cli.calibrate", "calibrate", "Cross-calibrate sensors: fit | apply."),
    "carbon": ("pipeline.cli.carbon", "carbon", "Carbon fluxes: model | evaluate | aggregate."),
    "catalog": ("pipeline.cli.catalog", "catalog",
                "Validate and inspect catalogs (sensors, STAC)."),
    "config": ("pipeline.cli.config", "config", "Check run configuration files."),
    "demo": ("pipeline.cli.demo", "demo",
             "Run the whole chain on the embedded simulator archive."),
    "ft": ("pipeline.cli.ft", "ft", "Freeze/thaw: train | run | validate."),
    "ingest": ("pipeline.cli.ingest", "ingest",
               "Ingest real granules (SMAP, GPM 1C, SSM/I) into tb/."),
    "products": ("pipeline.cli.products", "products", "Find and open published products (STAC)."),
    "reprocess": ("pipeline.cli.reprocess", "reprocess", "Scheduled, resumable reprocessing."),
    "simulate": ("pipeline.cli.simulate", "simulate",
                 "Write a simulated archive (OSSE) with truth."),
    "sm": ("pipeline.cli.sm", "sm",
           "Soil moisture: tune | retrieve | train | harmonise | fuse | validate."),
}


def _available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(COMMANDS[name][0]) is not None


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        # Capabilities whose module is not present in this build are not listed.
        return sorted(n for n in COMMANDS if _available(n))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _available(name):
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if not rows:
            return
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tbcube")
def cli() -> None:
    """tbcube: passive-microwave TB archives → freeze/thaw, soil moisture and carbon products.

    Every command takes an archive root (--root) that is a local path or any fsspec URL
    (s3://bucket/prefix with AWS_ENDPOINT_URL for S3-compatible stores).
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning expected errors into one line and exit code 2."""
    from pipeline.errors import TbcubeError

    try:
        rv = cli.main(args=argv, prog_name="tbcube", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except TbcubeError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    # With standalone_mode=False click returns ctx.exit(n)'s code instead of exiting.
    sys.exit(rv if isinstance(rv, int) else 0)
