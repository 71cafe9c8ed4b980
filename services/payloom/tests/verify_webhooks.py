"""Verifies recorded webhook requests with the `standardwebhooks` package, an implementation
of the Standard Webhooks spec independent of Payloom's.

Usage: python3 verify_webhooks.py SECRET < requests.json
where requests.json is a list of {"headers": {name: value}, "body": "<exact body>"}.
Prints a list of {"ok": bool, "type": str | None, "error": str | None}, one per request.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

secret = sys.argv[1]
hook = Webhook(secret)
results = []
for request in json.load(sys.stdin):
    try:
        payload = hook.verify(request["body"], request["headers"])
        results.append({"ok": True, "type": payload.get("type"), "error": None})
    except Exception as e:  # the verifier's own refusal, reported to the test
        results.append({"ok": False, "type": None, "error": f"{type(e).__name__}: {e}"})
json.dump(results, sys.stdout)
