"""Autotask PSA simulator: `AutotaskSandbox` holds one tenant's data, `create_app` serves it over HTTP.

    sb = AutotaskSandbox(generate_data(seed=7, invoices=40))
    with serve(create_app(sb)) as server:
        client = AutotaskClient(username=sb.credentials.username, secret=sb.credentials.secret,
                                integration_code=sb.credentials.integration_code,
                                zone_lookup_url=server.base_url + "/atservicesrest")
"""
from . import catalog
from .app import ApiCredential, AutotaskSandbox, create_app
from .generator import generate_data, load_data
from .schema import ENTITY_MODELS, swagger_field_names
from .wire import dumps, save_data

__all__ = [
    "ApiCredential", "AutotaskSandbox", "ENTITY_MODELS", "catalog", "create_app", "dumps", "generate_data",
    "load_data", "save_data", "swagger_field_names",
]
