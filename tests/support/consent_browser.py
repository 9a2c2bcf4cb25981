"""A stand-in for the user's browser, for ``BROWSER`` in tests of documented logins.

Python's ``webbrowser`` runs ``$BROWSER URL`` and waits for it, while the tap's callback
server answers only after that: so this returns at once and, in a detached child,
presses "Allow" on the sandbox's consent page and follows the redirect to the callback.
``--company DOMAIN`` first picks that company on the page, as a user with several would.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.oauth import consent, visit


def main(url: str, company: str | None = None) -> None:
    if os.fork():
        return
    os.setsid()
    try:
        visit(consent(url, company=company))
    finally:
        os._exit(0)


if __name__ == "__main__":
    if sys.argv[1] == "--company":
        main(sys.argv[3], company=sys.argv[2])
    else:
        main(sys.argv[1])
