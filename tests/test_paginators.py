"""Paging: v2 cursors and both v1 offset envelopes, end of data, repeated cursors."""

from __future__ import annotations

import json

import msgspec
import pytest
import requests

from tap_pipedrive.client import CursorPaginator, OffsetPaginator
from tap_pipedrive.errors import PipedriveAPIError


def make_response(body: object, url: str = "http://127.0.0.1/api/v2/deals") -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = json.dumps(body).encode()
    response.url = url
    response.headers["content-type"] = "application/json"
    return response


def walk(paginator, pages):
    """Advance a paginator over canned pages; return the tokens it asked for."""
    tokens = [paginator.current_value]
    for page in pages:
        paginator.advance(make_response(page))
        if paginator.finished:
            break
        tokens.append(paginator.current_value)
    return tokens


def test_cursor_follows_next_cursor_until_null():
    pages = [
        {"success": True, "data": [{"id": 1}], "additional_data": {"next_cursor": "abc"}},
        {"success": True, "data": [{"id": 2}], "additional_data": {"next_cursor": "def"}},
        {"success": True, "data": [{"id": 3}], "additional_data": {"next_cursor": None}},
    ]
    paginator = CursorPaginator()
    assert walk(paginator, pages) == [None, "abc", "def"]
    assert paginator.finished


def test_cursor_missing_additional_data_ends():
    paginator = CursorPaginator()
    walk(paginator, [{"success": True, "data": [{"id": 1}]}])
    assert paginator.finished


def test_cursor_repeated_is_an_error_not_a_loop():
    paginator = CursorPaginator()
    paginator.advance(make_response({"data": [{"id": 1}], "additional_data": {"next_cursor": "x"}}))
    with pytest.raises(PipedriveAPIError, match="repeated the page cursor"):
        paginator.advance(
            make_response({"data": [{"id": 2}], "additional_data": {"next_cursor": "x"}})
        )


def test_cursor_empty_page_with_cursor_continues():
    paginator = CursorPaginator()
    empty_with_cursor = make_response({"data": [], "additional_data": {"next_cursor": "n"}})
    assert paginator.continue_if_empty(empty_with_cursor)
    assert not paginator.continue_if_empty(make_response({"data": [], "additional_data": {}}))


def test_offset_nested_pagination_uses_next_start():
    pages = [
        {
            "data": [{"id": i} for i in range(3)],
            "additional_data": {
                "pagination": {
                    "start": 0,
                    "limit": 3,
                    "more_items_in_collection": True,
                    "next_start": 3,
                }
            },
        },
        {
            "data": [{"id": 3}],
            "additional_data": {
                "pagination": {"start": 3, "limit": 3, "more_items_in_collection": False}
            },
        },
    ]
    paginator = OffsetPaginator()
    assert walk(paginator, pages) == [0, 3]
    assert paginator.finished


def test_offset_flat_envelope_falls_back_to_rows_received():
    # Flat additional_data without next_start; the server clamped the limit to 2.
    pages = [
        {
            "data": [{"id": 1}, {"id": 2}],
            "additional_data": {"start": 0, "limit": 2, "more_items_in_collection": True},
        },
        {
            "data": [{"id": 3}, {"id": 4}],
            "additional_data": {"start": 2, "limit": 2, "more_items_in_collection": True},
        },
        {
            "data": [{"id": 5}],
            "additional_data": {"start": 4, "limit": 2, "more_items_in_collection": False},
        },
    ]
    paginator = OffsetPaginator()
    assert walk(paginator, pages) == [0, 2, 4]
    assert paginator.finished


def test_offset_null_data_with_more_claimed_and_no_way_forward_is_an_error():
    # Ending quietly here could lose the rest of the list (the stream retries such a page
    # first, see test_hostile.py); the paginator itself refuses to stop or loop.
    paginator = OffsetPaginator()
    with pytest.raises(PipedriveAPIError, match="non-advancing"):
        paginator.advance(
            make_response(
                {
                    "data": None,
                    "additional_data": {"pagination": {"more_items_in_collection": True}},
                }
            )
        )


def test_offset_empty_page_that_claims_more_goes_on():
    paginator = OffsetPaginator()
    empty = {
        "data": None,
        "additional_data": {"pagination": {"more_items_in_collection": True, "next_start": 50}},
    }
    assert paginator.continue_if_empty(make_response(empty))
    paginator.advance(make_response(empty))
    assert not paginator.finished
    assert paginator.current_value == 50


def test_offset_unpaged_envelope_ends():
    paginator = OffsetPaginator()
    paginator.advance(make_response({"success": True, "data": [{"id": 1}]}))
    assert paginator.finished


def test_offset_non_advancing_next_start_is_an_error():
    paginator = OffsetPaginator()
    paginator.advance(
        make_response(
            {
                "data": [{"id": 1}],
                "additional_data": {
                    "pagination": {"more_items_in_collection": True, "next_start": 5}
                },
            }
        )
    )
    with pytest.raises(PipedriveAPIError, match="non-advancing"):
        paginator.advance(
            make_response(
                {
                    "data": [{"id": 2}],
                    "additional_data": {
                        "pagination": {"more_items_in_collection": True, "next_start": 5}
                    },
                }
            )
        )


def test_a_body_that_is_not_utf8_is_a_retriable_garbled_page():
    from singer_sdk.exceptions import RetriableAPIError

    from tap_pipedrive.client import PipedriveStream, response_json
    from tap_pipedrive.tap import TapPipedrive

    response = make_response({"data": []})
    response._content = b'{"success": true, "data": [{"id": 1, "name": "\xff\xfe"}]}'
    with pytest.raises(msgspec.DecodeError):
        response_json(response)
    tap = TapPipedrive(
        config={"api_token": "abcdefgh", "api_url": "http://127.0.0.1:9"}, setup_mapper=False
    )
    stream = tap.streams["pipelines"]
    assert isinstance(stream, PipedriveStream)
    response.request = requests.Request("GET", response.url).prepare()
    with pytest.raises(RetriableAPIError, match="Malformed JSON"):
        stream.validate_response(response)
