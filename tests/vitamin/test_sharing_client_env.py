"""The Delta Sharing connector's own venv (tests/sharing_support.py), without a server.

It runs the pinned connector beside the project's newer pyarrow, a snippet's JSON answer comes
back, a failing snippet fails the test with its stderr, and a pandas DataFrame crosses back as
Parquet that the project's pyarrow reads equal to the file it started from.
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sharing_support
from sharing_support import (
    CONNECTOR_SERIES,
    SHARING_VENV,
    bearer_profile,
    client_frame,
    client_problem,
    oauth_profile,
    run_client,
    table_url,
)


def test_the_venv_runs_the_pinned_connector_apart_from_the_project(sharing_client):
    found = run_client(
        """
        import delta_sharing, pandas, pyarrow
        print("noise before the answer is ignored")
        print(json.dumps({
            "delta_sharing": delta_sharing.__version__,
            "pyarrow": pyarrow.__version__,
            "prefix": sys.prefix,
            "isolated": sys.flags.isolated,
        }))
        """,
        profile={},
    )
    assert found["delta_sharing"].startswith(CONNECTOR_SERIES)
    assert found["pyarrow"].split(".")[0] != pa.__version__.split(".")[0]  # the conflict the venv exists for
    assert found["prefix"] == str(SHARING_VENV)
    assert found["isolated"] == 1


def test_a_value_and_the_profile_round_trip(sharing_client):
    # Nothing listens on port 9, and nothing is fetched: the snippet only reads the profile file.
    profile = bearer_profile("http://127.0.0.1:9/", "token-ä", expiration_time="2030-01-01T00:00:00Z")
    answer = run_client(
        """
        with open(PROFILE, encoding="utf-8") as source:
            profile = json.load(source)
        print(json.dumps({"profile": profile, "path": PROFILE, "value": [1, 2.5, None, "二"]}))
        """,
        profile=profile,
    )
    assert answer["profile"] == profile
    assert answer["profile"]["endpoint"] == "http://127.0.0.1:9/delta-sharing/"
    assert answer["path"].endswith(".share")
    assert answer["value"] == [1, 2.5, None, "二"]


def test_the_connector_reads_both_profile_versions(sharing_client):
    """The profiles the helpers write are ones the connector accepts (it parses them before any request)."""
    read = """
        from delta_sharing.protocol import DeltaSharingProfile
        profile = DeltaSharingProfile.read_from_file(PROFILE)
        print(json.dumps([profile.share_credentials_version, profile.endpoint, profile.bearer_token]))
        """
    v1 = bearer_profile("http://127.0.0.1:9", "secret-token", expiration_time="2030-01-01T00:00:00.0Z")
    assert run_client(read, profile=v1) == [1, "http://127.0.0.1:9/delta-sharing", "secret-token"]
    v2 = oauth_profile("http://127.0.0.1:9/", "client-id", "client-secret")
    assert v2["tokenEndpoint"] == "http://127.0.0.1:9/oauth/token"
    assert run_client(read, profile=v2)[:2] == [2, "http://127.0.0.1:9/delta-sharing"]
    assert table_url("markets", "stock_attention_daily") == "#vitamin.markets.stock_attention_daily"


def test_a_failing_snippet_fails_with_its_stderr(sharing_client):
    with pytest.raises(AssertionError, match=r"exited with 1(.|\n)*ValueError: refused-4711"):
        run_client("raise ValueError('refused-4711')", profile={})
    with pytest.raises(AssertionError, match="not JSON"):
        run_client("print('no answer')", profile={})
    with pytest.raises(AssertionError, match="did not finish within 1 s"):
        run_client("import time; time.sleep(30)", profile={}, timeout=1)


def test_a_missing_venv_says_to_run_make_test(monkeypatch, tmp_path):
    monkeypatch.setattr(sharing_support, "SHARING_PYTHON", tmp_path / "absent" / "bin" / "python")
    assert "run `make test`" in client_problem()
    with pytest.raises(AssertionError, match="run `make test`"):
        run_client("print(1)", profile={})


@pytest.fixture
def published(tmp_path) -> pa.Table:
    """A Parquet file written by the project's pyarrow, as a published version's file would be."""
    table = pa.table(
        {
            "region": pa.array(["east", "west", None, "北"], pa.string()),
            "month": pa.array([dt.date(2024, m, 1) for m in (1, 2, 3, 4)], pa.date32()),
            "count": pa.array([1, 2, 3, 2**40], pa.int64()),
            "amount": pa.array([1.5, -2.25, 0.0, 1e12], pa.float64()),
            "flag": pa.array([True, False, True, False]),
        }
    )
    pq.write_table(table, tmp_path / "published.parquet", compression="zstd")
    return table


def test_a_frame_comes_back_as_parquet(sharing_client, published, tmp_path):
    source = str(tmp_path / "published.parquet")
    frame = client_frame(f"import pandas\nframe = pandas.read_parquet({source!r})", profile={})
    assert frame.equals(published), frame.schema

    # the same by hand: the snippet returns the path, the file outlives the run in `workdir`
    path = run_client(
        f"""
        import pandas
        frame = pandas.read_parquet({source!r})
        print(json.dumps(save_frame(frame, "by_hand")))
        """,
        profile={},
        workdir=tmp_path / "client",
    )
    assert path == str(tmp_path / "client" / "output" / "by_hand.parquet")
    assert pq.read_table(path).equals(published)
    assert json.loads(pq.read_schema(path).metadata[b"pandas"])["creator"]["library"] == "pyarrow"
