"""Paging: v2 cursors and both v1 offset envelopes, end of data, repeated cursors."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import msgspec
import pytest
import requests

from tap_pipedrive.errors import PipedriveAPIError
from tap_pipedrive.http.client import RequestSpec, _Attempts
from tap_pipedrive.http.pages import Page, decode_json
from tap_pipedrive.http.paging import MAX_EMPTY_PAGES, CursorPaginator, OffsetPaginator


def make_response(body: object, url: str = "http://127.0.0.1/api/v2/deals") -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = json.dumps(body).encode()
    response.url = url
    response.headers["content-type"] = "application/json"
    return response


def as_page(response: requests.Response) -> Page:
    """A canned answer as the client hands it to paging."""
    return Page.read(urlparse(response.url).path, response.status_code, response.content)


def make_page(body: object, url: str = "http://127.0.0.1/api/v2/deals") -> Page:
    return as_page(make_response(body, url))


def validated(stream, response: requests.Response) -> Page:
    """A canned answer through the run's client, as if it had just arrived."""
    client = stream.run.client
    return client._read(RequestSpec(stream.name, response.url), {}, response, _Attempts())


def walk(paginator, pages):
    """Advance a paginator over canned pages; return the tokens it asked for."""
    tokens = [paginator.current_value]
    for page in pages:
        paginator.advance(make_page(page))
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
    paginator.advance(make_page({"data": [{"id": 1}], "additional_data": {"next_cursor": "x"}}))
    with pytest.raises(PipedriveAPIError, match="repeated the page cursor"):
        paginator.advance(make_page({"data": [{"id": 2}], "additional_data": {"next_cursor": "x"}}))


def test_cursor_empty_page_with_cursor_continues():
    paginator = CursorPaginator()
    empty_with_cursor = make_page({"data": [], "additional_data": {"next_cursor": "n"}})
    assert paginator.continue_if_empty(empty_with_cursor)
    assert not paginator.continue_if_empty(make_page({"data": [], "additional_data": {}}))


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
            make_page(
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
    assert paginator.continue_if_empty(make_page(empty))
    paginator.advance(make_page(empty))
    assert not paginator.finished
    assert paginator.current_value == 50


def test_offset_unpaged_envelope_ends():
    paginator = OffsetPaginator()
    paginator.advance(make_page({"success": True, "data": [{"id": 1}]}))
    assert paginator.finished


def test_offset_non_advancing_next_start_is_an_error():
    paginator = OffsetPaginator()
    paginator.advance(
        make_page(
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
            make_page(
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

    from tap_pipedrive.streams.base import PipedriveStream
    from tap_pipedrive.tap import TapPipedrive

    response = make_response({"data": []})
    response._content = b'{"success": true, "data": [{"id": 1, "name": "\xff\xfe"}]}'
    with pytest.raises(msgspec.DecodeError):
        decode_json(response.content)
    tap = TapPipedrive(
        config={"api_token": "abcdefgh", "api_url": "http://127.0.0.1:9"}, setup_mapper=False
    )
    stream = tap.streams["pipelines"]
    assert isinstance(stream, PipedriveStream)
    response.request = requests.Request("GET", response.url).prepare()
    with pytest.raises(RetriableAPIError, match="Malformed JSON"):
        validated(stream, response)


def _page(rows, **additional):
    return {"data": rows, "additional_data": additional}


def test_cursor_cycle_a_b_a_is_an_error_not_a_loop():
    paginator = CursorPaginator()
    paginator.advance(make_page(_page([{"id": 1}], next_cursor="a")))
    paginator.advance(make_page(_page([{"id": 2}], next_cursor="b")))
    with pytest.raises(PipedriveAPIError, match="sent a cursor it had sent before"):
        paginator.advance(make_page(_page([{"id": 3}], next_cursor="a")))


def test_fresh_cursors_over_rows_already_read_stop_on_the_third_page_in_a_row():
    paginator = CursorPaginator()
    first = _page([{"id": 1}, {"id": 2}], next_cursor="c0")
    paginator.advance(make_page(first))
    for serial in (1, 2):
        paginator.advance(make_page(_page([{"id": 1}, {"id": 2}], next_cursor=f"c{serial}")))
    with pytest.raises(PipedriveAPIError, match="rows already read on 3 pages in a row"):
        paginator.advance(make_page(_page([{"id": 1}, {"id": 2}], next_cursor="c3")))


def test_a_page_seen_once_more_between_new_ones_is_not_a_loop():
    # One repeat (rows moved by an update during the read) resets on the next new page.
    paginator = CursorPaginator()
    pages = [[{"id": 1}], [{"id": 2}], [{"id": 1}], [{"id": 3}], [{"id": 1}], [{"id": 4}]]
    for serial, rows in enumerate(pages):
        paginator.advance(make_page(_page(rows, next_cursor=f"c{serial}")))
    assert not paginator.finished


def test_a_long_real_list_pages_to_its_end():
    """200 pages of 500 distinct rows (a 100,000-row list) trip no guard."""
    paginator = CursorPaginator()
    for page in range(200):
        rows = [{"id": page * 500 + i} for i in range(500)]
        cursor = f"c{page}" if page < 199 else None
        paginator.advance(make_page(_page(rows, next_cursor=cursor)))
    assert paginator.finished


def test_many_empty_pages_in_a_row_are_an_error():
    paginator = CursorPaginator()
    for serial in range(MAX_EMPTY_PAGES - 1):
        paginator.advance(make_page(_page([], next_cursor=f"e{serial}")))
    with pytest.raises(PipedriveAPIError, match=f"{MAX_EMPTY_PAGES} empty pages in a row"):
        paginator.advance(make_page(_page([], next_cursor="e-last")))


def test_empty_pages_in_a_row_count_again_after_rows():
    paginator = CursorPaginator()
    for serial in range(3 * MAX_EMPTY_PAGES):
        rows = [{"id": serial}] if serial % (MAX_EMPTY_PAGES - 1) == 0 else []
        paginator.advance(make_page(_page(rows, next_cursor=f"e{serial}")))
    assert not paginator.finished


@pytest.mark.parametrize("more", ["false", "true", 1, 0, None, [], {}])
def test_more_items_in_collection_must_be_a_boolean(more):
    paginator = OffsetPaginator()
    body = _page([{"id": 1}], pagination={"more_items_in_collection": more, "next_start": 1})
    url = "http://127.0.0.1/api/v1/notes?start=0&limit=1"
    with pytest.raises(PipedriveAPIError, match="more_items_in_collection") as raised:
        paginator.advance(make_page(body, url=url))
    assert "/api/v1/notes" in str(raised.value)
    assert "?" not in str(raised.value)  # the path, not the query


@pytest.mark.parametrize("next_start", ["100", 1.5, True, [100], {"n": 1}])
def test_next_start_must_be_an_integer(next_start):
    paginator = OffsetPaginator()
    body = _page(
        [{"id": 1}], pagination={"more_items_in_collection": True, "next_start": next_start}
    )
    with pytest.raises(PipedriveAPIError, match="next_start as a"):
        paginator.advance(make_page(body, url="http://127.0.0.1/api/v1/notes"))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"data": [{"id": 1}], "additional_data": ["x"]}, "additional_data as a list"),
        ({"data": [{"id": 1}], "additional_data": "x"}, "additional_data as a string"),
        ({"data": [{"id": 1}], "additional_data": {"pagination": 5}}, "pagination as a number"),
    ],
)
def test_offset_envelopes_of_the_wrong_shape_are_an_error(body, says):
    paginator = OffsetPaginator()
    with pytest.raises(PipedriveAPIError, match=says):
        paginator.advance(make_page(body, url="http://127.0.0.1/api/v1/notes"))


@pytest.mark.parametrize(
    ("additional", "says"),
    [(["x"], "additional_data as a list"), ({"next_cursor": 7}, "next_cursor as a number")],
)
def test_cursor_envelopes_of_the_wrong_shape_are_an_error(additional, says):
    paginator = CursorPaginator()
    body = {"data": [{"id": 1}], "additional_data": additional}
    with pytest.raises(PipedriveAPIError, match=says):
        paginator.advance(make_page(body))
    with pytest.raises(PipedriveAPIError, match=says):
        paginator.continue_if_empty(make_page(body))


def _pipelines_stream():
    from tap_pipedrive.streams.base import PipedriveStream
    from tap_pipedrive.tap import TapPipedrive

    tap = TapPipedrive(
        config={"api_token": "abcdefgh", "api_url": "http://127.0.0.1:9"}, setup_mapper=False
    )
    stream = tap.streams["pipelines"]
    assert isinstance(stream, PipedriveStream)
    return stream


@pytest.mark.parametrize(
    ("data", "says"),
    [('"rows"', "data is a string"), ("42", "data is a number"), ("true", "data is a boolean")],
)
def test_data_that_is_no_list_or_object_is_an_error(data, says):
    stream = _pipelines_stream()
    response = make_response({})
    response._content = b'{"success": true, "data": ' + data.encode() + b"}"
    response.request = requests.Request("GET", response.url).prepare()
    with pytest.raises(PipedriveAPIError, match=says):
        validated(stream, response)


def test_rows_that_are_not_objects_are_an_error():
    stream = _pipelines_stream()
    response = make_response({"success": True, "data": [{"id": 1}, 2]})
    response.request = requests.Request("GET", response.url).prepare()
    page = validated(stream, response)  # the envelope is fine
    with pytest.raises(PipedriveAPIError, match="list holding non-objects"):
        list(stream.parse_page(page))


def test_json_nested_a_thousand_deep_is_an_error_not_a_recursion_error():
    stream = _pipelines_stream()
    response = make_response({})
    deep = b"[" * 1000 + b"]" * 1000
    response._content = b'{"success": true, "data": [{"id": 1, "x": ' + deep + b"}]}"
    response.request = requests.Request("GET", response.url).prepare()
    with pytest.raises(PipedriveAPIError, match="nested too deeply"):
        validated(stream, response)
    page = Page(path="/api/v2/pipelines", status=200, body=response.content, stream=stream.name)
    with pytest.raises(PipedriveAPIError, match="nested too deeply"):
        list(stream.parse_page(page))


def test_until_empty_paging_takes_an_object_for_one_row():
    from tap_pipedrive.http.paging import UntilEmptyOffsetPaginator

    paginator = UntilEmptyOffsetPaginator()
    url = "http://127.0.0.1/api/v1/mailbox/mailThreads"
    paginator.advance(make_page({"data": {"id": 1}}, url=url))
    assert not paginator.finished
    paginator.advance(make_page({"data": {"id": 1}}, url=url))
    assert paginator.finished  # the same first row again: the server ignored start
