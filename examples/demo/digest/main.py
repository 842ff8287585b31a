"""Digest: a scheduled task (every minute, see demo.yaml) that prints the quote of the minute and exits.

It reaches the quotes service through its own Project connection (CHOREO_QUOTES_SERVICEURL).
"""

import json
import os
import sys
import urllib.request

url = os.environ.get("CHOREO_QUOTES_SERVICEURL", "http://127.0.0.1:8081") + "/quote"
try:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
        quote = json.load(response)
except (OSError, ValueError) as e:
    print(f"digest: quotes is unavailable: {e}", file=sys.stderr, flush=True)
    sys.exit(1)
print(f"digest: \"{quote['quote']}\" - {quote['author']}", flush=True)
