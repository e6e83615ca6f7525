"""Exceptions the command line turns into one-line messages, importable without torch.

``pixelwise --help`` and argument errors must answer before torch is imported, so the classes
the CLI catches live here, in a module that imports nothing heavy.
"""

from __future__ import annotations


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, for example); the last good checkpoint is kept."""


class WriteError(OSError):
    """An output could not be written (a full disk, a read-only folder); the previous file is intact."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that are bad input, answered with a message rather than a traceback.

    ValueError covers DatasetError, CheckpointError, ConfigError and ImageReadError; FileExistsError
    RunExistsError; WriteError an output that could not be written; TypeError a model argument the builder does not take; ImportError an optional
    extra that is not installed (its message says which); KeyError the registries' UnknownNameError.
    """
    from pixelwise.registry import UnknownNameError

    return (ValueError, TypeError, ImportError, UnknownNameError, FileNotFoundError, FileExistsError,
            IsADirectoryError, TrainingError, WriteError)


def one_line(error: BaseException) -> str:
    """``error``'s message for the command line. An error raised in a DataLoader worker arrives
    as "Caught X in DataLoader worker process N" and the worker's whole traceback: keep the
    original message (which names the file), and say where it was raised.

    >>> one_line(ValueError("Caught ValueError in DataLoader worker process 1.\\nOriginal Traceback "
    ...                     "(most recent call last):\\n  File ...\\nValueError: cannot read image a.png"))
    'cannot read image a.png (in DataLoader worker 1)'
    """
    message = str(error)
    if not message.startswith("Caught ") or "\nOriginal Traceback" not in message:
        return message
    worker = message.split("worker process ", 1)[-1].split(".", 1)[0]
    name = type(error).__name__
    marker = next((line for line in message.splitlines() if line.split(":", 1)[0].endswith(name)
                   and not line.startswith(" ")), None)
    original = message[message.rindex(marker) + len(marker.split(":", 1)[0]) + 1:].strip() if marker else message
    return f"{original} (in DataLoader worker {worker})"


def with_article(word: str) -> str:
    """``word`` after its indefinite article, for messages: "a semantic", "an instance".

    >>> with_article("instance"), with_article("panoptic")
    ('an instance', 'a panoptic')
    """
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
