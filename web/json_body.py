"""Reading a JSON request body into a pydantic model, with precise 4xx problems."""

from __future__ import annotations

import json
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from web.problems import Problem

M = TypeVar("M", bound=BaseModel)


def read_json(model: type[M]) -> M:
    """Validate the request body against ``model`` or raise the matching Problem."""
    if not request.is_json:
        raise Problem(415, "Unsupported Media Type", "Send the body as application/json.")
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge as exc:
        raise Problem(413, "Content Too Large", "The body may be at most 64 KiB.") from exc
    try:
        document = json.loads(raw)
    except ValueError as exc:  # also covers bytes that are not UTF-8
        raise Problem(400, "Malformed JSON", f"The body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # e.g. 60,000 nested arrays: the decoder gives up, not the server
        raise Problem(400, "Malformed JSON", "The body is nested too deeply.") from exc
    if not isinstance(document, dict):
        raise Problem(422, "Unprocessable Content", "The body must be a JSON object.")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(part) for part in err["loc"]) or "<body>",
                "message": err["msg"],
            }
            for err in exc.errors(include_url=False, include_input=False)
        ]
        fields = ", ".join(sorted({e["field"] for e in errors}))
        raise Problem(422, "Unprocessable Content", f"Invalid field(s): {fields}.", errors=errors) from exc
