"""User-facing errors: one line that says what is wrong and what to do."""


class SvtError(Exception):
    """An error caused by the user's input or environment, not by a bug.

    The CLI prints ``str(error)`` on one line and exits non-zero; tracebacks
    are shown only with ``--debug``.
    """

    exit_code = 2


class InfeasibleBudget(SvtError):
    """The budget cannot be met within the tolerated accuracy drop."""

    exit_code = 3
