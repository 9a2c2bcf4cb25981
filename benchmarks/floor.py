"""The floor: fetch the same pages as the tap, ``json.loads`` them, write each row as a RECORD.

No tap logic at all (no schema, no state, no normalisation, no retries): the least CPU any
tap could spend on these records. Usage::

    python benchmarks/floor.py BASE_URL TOKEN STREAM PLAN_JSON

PLAN_JSON is a list of ``[path, params]``: one cursor-paged list per entry, read to the end.
"""

from __future__ import annotations

import json
import sys

import requests


def main() -> int:
    base_url, token, stream, plan = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    session = requests.Session()
    session.headers["x-api-token"] = token
    out = sys.stdout
    for path, params in plan:
        cursor = None
        while True:
            query = dict(params)
            if cursor:
                query["cursor"] = cursor
            response = session.get(base_url + path, params=query, timeout=300)
            response.raise_for_status()
            body = json.loads(response.content)
            for row in body.get("data") or ():
                out.write(json.dumps({"type": "RECORD", "stream": stream, "record": row}) + "\n")
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                break
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
