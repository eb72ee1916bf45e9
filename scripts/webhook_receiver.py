"""A loopback webhook receiver for trying webhooks out (README "Webhooks"): serves 127.0.0.1:<port>,
verifies each POST with the ``standardwebhooks`` package and the secret in ``WEBHOOK_SECRET``, prints one
line per request (``verified <type> <webhook-id>`` or ``REJECTED <reason>``) and answers 204 (400 when the
signature is wrong).

    WEBHOOK_SECRET=whsec_... .venv/bin/python scripts/webhook_receiver.py 8765
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Handler(BaseHTTPRequestHandler):
    """Verify and print every POST."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            event = Webhook(os.environ["WEBHOOK_SECRET"]).verify(body, dict(self.headers.items()))
        except WebhookVerificationError as e:
            print(f"REJECTED {e}", flush=True)
            self.send_response(400)
        else:
            print(f"verified {event['type']} {self.headers['webhook-id']} {json.dumps(event['data'])}", flush=True)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
