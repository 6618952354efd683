"""``tbcube config``: check run configuration files.

    tbcube config check deploy/configs/reprocess-ft.yaml
    tbcube config check --config deploy/configs/reprocess-ft.yaml

Prints the kind and the resolved config (defaults filled in, secrets masked) as YAML; an invalid
file is one line ``error: {file}: field 'cluster.n_workers': …`` with exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import click
import yaml


@click.group("config")
def config() -> None:
    """Check run configuration files (deploy/configs/*.yaml)."""


@config.command("check")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=True))
@click.option("--config", "config_opt", type=click.Path(path_type=Path), default=None,
              help="The config file (same as the FILE argument).")
def check_cmd(file: Path | None, config_opt: Path | None) -> None:
    """Validate FILE and print its kind and resolved contents (secrets masked)."""
    from pipeline.config import CONFIG_KINDS, dump_config, load_config

    path = file or config_opt
    if path is None:
        raise click.UsageError("give the config FILE (or --config FILE)")
    job = load_config(path)
    kind = getattr(job, "kind", type(job).__name__)
    click.echo(f"# {path}: valid '{kind}' config ({CONFIG_KINDS.get(kind, type(job).__name__)})")
    click.echo(yaml.safe_dump(dump_config(job), sort_keys=False, default_flow_style=False),
               nl=False)
