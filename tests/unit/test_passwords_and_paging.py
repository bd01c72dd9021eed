import pytest
from flask import Flask

from auth_api.passwords import password_problem
from query_api.paging import decode_cursor, encode_cursor
from web.problems import Problem


@pytest.mark.parametrize("password", ["short", "password123", "PASSWORD123", "aaaaaaaaaaaa", "x" * 129])
def test_weak_passwords_are_refused(password):
    assert password_problem(password) is not None


@pytest.mark.parametrize("password", ["correct horse battery", "Tr0ub4dor&3x", "x1!" * 40])
def test_reasonable_passwords_pass(password):
    assert password_problem(password) is None


def test_cursor_round_trip():
    assert decode_cursor(encode_cursor("2026-01-01T00:00:00+00:00", "abc"), 2) == [
        "2026-01-01T00:00:00+00:00",
        "abc",
    ]


@pytest.mark.parametrize("cursor", ["%%%", "", encode_cursor("a", "b", "c"), "\u00e9\u00e9"])
def test_bad_cursor_is_a_422(cursor):
    with Flask(__name__).test_request_context():
        with pytest.raises(Problem) as info:
            decode_cursor(cursor, 2)
    assert info.value.status == 422
