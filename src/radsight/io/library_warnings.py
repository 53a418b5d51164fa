"""Warnings and log lines of the DICOM libraries, kept free of patient data.

pydicom and highdicom quote header values in their warnings ('The string "DOE^JOHN" is unlikely to represent the
intended person name'), and radsight's logs and console must carry no patient data. Around a library call,
:func:`quiet_libraries` takes the call's warnings and logs each once, every quoted value redacted, at DEBUG; the
command line and the service put :class:`Redacting` on their log handlers for whatever else reaches them.
"""
from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
REDACTED = '"…"'


def redact(text: str) -> str:
    """``text`` with every quoted value replaced."""
    return QUOTED.sub(REDACTED, text)


class Redacting(logging.Filter):
    """A handler filter that redacts quoted values in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


@contextmanager
def quiet_libraries(log: logging.Logger) -> Iterator[list[str]]:
    """The block's warnings are not shown; each is logged once to ``log`` at DEBUG, redacted. Yields the list the
    redacted messages are added to when the block ends."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield messages
        finally:
            messages += dict.fromkeys(redact(str(w.message)) for w in caught)
            for message in messages:
                log.debug("%s", message)
