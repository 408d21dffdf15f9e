"""The query request's body: `query_request`'s direct check of the common body agrees with the serializer on every input."""

from __future__ import annotations

import pytest
from django.http import QueryDict
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from query.service import FORMATS
from query.views import QueryRequestSerializer, query_request

_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "SELECT 1", " SELECT 1 ", "SELECT '\x00'", "SELECT '\ud800'", "\t\n"]),
)
_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT, st.lists(st.integers(), max_size=2)
)
_FORMAT = st.one_of(st.sampled_from([*FORMATS, "JSON", "xml", ""]), _VALUE)


def _by_serializer(data):
    body = QueryRequestSerializer(data=data)
    return dict(body.validated_data) if body.is_valid() else ("invalid", body.errors)


def _by_query_request(data):
    try:
        return dict(query_request(data))
    except ValidationError as exc:
        return ("invalid", exc.detail)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries({}, optional={"sql": _VALUE, "format": _FORMAT, "max_rows": _VALUE, "other": _VALUE}),
)
def test_the_direct_check_answers_as_the_serializer_does(data):
    assert _by_query_request(data) == _by_serializer(data)


@pytest.mark.parametrize(
    "data",
    [
        {"sql": "SELECT 1"},
        {"sql": "SELECT 1", "format": "arrow"},
        {"sql": "SELECT 1\x00"},
        {"sql": "", "format": "json"},
        {"sql": "SELECT 1", "format": "xml"},
        ["SELECT 1"],
        "SELECT 1",
        None,
    ],
)
def test_the_common_bodies_and_their_mistakes(data):
    assert _by_query_request(data) == _by_serializer(data)


def test_a_form_encoded_body_is_read_as_the_serializer_reads_it():
    form = QueryDict("sql=SELECT+1&format=csv&sql=SELECT+2")
    assert _by_query_request(form) == _by_serializer(form) == {"sql": "SELECT 2", "format": "csv"}
