"""One exception hierarchy for the whole toolkit, each class carrying its CLI exit code.

Exit codes (stable, documented in the README; EXIT_CODES below): 0 ok · 1 internal bug ·
2 usage · 3 invalid input · 4 unsupported · 5 quality gate failed (artifact kept) ·
6 resources · 7 disk full (temporaries removed, what existed before intact).
"""

from __future__ import annotations


class CompressError(Exception):
    """Base of every error a user can cause; the CLI prints it as one line, no traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base


class UsageError(CompressError):
    """Bad options or arguments: wrong value, conflicting flags, unknown names."""

    exit_code = 2


class UnknownModelError(UsageError):
    """A model name that is not in the zoo and not a `file.py:factory` reference."""


class OutputExistsError(UsageError):
    """`--out` exists and is not empty; we refuse to overwrite without `--overwrite`."""


class OutputLockedError(UsageError):
    """Another run (alive, per its lock file) is writing the same `--out`; refused at once."""


class OutputNotWritableError(UsageError):
    """`--out` names a place where nothing can be written (read-only, no permission, /proc...)."""


class InvalidInputError(CompressError):
    """Input files or data that are missing, corrupt, or of the wrong kind."""

    exit_code = 3


class DataNotFoundError(InvalidInputError):
    """A data set that is not where we looked."""


class WeightsError(InvalidInputError):
    """Weights that can't be read: truncated, not a checkpoint, NaN/Inf, unsafe pickle."""


class UnsafePickleError(WeightsError):
    """A checkpoint that needs arbitrary code to load; refused unless the user trusts it."""


class UntrustedCodeError(InvalidInputError):
    """Model code named by a file (a card, a recipe) that the user did not trust, or that
    differs from the code recorded when the artifact was made; refused, nothing executed."""


class ArchitectureMismatchError(WeightsError):
    """A state_dict whose keys or shapes do not fit the model it is loaded into."""


class ArtifactError(InvalidInputError):
    """An artifact directory that is incomplete, tampered with, or of an unknown format."""


class UnsupportedError(CompressError):
    """A valid request that this tool, the runtime or the device cannot do."""

    exit_code = 4


class QualityGateError(CompressError):
    """A parity or accuracy gate failed; the artifact was kept and marked in its card."""

    exit_code = 5

    def __init__(self, message: str, *, hint: str | None = None, artifact: str | None = None):
        super().__init__(message, hint=hint)
        self.artifact = artifact


class ResourceError(CompressError):
    """Out of disk, memory or device; or an interrupted write."""

    exit_code = 6


class DiskFullError(ResourceError):
    """No space (or quota) left where we write; names the path, the bytes needed and the free."""

    exit_code = 7

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        path: str = "",
        needed: int | None = None,
        free: int | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path, self.needed, self.free = path, needed, free


EXIT_CODES: dict[int, str] = {
    0: "ok",
    1: "internal error (a bug: please report it)",
    2: "usage error (bad option, unknown name, output exists or can't be written there)",
    3: "invalid input (missing/corrupt data, weights or artifact)",
    4: "unsupported (operation, runtime or device not available)",
    5: "quality gate failed (artifact kept and marked)",
    6: "resources (memory, device; a file system that refuses a write or fails)",
    7: "disk full (no space or quota left; nothing half-written kept)",
    130: "interrupted (Ctrl-C)",
}
