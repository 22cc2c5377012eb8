"""A bounds-checked cursor over bytes, for the parsers that name field and offset on failure.

    >>> class _Reader(ByteReader):
    ...     def error(self, message: str, field: str, offset: int) -> QuoteFormatError:
    ...         return QuoteFormatError(message, field=field, offset=offset)
    >>> r = _Reader(raw)
    >>> version = r.u16("header.version")          # QuoteFormatError if fewer than 2 bytes left
    >>> body = r.sub(r.u32("body.size"), "body")    # a reader over exactly the body's bytes

Each parser subclasses it once with its own error type, so a truncated quote is
a QuoteFormatError and a truncated CC event log a CcelFormatError.
"""

from __future__ import annotations

import abc
import struct
from typing import Self

from attestd.tee.errors import TeeError

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class ByteReader(abc.ABC):
    """A cursor over ``data[start:end]`` that reports truncation through :meth:`error`."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.offset = start
        self.end = len(data) if end is None else end

    @abc.abstractmethod
    def error(self, message: str, field: str, offset: int) -> TeeError:
        """The format error that names ``field`` at ``offset``."""

    def take(self, size: int, field: str) -> bytes:
        if size > self.end - self.offset:
            raise self.error(
                f"truncated: needs {size} bytes, {self.end - self.offset} left",
                field,
                self.offset,
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def u8(self, field: str) -> int:
        value: int = _U8.unpack(self.take(1, field))[0]
        return value

    def u16(self, field: str) -> int:
        value: int = _U16.unpack(self.take(2, field))[0]
        return value

    def u32(self, field: str) -> int:
        value: int = _U32.unpack(self.take(4, field))[0]
        return value

    def sub(self, size: int, field: str) -> Self:
        """A reader over the next ``size`` bytes; this one skips past them."""
        start = self.offset
        self.take(size, field)
        return type(self)(self.data, start, start + size)

    def expect_end(self, field: str) -> None:
        if self.offset != self.end:
            raise self.error(
                f"{self.end - self.offset} bytes left over inside a sized structure",
                field,
                self.offset,
            )
