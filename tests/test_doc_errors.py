"""Marked error responses survive lmms-eval's stripping and are never mistaken for answers."""

from __future__ import annotations

import pytest

from rd_eval.scoring.doc_errors import error_reason, error_response, is_error_response


@pytest.mark.parametrize("reason", ["image check failed: no image tokens", "", "  multi\nline\treason  "])
def test_error_responses_round_trip_even_after_stripping(reason: str) -> None:
    response = error_response(reason)
    for seen in (response, response.strip(), "  " + response + "\n"):
        assert is_error_response(seen)
        assert error_reason(seen) == (" ".join(reason.split()) or "unspecified error")


@pytest.mark.parametrize("answer", ["42", "", "The answer is B", "rd-eval:error 12", "[rd-eval] 3"])
def test_ordinary_answers_are_not_errors(answer: str) -> None:
    assert not is_error_response(answer)
    assert error_reason(answer) is None
