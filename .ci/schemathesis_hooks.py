"""schemathesis hooks for shop: sign gateway notifications as a gateway would.

The notify operations take `Shop-Signature: t=<unix seconds>,v1=<hex>`, the
hex being HMAC-SHA256 under the webhook secret of "<t>.<raw body>". When a
generated request carries that header, this hook serialises the body as the
transport will (so that the signed bytes are the sent bytes) and signs it
with the secret the server was started with (SHOP_WEBHOOK_SECRET). Requests without the
header stay unsigned, so the checks that drop it still see a 401.
"""

import hashlib
import hmac
import json
import os
import time

import schemathesis

SIGNED = {"paymentResultNotify", "originalPaymentResultNotify"}


def sent_bytes(body):
    """The bytes the requests transport sends for a JSON body (`requests.post(json=...)`)."""
    if isinstance(body, bytes):
        return body
    if type(body).__name__ == "NotSet":
        return b""
    return json.dumps(body, allow_nan=False).encode("utf-8")


@schemathesis.hook
def before_call(context, case, **kwargs):
    if case.operation.definition.raw.get("operationId") not in SIGNED:
        return
    headers = case.headers or {}
    if "Shop-Signature" not in headers:
        return
    try:
        body = sent_bytes(case.body)
    except (TypeError, ValueError):
        return  # not JSON the transport could send either
    secret = os.environ["SHOP_WEBHOOK_SECRET"].encode("utf-8")
    timestamp = str(int(time.time()))
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    headers["Shop-Signature"] = f"t={timestamp},v1={digest}"
    case.headers = headers
