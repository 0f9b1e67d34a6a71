"""The official Xero Accounting OpenAPI document, loaded once, used to refuse schema-invalid bodies.

The YAML is not strictly valid OpenAPI (some boolean defaults are strings), so it is read as plain data
and each operation's request/response schema is checked with jsonschema; OpenAPI 3.0 schemas are close
enough to draft 4 for the keywords Xero uses (type, enum, properties, items, $ref).
"""
from __future__ import annotations

import functools
from pathlib import Path

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
def request_validator(path_template: str, method: str) -> Draft4Validator | None:
    operation = load_spec()["paths"][path_template][method.lower()]
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None or "$ref" not in schema:
        return None
    return _validator_for(schema["$ref"])


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
    if per_element:
        errors = [e for e in validator.iter_errors(body) if e.validator not in per_element]
        errors.sort(key=lambda e: list(map(str, e.absolute_path)))
        return [f"{_where(error)}: {error.message}" for error in errors]
    return schema_errors(validator, body)
