"""Exceptions the command line turns into one-line messages, importable without torch.

``pixelwise --help`` and argument errors must answer before torch is imported, so the classes
the CLI catches live here, in a module that imports nothing heavy.
"""

from __future__ import annotations


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, for example); the last good checkpoint is kept."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that are bad input, answered with a message rather than a traceback.

    ValueError covers DatasetError, CheckpointError, ConfigError and ImageReadError; FileExistsError
    RunExistsError; TypeError a model argument the builder does not take; ImportError an optional
    extra that is not installed (its message says which); KeyError the registries' UnknownNameError.
    """
    from pixelwise.registry import UnknownNameError

    return (ValueError, TypeError, ImportError, UnknownNameError, FileNotFoundError, FileExistsError,
            IsADirectoryError, TrainingError)
