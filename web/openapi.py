"""OpenAPI 3.1 documents built from the pydantic models that validate and shape the bodies.

Routes are declared here (``@api.route(bp, "post", "/register", ...)``), so the route, the
document, the request validation (``read_json(Model)``) and the responses
(``Model(...).model_dump()``) share one definition. ``/openapi.json`` serves the document,
``/docs`` an interactive Swagger UI page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, jsonify, send_from_directory
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

F = TypeVar("F", bound=Callable[..., Any])

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "retry_after": {"type": "integer"},
    },
}

_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    400: "Malformed request",
    401: "Missing, invalid or expired credentials",
    403: "Not allowed for this user",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Invalid field or parameter",
    429: "Too many attempts",
    503: "Temporarily unavailable",
}


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    responses: dict[int, type[BaseModel] | list[type[BaseModel]] | None]
    request: type[BaseModel] | None = None
    parameters: list[dict[str, Any]] = field(default_factory=list)
    secured: bool = False
    headers: dict[int, dict[str, Any]] = field(default_factory=dict)
    # OpenAPI links per status: what a client (or schemathesis' stateful phase) calls next.
    links: dict[int, dict[str, Any]] = field(default_factory=dict)


class ApiDocument:
    def __init__(self, title: str, version: str, description: str) -> None:
        self.title = title
        self.version = version
        self.description = description
        self.operations: list[Operation] = []

    def route(
        self, blueprint: Blueprint, method: str, path: str, summary: str, **details: Any
    ) -> Callable[[F], F]:
        """Route the decorated view on ``blueprint`` and document it: one definition of both."""

        def record(view: F) -> F:
            self.operations.append(Operation(method.lower(), path, summary, **details))
            return blueprint.route(path, methods=[method.upper()])(view)

        return record

    def document(self) -> dict[str, Any]:
        models = self._models()
        _, schemas = models_json_schema(
            [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
        )
        components: dict[str, Any] = {
            "schemas": {**schemas.get("$defs", {}), "Problem": PROBLEM_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        }
        paths: dict[str, Any] = {}
        for op in self.operations:
            paths.setdefault(_openapi_path(op.path), {})[op.method] = self._operation(op)
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version, "description": self.description},
            "paths": paths,
            "components": components,
        }

    def _models(self) -> list[type[BaseModel]]:
        found: dict[str, type[BaseModel]] = {}
        for op in self.operations:
            candidates: list[Any] = [op.request]
            for model in op.responses.values():
                candidates.extend(model if isinstance(model, list) else [model])
            for model in candidates:
                if model is not None:
                    found[model.__name__] = model
        return list(found.values())

    def _operation(self, op: Operation) -> dict[str, Any]:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"<(?:\w+:)?(\w+)>", op.path)
        ] + op.parameters
        body: dict[str, Any] = {
            "summary": op.summary,
            "operationId": f"{op.method}_{re.sub(r'[^a-z0-9]+', '_', op.path.lower()).strip('_') or 'root'}",
            "responses": {
                str(status): self._response(op, status, model) for status, model in op.responses.items()
            },
        }
        if parameters:
            body["parameters"] = parameters
        if op.request is not None:
            body["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(op.request)}},
            }
        if op.secured:
            body["security"] = [{"bearer": []}]
        return body

    def _response(self, op: Operation, status: int, model: Any) -> dict[str, Any]:
        response: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "Response")}
        if status >= 400:
            response["content"] = {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            }
        elif isinstance(model, list):
            response["content"] = {"application/json": {"schema": {"type": "array", "items": _ref(model[0])}}}
        elif model is not None:
            response["content"] = {"application/json": {"schema": _ref(model)}}
        if status in op.headers:
            response["headers"] = op.headers[status]
        if status in op.links:
            response["links"] = op.links[status]
        return response

    def install(self, app: Flask) -> None:
        """Serve ``/openapi.json`` and the Swagger UI page ``/docs`` (assets from the package).

        The assets come from the pinned ``flask-swagger-ui`` wheel (Swagger UI 5.x, the first
        major version that renders OpenAPI 3.1), so the page works offline; only its ``dist``
        folder is used, not its blueprint, to keep our routes and our page.
        """
        import flask_swagger_ui

        assets = Path(flask_swagger_ui.__file__).parent / "dist"
        blueprint = Blueprint("openapi", __name__)
        cached: dict[str, Any] = {}

        @blueprint.get("/openapi.json")
        def openapi_json() -> Response:
            if "doc" not in cached:
                cached["doc"] = self.document()
            return jsonify(cached["doc"])

        @blueprint.get("/docs")
        def docs() -> Response:
            page = Response(_DOCS_PAGE.replace("{title}", html.escape(self.title)), mimetype="text/html")
            page.headers["Content-Security-Policy"] = DOCS_CSP
            return page

        # A static rule wins over the <path:> rule below, so this name never reaches the assets.
        @blueprint.get(f"/docs/{_DOCS_INIT}")
        def docs_init() -> Response:
            return Response(_DOCS_INIT_JS, mimetype="text/javascript")

        @blueprint.get("/docs/<path:filename>")
        def docs_assets(filename: str) -> Response:
            return send_from_directory(assets, filename, max_age=3600)

        app.register_blueprint(blueprint)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _openapi_path(flask_path: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", flask_path)


# Everything the page needs is served by the API itself: no inline script (the start-up code
# is /docs/openapi-init.js), no CDN. style-src needs no 'unsafe-inline': Swagger UI sets its
# inline styles through the DOM (element.style), which CSP does not restrict; img-src allows
# data: for the SVG icons in its stylesheet. tests/e2e/test_docs_page.py fails on any violation.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_DOCS_INIT = "openapi-init.js"

# validatorUrl null: no badge fetched from the public validator (offline here, and it would be
# told where our document lives). deepLinking: an operation's URL fragment opens it.
_DOCS_INIT_JS = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null
});
"""

_DOCS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{title}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/{_DOCS_INIT}"></script>
</body></html>
"""
