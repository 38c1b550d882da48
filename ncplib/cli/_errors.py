"""Exit statuses and the errors the commands report in one line."""

from __future__ import annotations

#: The command succeeded.
EXIT_OK = 0
#: The node replied with an error (an ``ERRO`` param).
EXIT_COMMAND_ERROR = 1
#: Bad usage: an unknown option or an invalid argument.
EXIT_USAGE = 2
#: Network failure: connection refused or lost, timeout, malformed data.
EXIT_NETWORK = 3
#: Interrupted by Ctrl-C.
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """An invalid command-line argument; the message says which and why."""


class _Failure(Exception):
    """A failure already described in one line, with the exit status to use."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
