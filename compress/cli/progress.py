"""Rich progress bars on stderr: the training hooks, weights downloads, the benchmark."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from compress.cli.output import err_console


class _Bar(Progress):
    """A transient bar on stderr: the task's description, the bar, then `columns`."""

    def __init__(self, *columns: ProgressColumn) -> None:
        what = TextColumn("[bold]{task.description}")
        super().__init__(what, BarColumn(), *columns, console=err_console, transient=True)


class RichHooks(_Bar):
    """One bar per epoch with ETA, running loss, and a summary line after each epoch."""

    def __init__(self) -> None:
        loss = TextColumn("loss {task.fields[loss]:.4f}")
        super().__init__(MofNCompleteColumn(), loss, TimeElapsedColumn(), TimeRemainingColumn())
        self.task: TaskID | None = None

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        if self.task is not None:
            self.remove_task(self.task)
        self.epochs = epochs
        self.task = self.add_task(f"epoch {epoch + 1}/{epochs}", total=batches, loss=0.0)

    def on_batch(self, loss: float) -> None:
        if self.task is not None:
            self.update(self.task, advance=1, loss=loss)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        val = metrics.get("val_top1")
        shown = f" val top-1 {100 * val:.2f} %" if val is not None else ""
        self.console.print(
            f"epoch {epoch + 1}/{self.epochs}: loss {metrics['train_loss']:.4f} "
            f"train acc {100 * metrics['train_acc']:.2f} %{shown} ({metrics['seconds']:.1f} s)"
        )


class DownloadBar:
    """A byte-count bar for `compress.models.weights.download` (installed by the app); falls
    back to log lines where another live display can't nest (older rich)."""

    def __init__(self, label: str, total: int | None) -> None:
        from rich.errors import LiveError
        from rich.progress import DownloadColumn, TransferSpeedColumn

        from compress.models.progress import ProgressBar

        self.fallback: ProgressBar | None = None
        self.progress = _Bar(DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        try:
            self.progress.start()
        except LiveError:
            self.fallback = ProgressBar(label, total)
        self.task = self.progress.add_task(label, total=total)

    def update(self, done: int) -> None:
        if self.fallback is not None:
            self.fallback.update(done)
        else:
            self.progress.update(self.task, completed=done)

    def close(self) -> None:
        if self.fallback is None:
            self.progress.stop()


class BenchBar(_Bar):
    """A bar driven by the benchmark's (done, total, what) callback."""

    def __init__(self) -> None:
        super().__init__(MofNCompleteColumn(), TimeElapsedColumn())
        self.task = self.add_task("benchmark", total=None)

    def __call__(self, done: int, total: int, what: str) -> None:
        self.update(self.task, completed=done, total=total, description=what)
