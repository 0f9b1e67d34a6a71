"""Xero's `where` and `order` query language, evaluated against stored documents.

Supports what integrations use: `Field=="v"` (or `=`), `!=`, `<`, `<=`, `>`, `>=`, `AND`/`&&`, `OR`/`||`,
`NOT`, parentheses, nested fields (`Contact.ContactNumber`), `guid("...")`/`Guid(...)`,
`DateTime(2026, 01, 31)`, `true`/`false`/`null`, and `.Contains("x")`, `.StartsWith(...)`, `.EndsWith(...)`.
String comparison is case-insensitive, as in Xero.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Callable

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>==|!=|<>|>=|<=|&&|\|\||[=<>!(),.])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


class QueryError(ValueError):
    pass


def _tokenise(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise QueryError(f"cannot parse where clause near {text[position:position + 20]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def lookup(document: dict, path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        wanted = part.lower()
        value = next((v for k, v in value.items() if k.lower() == wanted), None)
    return value


def _normalise(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return value


def comparable(value: Any) -> Any:
    """A value as the clause compares it (text case-folded, a date as its midnight UTC)."""
    return _normalise(value)


def _compare(left: Any, op: str, right: Any) -> bool:
    left, right = _normalise(left), _normalise(right)
    if op in ("==", "="):
        return left == right
    if op in ("!=", "<>"):
        return left != right
    if left is None or right is None:
        return False
    try:
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    except TypeError:
        return False


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenise(text)
        self.index = 0
        self.paths: set[str] = set()  # the field paths the clause reads, lower case

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        position = self.index + offset
        return self.tokens[position] if position < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1].lower() != value.lower()):
            raise QueryError(f"expected {value or 'more'} in where clause")
        self.index += 1
        return token

    def parse(self) -> Callable[[dict], bool]:
        predicate = self.disjunction()
        if self.peek() is not None:
            raise QueryError(f"unexpected {self.peek()[1]!r} in where clause")
        return predicate

    def disjunction(self):
        parts = [self.conjunction()]
        while self.peek() and self.peek()[1].lower() in ("or", "||"):
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda doc: any(p(doc) for p in parts))

    def conjunction(self):
        parts = [self.negation()]
        while self.peek() and self.peek()[1].lower() in ("and", "&&"):
            self.take()
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else (lambda doc: all(p(doc) for p in parts))

    def negation(self):
        if self.peek() and self.peek()[1].lower() in ("not", "!"):
            self.take()
            inner = self.negation()
            return lambda doc: not inner(doc)
        return self.comparison()

    def comparison(self):
        if self.peek() and self.peek()[1] == "(":
            self.take("(")
            inner = self.disjunction()
            self.take(")")
            return inner
        left = self.operand()
        token = self.peek()
        if token and token[0] == "op" and token[1] in ("==", "=", "!=", "<>", "<", "<=", ">", ">="):
            op = self.take()[1]
            right = self.operand()
            return lambda doc: _compare(left(doc), op, right(doc))
        return lambda doc: bool(left(doc))

    def operand(self):
        kind, text = self.take()
        if kind == "string":
            value = bytes(text[1:-1], "utf-8").decode("unicode_escape")
            return lambda doc: value
        if kind == "number":
            number = Decimal(text)
            return lambda doc: number
        if kind != "name":
            raise QueryError(f"unexpected {text!r} in where clause")
        lowered = text.lower()
        if lowered in ("true", "false"):
            flag = lowered == "true"
            return lambda doc: flag
        if lowered == "null":
            return lambda doc: None
        if lowered == "guid" and self.peek() and self.peek()[1] == "(":
            self.take("(")
            value = self.take()[1].strip('"')
            self.take(")")
            return lambda doc: value
        if lowered == "datetime" and self.peek() and self.peek()[1] == "(":
            self.take("(")
            numbers = [int(self.take()[1])]
            while self.peek() and self.peek()[1] == ",":
                self.take(",")
                numbers.append(int(self.take()[1]))
            self.take(")")
            moment = datetime(*numbers, tzinfo=timezone.utc)
            return lambda doc: moment
        path = [text]
        while self.peek() and self.peek()[1] == "." and self.peek(1) and self.peek(1)[0] == "name":
            self.take(".")
            segment = self.take()[1]
            if segment.lower() in ("contains", "startswith", "endswith") and self.peek() and self.peek()[1] == "(":
                self.take("(")
                argument = self.operand()
                self.take(")")
                field_path, method = ".".join(path), segment.lower()
                self.paths.add(field_path.lower())

                def call(doc, field_path=field_path, method=method, argument=argument):
                    value, needle = lookup(doc, field_path), argument(doc)
                    if not isinstance(value, str) or not isinstance(needle, str):
                        return False
                    value, needle = value.casefold(), needle.casefold()
                    return {"contains": needle in value, "startswith": value.startswith(needle),
                            "endswith": value.endswith(needle)}[method]

                return call
            path.append(segment)
        field_path = ".".join(path)
        self.paths.add(field_path.lower())
        return lambda doc: lookup(doc, field_path)


def compile_where(text: str | None) -> Callable[[dict], bool]:
    if not text or not text.strip():
        return lambda doc: True
    return _Parser(text).parse()


def where_fields(text: str | None) -> tuple[Callable[[dict], bool], set[str]] | None:
    """The compiled clause and the field paths it reads (lower case); None when it does not compile."""
    if not text or not text.strip():
        return None
    try:
        parser = _Parser(text)
        return parser.parse(), parser.paths
    except ValueError:
        return None


def sort_documents(documents: list[dict], order: str | None, default: list[tuple[str, bool]]) -> list[dict]:
    """`order=Date DESC, InvoiceNumber`; ties fall back to the default order, which ends on creation order."""
    keys: list[tuple[str, bool]] = []
    if order and order.strip():
        for part in order.split(","):
            words = part.strip().split()
            if not words:
                continue
            descending = len(words) > 1 and words[1].upper() == "DESC"
            keys.append((words[0], descending))
    keys += default
    result = list(documents)
    for path, descending in reversed(keys):
        present = [d for d in result if lookup(d, path) is not None]
        missing = [d for d in result if lookup(d, path) is None]
        present.sort(key=lambda d: _normalise(lookup(d, path)), reverse=descending)
        result = present + missing if not descending else missing + present
    return result


# --- narrowing a read by index --------------------------------------------------------------------------

def equality_alternatives(text: str | None, paths: set[str]) -> list[tuple[str, str]] | None:
    """What every document a `where` clause keeps must have: at least one of these (path, text) pairs,
    compared as the clause compares (without regard to case). None when the clause does not say (a
    range, a NOT, a method call, a field outside `paths`): the read then looks at every document.

    Only narrows: the compiled clause still decides. `paths` are lower-case dotted field paths; the
    pairs come from `Path=="text"` and `Path==Guid("...")` terms, combined through AND (any one side
    narrows) and OR (every side must)."""
    if not text or not text.strip():
        return None
    try:
        return _disjunction(_tokenise(text), paths)
    except ValueError:  # the compiled clause answers for a clause it cannot read
        return None


def _split(tokens: list[tuple[str, str]], words: set[str]) -> list[list[tuple[str, str]]]:
    parts: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for kind, text in tokens:
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
        if depth == 0 and kind in ("name", "op") and text.lower() in words:
            parts.append([])
        else:
            parts[-1].append((kind, text))
    return parts


def _disjunction(tokens, paths) -> list[tuple[str, str]] | None:
    found: list[tuple[str, str]] = []
    for part in _split(tokens, {"or", "||"}):
        narrowed = _conjunction(part, paths)
        if narrowed is None:
            return None
        found += narrowed
    return found


def _conjunction(tokens, paths) -> list[tuple[str, str]] | None:
    best = None
    for part in _split(tokens, {"and", "&&"}):
        narrowed = _factor(part, paths)
        if narrowed is not None and (best is None or len(narrowed) < len(best)):
            best = narrowed
    return best


def _factor(tokens, paths) -> list[tuple[str, str]] | None:
    if not tokens:
        return None
    if tokens[0][1] == "(":
        depth = 0
        for position, (_, text) in enumerate(tokens):
            depth += text == "("
            depth -= text == ")"
            if depth == 0:
                break
        return _disjunction(tokens[1:-1], paths) if position == len(tokens) - 1 else None
    # Path (.Path)* ==|= literal, and nothing else.
    if tokens[0][0] != "name":
        return None
    path, position = [tokens[0][1]], 1
    while position + 1 < len(tokens) and tokens[position][1] == "." and tokens[position + 1][0] == "name":
        path.append(tokens[position + 1][1])
        position += 2
    field_path = ".".join(path).lower()
    if field_path not in paths or position >= len(tokens) or tokens[position][1] not in ("==", "="):
        return None
    rest = tokens[position + 1:]
    if len(rest) == 1 and rest[0][0] == "string":
        # As the parser reads a string literal.
        return [(field_path, bytes(rest[0][1][1:-1], "utf-8").decode("unicode_escape"))]
    if len(rest) == 4 and rest[0][0] == "name" and rest[0][1].lower() == "guid" and rest[1][1] == "(" \
            and rest[3][1] == ")":
        return [(field_path, rest[2][1].strip('"'))]
    return None


def date_bounds(text: str | None, paths: set[str]) -> dict[str, list] | None:
    """For a clause that is a plain AND of terms, the bounds its `Path >= DateTime(...)` (and >, <, <=, ==)
    terms put on each of these paths: path -> [low, low inclusive, high, high inclusive], None for no
    bound. None when there are none (or an OR at the top). Only narrows, like equality_alternatives."""
    if not text or not text.strip():
        return None
    try:
        tokens = _tokenise(text)
        if len(_split(tokens, {"or", "||"})) > 1:
            return None
        bounds: dict[str, list] = {}
        for factor in _split(tokens, {"and", "&&"}):
            term = _date_term(factor, paths)
            if term is None:
                continue
            path, op, moment = term
            low, low_in, high, high_in = bounds.setdefault(path, [None, True, None, True])
            if op in (">", ">=", "==", "=") and (low is None or moment > low or (moment == low and op == ">")):
                low, low_in = moment, op != ">"
            if op in ("<", "<=", "==", "=") and (high is None or moment < high or (moment == high and op == "<")):
                high, high_in = moment, op != "<"
            bounds[path] = [low, low_in, high, high_in]
        return bounds or None
    except (ValueError, TypeError):
        return None


def _date_term(tokens, paths) -> tuple[str, str, datetime] | None:
    # Path op DateTime(y, m, d[, ...]), and nothing else.
    if len(tokens) < 6 or tokens[0][0] != "name" or tokens[0][1].lower() not in paths:
        return None
    op = tokens[1][1]
    if op not in (">", ">=", "<", "<=", "==", "=") or tokens[2][1].lower() != "datetime" or tokens[3][1] != "(" \
            or tokens[-1][1] != ")":
        return None
    inner = tokens[4:-1]
    numbers = [text for position, (_, text) in enumerate(inner) if position % 2 == 0]
    commas = [text for position, (_, text) in enumerate(inner) if position % 2 == 1]
    if any(c != "," for c in commas) or not numbers:
        return None
    # As the parser reads DateTime(...).
    return tokens[0][1].lower(), op, datetime(*[int(n) for n in numbers], tzinfo=timezone.utc)
