"""Autotask's QueryModel: parse it, validate it the way the API does, and compile it to a predicate."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from .schema import FieldSpec, entity_fields
from .wire import parse_timestamp

MAX_PAGE = 500
MAX_IN_VALUES = 500
COMPARISONS = {"eq", "noteq", "gt", "gte", "lt", "lte", "beginswith", "endswith", "contains", "in", "notin"}
PRESENCE = {"exist", "notexist"}
GROUPS = {"and", "or"}

Predicate = Callable[[dict], bool]


class QueryError(Exception):
    """A query the API refuses; the message is what Autotask would put in `errors`."""


@dataclass
class Query:
    max_records: int
    include_fields: list[str] | None
    matches: Predicate
    raw: dict
    # What an index can narrow the search by: for each top-level `eq`/`in` condition on a field, the
    # field and the values (in their compared form, see `stored`) a matching record must hold there.
    # Only narrows: `matches` still decides.
    equalities: list[tuple[FieldSpec, frozenset]] = field(default_factory=list)


def _key(body: dict, name: str):
    for k, v in body.items():
        if k.lower() == name.lower():
            return v
    return None


def parse_query(entity: str, body) -> Query:
    if not isinstance(body, dict):
        raise QueryError("The search object is not a valid QueryModel.")
    fields = entity_fields(entity)
    by_lower = {name.lower(): spec for name, spec in fields.items()}

    max_records = _key(body, "MaxRecords")
    if max_records is None:
        max_records = MAX_PAGE
    if isinstance(max_records, bool) or not isinstance(max_records, int) or not 1 <= max_records <= MAX_PAGE:
        raise QueryError("maxCountOfRecordsToReturn must be between 1 and 500")

    include = _key(body, "IncludeFields")
    include_fields = None
    if include:
        if not isinstance(include, list):
            raise QueryError("IncludeFields must be an array of field names.")
        include_fields = []
        for name in include:
            spec = by_lower.get(str(name).lower())
            if spec is None:
                raise QueryError(f"Unable to find {name} in the {entity} entity.")
            include_fields.append(spec.name)

    items = _key(body, "Filter")
    if not items or not isinstance(items, list):
        raise QueryError("A filter is required: the query must contain at least one filter condition.")
    udf_count = [0]
    predicates = [_compile(entity, by_lower, item, udf_count) for item in items]
    equalities = [e for e in (_equality(by_lower, item) for item in items) if e is not None]
    return Query(max_records, include_fields, lambda rec: all(p(rec) for p in predicates), body, equalities)


def _equality(by_lower: dict[str, FieldSpec], item: dict) -> tuple[FieldSpec, frozenset] | None:
    """The values an `eq` or `in` condition (already compiled, so valid) lets a record hold."""
    op = str(_key(item, "op") or "").lower()
    if op not in ("eq", "in") or _key(item, "udf") is True:
        return None
    spec = by_lower[str(_key(item, "field")).lower()]
    to_value = _converter(spec)
    if op == "in":
        return spec, frozenset(to_value(v) for v in _key(item, "value"))
    target = to_value(_key(item, "value"))
    # eq null matches nothing; leave it to the predicate.
    return None if target is None else (spec, frozenset([target]))


def _compile(entity: str, by_lower: dict[str, FieldSpec], item, udf_count: list[int]) -> Predicate:
    if not isinstance(item, dict):
        raise QueryError("Each filter condition must be an object with op, field and value.")
    op = str(_key(item, "op") or "").lower()
    if op in GROUPS:
        children = _key(item, "items")
        if not children or not isinstance(children, list):
            raise QueryError(f"The '{op}' operator requires a non-empty items array.")
        compiled = [_compile(entity, by_lower, child, udf_count) for child in children]
        if op == "and":
            return lambda rec: all(p(rec) for p in compiled)
        return lambda rec: any(p(rec) for p in compiled)
    if op not in COMPARISONS | PRESENCE:
        raise QueryError(f"Invalid query syntax. Unknown operator '{_key(item, 'op')}'.")

    field = _key(item, "field")
    if not field or not isinstance(field, str):
        raise QueryError(f"The '{op}' operator requires a field.")

    if _key(item, "udf") is True:
        udf_count[0] += 1
        if udf_count[0] > 1:
            raise QueryError("Only one user-defined field condition is allowed per query.")
        if "userdefinedfields" not in by_lower:
            raise QueryError(f"The {entity} entity has no user-defined fields.")
        spec = FieldSpec(name=field, data_type="string")
        getter = _udf_getter(field)
    else:
        spec = by_lower.get(field.lower())
        if spec is None:
            raise QueryError(f"Unable to find {field} in the {entity} entity.")
        if not spec.is_queryable:
            raise QueryError(f"The field {spec.name} cannot be queried on the {entity} entity.")
        name = spec.name

        def getter(rec, _n=name):
            return rec.get(_n)

    if op in PRESENCE:
        def present(rec) -> bool:
            value = getter(rec)
            return value is not None and value != ""
        return present if op == "exist" else (lambda rec: not present(rec))

    if "value" not in {k.lower() for k in item}:
        raise QueryError(f"The '{op}' operator on {field} requires a value.")
    raw = _key(item, "value")
    to_value = _converter(spec)

    if op in ("in", "notin"):
        if not isinstance(raw, list):
            raise QueryError(f"The '{op}' operator on {field} requires an array value.")
        if len(raw) > MAX_IN_VALUES:
            raise QueryError("Invalid query syntax. Queries are limited to 500 or fewer 'OR' conditions.")
        wanted = {to_value(v) for v in raw}
        if op == "in":
            return lambda rec: _stored(spec, getter(rec)) in wanted
        return lambda rec: _stored(spec, getter(rec)) not in wanted

    if isinstance(raw, list):
        raise QueryError(f"The '{op}' operator on {field} takes a single value, not an array.")
    target = to_value(raw)
    if op in ("beginswith", "endswith", "contains"):
        if spec.data_type != "string":
            raise QueryError(f"The '{op}' operator requires a text field; {field} is {spec.data_type}.")
        text = str(target)
        test = {"beginswith": str.startswith, "endswith": str.endswith, "contains": str.__contains__}[op]
        return lambda rec: (v := _stored(spec, getter(rec))) is not None and test(v, text)

    def compare(rec) -> bool:
        value = _stored(spec, getter(rec))
        if value is None or target is None:
            # SQL-like: nothing equals null except through noteq.
            return op == "noteq" and value is not target
        try:
            return {
                "eq": value == target, "noteq": value != target, "gt": value > target,
                "gte": value >= target, "lt": value < target, "lte": value <= target,
            }[op]
        except TypeError:
            return False

    return compare


def _udf_getter(name: str):
    lowered = name.lower()

    def get(rec):
        for udf in rec.get("userDefinedFields") or []:
            if str(udf.get("name", "")).lower() == lowered:
                return udf.get("value")
        return None
    return get


def _converter(spec: FieldSpec):
    kind = spec.data_type

    def convert(value):
        if value is None:
            if kind == "boolean":
                raise QueryError(f"Invalid value for boolean field {spec.name}: use true or false.")
            return None
        if kind == "boolean":
            if not isinstance(value, bool):
                raise QueryError(f"Invalid value for boolean field {spec.name}: use true or false.")
            return value
        if kind in ("integer", "long"):
            if isinstance(value, bool):
                raise QueryError(f"Invalid value {value!r} for integer field {spec.name}.")
            try:
                as_decimal = Decimal(str(value))
                if as_decimal != as_decimal.to_integral_value():
                    raise InvalidOperation
                return int(as_decimal)
            except InvalidOperation:
                raise QueryError(f"Invalid value {value!r} for integer field {spec.name}.") from None
        if kind == "double":
            if isinstance(value, bool):
                raise QueryError(f"Invalid value {value!r} for numeric field {spec.name}.")
            try:
                return Decimal(str(value))
            except InvalidOperation:
                raise QueryError(f"Invalid value {value!r} for numeric field {spec.name}.") from None
        if kind == "datetime":
            try:
                return parse_timestamp(str(value))
            except ValueError:
                raise QueryError(f"Invalid date value {value!r} for field {spec.name}.") from None
        return str(value).lower()

    return convert


def stored(spec: FieldSpec, value):
    """A record's value as conditions on its field compare it (what an index files it under)."""
    return _stored(spec, value)


def _stored(spec: FieldSpec, value):
    """A record's value in the same comparable form as a converted filter value."""
    if value is None:
        return None
    kind = spec.data_type
    if kind == "datetime":
        return parse_timestamp(value) if isinstance(value, str) else value
    if kind == "string":
        return str(value).lower()
    if kind == "double":
        return value if isinstance(value, Decimal) else Decimal(str(value))
    return value
