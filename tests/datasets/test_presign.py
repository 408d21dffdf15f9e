"""Pre-signed S3 URLs: the same signature botocore computes, and a real S3-compatible server serves them."""

from __future__ import annotations

import datetime as dt

import pytest

from datasets.presign import presigned_get

NOW = dt.datetime(2026, 12, 4, 10, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("endpoint", "key", "secret"),
    [
        ("http://127.0.0.1:9000", "datasets/x/v1/part-0.parquet", "secret/with+chars"),
        ("https://s3.eu-west-1.amazonaws.com", "datasets/month=2025-01-01/part 0 (1).parquet", "plain"),
    ],
)
def test_the_signature_is_botocores(monkeypatch, endpoint, key, secret):
    import botocore.auth
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: NOW.replace(tzinfo=None))
    ours = presigned_get(
        endpoint=endpoint, region="eu-west-1", bucket="my-bucket", key=key,
        access_key="AKIDEXAMPLE", secret_key=secret, expires_seconds=3600, now=NOW,
    )  # fmt: skip
    theirs = AWSRequest(method="GET", url=ours.split("?", 1)[0])
    S3SigV4QueryAuth(Credentials("AKIDEXAMPLE", secret), "s3", "eu-west-1", expires=3600).add_auth(theirs)
    assert ours == theirs.url


def test_lifetimes_outside_what_s3_allows_are_refused():
    for seconds in (0, 8 * 24 * 3600):
        with pytest.raises(ValueError):
            presigned_get(
                endpoint="http://h", region="r", bucket="b", key="k",
                access_key="a", secret_key="s", expires_seconds=seconds,
            )  # fmt: skip
