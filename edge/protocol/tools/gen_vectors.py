# Independent implementation of the cityboard v1 signature (hashlib + hmac
# only): writes edge/protocol/vectors.json, which the Rust crate must match.
#   python3 edge/protocol/tools/gen_vectors.py > edge/protocol/vectors.json
import hashlib, hmac, json

def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"cityboard key id\0" + secret).hexdigest()[:16]

def canonical(kid, method, host, pq, ts, nonce, ip, city, body):
    fields = [kid.encode(), method.upper().encode(), host.lower().encode(), pq.encode(),
              str(ts).encode(), nonce.encode(), ip.encode(), city.encode(),
              hashlib.sha256(body).digest()]
    out = b"cityboard-signature-v1"
    for f in fields:
        out += len(f).to_bytes(4, "big") + f
    return out

cases = [
    dict(name="signup forwarded by the edge", secret="3f1c9a5e0b7d2f4a6c8e1b3d5f7a9c0e2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a",
         method="POST", host="boston.cityboard.localhost:17002", path_and_query="/signup",
         client_ip="203.0.113.7", city="boston", body='{"email":"a@example.com","password":"correct horse"}',
         timestamp=1764547200, nonce="4b1d0c8e2f6a9b3c7d5e1f0a"),
    dict(name="GET with a query and no body", secret="previous-forward-key-0123456789",
         method="get", host="NewYork.cityboard.localhost", path_and_query="/post?search=bike&min_price=10",
         client_ip="2001:db8::1", city="newyork", body="", timestamp=1764547230, nonce="AAAAAAAAAAAAAAAA"),
    dict(name="bulk KV route call (no client ip, no city)", secret="kv-route-key-fedcba9876543210",
         method="POST", host="cityboard.localhost:17002", path_and_query="/__cityboard/kv/bulk",
         client_ip="", city="", body='[{"key":"post:1","value":"<p>x</p>","metadata":{"version":1,"city":"boston","expires_at":1765152000}}]',
         timestamp=0, nonce="nonce_with-dash_0123"),
    dict(name="non-ASCII body", secret="k" * 40, method="PUT", host="paris.cityboard.localhost",
         path_and_query="/post/123", client_ip="198.51.100.1", city="paris",
         body='{"title":"Vélo à vendre — état neuf"}', timestamp=1764547200, nonce="0123456789abcdef0123456789abcdef"),
]
out = []
for c in cases:
    secret = c["secret"].encode()
    kid = key_id(secret)
    can = canonical(kid, c["method"], c["host"], c["path_and_query"], c["timestamp"], c["nonce"],
                    c["client_ip"], c["city"], c["body"].encode())
    mac = hmac.new(secret, can, hashlib.sha256).hexdigest()
    c = dict(c)
    c["key_id"] = kid
    c["canonical_hex"] = can.hex()
    c["header"] = f"v1 kid={kid} ts={c['timestamp']} nonce={c['nonce']} mac={mac}"
    out.append(c)
print(json.dumps(out, indent=2, ensure_ascii=False))
