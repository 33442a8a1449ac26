"""The runner's user-facing error: reported in one line with exit code 2, never a traceback."""


class UsageError(Exception):
    """A bad flag value, bad data or an unusable environment, said in one line."""
