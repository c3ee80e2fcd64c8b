"""The Typer app: registers each verb and maps errors to exit codes in one place.

Every command module only parses options and calls a library function; nothing here decides
anything about models. Heavy libraries are imported inside the commands, so `--help` is fast."""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer.core import TyperGroup

from compress.cli.options import VERBS, with_groups
from compress.cli.output import err_console
from compress.models.disk.durable import DISK_FULL_ERRNOS, disk_full_error
from compress.models.errors import (
    EXIT_CODES,
    CompressError,
    DiskFullError,
    InvalidInputError,
    ResourceError,
)

if TYPE_CHECKING:
    from compress.models.progress import Bar

# OSErrors that are the file system's answer, not a bug: one line and the resources exit code
# (a full disk or quota, DISK_FULL_ERRNOS, is answered first with DiskFullError's code).
_REFUSED_WRITES = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "not a directory",
}
# A user's file that is gone or of the wrong kind: invalid input. Any other OSError about a
# user's file (I/O error, too many open files, ...) is the file system's: resources.
_MISSING = {
    errno.ENOENT: "no such file or directory (moved or deleted while compress ran?)",
    errno.EISDIR: "is a directory, not a file",
}


_VERBOSITY = ("-v", "--verbose", "-q", "--quiet")


class ErrorMappingGroup(TyperGroup):
    """Turns library errors into one red line and a stable exit code; no traceback."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """`-v`/`-q` are root options; accept them after the verb too (`compress train -v`)."""
        end = args.index("--") if "--" in args else len(args)
        flags = [a for a in args[:end] if a in _VERBOSITY]
        rest = [a for a in args[:end] if a not in _VERBOSITY] + args[end:]
        ctx.meta["compress.argv"] = rest
        return super().parse_args(ctx, [*flags, *rest])

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CompressError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: finished artifacts were kept")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # `compress … | head`: the reader left; exit quietly like other Unix tools.
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            raise typer.Exit(0) from None
        except OSError as e:
            mapped = _os_error(e)
            if mapped is None:
                _internal(e, ctx.meta.get("compress.argv", []))
            code, line = mapped
            err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None
        except Exception as e:
            if type(e).__module__.startswith(("typer", "click")):
                raise  # typer.Exit/Abort and usage errors: typer handles them (usage: exit 2)
            _internal(e, ctx.meta.get("compress.argv", []))


def _os_error(e: OSError) -> tuple[int, str] | None:
    """Exit code and line for an OSError about the user's files; None for a bug (no errno, no
    file named, or a file of compress's own installation)."""
    if e.errno in DISK_FULL_ERRNOS:
        full = disk_full_error(os.fsdecode(e.filename)) if e.filename else None
        return DiskFullError.exit_code, str(full) if full else f"disk full: {e}"
    if e.errno in _REFUSED_WRITES:
        return ResourceError.exit_code, f"{_REFUSED_WRITES[e.errno]}: {e}"
    name = e.filename
    if e.errno is None or not isinstance(name, (str, bytes, os.PathLike)) or _installed(name):
        return None
    path = os.fsdecode(name)
    if e.errno in _MISSING:
        return InvalidInputError.exit_code, f"{path}: {_MISSING[e.errno]}"
    return ResourceError.exit_code, f"{path}: {e.strerror or os.strerror(e.errno)}"


def _installed(name: str | bytes | os.PathLike[Any]) -> bool:
    """Whether `name` lies in compress's packages or the Python installation (not the user's)."""
    import sysconfig

    import compress
    import compress.export as export
    import compress.models as models

    roots = {Path(str(m.__file__)).resolve().parent for m in (compress, export, models)}
    paths = sysconfig.get_paths()
    roots |= {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    path = Path(os.fsdecode(name)).resolve()
    return any(path.is_relative_to(r) for r in roots)


def _internal(e: BaseException, argv: list[str]) -> NoReturn:
    """A bug, not a user mistake: one line by default, the traceback with --verbose."""
    import shlex

    from rich.markup import escape

    if logging.getLogger().isEnabledFor(logging.DEBUG):
        err_console.print_exception()
    again = shlex.join(["compress", "-v", *argv])
    err_console.print(
        f"[bold red]internal error:[/] {escape(f'{type(e).__name__}: {e}')}\n"
        f"  this is a bug in compress; `{escape(again)}` shows the traceback; please report it",
        highlight=False,
        soft_wrap=True,  # the command stays one line, to copy and paste
    )
    raise typer.Exit(1) from None


app = typer.Typer(
    cls=ErrorMappingGroup,
    name="compress",
    help="Compress CNNs (prune, distill, quantize), export them to ONNX and benchmark them.",
    epilog="Exit codes: "
    + "  ".join(f"{k} {v.split(' (')[0]}" for k, v in EXIT_CODES.items())
    + ".",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    from rich.logging import RichHandler

    from compress.models.progress import set_progress_factory

    set_progress_factory(_download_bar)  # weights downloads show a bar (libraries only log)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = RichHandler(console=err_console, show_path=False, show_time=False)
    logging.basicConfig(level=level, format="%(message)s", force=True, handlers=[handler])


def _download_bar(label: str, total: int | None) -> Bar:
    """The live bar of a weights download, imported when a download starts (`--help` never)."""
    from compress.cli.progress import DownloadBar

    return DownloadBar(label, total)


# Each module declares its verbs with @verb; one that fails to import is an error, not a gap.
for _module in ("train", "info", "prune", "bench", "run", "deploy"):
    importlib.import_module(f"compress.cli.{_module}_cmd")
VERB_ORDER = (  # as `compress --help` lists them
    "train eval models info prune sensitivity export bench doctor quantize distill run tune deploy "
    "predict factorize"
)
for _name in VERB_ORDER.split():
    app.command(_name)(with_groups(VERBS[_name]))


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
