"""Schemathesis hooks for the cityboard region api (loaded through
SCHEMATHESIS_HOOKS by tests/schemathesis.sh).

Auth: signs up a fresh account and logs in, once per auth refresh; every
request then carries `Authorization: Bearer <token>`. POST /logout revokes
the token it is called with, so it gets a token of its own each time: the
shared one must stay valid for the other operations; POST /session/renew
likewise (it revokes the token it renews).
"""

import os
import uuid

import requests
import schemathesis

BASE_URL = os.environ["CITYBOARD_ST_BASE_URL"].rstrip("/")
HOST = os.environ["CITYBOARD_ST_HOST"]


def _fresh_token() -> str:
    email = f"st-{uuid.uuid4().hex[:16]}@example.com"
    password = "schemathesis-" + uuid.uuid4().hex
    headers = {"Host": HOST}
    body = {"email": email, "password": password}
    r = requests.post(f"{BASE_URL}/signup", json=body, headers=headers, timeout=60)
    r.raise_for_status()
    r = requests.post(f"{BASE_URL}/login", json=body, headers=headers, timeout=60)
    r.raise_for_status()
    return r.json()["access_token"]


@schemathesis.auth()
class CityboardSession:
    def get(self, case, ctx):
        return _fresh_token()

    def set(self, case, data, ctx):
        # Both revoke the token they are called with.
        fresh = case.operation.path in ("/logout", "/session/renew")
        token = _fresh_token() if fresh else data
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {token}"


@schemathesis.hook
def map_query(ctx, query):
    """A listing cursor is an HMAC-signed token: any other string is a 400 by
    design (a tampered cursor), which no schema can express. Generated cases
    therefore never carry one; cursors come from the NextPage link of a real
    answer (stateful phase), and tests/http.rs covers tampered ones."""
    if query and ctx.operation.path == "/post":
        query.pop("cursor", None)
    return query
