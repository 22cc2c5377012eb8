"""The one strict TOML reader behind the agent config, the policy and the layout.

    from attestd._toml import TomlReader, load_toml

    document = load_toml(path, "policy file", error)             # error(message) -> your type
    reader = TomlReader(error, source=path)
    reader.only_keys(document, "", {"trust", "tdx"})            # unknown key -> error
    root = reader.string(document, "trust", "root")             # wrong type -> error
    table = reader.view(document, "config")                     # or: read keys, then .finish()

Each caller keeps its own exception type (``config_invalid``, ``policy_invalid``,
``layout_invalid``) by passing ``error``, a function from a message to the
exception to raise; the reader words every message the same way and names the
key in it (``tdx.mrtd[0]``), and ``error`` adds the file. A file is read through
:func:`attestd._files.read_regular_file`, so a FIFO or a huge file is refused,
and a document nested so deeply that the parser would recurse past Python's
limit is refused as invalid TOML instead of raising ``RecursionError``.

Two access styles share the same checks: :class:`TomlReader` for callers that
list each table's keys (policy, layout), and :class:`TomlTable`, a view that
remembers which keys were read and rejects the rest on :meth:`TomlTable.finish`
(agent config).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

from attestd._files import MAX_CONFIG_BYTES, FileRefusedError, read_regular_file
from attestd.errors import AttestdError

#: Turns a message into the caller's exception (it adds the file's name).
ErrorFactory = Callable[[str], AttestdError]

_HEX_DIGITS = frozenset("0123456789abcdef")


def load_toml(
    path: Path, what: str, error: ErrorFactory, *, max_bytes: int = MAX_CONFIG_BYTES
) -> dict[str, Any]:
    """The TOML document at ``path`` (a regular file of at most ``max_bytes``).

    An unreadable file is ``error("cannot read <what>: <cause>")``; bytes that are
    not UTF-8 TOML, or nest too deeply to parse, are ``error("<what> is not valid TOML: ...")``.
    """
    try:
        raw = read_regular_file(path, max_bytes, what)
    except FileRefusedError as err:
        raise error(f"cannot read {what}: {err.detail}") from err
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise error(f"{what} is not valid TOML: {err}") from err
    except RecursionError:
        # tomllib recurses once per nested array or inline table; thousands of
        # levels exhaust the interpreter's stack. No valid file nests like that.
        raise error(f"{what} is not valid TOML: nested too deeply") from None


def _kind_name(value: object) -> str:
    return type(value).__name__


class TomlReader:
    """Typed access to a parsed TOML document; every complaint names the key and the file.

    ``where`` arguments are the dotted path of the table a value sits in (``""``
    for the top level), so the key named in a message is ``where.key``.
    """

    def __init__(
        self,
        error: ErrorFactory,
        *,
        source: Path | None = None,
        unknown: Literal["key", "option"] = "key",
    ) -> None:
        self._error = error
        self.source = source
        # The agent's docs promise "unknown option config.agent.x", the policy's
        # "unknown key 'tdx.x'"; scripts match both, so each keeps its sentence.
        self._unknown = unknown

    def error(self, message: str) -> AttestdError:
        """The caller's exception for ``message``."""
        return self._error(message)

    def fail(self, message: str) -> NoReturn:
        raise self._error(message)

    def relative(self, name: str) -> Path:
        """``name`` as a path, relative names taken from the document's directory."""
        path = Path(name)
        if path.is_absolute() or self.source is None:
            return path
        return self.source.parent / path

    @staticmethod
    def full(where: str, key: str) -> str:
        return f"{where}.{key}" if where else key

    def unknown_key(self, where: str, key: str, known: set[str]) -> AttestdError:
        full = self.full(where, key)
        if self._unknown == "option":
            return self.error(f"unknown option {full}")
        return self.error(f"unknown key {full!r} (expected one of: {', '.join(sorted(known))})")

    def only_keys(self, table: Mapping[str, Any], where: str, known: set[str]) -> None:
        """Refuse any key of ``table`` not in ``known``: a misspelt key must not check nothing."""
        for key in table:
            if key not in known:
                raise self.unknown_key(where, key, known)

    def wrong_type(self, where: str, key: str, value: object, expected: str) -> AttestdError:
        full = self.full(where, key)
        return self.error(f"{full} has the wrong type ({_kind_name(value)}): must be {expected}")

    def table(
        self, document: Mapping[str, Any], key: str, *, where: str | None = None
    ) -> dict[str, Any]:
        """The sub-table ``key`` (empty when absent); ``where`` names it when not just ``key``."""
        value = document.get(key, {})
        if not isinstance(value, dict):
            name = where or key
            raise self.error(
                f"{name} has the wrong type ({_kind_name(value)}): must be a table ([{name}])"
            )
        return value

    def string(
        self, table: Mapping[str, Any], where: str, key: str, *, allow_empty: bool = False
    ) -> str | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, str):
            raise self.wrong_type(where, key, value, "a string")
        if not value and not allow_empty:
            raise self.error(f"{self.full(where, key)} must be a non-empty string")
        return value

    def string_list(
        self, table: Mapping[str, Any], where: str, key: str, *, allow_empty: bool = False
    ) -> tuple[str, ...] | None:
        """A list of strings (each non-empty unless ``allow_empty``), or None when absent."""
        if key not in table:
            return None
        values = table[key]
        full = self.full(where, key)
        if not isinstance(values, list):
            raise self.wrong_type(where, key, values, "a list of strings")
        if not all(isinstance(v, str) for v in values):
            raise self.error(f"{full} must be a list of strings")
        if not allow_empty and not all(values):
            raise self.error(f"{full} must be a list of non-empty strings")
        return tuple(values)

    def integer(
        self,
        table: Mapping[str, Any],
        where: str,
        key: str,
        default: int,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = table.get(key, default)
        # bool is an int in Python; `max_age_seconds = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.wrong_type(where, key, value, "an integer")
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            raise self.error(f"{self.full(where, key)} must be between {minimum} and {maximum}")
        return value

    def integer_list(
        self, table: Mapping[str, Any], where: str, key: str, *, minimum: int, maximum: int
    ) -> tuple[int, ...]:
        """A list of integers in ``minimum``..``maximum`` (empty when absent)."""
        values = table.get(key, [])
        full = self.full(where, key)
        if not isinstance(values, list):
            raise self.wrong_type(where, key, values, "a list of integers")
        for index, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(f"{full}[{index}] must be an integer")
            if not minimum <= value <= maximum:
                raise self.error(f"{full}[{index}] must be between {minimum} and {maximum}")
        return tuple(values)

    def boolean(self, table: Mapping[str, Any], where: str, key: str, *, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.wrong_type(where, key, value, "true or false")
        return value

    def hex_list(
        self, table: Mapping[str, Any], where: str, key: str, length: int
    ) -> tuple[str, ...] | None:
        """A non-empty list of ``length``-digit hex strings, lowercased; None when absent."""
        if key not in table:
            return None
        values = table[key]
        full = self.full(where, key)
        if not isinstance(values, list) or not values:
            raise self.error(f"{full} must be a non-empty array of hex strings")
        return tuple(
            self.hex_value(value, f"{full}[{index}]", length) for index, value in enumerate(values)
        )

    def hex_value(self, value: Any, name: str, length: int) -> str:
        """``value`` (the key ``name``) as ``length`` lowercase hex digits."""
        if not isinstance(value, str):
            raise self.error(f"{name} must be a hex string")
        lowered = value.lower()
        if len(lowered) != length or not set(lowered) <= _HEX_DIGITS:
            raise self.error(f"{name} must be {length} hex digits ({length // 2} bytes)")
        return lowered

    def view(self, data: Mapping[str, Any], where: str) -> TomlTable:
        """A :class:`TomlTable` over ``data``, named ``where``."""
        return TomlTable(self, data, where)


class TomlTable:
    """A TOML table that remembers which keys were read, so :meth:`finish` rejects the rest."""

    def __init__(self, reader: TomlReader, data: Mapping[str, Any], where: str) -> None:
        self._reader = reader
        self._data = data
        self.where = where
        self._seen: set[str] = set()

    def text(self, key: str, default: str | None = None) -> str | None:
        """A string (empty allowed: some options use "" for "off"), or ``default``."""
        self._seen.add(key)
        value = self._reader.string(self._data, self.where, key, allow_empty=True)
        return default if value is None else value

    def require_str(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            self._reader.fail(f"{self.where}.{key} is required")
        return value

    def integer(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        self._seen.add(key)
        return self._reader.integer(
            self._data, self.where, key, default, minimum=minimum, maximum=maximum
        )

    def boolean(self, key: str, default: bool) -> bool:
        self._seen.add(key)
        return self._reader.boolean(self._data, self.where, key, default=default)

    def integer_list(self, key: str, *, minimum: int, maximum: int) -> tuple[int, ...]:
        self._seen.add(key)
        return self._reader.integer_list(
            self._data, self.where, key, minimum=minimum, maximum=maximum
        )

    def list_of_str(self, key: str) -> list[str]:
        self._seen.add(key)
        values = self._reader.string_list(self._data, self.where, key, allow_empty=True)
        return list(values or ())

    def table(self, key: str) -> TomlTable:
        self._seen.add(key)
        name = f"{self.where}.{key}"
        return TomlTable(self._reader, self._reader.table(self._data, key, where=name), name)

    def has(self, key: str) -> bool:
        return key in self._data

    def finish(self) -> None:
        """Refuse the first key (in sorted order) that was never read."""
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise self._reader.unknown_key(self.where, unknown[0], self._seen)
