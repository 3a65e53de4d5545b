"""Optional RSA-PSS request signing for Kalshi (headers KALSHI-ACCESS-KEY/-TIMESTAMP/-SIGNATURE).

The signature covers ``timestamp_ms + METHOD + path`` where the path includes ``/trade-api/v2`` and
excludes host and query string; PSS with SHA-256 and salt length = digest length.
"""

from __future__ import annotations

import base64
import time
from typing import Callable, Generator

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def signed_message(timestamp_ms: str, method: str, path: str) -> bytes:
    return f"{timestamp_ms}{method.upper()}{path.split('?', 1)[0]}".encode()


PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


class KalshiSigner(httpx.Auth):
    """httpx auth hook that signs every request; its repr never shows the key."""

    def __init__(self, key_id: str, private_key_pem: str, clock: Callable[[], float] = time.time):
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("Kalshi signing needs an RSA private key (PEM)")
        self._key_id, self._key, self._clock = key_id, key, clock

    def __repr__(self) -> str:
        return "KalshiSigner(key_id=***)"

    def headers(self, method: str, path: str) -> dict[str, str]:
        ts = str(int(self._clock() * 1000))
        sig = self._key.sign(signed_message(ts, method, path), PSS, hashes.SHA256())
        return {
            "KALSHI-ACCESS-KEY": self._key_id,
            "KALSHI-ACCESS-TIMESTAMP": ts,
            "KALSHI-ACCESS-SIGNATURE": base64.b64encode(sig).decode(),
        }

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self.headers(request.method, request.url.path))
        yield request
