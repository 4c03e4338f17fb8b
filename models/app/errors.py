"""The one exception type for mistakes a user can fix (bad config, missing data, diverged run)."""


class UserError(Exception):
    """An error the command line reports as one message on stderr, without a traceback."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


class RunInterrupted(UserError):
    """SIGINT/SIGTERM stopped the run after saving a resumable checkpoint."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


SHOWN_CHARS = 80
"""The longest value an error message shows as it is."""


def shown(value: object) -> str:
    """``value`` for an error message: its ``repr`` when short, else its type and size (a
    container is never walked whole: it may share itself billions of times over)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        text = repr(value)
        return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS - 3]}..."
    if len(value) <= 8 and all(not hasattr(v, "__len__") or isinstance(v, str) for v in value):
        text = repr(value)
        if len(text) <= SHOWN_CHARS:
            return text
    return f"a {type(value).__name__} of {len(value)} items"
