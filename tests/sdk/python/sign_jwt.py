"""Signs a playback JWT with PyJWT, as a Python backend does.

    python sign_jwt.py PRIVATE_KEY CLAIMS_JSON [ALGORITHM]

PRIVATE_KEY is a signing key's `privateKey` as the API returns it (base64 of a PKCS#8 PEM), or,
for HS256, any secret. CLAIMS_JSON is the claim set; `exp`, `nbf` and `iat` given as strings are
offsets in seconds from now ("+3600", "-60"). Prints the token.
"""
import base64
import json
import sys
import time

import jwt


def main() -> None:
    private_key, claims = sys.argv[1], json.loads(sys.argv[2])
    algorithm = sys.argv[3] if len(sys.argv) > 3 else "ES256"
    now = int(time.time())
    for name in ("exp", "nbf", "iat"):
        if isinstance(claims.get(name), str):
            claims[name] = now + int(claims[name])
    key = base64.b64decode(private_key) if algorithm == "ES256" else private_key
    print(jwt.encode(claims, key, algorithm=algorithm))


if __name__ == "__main__":
    main()
