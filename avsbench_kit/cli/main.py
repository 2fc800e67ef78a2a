"""Entry point of `avskit`. Heavy libraries are imported inside commands, so `--help` is instant."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from avsbench_kit import __version__
from avsbench_kit.cli import ls as ls_cli
from avsbench_kit.cli import eval as eval_cli
from avsbench_kit.cli import features as features_cli
from avsbench_kit.cli import prepare as prepare_cli
from avsbench_kit.cli import probe as probe_cli
from avsbench_kit.cli import leaderboard as leaderboard_cli
from avsbench_kit.cli import plot as plot_cli
from avsbench_kit.cli import regress as regress_cli
from avsbench_kit.cli import run as run_cli
from avsbench_kit.cli import runs as runs_cli
from avsbench_kit.cli import verify as verify_cli
from avsbench_kit.cli.common import console, err_console
from avsbench_kit.errors import AvsKitError, storage_error

app = typer.Typer(
    name="avskit",
    help="avsbench-kit: prepare AVS benchmarks, cache features, evaluate with the official protocols.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for user errors too."),
) -> None:
    _state["debug"] = debug


@app.command()
def version() -> None:
    """Print the toolkit version and the versions of the libraries that shape the numbers."""
    from avsbench_kit.provenance import environment_info

    for key, value in environment_info().items():
        console.print(f"{key:<14} {value}")


app.add_typer(ls_cli.app, name="ls")
app.add_typer(features_cli.app, name="features")
prepare_cli.register(app)
eval_cli.register(app)
app.add_typer(runs_cli.app, name="runs")
leaderboard_cli.register(app)
plot_cli.register(app)
regress_cli.register(app)
run_cli.register(app)
verify_cli.register(app)
probe_cli.register(app)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the CLI; user errors become one line + hint and a non-zero exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in args
    if _state["debug"]:  # accepted anywhere on the line, not only before the verb
        args = ["--debug"] + [a for a in args if a != "--debug"]
    try:
        app(args=args, standalone_mode=False)
    except AvsKitError as exc:
        if _state["debug"]:
            raise
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        if exc.hint:
            err_console.print(f"[dim]hint:[/] {escape(exc.hint)}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except OSError as exc:
        storage = storage_error(exc)
        if storage is None or _state["debug"]:
            raise
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(storage.message)}", highlight=False, soft_wrap=True)
        err_console.print(f"[dim]hint:[/] {escape(storage.hint or '')}", highlight=False, soft_wrap=True)
        return storage.exit_code
    except SystemExit as exc:  # typer/click exits (--help, usage errors)
        return int(exc.code or 0)
    except Exception as exc:
        # Usage errors come from the click that typer bundles; recognise them by their interface.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()  # type: ignore[attr-defined]
            return exc.exit_code  # type: ignore[attr-defined]
        if type(exc).__name__ == "Abort":
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
