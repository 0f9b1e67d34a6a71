"""The official Xero Accounting OpenAPI document, loaded once, used to refuse schema-invalid bodies.

The YAML is not strictly valid OpenAPI (some boolean defaults are strings), so it is read as plain data
and each operation's request/response schema is checked with jsonschema; OpenAPI 3.0 schemas are close
enough to draft 4 for the keywords Xero uses (type, enum, properties, items, $ref).

jsonschema walks a PUT of 50 invoices with ten lines each in about 40 ms, most of the simulator's time per
call, so each request body first meets a check compiled from the same schema (`certainly_valid`). It
knows only the keywords the document uses and answers "valid" only when jsonschema would; anything else
("not sure") goes to jsonschema, which finds the errors and words them. It is never looser than
jsonschema: tests/test_sandbox_schema_check.py mutates real bodies to hold it to that.
"""
from __future__ import annotations

import functools
import numbers
from pathlib import Path
from typing import Any, Callable

import yaml
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_PATH = Path(__file__).resolve().parent.parent / "specs" / "xero" / "xero_accounting.yaml"
_SPEC_URI = "urn:xero-accounting"


@functools.lru_cache(maxsize=1)
def load_spec() -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open("rb") as handle:
        return yaml.load(handle, Loader=loader)


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    return Registry().with_resource(_SPEC_URI, Resource(contents=load_spec(), specification=DRAFT4))


def _validator_for(ref: str) -> Draft4Validator:
    return Draft4Validator({"$ref": f"{_SPEC_URI}{ref}"}, registry=_registry())


@functools.lru_cache(maxsize=None)
def request_ref(path_template: str, method: str) -> str | None:
    """The $ref of an operation's JSON request body ("#/components/schemas/Invoices"), None without one."""
    operation = load_spec()["paths"][path_template][method.lower()]
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema") or {}
    return schema.get("$ref")


@functools.lru_cache(maxsize=None)
def request_validator(path_template: str, method: str) -> Draft4Validator | None:
    ref = request_ref(path_template, method)
    return None if ref is None else _validator_for(ref)


@functools.lru_cache(maxsize=None)
def response_validator(path_template: str, method: str, status: str = "200") -> Draft4Validator | None:
    operation = load_spec()["paths"][path_template][method.lower()]
    content = operation.get("responses", {}).get(status, {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None or "$ref" not in schema:
        return None
    return _validator_for(schema["$ref"])


@functools.lru_cache(maxsize=None)
def component_validator(name: str) -> Draft4Validator:
    return _validator_for(f"#/components/schemas/{name}")


def _where(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(body)"


def schema_errors(validator: Draft4Validator | None, body) -> list[str]:
    """Readable messages, one per violation, e.g. "Invoices.0.LineAmountTypes: 'Excl' is not one of [...]"."""
    if validator is None:
        return []
    errors = sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_where(error)}: {error.message}" for error in errors]


def request_errors(path_template: str, method: str, body, *, per_element: tuple[str, ...] = ()) -> list[str]:
    """`per_element`: schema keywords (such as maxLength) Xero answers element by element, in its own
    words, rather than refusing the request: those are left to the business rules."""
    validator = request_validator(path_template, method)
    if validator is None:
        return []
    if certainly_valid(request_ref(path_template, method), body, frozenset(per_element)):
        return []
    if per_element:
        errors = [e for e in validator.iter_errors(body) if e.validator not in per_element]
        errors.sort(key=lambda e: list(map(str, e.absolute_path)))
        return [f"{_where(error)}: {error.message}" for error in errors]
    return schema_errors(validator, body)


# ---- the compiled check --------------------------------------------------------------------------------
Check = Callable[[Any], bool]
# Keywords that assert nothing in draft 4 as jsonschema runs it here (no format checker).
_ANNOTATIONS = frozenset({"description", "format", "readOnly", "example", "externalDocs", "default", "title",
                          "x-is-money", "x-objectArrayKey", "x-is-msdate", "x-is-msdate-time", "x-enum-varnames"})
_TYPES: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),  # draft 4: 1.0 is not an integer
    "number": lambda v: isinstance(v, numbers.Number) and not isinstance(v, bool),  # the simulator reads Decimals
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _not_sure(_value: Any) -> bool:
    return False


def certainly_valid(ref: str | None, body: Any, skipped: frozenset[str] = frozenset()) -> bool:
    """True only when `body` is valid against the schema at `ref` ("#/components/schemas/Invoices"), as
    jsonschema would find it with the `skipped` keywords' errors ignored. False means "not sure"."""
    return ref is not None and _checker_of_ref(ref, skipped)(body)


@functools.lru_cache(maxsize=None)
def _checker_of_ref(ref: str, skipped: frozenset[str]) -> Check:
    if not ref.startswith("#/components/schemas/"):
        return _not_sure
    compiled: list[Check] = []  # filled after the cache holds this entry, so recursive schemas terminate

    def check(value: Any) -> bool:
        if not compiled:
            compiled.append(_compile(load_spec()["components"]["schemas"][ref.rsplit("/", 1)[1]], skipped))
        return compiled[0](value)

    return check


def _compile(schema: dict, skipped: frozenset[str]) -> Check:
    if not isinstance(schema, dict):
        return _not_sure
    if "$ref" in schema:  # draft 4: a $ref's siblings are ignored
        return _checker_of_ref(schema["$ref"], skipped)
    unknown = set(schema) - _ANNOTATIONS - {"type", "enum", "maxLength", "properties", "items", "required"}
    if unknown or ("type" in schema and not (isinstance(schema["type"], str) and schema["type"] in _TYPES)):
        return _not_sure
    checks: list[Check] = []
    if "type" in schema:
        checks.append(_TYPES[schema["type"]])
    if "enum" in schema:
        allowed = schema["enum"]
        if not all(isinstance(a, str) for a in allowed):
            return _not_sure
        names = frozenset(allowed)
        checks.append(lambda v: isinstance(v, str) and v in names)
    if "maxLength" in schema and "maxLength" not in skipped:
        limit = schema["maxLength"]
        checks.append(lambda v: not isinstance(v, str) or len(v) <= limit)
    if "required" in schema:
        needed = tuple(schema["required"])
        checks.append(lambda v: not isinstance(v, dict) or all(k in v for k in needed))
    if "properties" in schema:
        fields = {name: _compile(sub, skipped) for name, sub in schema["properties"].items()}

        def properties(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for name, item in v.items():
                check = fields.get(name)
                if check is not None and not check(item):
                    return False
            return True
        checks.append(properties)
    if "items" in schema:
        item_check = _compile(schema["items"], skipped)
        checks.append(lambda v: not isinstance(v, list) or all(item_check(x) for x in v))
    return lambda v: all(check(v) for check in checks)
