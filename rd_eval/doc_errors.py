"""A document that could not be run is answered with a marked response, never scored as if seen.

The adapter returns this response (and records the reason in the routing records); task scoring
recognises it and marks the document as an error, so pairing reports it instead of counting it wrong.
"""

from __future__ import annotations

ERROR_PREFIX = "[rd-eval:error] "


def error_response(reason: str) -> str:
    return ERROR_PREFIX + " ".join(reason.split())


def is_error_response(response: str) -> bool:
    return response.startswith(ERROR_PREFIX)


def error_reason(response: str) -> str | None:
    return response[len(ERROR_PREFIX):] if is_error_response(response) else None
