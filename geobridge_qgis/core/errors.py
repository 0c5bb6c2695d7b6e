"""The one error type for a user's mistake.

A `UserError` is printed as one line (exit code 2 on the command line, a message bar in QGIS);
anything else is a bug and keeps its traceback.
"""

import sys


class UserError(Exception):
    """Bad input from the user: a file, a flag or a region. The message names it and the problem."""


def run_command(func, args) -> int:
    """Run a command-line command: a UserError becomes one line on stderr and exit code 2."""
    try:
        return func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
