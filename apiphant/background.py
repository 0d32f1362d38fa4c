"""Background tasks: ``@seconds(N)`` in PRODUCT/api/background.py, run by
``apiphant-background PRODUCT``.

    from apiphant.background import seconds

    @seconds(60)
    def update_something():
        ...

``@seconds`` and the registry are apiphant.periodic's (this module re-exports them, the
path apiphant 0.2 documented); this one is the command. Every task runs once at start,
then every N seconds, each in its own greenlet (see apiphant.runtime.scheduler for the
rules). Success logs ``Task NAME: OK.``; failure logs ``Task NAME failed:`` with the
traceback, reports it to Sentry when SENTRY_DSN is set, and calls the module's
``on_error(text)`` hook if it has one.
"""

import argparse
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from apiphant.periodic import Task, seconds, tasks
from apiphant.runtime import imports
from apiphant.runtime.scheduler import Slot
from apiphant.settings import schema

__all__ = ["BackgroundError", "load", "main", "parser", "run_task", "seconds", "tasks"]

log = logging.getLogger("apiphant.background")

PROG = "apiphant-background"
DEFAULT_STOP_TIMEOUT = schema.DEFAULT_STOP_TIMEOUT

OnError = Callable[[str], object]


class BackgroundError(Exception):
    """A background module that cannot be scheduled; the message is one line."""


def run_task(task: Task, on_error: OnError | None = None) -> bool:
    """Run a task once: log the outcome, report a failure, call ``on_error``.

    Returns whether the task succeeded. Only ``Exception`` is caught, so
    GreenletExit (a kill at shutdown) and SystemExit still end things.
    """
    try:
        task.func()
    except Exception as error:
        text = f"Task {task.name} failed:\n{_traceback(error)}"
        log.error("%s", text)
        _report(error, task=task.name)
        if on_error is not None:
            try:
                on_error(text)
            except Exception as hook_error:
                log.error("on_error failed:\n%s", _traceback(hook_error))
                _report(hook_error, task=task.name, hook="on_error")
            else:
                log.info("on_error: OK.")
        return False
    log.info("Task %s: OK.", task.name)
    return True


def _traceback(error: BaseException) -> str:
    """The traceback from the failing code down, without the runner's own frame."""
    tb = error.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb)).rstrip("\n")


def _report(error: BaseException, **tags: str) -> None:
    """Send to Sentry now: the process may be stopped long before a next event.

    ``component`` is repeated here because a tag set at init lives in the
    main greenlet's scope, and tasks run in greenlets of their own.
    """
    from apiphant.runtime import reporting

    if reporting.enabled():
        reporting.capture(error, component="background", **tags)
        reporting.flush()


# Loading the product's background module


def load(product_path: str | Path) -> tuple[ModuleType, list[Task], OnError | None]:
    """Import PRODUCT.api.background; return it, its tasks and its ``on_error``.

    Raises ProductError or BackgroundError with a one-line message.
    """
    import importlib

    from apiphant.product import locate

    product = locate(product_path)
    api = product.api_path
    module_file = api / "background.py"
    package_file = api / "background" / "__init__.py"
    if not module_file.is_file() and not package_file.is_file():
        raise BackgroundError(
            f"no background module: create {imports.shown(module_file)} "
            f"(or a package {imports.shown(package_file.parent)}/) with @seconds(N) tasks"
        )
    where = module_file if module_file.is_file() else package_file
    name = f"{product.name}.api.background"
    try:
        module = importlib.import_module(name)
    except Exception as error:
        log.debug("Import of %s failed:\n%s", name, _traceback(error))
        raise BackgroundError(imports.problem(error, product.path, where)) from error
    found = tasks()
    if not found:
        raise BackgroundError(
            f"no task registered in {imports.shown(where)}: decorate a function with @seconds(N)"
            + (", and import the task modules in __init__.py" if where == package_file else "")
        )
    on_error = getattr(module, "on_error", None)
    if on_error is not None and not callable(on_error):
        raise BackgroundError(f"on_error in {imports.shown(where)} is not a function")
    return module, found, on_error


# The command


def _database(args: argparse.Namespace) -> None:
    """The pool's size and timeout from the options, and the development database when
    DATABASE_URL is unset (psycopg is loaded only when a task first connects)."""
    from apiphant import db
    from apiphant.settings.options import resolve

    found = resolve(args, "background")
    db.for_product(args.product, {name: found[name].value for name in found})


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    from apiphant.runtime.usage import Parser
    from apiphant.settings.options import add_options

    p = Parser(
        prog=prog,
        description="Run the @seconds(N) tasks of PRODUCT/api/background.py until "
        "SIGTERM or SIGINT.",
    )
    add_options(p, "background")
    return p


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """``apiphant-background PRODUCT``: schedule the tasks until SIGTERM or SIGINT, exit 0.

    Bad input (an argument, an environment value, the product's module: its input) is one
    line and exit status 2, as for every command.
    """
    # Before anything imports socket, ssl or the product: tasks' I/O must be cooperative.
    from apiphant.runtime import monkey

    monkey.patch_all()

    from apiphant.product import ProductError
    from apiphant.runtime import logs
    from apiphant.runtime.lifecycle import serving
    from apiphant.runtime.scheduler import Scheduler
    from apiphant.runtime.usage import BAD_ARGUMENT, exit_codes
    from apiphant.settings import SettingError

    with exit_codes(prog, (ProductError, BackgroundError, SettingError)):
        args = parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
        logs.configure()
        _database(args)
        module, found, on_error = load(args.product)

        def run(task: Task, slot: Slot) -> None:
            run_task(task, on_error)

        with serving("background") as stop:
            scheduler = Scheduler(found, run)
            log.info(
                "Scheduling %s (%s): %s", module.__name__,
                imports.shown(module.__file__ or args.product),
                ", ".join(f"{task.name} every {task.interval:g}s" for task in found),
            )
            scheduler.start()
            stop.wait()
            running = scheduler.running
            log.info(
                "%s: stopping; waiting up to %gs for running tasks%s.",
                stop.name, args.stop_timeout,
                f" ({', '.join(running)})" if running else " (none)",
            )
            left = scheduler.stop(args.stop_timeout)
            if left:
                log.warning("Killed tasks still running after %gs: %s.", args.stop_timeout,
                            ", ".join(left))
        log.info("Stopped.")
        return 0
    return BAD_ARGUMENT


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy of it: one module of the
    # command in the process, whatever the product imports (tasks register in periodic).
    from apiphant.background import main as _main

    sys.exit(_main())
