"""SPDX licence expressions: parse them, and ask whether a set of licences allows one.

    from attestd.verifier.spdx import is_allowed, parse_expression

    expression = parse_expression("(MIT OR GPL-2.0-only) AND Apache-2.0")
    is_allowed(expression, {"MIT", "Apache-2.0"})      # True: choose MIT
    is_allowed("GPL-2.0-only WITH Classpath-exception-2.0", {"GPL-2.0-only"})   # True

The grammar is SPDX's (annex D): licence ids (``LicenseRef-*`` and
``DocumentRef-*:LicenseRef-*`` included, ``+`` meaning "or later"), ``WITH``
an exception, ``AND``, ``OR`` and parentheses; ``WITH`` binds tighter than
``AND``, which binds tighter than ``OR``. Operators are upper case: a lower-case
``and`` is a malformed expression, not a licence id, so a typo never slips
through as a licence nobody allowed. Ids compare case-insensitively, as SPDX
says they do.

An expression is allowed when some choice of ``OR`` branches uses only
allowed licences: each id is true when allowed, and the expression is then
evaluated as the boolean formula it is (linear, never the exponential list of
choices). ``X WITH E`` is allowed when ``X`` is, since an exception only adds
permissions, or when the whole ``X WITH E`` is in the allowed set; ``X+`` is
allowed when ``X`` or ``X+`` is (the licensee may choose version X).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from attestd.verifier.errors import VerifierError

MAX_EXPRESSION_LENGTH = 1024
MAX_DEPTH = 64

_ID = re.compile(r"(?:DocumentRef-[A-Za-z0-9.\-]+:)?[A-Za-z0-9][A-Za-z0-9.\-]*\+?")
_TOKEN = re.compile(r"\s*(?:(\()|(\))|([^\s()]+))")
_OPERATORS = ("AND", "OR", "WITH")


class SpdxError(VerifierError):
    """A licence expression that is not valid SPDX; ``reason`` is ``license_invalid``."""

    reason = "license_invalid"


@dataclass(frozen=True)
class LicenseId:
    """One licence (``Apache-2.0``, ``GPL-2.0+``, ``LicenseRef-internal``)."""

    id: str

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class WithException:
    """A licence with an exception: ``GPL-2.0-only WITH Classpath-exception-2.0``."""

    license: LicenseId
    exception: str

    def __str__(self) -> str:
        return f"{self.license} WITH {self.exception}"


@dataclass(frozen=True)
class Compound:
    """``AND`` or ``OR`` of two or more expressions."""

    operator: str
    operands: tuple[Expression, ...]

    def __str__(self) -> str:
        return "(" + f" {self.operator} ".join(str(o) for o in self.operands) + ")"


Expression = LicenseId | WithException | Compound


def parse_expression(text: str) -> Expression:
    """The expression ``text`` spells; :class:`SpdxError` if it is not valid SPDX."""
    if not isinstance(text, str) or not text.strip():
        raise SpdxError("a licence expression must be a non-empty string")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise SpdxError(f"licence expression longer than {MAX_EXPRESSION_LENGTH} characters")
    parser = _Parser(_tokens(text), text)
    expression = parser.disjunction(0)
    if parser.position != len(parser.tokens):
        raise SpdxError(f"{text!r}: unexpected {parser.tokens[parser.position]!r}")
    return expression


def license_ids(expression: Expression) -> frozenset[str]:
    """Every licence id the expression names (exceptions not included)."""
    if isinstance(expression, LicenseId):
        return frozenset({expression.id})
    if isinstance(expression, WithException):
        return frozenset({expression.license.id})
    return frozenset().union(*(license_ids(o) for o in expression.operands))


def is_allowed(expression: Expression | str, allowed: Iterable[str]) -> bool:
    """Whether some choice of ``OR`` branches of ``expression`` uses only ``allowed`` licences.

    ``allowed`` holds licence ids, or ``X WITH E`` strings for an exception
    allowed only with its licence; a string ``expression`` is parsed first.
    """
    parsed = parse_expression(expression) if isinstance(expression, str) else expression
    return _allowed(parsed, frozenset(_normal(a) for a in allowed))


def _allowed(expression: Expression, allowed: frozenset[str]) -> bool:
    if isinstance(expression, LicenseId):
        name = _normal(expression.id)
        return name in allowed or (name.endswith("+") and name[:-1] in allowed)
    if isinstance(expression, WithException):
        return _allowed(expression.license, allowed) or _normal(str(expression)) in allowed
    results = (_allowed(o, allowed) for o in expression.operands)
    return any(results) if expression.operator == "OR" else all(results)


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].isspace():
            break
        match = _TOKEN.match(text, position)
        if match is None:  # pragma: no cover - the pattern matches any non-space run
            raise SpdxError(f"{text!r}: cannot read at {position}")
        tokens.append(match.group(1) or match.group(2) or match.group(3))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over the tokens: OR of ANDs of (WITH-terms or parentheses)."""

    def __init__(self, tokens: list[str], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.position = 0

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise SpdxError(f"{self.text!r}: ends too early")
        self.position += 1
        return token

    def disjunction(self, depth: int) -> Expression:
        return self._binary("OR", depth, self.conjunction)

    def conjunction(self, depth: int) -> Expression:
        return self._binary("AND", depth, self.term)

    def _binary(
        self, operator: str, depth: int, operand: Callable[[int], Expression]
    ) -> Expression:
        operands = [operand(depth)]
        while self._peek() == operator:
            self.position += 1
            operands.append(operand(depth))
        return operands[0] if len(operands) == 1 else Compound(operator, tuple(operands))

    def term(self, depth: int) -> Expression:
        word = self._take()
        if word == "(":
            if depth >= MAX_DEPTH:
                raise SpdxError(f"{self.text!r}: parentheses nested deeper than {MAX_DEPTH}")
            inner = self.disjunction(depth + 1)
            if self._take() != ")":
                raise SpdxError(f"{self.text!r}: a parenthesis is not closed")
            return inner
        license_ = LicenseId(self._identifier(word, "licence id"))
        if self._peek() != "WITH":
            return license_
        self.position += 1
        exception = self._identifier(self._take(), "exception id")
        if exception.endswith("+") or ":" in exception:
            raise SpdxError(f"{self.text!r}: {exception!r} is not an exception id")
        return WithException(license_, exception)

    def _identifier(self, token: str, what: str) -> str:
        if token in _OPERATORS or token in ("(", ")") or not _ID.fullmatch(token):
            raise SpdxError(f"{self.text!r}: expected a {what}, found {token!r}")
        if token.casefold() in ("and", "or", "with"):
            raise SpdxError(f"{self.text!r}: operators are upper case ({token!r})")
        return token
