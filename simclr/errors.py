"""The one exception type for errors a user can cause (bad data, bad config, missing weights).

The command line turns it into one line on stderr and exit code 2; anything else is a bug.
"""


class UserError(Exception):
    """A problem the user can fix; the message is one line that says what and where."""


class NonFiniteLoss(RuntimeError):
    """Training diverged: the loss became NaN or infinite at the given epoch/step."""

    def __init__(self, epoch: int, step: int, value: float):
        super().__init__(f"non-finite loss {value} at epoch {epoch}, step {step} (diverged)")
        self.epoch, self.step, self.value = epoch, step, value
