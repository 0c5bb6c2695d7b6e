"""The error types every front end tells apart from a bug.

A `UserError` is printed as one line (exit code 2 on the command line, a message bar in QGIS);
`Cancelled` says the user stopped a job; anything else is a bug and keeps its traceback. They
live in this module, which imports nothing of the engine, so that a front end can bind them
when it is imported: QGIS drops a plugin's modules when it unloads, and a class imported again
after that is a different class from the one a running engine thread raises.
"""

import sys


class UserError(Exception):
    """Bad input from the user: a file, a flag or a region. The message names it and the problem."""


class Cancelled(Exception):
    """The user cancelled; whatever was saved is kept for a resume."""


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
