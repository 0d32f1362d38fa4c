"""How apiphant's commands answer a mistake: one line on stderr, exit status 2.

Both ``apiphant`` and ``apiphant-background`` use it, so neither imports the other for a
parser. Standard library only: it imports nothing of apiphant's.
"""

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import NoReturn

#: A bad argument, environment value or product: the user's input.
BAD_ARGUMENT = 2
#: Something failed that the input did not cause (a port in use, an import error).
FAILED = 1


class UsageError(Exception):
    """A bad argument or environment value: one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with mistakes on one line (and exit status 2), help as usual."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} -h)")


@contextlib.contextmanager
def exit_codes(prog: str, bad_input: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """A UsageError, or one of ``bad_input`` (shown as ``prog: ...``), raised in the block is
    one line on stderr and ends the block; the command then returns BAD_ARGUMENT::

        with exit_codes(PROG, (ProductError,)):
            return run(argv)
        return BAD_ARGUMENT

    A context manager, not a wrapper, so the command's log lines stay in its own function.
    """
    try:
        yield
    except UsageError as error:
        print(error, file=sys.stderr)
    except bad_input as error:
        print(f"{prog}: {error}", file=sys.stderr)
