"""The error every user-facing failure raises: the CLI prints its message, without a traceback."""


class JanusError(Exception):
    """A problem the user can fix (bad params, a broken input line, a failed validation)."""
