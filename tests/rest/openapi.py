"""
docs/rest-api.yaml, and every REST answer the tests get checked against it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from openapi_schema_validator import OAS31Validator

SPEC = Path(__file__).resolve().parents[2] / "docs" / "rest-api.yaml"


@lru_cache(maxsize=1)
def spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        target = spec()
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def check(method: str, path: str, status: int, body) -> None:
    """
    Assert that the spec names this answer and that C{body} (parsed JSON, or
    None for an empty body) fits its schema.
    """
    operation = spec()["paths"].get(path, {}).get(method.lower())
    assert operation is not None, f"{method} {path} is not in {SPEC.name}"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {path} -> {status} is not in {SPEC.name}"
    content = _resolve(response).get("content")
    if content is None:
        assert body is None, f"{method} {path} -> {status}: the spec says no body, got {body!r}"
        return
    schema = content["application/json"]["schema"]
    # Refs resolve against a root that carries the spec's components.
    OAS31Validator({**schema, "components": spec()["components"]}).validate(body)
