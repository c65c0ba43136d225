"""Schemathesis hooks for the cityboard region api (loaded through
SCHEMATHESIS_HOOKS by tests/schemathesis.sh).

Edge signature: the api, as the stack runs it, refuses any request the edge
did not sign (design §4). Every request that leaves this process (the
schemathesis cases and the hooks' own sign-ups) is signed here the way the
Worker signs it, with the stack's forwarding key, right before it is sent:
only then are the method, path and body bytes final. The signing is a
second, independent implementation of cityboard_protocol::sign, checked
against the protocol's known-answer vectors when this module loads.

Auth: signs up a fresh account and logs in, once per auth refresh; every
request then carries `Authorization: Bearer <token>`. POST /logout revokes
the token it is called with, so it gets a token of its own each time: the
shared one must stay valid for the other operations; POST /session/renew
likewise (it revokes the token it renews), and DELETE /user (it deletes the
account), whose body is given that account's password every other time (a
generated one is a 403).

Writes: every `Idempotency-Key` is made the request's own (see
_own_idempotency_key), the read-your-writes cookie of the latest write is
carried to reads of one post, and POST /report and GET /commands/{id} are
given, every other time, ids of posts and commands the run created.
"""

import hashlib
import hmac
import json
import os
import pathlib
import re
import secrets
import subprocess
import time
import urllib.parse
import uuid

import requests
import schemathesis

BASE_URL = os.environ["CITYBOARD_ST_BASE_URL"].rstrip("/")
HOST = os.environ["CITYBOARD_ST_HOST"]
CITY = os.environ["CITYBOARD_ST_CITY"]
# The visitor address the edge reports for every case.
CLIENT_IP = "127.0.0.1"
VECTORS = pathlib.Path(__file__).resolve().parents[3] / "edge" / "protocol" / "vectors.json"


# --- cityboard_protocol::sign, versions 1 and 2 -----------------------------

# The version the Worker signs (version 2 also covers the Content-Type).
VERSION = 2


def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"cityboard key id\0" + secret).hexdigest()[:16]


def canonical(version, kid, method, host, path_and_query, ts, nonce, client_ip, city,
              body: bytes, content_type: str, payload="hashed") -> bytes:
    """The version's tag, then each field as a 4-byte big-endian length and
    its bytes; version 2 appends the Content-Type, surrounding spaces and
    tabs trimmed. The unsigned-payload mode (the streamed upload route
    only) has its own tag and "UNSIGNED-PAYLOAD" in place of the body
    hash."""
    unsigned = payload == "unsigned"
    fields = [kid.encode(), method.upper().encode(), host.lower().encode(),
              path_and_query.encode(), str(ts).encode(), nonce.encode(),
              client_ip.encode(), city.encode(),
              b"UNSIGNED-PAYLOAD" if unsigned else hashlib.sha256(body).digest()]
    if version >= 2:
        fields.append(content_type.strip(" \t").encode())
    if unsigned:
        out = b"cityboard-signature-v2-unsigned-payload"
    else:
        out = b"cityboard-signature-v%d" % version
    for f in fields:
        out += len(f).to_bytes(4, "big") + f
    return out


def signature(secret, method, host, path_and_query, client_ip, city, body, content_type, ts,
              nonce, version=VERSION, payload="hashed") -> str:
    kid = key_id(secret)
    msg = canonical(version, kid, method, host, path_and_query, ts, nonce, client_ip, city, body,
                    content_type, payload)
    mac = hmac.new(secret, msg, hashlib.sha256).hexdigest()
    label = "v2u" if payload == "unsigned" else f"v{version}"
    return f"{label} kid={kid} ts={ts} nonce={nonce} mac={mac}"


def _self_check():
    """Refuses to run with a signer that disagrees with the protocol."""
    vectors = json.loads(VECTORS.read_text())
    assert vectors, f"{VECTORS} holds no vectors"
    assert any(v["version"] == VERSION for v in vectors), f"no v{VERSION} vector"
    for v in vectors:
        secret = v["secret"].encode()
        body = v["body"].encode()
        assert key_id(secret) == v["key_id"], v["name"]
        got = canonical(v["version"], v["key_id"], v["method"], v["host"], v["path_and_query"],
                        v["timestamp"], v["nonce"], v["client_ip"], v["city"], body,
                        v["content_type"], v.get("payload", "hashed")).hex()
        assert got == v["canonical_hex"], f"canonical form differs: {v['name']}"
        got = signature(secret, v["method"], v["host"], v["path_and_query"], v["client_ip"],
                        v["city"], body, v["content_type"], v["timestamp"], v["nonce"],
                        v["version"], v.get("payload", "hashed"))
        assert got == v["header"], f"signature differs: {v['name']}"


_self_check()


def _forward_key() -> bytes:
    home = pathlib.Path(os.environ["CITYBOARD_HOME"])
    # As Secrets::read: surrounding whitespace is not part of the key.
    return (home / "secrets" / "edge-forward.key").read_bytes().strip()


FORWARD_KEY = _forward_key()

try:  # what urllib3 sends as the request target (it re-encodes a few bytes)
    from urllib3.util.url import _encode_target
except ImportError:  # pragma: no cover
    def _encode_target(target):
        return target


def _body_bytes(prepared) -> bytes:
    body = prepared.body
    if body is None:
        return b""
    if isinstance(body, str):
        # http.client would send a str as Latin-1; sign and send UTF-8.
        body = body.encode("utf-8")
    elif not isinstance(body, (bytes, bytearray)):
        body = b"".join(c.encode("utf-8") if isinstance(c, str) else c for c in body)
    body = bytes(body)
    prepared.body = body
    prepared.headers["Content-Length"] = str(len(body))
    prepared.headers.pop("Transfer-Encoding", None)
    return body


def sign_prepared(prepared):
    """Adds the edge's headers and signature to a requests.PreparedRequest."""
    host = prepared.headers.get("Host") or HOST
    target = _encode_target(prepared.path_url)
    body = _body_bytes(prepared)
    prepared.headers["x-forwarded-host"] = host
    prepared.headers["x-cityboard-city"] = CITY
    prepared.headers["x-cityboard-client-ip"] = CLIENT_IP
    prepared.headers["x-cityboard-signature"] = signature(
        FORWARD_KEY, prepared.method, host, target, CLIENT_IP, CITY, body,
        prepared.headers.get("Content-Type", ""), int(time.time()), secrets.token_hex(16))
    return prepared


_send = requests.Session.send


def _own_form_key(prepared):
    """The forms' `idempotency_key` field is the same promise as the header
    (a browser's form cannot send one): a well-formed field is made the
    request's own as the header is (see _own_idempotency_key). A malformed
    one stays as it is: the api must refuse it."""
    if "application/x-www-form-urlencoded" not in prepared.headers.get("Content-Type", ""):
        return
    body = _body_bytes(prepared)
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return
    if not any(n == "idempotency_key" and KEY_PATTERN.match(v) for n, v in pairs):
        return
    once = secrets.token_bytes(8) if prepared.path_url.split("?", 1)[0] == "/post" else b""
    h = hashlib.sha256(RUN_SALT + once + body + b"\0" + prepared.path_url.encode()).hexdigest()[:40]
    pairs = [(n, "st-" + h if n == "idempotency_key" and KEY_PATTERN.match(v) else v)
             for n, v in pairs]
    body = urllib.parse.urlencode(pairs).encode("utf-8")
    prepared.body = body
    prepared.headers["Content-Length"] = str(len(body))


def _own_idempotency_key(prepared):
    """An Idempotency-Key promises that a retry is the same request; the
    same key with another body is a 422 by design, which no schema can
    express, and generated cases reuse keys ("0", "A") for different bodies.
    Each key is therefore made the request's own: the generated key, the
    method, path and final body, hashed with a salt of this run. A repeated
    request keeps its key (and gets the first answer again); tests/writes.rs
    covers a key reused for another body.

    Except for creates: a repeated `POST /post` gets the first answer, which
    names the first post, and a step in between may have deleted that post;
    ST302 ("created resource not found") then reports the api doing what its
    document says (seen once, 2026-12-02). Each create's key is also made
    its send's own, so every create makes a post; tests/writes.rs covers a
    create's retry with one key."""
    key = prepared.headers.get("Idempotency-Key")
    # A key the document forbids stays as it is: the api must refuse it.
    if key is None or not KEY_PATTERN.match(key):
        return
    body = _body_bytes(prepared)
    once = b""
    if prepared.method.upper() == "POST" and prepared.path_url.split("?", 1)[0] == "/post":
        once = secrets.token_bytes(8)
    h = hashlib.sha256(RUN_SALT + once + key.encode("utf-8", "surrogateescape") + b"\0"
                       + prepared.method.encode() + b"\0" + prepared.path_url.encode()
                       + b"\0" + body)
    prepared.headers["Idempotency-Key"] = "st-" + h.hexdigest()[:40]


RUN_SALT = secrets.token_bytes(16)
KEY_PATTERN = __import__("re").compile(r"^[!-~]{1,255}$")


# The read-your-writes cookie of the latest write (design §4). A browser
# sends it back over HTTPS; requests will not send a `Secure` cookie to the
# plain-http origin, so it is carried here, on reads of one post: a post
# just created is then read where it is written (schemathesis checks that a
# created resource is there at once), while listings keep going through the
# cache as anonymous reads do.
RYW = {"value": None}


def _carry_ryw(prepared):
    if RYW["value"] and prepared.method.upper() == "GET" \
            and prepared.path_url.startswith("/post/") and "Cookie" not in prepared.headers:
        prepared.headers["Cookie"] = f"cb_ryw={RYW['value']}"


def _keep_ryw(response):
    for header in response.raw.headers.getlist("Set-Cookie") if response.raw else []:
        name, _, rest = header.partition("=")
        if name.strip() == "cb_ryw":
            RYW["value"] = rest.split(";", 1)[0]


def _signed_send(self, request, **kwargs):
    # Only requests to the api under test; every one gets a fresh nonce.
    ours = request.url.startswith(BASE_URL)
    if ours:
        _own_idempotency_key(request)
        _own_form_key(request)
        _carry_ryw(request)
        sign_prepared(request)
    response = _send(self, request, **kwargs)
    if ours:
        _keep_ryw(response)
    return response


requests.Session.send = _signed_send


def _fresh_account() -> tuple:
    """A new account, logged in: (token, password)."""
    email = f"st-{uuid.uuid4().hex[:16]}@example.com"
    password = "schemathesis-" + uuid.uuid4().hex
    headers = {"Host": HOST}
    body = {"email": email, "password": password}
    r = requests.post(f"{BASE_URL}/signup", json=body, headers=headers, timeout=60)
    r.raise_for_status()
    r = requests.post(f"{BASE_URL}/login", json=body, headers=headers, timeout=60)
    r.raise_for_status()
    return r.json()["access_token"], password


def _fresh_token() -> str:
    return _fresh_account()[0]


@schemathesis.auth()
class CityboardSession:
    def get(self, case, ctx):
        return _fresh_token()

    def set(self, case, data, ctx):
        # These revoke the token they are called with (DELETE /user the
        # whole account), so each gets a user of its own.
        token = data
        if case.operation.path in ("/logout", "/session/renew"):
            token = _fresh_token()
        elif case.operation.path == "/user":
            token, password = _fresh_account()
            # Only a schema-valid body (a string there) gets the real
            # password: an invalid one must stay invalid.
            if isinstance(case.body, dict) and isinstance(case.body.get("password"), str) \
                    and secrets.randbelow(2):
                case.body["password"] = password
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


# Posts and commands the shared test user made (POST /post answers), so that
# POST /report and GET /commands/{id} get ids that exist: a random id is a
# 404 by design. Only ids that are already well formed are replaced, and
# only every other time, so negative cases stay negative and random ids are
# still tried.
ID_PATTERN = __import__("re").compile(r"^[1-9][0-9]{0,18}$")
CREATED = {"post": [], "command": []}


@schemathesis.hook
def after_call(ctx, case, response):
    if case.operation.path == "/post" and case.method.upper() == "POST" \
            and response.status_code in (201, 202):
        try:
            body = response.json()
        except ValueError:
            return
        for field in ("post", "command"):
            if isinstance(body.get(field), str):
                CREATED[field].append(body[field])
        if isinstance(body.get("post"), str):
            _listed_days_ago(body["post"])


def _primary_url():
    state = json.load(open(pathlib.Path(os.environ["CITYBOARD_HOME"]) / "state.json"))
    for region in state["regions"]:
        for shard in region["shards"]:
            if CITY in shard["cities"]:
                return shard["primary_url"]
    return None


PRIMARY_URL = _primary_url()


def _listed_days_ago(post_id):
    """Renewal is allowed 48 h after posting or the last renewal, and every
    post of the run is new: without this, the stateful link new post ->
    renew could only ever answer 409. The run's own posts are therefore
    moved back three days on the city's shard primary (listed_at only, the
    renewal rule's clock), as if posted then. A post not applied yet (202)
    is missed, which only costs that renewal its 2xx."""
    if not PRIMARY_URL or not ID_PATTERN.match(post_id) \
            or not re.fullmatch(r"[a-z0-9-]+", CITY):
        return
    sql = ("UPDATE posts SET listed_at = listed_at - interval '3 days' "
           f"WHERE city = '{CITY}' AND id = {int(post_id)}")
    subprocess.run(["psql", "-qAtX", PRIMARY_URL, "-c", sql], check=False,
                   stdout=subprocess.DEVNULL, timeout=30)


def _known(kind):
    if CREATED[kind] and secrets.randbelow(2):
        return CREATED[kind][secrets.randbelow(len(CREATED[kind]))]
    return None


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    if ctx.operation.path == "/commands/{id}" and path_parameters \
            and isinstance(path_parameters.get("id"), str) \
            and ID_PATTERN.match(path_parameters["id"]):
        known = _known("command")
        if known:
            path_parameters["id"] = known
    return path_parameters


@schemathesis.hook
def map_body(ctx, body):
    if ctx.operation.path == "/report" and isinstance(body, dict) \
            and isinstance(body.get("post_id"), str) and ID_PATTERN.match(body["post_id"]):
        known = _known("post")
        if known:
            body["post_id"] = known
    return body
