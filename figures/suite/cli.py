"""`ntk-rnn`: the library's commands (kernel, train, linearized; ntk_rnn.apps.cli) and the main job's `figures`.
`ntk-rnn SUBCOMMAND --help` lists the options."""

from __future__ import annotations

import argparse
import sys

from analysis.sweep import interruptible
from figures.suite import catalogue  # noqa: F401  (registers the studies and figures)
from figures.suite.cache import SuiteBusyError
from figures.suite.outcomes import format_summary
from figures.suite.overrides import configs_toml, effective_configs, load_overrides
from figures.suite.registry import PROFILES
from figures.suite.runner import run_suite
from ntk_rnn.apps import cli as library_cli


def _figures(args: argparse.Namespace) -> int:
    overrides = load_overrides(args.config) if args.config else None
    if args.print_config:
        print(configs_toml(effective_configs(args.profile, overrides, source=args.config or "--config")))
        return 0
    # SIGINT and SIGTERM stop the run: what finished stays cached and no partial file is left
    try:
        with interruptible():
            result = run_suite(
                args.profile, overrides, only=args.only, force=args.force, out_dir=args.out, cache_dir=args.cache,
                progress=not args.no_progress, config_source=args.config,
            )  # fmt: skip
    except KeyboardInterrupt:
        print(f"interrupted: finished studies are cached in {args.cache}; run the same command again to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    except SuiteBusyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(result))
    return 0 if result.ok else 1


def add_figures_command(sub) -> None:
    """Add `figures` (the main job) to `sub`, what ArgumentParser.add_subparsers returns."""
    figures = sub.add_parser(
        "figures",
        help="run every study, write every figure and figures/report.html (the main job)",
        description="Run every study, render every figure (PNG and PDF) and write a self-contained report.html. "
        "Finished studies are cached under --cache, keyed by their config and the code version: a rerun, or "
        "a run after an interruption, computes only what is missing; what JAX compiles is cached there too. "
        "Exit status 1 if a study or figure failed, 2 for bad arguments, 130 when interrupted.",
    )
    figures.add_argument("--profile", default="quick", choices=PROFILES,
                         help="quick: CPU sizes, 8-12 min on 2 cores (default); full: paper-scale widths "
                         "(to 4096-8192) and 5 seeds, for a GPU or a long CPU run")  # fmt: skip
    figures.add_argument("--config", default=None, metavar="TOML",
                         help="override study parameters: one [table] per study name, keys = its config fields "
                         "(see --print-config)")  # fmt: skip
    figures.add_argument(
        "--only",
        default=None,
        metavar="NAME[,NAME]",
        help="compute only these studies; the others' cached tables still go into the report",
    )
    figures.add_argument(
        "--force", action="store_true", help="recompute the studies that run (all, or --only's), ignoring every cache"
    )
    figures.add_argument(
        "--print-config", action="store_true", help="print the effective config of every study as TOML and exit"
    )
    figures.add_argument("--no-progress", action="store_true", help="no progress bars")
    figures.add_argument("--out", default="figures", help="figure and report directory (default figures)")
    figures.add_argument(
        "--cache", default="results", help="table cache directory, compiled programs in CACHE/jax (default results)"
    )
    figures.set_defaults(run=_figures)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the `ntk-rnn` script: the library's commands and `figures`."""
    parser = argparse.ArgumentParser(prog="ntk-rnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    library_cli.add_commands(sub)
    add_figures_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `ntk-rnn` console script: parse argv (default sys.argv[1:]), run the command, return its exit status."""
    return library_cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
