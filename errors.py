"""The exceptions users can cause (bad data, bad config, missing weights), at the bottom of the import graph:
every package (simclr/, storage/, objectives/, reports/) and study.py import it; it imports nothing.

The command line turns a UserError into one line on stderr and exit code 2; anything else is a bug.
"""

import re


class UserError(Exception):
    """A problem the user can fix; the message is one line that says what and where."""


class StudyExists(UserError):
    """A study of that name is in the store already (another worker may have created it a moment ago)."""


class StopRequested(KeyboardInterrupt):
    """Raised by an on_epoch callback at an epoch boundary after SIGTERM asked the worker to stop (see
    objectives.common.Objective.request_stop). A training loop that checkpoints saves the epoch before it stops."""


class NonFiniteLoss(RuntimeError):
    """Training diverged: the loss became NaN or infinite at the given epoch/step."""

    def __init__(self, epoch: int, step: int, value: float):
        super().__init__(f"non-finite loss {value} at epoch {epoch}, step {step} (diverged)")
        self.epoch, self.step, self.value = epoch, step, value


def first_line(message: object, limit: int = 300) -> str:
    """The first line of an exception's (or any) message, at most `limit` characters, with control characters
    escaped, so whatever a library or a user put in it prints as one line. An exception with no message gives its
    type's name."""
    lines = [line for line in re.split(r"[\r\n]+", str(message).strip()) if line]  # other separators: escaped
    if not lines:
        return type(message).__name__ if isinstance(message, BaseException) else ""
    text = lines[0][:limit]
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
