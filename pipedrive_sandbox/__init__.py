"""A local, deterministic fake of the Pipedrive API (v1, v2 and OAuth) for tests and demos.

Stdlib only, so it runs in any virtualenv::

    from pipedrive_sandbox import Sandbox

    with Sandbox(seed=1, scale=1.0) as sb:
        sb.url                      # "http://127.0.0.1:<port>"
        sb.dataset["deals"]         # canonical records
        sb.expected_counts()        # records a full sync delivers, per stream
        sb.faults.add("burst_429", path=r"/api/v2/deals", count=2)

Several companies behind one OAuth app: ``globex = sb.add_company("globex")`` starts another
company (its own records, company id and name, API token and loopback port, which is the
``api_domain`` its tokens answer with); the consent page then asks which company to authorize.

Or from another process: ``python -m pipedrive_sandbox --port 0`` prints the URL and serves until
SIGTERM; the ``/_sandbox/*`` control plane exposes counts, datasets, mutations and faults.

Control plane (no auth): ``GET /_sandbox/counts[?streams=a,b]``, ``GET /_sandbox/dataset/<e>``,
``POST /_sandbox/mutate`` (``{"action": "update"|"delete"|"add"|"add_custom_field",
"entity", "id", "changes"}``, ``{"action": "merge", "entity", "id", "into"}``,
``{"action": "remove_child", "entity", "parent_id", "index"}``), ``POST|DELETE|GET /_sandbox/faults``,
``POST /_sandbox/faults/random_mix`` (``{"seed", "rate"}``), ``GET|DELETE /_sandbox/requests``,
``GET /_sandbox/stats``, ``POST /_sandbox/clock`` (``{"advance": seconds}``),
``POST /_sandbox/expire_tokens``, ``POST /_sandbox/reset_daily_budget``,
``POST /_sandbox/new_day`` (the budget starts again and the clock moves on a day) and
``POST /_sandbox/refresh_token`` (a valid refresh token, for OAuth demos).

A company on a plan: ``Sandbox.for_company(company_preset(size, seats, plan))`` (see
``company.py``; ``pipedrive-sandbox --company-size 0.008 --seats 2 --plan lite``) shapes the
data like the cost model's company (400 deals, 800 persons, ... at 0.008), answers with the
plan's ``x-ratelimit-limit`` (API token and OAuth differ), has ``seats`` active users, and
refuses calls past the daily token budget (30,000 x multiplier x seats) with Pipedrive's
daily-budget 429 until ``new_day``. ``sb.stats()`` shows the day's tokens and 429s.

Fault kinds (``sb.faults.add(kind, path=regex, count=1, after=0, **params)``): ``burst_429``
(``reset``), ``daily_429``, ``http_error`` (``status``), ``slow`` (``delay``), ``reset``,
``malformed_json``, ``html_403``, ``expire_token``, ``invalid_grant`` (path ``/oauth/token``)
and ``hostile`` with any of ``zero_dates``, ``null_objects``, ``unknown_fields``,
``long_strings``, ``nul_chars``, ``duplicate_ids``, ``empty_page_with_cursor`` set to true (or
``what="a,b"``); the transport faults ``redirect``, ``huge_body``, ``gzip_bomb`` and ``drip``
(see ``elsewhere.py``, which also has a server standing for a host the user did not
configure).  ``sb.faults.random_mix(seed, rate)`` adds random retriable faults.

Conventions worth knowing:

* ``dataset`` values are lists rebuilt while an entity changes; treat them as read-only and
  change data through ``update_record`` / ``delete_record`` / ``add_record``.
* ``dataset`` holds every record, including soft-deleted ones; ``expected_counts()`` counts
  what the API lists: all deals (open, won, lost, deleted and archived), and for every other
  stream the records that are not deleted (archived leads and projects included).
  ``custom_fields`` (the tap's field metadata stream, no API entity) counts the custom fields
  of every field set, the deal ones twice since leads list them under ``/leadFields`` too.
* Deletes and merges: ``delete_record`` soft-deletes (deleted deals and projects stay listed
  with status ``deleted``, everything else vanishes from lists); ``merge_records`` (persons,
  organizations, deals) makes the merged-away record vanish from every list and repoints
  the records that named it; ``remove_child`` takes a follower, participant, deal product ...
  off a parent that stays; ``delete_field_option`` deletes an enum/set option.
* Child streams (followers, deal products, flows ...) only exist for parents that are not
  deleted.  Their dataset rows carry the parent id (``deal_id``, ``person_id`` ...) even where
  the API row does not.  ``organization_relationships`` counts distinct relationships, although
  ``/organizationRelationships?org_id=`` lists each one for both of its organizations.
* ``expected_counts(["deals"])`` (or ``/_sandbox/counts?streams=deals``) counts only some
  streams; counting child streams builds every parent's children, slow at large scales.
"""

from __future__ import annotations

from pipedrive_sandbox.core import Sandbox

__all__ = ["Sandbox"]
