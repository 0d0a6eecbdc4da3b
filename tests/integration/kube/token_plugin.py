"""An exec credential plugin for tests: it mints a ServiceAccount token that the test API server
accepts for ``--ttl`` seconds only, and prints it as a client.authentication.k8s.io
ExecCredential whose ``expirationTimestamp`` is that moment.

The token is a JWT signed with the control plane's service-account signing key, as the API
server's TokenRequest would sign it (issuer, audience, ``kubernetes.io`` claims naming an
existing ServiceAccount and its uid). The API server's JWT validation allows a minute of clock
skew past ``exp``, so ``exp`` is set that much earlier: the token stops being accepted ``--ttl``
seconds after it was minted, and a client that does not run the plugin again gets 401.

Each run appends a line to ``--log`` (the number of runs is what the tests count).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

#: go-jose's DefaultLeeway, which the API server's ServiceAccount token validator applies.
SKEW = 60


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(key_path: Path, issuer: str, namespace: str, name: str, uid: str, ttl: float,
         now: float) -> str:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {
        "iss": issuer, "aud": [issuer], "sub": f"system:serviceaccount:{namespace}:{name}",
        "iat": int(now) - SKEW, "nbf": int(now) - SKEW, "exp": int(now + ttl) - SKEW,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag in ("--key", "--issuer", "--namespace", "--name", "--uid", "--log"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--ttl", type=float, default=2.0)
    args = parser.parse_args()
    request = json.loads(os.environ["KUBERNETES_EXEC_INFO"])  # as kubectl passes it
    now = time.time()
    token = mint(Path(args.key), args.issuer, args.namespace, args.name, args.uid, args.ttl, now)
    expires = dt.datetime.fromtimestamp(int(now + args.ttl), dt.UTC)
    with open(args.log, "a") as log:
        log.write(f"{now:.3f} {token[-12:]}\n")
    print(json.dumps({
        "apiVersion": request["apiVersion"], "kind": "ExecCredential",
        "status": {"token": token,
                   "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }))


if __name__ == "__main__":
    main()
