"""Paging: v2 cursors, both v1 offset envelopes, lists that only end on an empty page.

Each paginator follows the SDK's paginator contract (``current_value``, ``finished``,
``has_more``, ``get_next``, ``continue_if_empty``, ``advance``) on ``Page`` values, and
names the query parameter its token travels in. Every page that is followed is checked:
too many empty pages in a row, or several pages in a row that repeat rows already read,
end the read with one line; the rows of those pages are written first, as with any
paging error, so nothing read is lost.
"""

from __future__ import annotations

import typing as t

from typing_extensions import override

from tap_pipedrive.errors import PipedriveAPIError
from tap_pipedrive.http.pages import Page, json_type

# Pages in a row without a single row, after which a list that still points further is
# taken to be endless. An empty page can happen mid-list (rows the user may not see
# filtered out of a page), but 50 in a row would be 25,000 hidden rows in a row; giving
# up costs at most 50 requests.
MAX_EMPTY_PAGES = 50
# Pages in a row whose rows are those of a page read before in the same partition (with
# fresh cursors or offsets each time). A real list never serves one page twice.
MAX_REPEATED_PAGES = 3

TToken = t.TypeVar("TToken", int, str)


def paging_error(page: Page, what: str) -> PipedriveAPIError:
    return PipedriveAPIError(f"Pipedrive's paging for {page.path} {what}; stopping")


class Paginator(t.Generic[TToken]):
    """The pages of one partition, one after the other, that cannot go round in circles."""

    # The query parameter carrying the token; None for a list read in one request.
    param: t.ClassVar[str | None] = None

    def __init__(self, start_value: TToken | None) -> None:
        self.current_value: TToken | None = start_value
        self.finished = False
        self.count = 0
        self._fingerprints: set[tuple[int, int]] = set()
        self._empty_in_a_row = 0
        self._repeated_in_a_row = 0

    def query(self) -> dict[str, str]:
        """The query parameter asking for the current page ({} for the first cursor page)."""
        if self.param is None or self.current_value is None:
            return {}
        return {self.param: str(self.current_value)}

    def has_more(self, page: Page) -> bool:
        return True

    def get_next(self, page: Page) -> TToken | None:
        return None

    def continue_if_empty(self, page: Page) -> bool:
        return False

    def advance(self, page: Page) -> None:
        """Move to the page after ``page`` (or finish), as the SDK's paginators do."""
        self._check_progress(page)
        self.count += 1
        if not self.has_more(page):
            self.finished = True
            return
        new_value = self.get_next(page)
        if new_value is not None and new_value == self.current_value:
            msg = f"Pipedrive's paging for {page.path} sent the same page token twice; stopping"
            raise PipedriveAPIError(msg)
        if new_value is None or new_value == "":
            self.finished = True
        else:
            self.current_value = new_value

    def _check_progress(self, page: Page) -> None:
        if not page.has_rows:
            self._empty_in_a_row += 1
            if self._empty_in_a_row >= MAX_EMPTY_PAGES:
                raise paging_error(
                    page, f"sent {self._empty_in_a_row} empty pages in a row, each saying more"
                )
            return
        self._empty_in_a_row = 0
        if page.fingerprint in self._fingerprints:
            self._repeated_in_a_row += 1
            if self._repeated_in_a_row >= MAX_REPEATED_PAGES:
                raise paging_error(
                    page, f"served rows already read on {self._repeated_in_a_row} pages in a row"
                )
        else:
            self._repeated_in_a_row = 0
            self._fingerprints.add(page.fingerprint)


class SinglePagePaginator(Paginator[int]):
    """An endpoint that answers everything at once and takes no paging parameters."""

    def __init__(self) -> None:
        super().__init__(None)

    @override
    def has_more(self, page: Page) -> bool:
        return False


class CursorPaginator(Paginator[str]):
    """API v2 cursor paging: follow ``additional_data.next_cursor`` until it is null.

    Every cursor of the partition is remembered: one sent again is a loop (A, B, A...).
    """

    param = "cursor"

    def __init__(self) -> None:
        super().__init__(None)
        self._cursors: set[str] = set()

    @staticmethod
    def _next_cursor(page: Page) -> str | None:
        cursor = page.additional_data.get("next_cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise paging_error(
                page, f"sent additional_data.next_cursor as a {json_type(cursor)}, not a string"
            )
        return cursor or None

    @override
    def get_next(self, page: Page) -> str | None:
        cursor = self._next_cursor(page)
        if cursor is not None and cursor == self.current_value:
            msg = f"Pipedrive repeated the page cursor for {page.path}; stopping"
            raise PipedriveAPIError(msg)
        if cursor is not None:
            if cursor in self._cursors:
                raise paging_error(page, "sent a cursor it had sent before (a loop)")
            self._cursors.add(cursor)
        return cursor

    @override
    def continue_if_empty(self, page: Page) -> bool:
        # An empty page that still carries a cursor is not the end of the list.
        return self._next_cursor(page) is not None


class OffsetPaginator(Paginator[int]):
    """API v1 offset paging for both envelope shapes.

    Some endpoints nest ``pagination`` in ``additional_data``; others put ``start``,
    ``limit`` and ``more_items_in_collection`` straight into ``additional_data``.
    The next offset falls back to rows received (not the limit asked for), because
    the server may clamp the limit: overlapping rows are harmless, skipped rows are not.
    Offsets only ever grow, so no offset is read twice.
    """

    param = "start"

    def __init__(self) -> None:
        super().__init__(0)

    @staticmethod
    def pagination(page: Page) -> dict[str, t.Any]:
        additional = page.additional_data
        pagination = additional.get("pagination")
        if pagination is None:
            return additional
        if not isinstance(pagination, dict):
            raise paging_error(
                page, f"sent additional_data.pagination as a {json_type(pagination)}, not an object"
            )
        return pagination

    @override
    def has_more(self, page: Page) -> bool:
        # The collection's flag decides, not the page's size: an empty page may still
        # announce more rows, and stopping there would lose them.
        pagination = self.pagination(page)
        if "more_items_in_collection" not in pagination:
            return False
        more = pagination["more_items_in_collection"]
        if not isinstance(more, bool):
            # "false" is true to Python: guessing could loop or cut the list.
            raise paging_error(
                page,
                f"sent more_items_in_collection as a {json_type(more)} ({str(more)[:20]!r}), "
                "not true or false",
            )
        return more

    @override
    def continue_if_empty(self, page: Page) -> bool:
        return self.has_more(page)

    @override
    def get_next(self, page: Page) -> int | None:
        current = self.current_value or 0
        next_start = self.pagination(page).get("next_start")
        if next_start is None:
            next_start = current + page.row_count()
        elif isinstance(next_start, bool) or not isinstance(next_start, int):
            raise paging_error(
                page,
                f"sent next_start as a {json_type(next_start)} ({str(next_start)[:20]!r}), "
                "not an integer",
            )
        if next_start <= current:
            msg = f"Pipedrive returned a non-advancing offset for {page.path}; stopping"
            raise PipedriveAPIError(msg)
        return next_start


class UntilEmptyOffsetPaginator(OffsetPaginator):
    """Offset paging for v1 lists that may answer without any paging facts.

    ``/mailbox/mailThreads`` and ``/permissionSets/{id}/assignments`` declare no
    ``more_items_in_collection``. Without it, reading goes on until an empty page: one
    request more than needed, and nothing lost. A server that ignored ``start`` would send
    the same first row again; that ends the read too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._previous_first_row: t.Any = None

    @override
    def has_more(self, page: Page) -> bool:
        if "more_items_in_collection" in self.pagination(page):
            return super().has_more(page)
        rows = page.data() or []
        first = rows[0] if isinstance(rows, list) and rows else rows or None
        if not rows or first == self._previous_first_row:
            return False
        self._previous_first_row = first
        return True


def points_at_itself(page: Page) -> bool:
    """An empty page whose next cursor or offset is the very one just asked for."""
    if page.has_rows:
        return False
    additional = page.additional_data
    cursor = additional.get("next_cursor")
    if cursor is not None:
        return str(cursor) == page.asked.get("cursor")
    pagination = additional.get("pagination") or additional
    if not isinstance(pagination, dict) or not pagination.get("more_items_in_collection"):
        return False
    next_start = pagination.get("next_start")
    return next_start is None or str(next_start) == page.asked.get("start", "0")


PaginatorFactory = t.Callable[[], Paginator[t.Any]]
