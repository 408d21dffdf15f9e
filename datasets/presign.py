"""Pre-signed GET URLs for S3-compatible object stores (AWS Signature Version 4, query-string form).

A pre-signed URL lets a client fetch one object until it expires, with no credentials of its
own: the store checks the signature. Written here (a few lines of HMAC) rather than pulling in
an AWS SDK for one function; tests compare it with botocore's and fetch through a real
S3-compatible server.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def presigned_get(
    *,
    endpoint: str,
    region: str,
    bucket: str,
    key: str,
    access_key: str,
    secret_key: str,
    expires_seconds: int,
    now: dt.datetime | None = None,
) -> str:
    """`endpoint` is scheme://host[:port]; the URL is path-style (endpoint/bucket/key), which every
    S3-compatible server accepts. At most 7 days, as S3 allows."""
    if not 1 <= expires_seconds <= 7 * 24 * 3600:
        raise ValueError("a pre-signed URL lasts between 1 second and 7 days")
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = urlsplit(endpoint).netloc
    path = "/" + quote(bucket, safe="") + "/" + quote(key, safe="/~")
    scope = f"{day}/{region}/s3/aws4_request"
    params = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires_seconds),
        "X-Amz-SignedHeaders": "host",
    }
    query = "&".join(f"{quote(name, safe='~')}={quote(value, safe='~')}" for name, value in sorted(params.items()))
    canonical = "\n".join(["GET", path, query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{endpoint.rstrip('/')}{path}?{query}&X-Amz-Signature={signature}"
