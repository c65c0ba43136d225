# Independent implementation of the cityboard signature, versions 1 and 2
# (hashlib + hmac only): writes edge/protocol/vectors.json, which the Rust
# crate must match.
#   python3 edge/protocol/tools/gen_vectors.py > edge/protocol/vectors.json
# Version 2 appends the Content-Type (surrounding spaces and tabs trimmed,
# nothing else changed) as a tenth field, under its own tag. The version 1
# cases are the ones this file has always held; they carry a content_type
# too, which version 1 does not cover. Two of their secrets are shorter than
# the 32 bytes a deployment's key must have (they predate that rule): fine
# for the scheme, but the version 2 cases all use keys an api or Worker
# would start with.
# The unsigned-payload mode (payload="unsigned", header "v2u ..."), for the
# streamed photo upload route alone: version 2's fields, but the body hash
# replaced by the 16 bytes "UNSIGNED-PAYLOAD", under the tag
# "cityboard-signature-v2-unsigned-payload". Its cases carry a body, which
# the mode does not cover; one of them is the same request as a hashed
# version 2 case, so that the two headers must differ.
import hashlib, hmac, json

def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"cityboard key id\0" + secret).hexdigest()[:16]

def canonical(version, kid, method, host, pq, ts, nonce, ip, city, body, content_type,
              payload="hashed"):
    unsigned = payload == "unsigned"
    assert not unsigned or version == 2
    fields = [kid.encode(), method.upper().encode(), host.lower().encode(), pq.encode(),
              str(ts).encode(), nonce.encode(), ip.encode(), city.encode(),
              b"UNSIGNED-PAYLOAD" if unsigned else hashlib.sha256(body).digest()]
    if version >= 2:
        fields.append(content_type.strip(" \t").encode())
    out = b"cityboard-signature-v2-unsigned-payload" if unsigned else b"cityboard-signature-v%d" % version
    for f in fields:
        out += len(f).to_bytes(4, "big") + f
    return out

SIGNUP = dict(secret="3f1c9a5e0b7d2f4a6c8e1b3d5f7a9c0e2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a",
              method="POST", host="boston.cityboard.localhost:17002", path_and_query="/signup",
              client_ip="203.0.113.7", city="boston", body='{"email":"a@example.com","password":"correct horse"}',
              timestamp=1764547200, nonce="4b1d0c8e2f6a9b3c7d5e1f0a")
BULK = dict(secret="kv-route-key-fedcba9876543210", method="POST", host="cityboard.localhost:17002",
            path_and_query="/__cityboard/kv/bulk", client_ip="", city="",
            body='[{"key":"post:1","value":"<p>x</p>","metadata":{"version":1,"city":"boston","expires_at":1765152000}}]',
            timestamp=0, nonce="nonce_with-dash_0123")

cases = [
    dict(name="signup forwarded by the edge", version=1, content_type="application/json", **SIGNUP),
    dict(name="GET with a query and no body", version=1, content_type="", secret="previous-forward-key-0123456789",
         method="get", host="NewYork.cityboard.localhost", path_and_query="/post?search=bike&min_price=10",
         client_ip="2001:db8::1", city="newyork", body="", timestamp=1764547230, nonce="AAAAAAAAAAAAAAAA"),
    dict(name="bulk KV route call (no client ip, no city)", version=1, content_type="application/json", **BULK),
    dict(name="non-ASCII body", version=1, content_type="application/json", secret="k" * 40, method="PUT",
         host="paris.cityboard.localhost", path_and_query="/post/123", client_ip="198.51.100.1", city="paris",
         body='{"title":"Vélo à vendre — état neuf"}', timestamp=1764547200, nonce="0123456789abcdef0123456789abcdef"),
    dict(name="v2: signup forwarded by the edge", version=2, content_type="application/json", **SIGNUP),
    dict(name="v2: the same signup with only the Content-Type changed", version=2,
         content_type="application/x-www-form-urlencoded", **SIGNUP),
    dict(name="v2: GET with no body and no Content-Type", version=2, content_type="",
         secret="previous-forward-key-0123456789abcdef", method="get", host="NewYork.cityboard.localhost",
         path_and_query="/post?search=bike&min_price=10", client_ip="2001:db8::1", city="newyork", body="",
         timestamp=1764547230, nonce="AAAAAAAAAAAAAAAA"),
    dict(name="v2: bulk KV route call", version=2, content_type="application/json",
         **dict(BULK, secret="kv-route-key-fedcba9876543210-0123456789")),
    dict(name="v2: Content-Type with parameters and surrounding whitespace", version=2,
         content_type=" \tmultipart/form-data; boundary=----x; charset=UTF-8 \t", secret="m" * 48,
         method="POST", host="london.cityboard.localhost", path_and_query="/post/9/images",
         client_ip="81.2.69.10", city="london", body="------x\r\n\r\nhi\r\n------x--\r\n",
         timestamp=1764550000, nonce="ZZZZzzzz00001111-_-_"),
]
UPLOAD = dict(secret="u" * 32 + "-upload-route-forward-key", method="POST", host="boston.cityboard.localhost:17002",
              path_and_query="/post/42/photos?token=NDI.7.3.1764548100.3q2-7w",
              client_ip="203.0.113.7", city="boston",
              content_type="multipart/form-data; boundary=----cityboardUpload",
              body="------cityboardUpload\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\n\r\n\xff\xd8\r\n------cityboardUpload--\r\n",
              timestamp=1764547260, nonce="req-0123456789abcdef-2")
cases += [
    dict(name="v2u: photo upload streamed by the edge (body not covered)", version=2, payload="unsigned", **UPLOAD),
    dict(name="v2: the same upload request, body hashed", version=2, **UPLOAD),
    dict(name="v2u: upload with IPv6 client and no body", version=2, payload="unsigned",
         **dict(UPLOAD, client_ip="2001:db8::7", body="", method="post", host="Paris.cityboard.localhost",
                city="paris", path_and_query="/post/9/photos?token=OQ.1.10.1764550000.AAAA")),
]
for c in cases:
    c.setdefault("payload", "hashed")
out = []
for c in cases:
    secret = c["secret"].encode()
    kid = key_id(secret)
    can = canonical(c["version"], kid, c["method"], c["host"], c["path_and_query"], c["timestamp"],
                    c["nonce"], c["client_ip"], c["city"], c["body"].encode(), c["content_type"],
                    c["payload"])
    mac = hmac.new(secret, can, hashlib.sha256).hexdigest()
    c = dict(c)
    c["key_id"] = kid
    c["canonical_hex"] = can.hex()
    label = "v2u" if c["payload"] == "unsigned" else f"v{c['version']}"
    c["header"] = f"{label} kid={kid} ts={c['timestamp']} nonce={c['nonce']} mac={mac}"
    out.append(c)
print(json.dumps(out, indent=2, ensure_ascii=False))
