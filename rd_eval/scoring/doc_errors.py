"""A document that could not be run is answered with a marked response, never scored as if seen.

The adapter returns this response (and records the reason in the routing records); task scoring
recognises it and marks the document as an error (``rd_eval.scoring.item.score_doc``: an unscored
``ScoredDoc``), so pairing reports it instead of counting it wrong.
"""

from __future__ import annotations

ERROR_MARK = "[rd-eval:error]"


def error_response(reason: str) -> str:
    text = " ".join(reason.split()) or "unspecified error"
    return f"{ERROR_MARK} {text}"


def is_error_response(response: str) -> bool:
    # lmms-eval strips generations before scoring, so only the mark itself is relied on.
    return response.lstrip().startswith(ERROR_MARK)


def error_reason(response: str) -> str | None:
    if not is_error_response(response):
        return None
    return response.lstrip()[len(ERROR_MARK):].strip() or "unspecified error"
