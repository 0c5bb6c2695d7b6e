"""The one error type for a user's mistake.

A `UserError` is printed as one line (exit code 2 on the command line, a message bar in QGIS);
anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a file, a flag or a region. The message names it and the problem."""
