"""PipedriveClient: a request spec in, typed Page values out, one client per run."""

from __future__ import annotations

import itertools

import requests

from pipedrive_sandbox import Sandbox
from tap_pipedrive.budget import endpoint_cost
from tap_pipedrive.http.client import RequestSpec
from tap_pipedrive.http.pages import Page
from tap_pipedrive.http.paging import CursorPaginator, OffsetPaginator
from tap_pipedrive.tap import TapPipedrive


def _tap(sandbox: Sandbox) -> TapPipedrive:
    config = {"api_url": sandbox.url, "api_token": sandbox.api_token, "retry_base_seconds": 0}
    return TapPipedrive(config=config, setup_mapper=False)


def test_pages_carry_their_rows_next_token_cost_status_and_attempts():
    with Sandbox(seed=2, scale=0.01, burst_limit=None) as sandbox:
        client = _tap(sandbox).client
        spec = RequestSpec(
            "deals", client.url("v2", "/deals"), (("limit", "7"),), paginator=CursorPaginator
        )
        sandbox.faults.add("http_error", path=r"/api/v2/deals$", count=1, status=503)
        pages = list(client.pages(spec))
        asked = [r for r in sandbox.requests if r.path == "/api/v2/deals"]
    assert all(isinstance(page, Page) for page in pages)
    assert len(pages) >= 2
    # Each page names the token of the next one, and the next request asked for it.
    for page, following in itertools.pairwise(pages):
        assert page.next_token is not None
        assert following.asked == {"cursor": page.next_token}
    assert pages[-1].next_token is None
    assert [page.attempts for page in pages] == [2] + [1] * (len(pages) - 1)
    assert len(asked) == len(pages) + 1  # the 503 was asked again
    assert {page.status for page in pages} == {200}
    assert {page.cost for page in pages} == {endpoint_cost(spec.url)}
    assert sum(len(page.rows()) for page in pages) == len(
        {row["id"] for p in pages for row in p.rows()}
    )


def test_v1_offsets_are_asked_in_the_parameter_the_paginator_names():
    with Sandbox(seed=2, scale=0.01, burst_limit=None) as sandbox:
        client = _tap(sandbox).client
        spec = RequestSpec(
            "notes", client.url("v1", "/notes"), (("limit", "5"),), paginator=OffsetPaginator
        )
        pages = list(client.pages(spec))
        starts = [r.query.get("start") for r in sandbox.requests if r.path == "/api/v1/notes"]
    assert len(pages) >= 2
    assert starts == [page.asked["start"] for page in pages]
    assert starts[:2] == ["0", "5"]


def test_nothing_is_kept_on_the_requests_objects():
    with Sandbox(seed=2, scale=0.01, burst_limit=None) as sandbox:
        client = _tap(sandbox).client
        seen: list[requests.Response] = []
        send = client.session.send

        def recording(prepared, **kwargs):
            response = send(prepared, **kwargs)
            seen.append(response)
            return response

        client.session.send = recording  # type: ignore[method-assign]
        spec = RequestSpec("deals", client.url("v2", "/deals"), paginator=CursorPaginator)
        list(client.pages(spec))
    assert seen
    plain = set(vars(requests.Response()))
    for response in seen:
        # What requests itself sets, and nothing else.
        assert set(vars(response)) <= plain | {"connection"}, set(vars(response))
        assert not [name for name in vars(response.request) if name.startswith("_pd")]
