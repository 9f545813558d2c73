"""What a person sees while liverec works: log lines through the ``liverec`` logger, progress
bars only on a terminal, third-party warnings kept out of the way (in the log at DEBUG).

The library itself only logs (``logging.getLogger(__name__)``); the command line calls
:func:`cli_logging` to give those records a timestamped handler. The root logger is left
alone, so an application that embeds liverec keeps its own logging set-up.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import TextIO

LOGGER = "liverec"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"
_HANDLER_NAME = "liverec-cli"


def progress_enabled(wanted: bool = True) -> bool:
    """Whether to draw a progress bar: only when wanted and stderr is a terminal.

    Piped or redirected output (a log file, CI) gets no bar, so no carriage-return refreshes;
    the training loop logs one line per epoch instead.
    """
    if not wanted:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class WarningsToDebug(logging.Filter):
    """Demote captured Python warnings (``py.warnings`` records) to DEBUG.

    Third-party notices (implicit's CSR conversion and OpenBLAS thread notices, torch's
    TracerWarning during ONNX export, ...) are not the user's business in normal output; with
    ``-v`` they are shown, timestamped, in the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "py.warnings":
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.msg = str(record.msg).strip()
        return True


@contextlib.contextmanager
def cli_logging(verbose: bool = False, stream: TextIO | None = None) -> Iterator[logging.Handler]:
    """Log ``liverec.*`` records (INFO, or DEBUG when verbose) with timestamps to ``stream``
    (default: stderr) and capture Python warnings into the log at DEBUG, for the block.

    Everything is undone on exit (handlers, levels, warning capture), so calling the CLI's
    ``main`` repeatedly in one process (tests) leaves no state behind.
    """
    level = logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt=DATEFMT))
    handler.setLevel(level)
    demote = WarningsToDebug()  # on the logger: it must act before the handler's level check
    logging.getLogger("py.warnings").addFilter(demote)
    loggers = [logging.getLogger(LOGGER), logging.getLogger("py.warnings")]
    saved = [(lg, lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        for old in [h for h in lg.handlers if h.get_name() == _HANDLER_NAME]:
            lg.removeHandler(old)
        lg.addHandler(handler)
        lg.setLevel(level)
        # not up to the root logger: a library that configures it (onnxruntime.quantization
        # calls logging.basicConfig on import) must not print liverec's records twice
        lg.propagate = False
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once, into the log
            yield handler
    finally:
        logging.captureWarnings(False)
        logging.getLogger("py.warnings").removeFilter(demote)
        for lg, old_level, old_propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(old_level)
            lg.propagate = old_propagate
