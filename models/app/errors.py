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
