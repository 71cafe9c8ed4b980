"""Schemathesis hooks that sign every merchant API request the way a merchant's client does.

Loaded by `schemathesis run` through SCHEMATHESIS_HOOKS. Reads the demo merchant's key from
PAYLOOM_FUZZ_KEY_ID and PAYLOOM_FUZZ_SECRET and the API's origin from PAYLOOM_FUZZ_BASE_URL
(all set by the Rust test that starts `payloom dev`).

Two steps, because the signature covers the exact bytes on the wire:

- `MerchantKey`, an auth provider, gives each case of a signed operation (the document's
  `X-Api-Key`, `X-Timestamp`, `X-Nonce` and `X-Signature` security schemes) the key id and
  placeholders for the rest. Schemathesis counts that as the run's credentials: it leaves
  them out when it tests a missing or malformed signature header, and its `ignored_auth`
  check strips them to see that the API refuses the request.
- `MerchantSignature`, a `requests` auth callable installed by `before_call`, replaces the
  placeholders after `requests` has serialized the body and built the URL, on every send
  (retries included), which gives each attempt a fresh nonce and the current timestamp. A
  request without the placeholders (the document, PSP callbacks, a case whose credentials
  schemathesis removed or replaced) goes out as it is.
"""
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from urllib.parse import urlsplit

import schemathesis
from requests import PreparedRequest
from requests.auth import AuthBase

KEY_ID = os.environ["PAYLOOM_FUZZ_KEY_ID"]
SECRET = os.environ["PAYLOOM_FUZZ_SECRET"].encode()
ORIGIN = urlsplit(os.environ["PAYLOOM_FUZZ_BASE_URL"])[:2]

# Filled in by `MerchantSignature` as the request leaves.
TO_SIGN = "signed-when-sent"
PLACEHOLDERS = ("X-Timestamp", "X-Nonce", "X-Signature")


@schemathesis.auth(refresh_interval=None, retry_on=[]).skip_for(path_regex="^/v1/notify/")
class MerchantKey:
    """The merchant's key id, and placeholders for what is signed at send time."""

    def get(self, case, context):
        return KEY_ID

    def set(self, case, data, context):
        headers = case.headers if isinstance(case.headers, dict) else {}
        headers["X-Api-Key"] = data
        for name in PLACEHOLDERS:
            headers[name] = TO_SIGN
        case.headers = headers


def body_bytes(request: PreparedRequest) -> bytes:
    """The body as it will be sent; text is sent as UTF-8 here, not latin-1 as http.client would."""
    body = request.body
    if body is None:
        return b""
    if isinstance(body, str):
        body = body.encode("utf-8")
        request.body = body
        request.prepare_content_length(body)
    if not isinstance(body, bytes):
        raise TypeError(f"cannot sign a streamed body ({type(body).__name__})")
    return body


def needs_signature(request: PreparedRequest) -> bool:
    url = urlsplit(request.url)
    return url[:2] == ORIGIN and all(request.headers.get(name) == TO_SIGN for name in PLACEHOLDERS)


# scheme://[userinfo@] | host | the rest
URL_HOST = re.compile(r"^([^:/?#]+://(?:[^@/?#]*@)?)(\[[^\]]*\]|[^:/?#]*)(.*)$", re.S)
# RFC 2606: a name that resolves nowhere.
NOWHERE = "a.test"


def nowhere_like(host: str) -> str:
    """A host that resolves nowhere and is no longer than `host`, so the URL keeps within
    its length limit: `a.test`, or for shorter hosts one label of their length (a name
    without a dot is never looked up on the internet)."""
    return NOWHERE if len(host) >= len(NOWHERE) else "x" * max(len(host), 1)


def keep_webhooks_home(request: PreparedRequest, body: bytes) -> bytes:
    """Webhook endpoints the fuzzer registers would receive every payment's events: point
    their host at a name that resolves nowhere, so no delivery leaves this machine. The
    server then answers 400 (the URL is malformed elsewhere) or 422 (it resolves nowhere),
    both of which the document lists."""
    if request.method != "POST" or urlsplit(request.url).path != "/v1/webhook_endpoints":
        return body
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    url = payload.get("url") if isinstance(payload, dict) else None
    match = URL_HOST.match(url) if isinstance(url, str) else None
    if not match:
        return body
    payload["url"] = match.group(1) + nowhere_like(match.group(2)) + match.group(3)
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request.body = body
    request.prepare_content_length(body)
    return body


class MerchantSignature(AuthBase):
    """X-Timestamp, X-Nonce and X-Signature over METHOD, PATH_AND_QUERY, TIMESTAMP, NONCE
    and BODY, joined by newlines."""

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        if not needs_signature(request):
            return request
        body = keep_webhooks_home(request, body_bytes(request))
        timestamp = str(int(time.time()))
        nonce = secrets.token_hex(16)
        head = "\n".join([request.method, request.path_url, timestamp, nonce, ""])
        signature = hmac.new(SECRET, head.encode("utf-8") + body, hashlib.sha256).hexdigest()
        request.headers["X-Timestamp"] = timestamp
        request.headers["X-Nonce"] = nonce
        request.headers["X-Signature"] = signature
        return request


@schemathesis.hook
def before_call(context, case, kwargs):
    # Handed to `requests` as its `auth`: it runs on the prepared request, once per send.
    kwargs["auth"] = MerchantSignature()
