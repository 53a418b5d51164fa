"""multipart/related request bodies (STOW-RS) parsed as they stream in, by python-multipart's parser: a delimiter is
the boundary at the start of a line (RFC 2046), media types compare case-insensitively, and the size limit holds
while the body arrives."""
from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError

MAX_PREAMBLE = 64 * 1024


class MultipartError(ValueError):
    """A body that is not a well-formed multipart message."""


class TooLarge(ValueError):
    """A body past the size limit."""


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """``multipart/related; type="application/dicom"; boundary=x`` as ("multipart/related", {"type": ..., ...}):
    the type in lower case, parameter names in lower case, values unquoted."""
    head, *params = content_type.split(";")
    values = {}
    for param in params:
        name, _, value = param.partition("=")
        if value:
            values[name.strip().lower()] = value.strip().strip('"')
    return head.strip().lower(), values


class PartReader:
    """Feed a body chunk by chunk; ``parts()`` gives each part's data (headers dropped) once the closing delimiter
    was seen. A preamble before the first delimiter is skipped, as RFC 2046 asks."""

    def __init__(self, boundary: str, limit: float = float("inf")):
        if not boundary:
            raise MultipartError("multipart/related without a boundary")
        self.limit, self.size, self.ended = limit, 0, False
        self._delimiter = b"--" + boundary.encode("latin-1", "replace")
        self._head: bytearray | None = bytearray()  # the start of the body until the first delimiter is found
        self._parts: list[bytes] = []
        self._current: list[bytes] = []
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._current.clear,
            "on_part_data": lambda data, start, end: self._current.append(bytes(data[start:end])),
            "on_part_end": lambda: self._parts.append(b"".join(self._current)),
            "on_end": self._end,
        })

    def _end(self) -> None:
        self.ended = True

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(f"upload larger than {int(self.limit)} bytes")
        if self._head is not None:
            self._head += chunk
            start = self._first_delimiter()
            if start is None:
                return
            chunk, self._head = bytes(self._head[start:]), None
        if self.ended:
            return  # the epilogue
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MultipartError(f"malformed multipart body: {exc}") from exc

    def _first_delimiter(self) -> int | None:
        head = self._head
        if head.startswith(self._delimiter):
            return 0
        found = head.find(b"\r\n" + self._delimiter)
        if found >= 0:
            return found + 2
        if len(head) > MAX_PREAMBLE:
            raise MultipartError("no multipart delimiter in the body's first 64 KiB")
        return None

    def parts(self) -> list[bytes]:
        if not self.ended:
            raise MultipartError("the body ends before its closing multipart delimiter")
        return self._parts


async def read_parts(stream: AsyncIterator[bytes], content_type: str, limit: float) -> list[bytes]:
    """The parts of a streamed multipart body; MultipartError or TooLarge (as soon as the limit is passed)."""
    _, params = media_type(content_type)
    reader = PartReader(params.get("boundary", ""), limit)
    async for chunk in stream:
        reader.feed(chunk)
    return reader.parts()
