"""Settings come from the environment through typed readers that fail early and clearly."""

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from testenv import REPO_DIR
from vitamin import env


@pytest.fixture(autouse=True)
def private_registry(monkeypatch):
    """Keep these tests' made-up variables out of the registry the docs test reads."""
    monkeypatch.setattr(env, "REGISTRY", {})


def test_bool_reader_accepts_common_spellings(monkeypatch):
    for raw, expected in [("true", True), ("1", True), ("off", False), ("No", False)]:
        monkeypatch.setenv("VITAMIN_T_BOOL", raw)
        assert env.env_bool("VITAMIN_T_BOOL", not expected, "test") is expected


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("VITAMIN_T_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="VITAMIN_T_BOOL"):
        env.env_bool("VITAMIN_T_BOOL", False, "test")
    monkeypatch.setenv("VITAMIN_T_INT", "12x")
    with pytest.raises(ImproperlyConfigured, match="VITAMIN_T_INT"):
        env.env_int("VITAMIN_T_INT", 1, "test")
    monkeypatch.setenv("VITAMIN_T_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env.env_int("VITAMIN_T_INT", 1, "test", minimum=1)
    monkeypatch.setenv("VITAMIN_T_CHOICE", "mysql")
    with pytest.raises(ImproperlyConfigured, match="VITAMIN_T_CHOICE"):
        env.env_str("VITAMIN_T_CHOICE", "a", "test", choices=("a", "b"))
    monkeypatch.setenv("VITAMIN_T_NETS", "10.0.0.0/8, proxy.internal")
    with pytest.raises(ImproperlyConfigured, match="VITAMIN_T_NETS: 'proxy.internal'"):
        env.env_networks("VITAMIN_T_NETS", "test")


def test_network_reader_takes_addresses_and_cidr_networks(monkeypatch):
    monkeypatch.setenv("VITAMIN_T_NETS", "10.0.0.0/8, 192.0.2.7,2001:db8::/32")
    assert [str(n) for n in env.env_networks("VITAMIN_T_NETS", "test")] == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "2001:db8::/32",
    ]
    monkeypatch.delenv("VITAMIN_T_NETS")
    assert env.env_networks("VITAMIN_T_NETS", "test") == ()


def test_secret_from_file_and_generated_once(monkeypatch, tmp_path):
    secret_file = tmp_path / "s"
    secret_file.write_text("from-a-file\n")
    monkeypatch.delenv("VITAMIN_T_SECRET", raising=False)
    monkeypatch.setenv("VITAMIN_T_SECRET_FILE", str(secret_file))
    assert env.env_secret("VITAMIN_T_SECRET", "test") == "from-a-file"

    monkeypatch.delenv("VITAMIN_T_SECRET_FILE")
    target = tmp_path / "generated" / "key"
    first = env.env_secret("VITAMIN_T_SECRET", "test", generate_into=target)
    second = env.env_secret("VITAMIN_T_SECRET", "test", generate_into=target)
    assert first == second and len(first) >= 40
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ImproperlyConfigured, match="VITAMIN_T_SECRET"):
        env.env_secret("VITAMIN_T_SECRET", "test")


def test_missing_secret_file_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("VITAMIN_T_SECRET_FILE", str(tmp_path / "absent"))
    with pytest.raises(ImproperlyConfigured, match="VITAMIN_T_SECRET_FILE"):
        env.env_secret("VITAMIN_T_SECRET", "test")


def test_database_url_parsing():
    pg = env.database_from_url("postgres://u:p%40ss@db.example:6543/vit?sslmode=require")
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "u",
        "p@ss",
        "db.example",
        "6543",
        "vit",
    )
    assert pg["OPTIONS"] == {
        "sslmode": "require",
        "connect_timeout": str(env.CONNECT_TIMEOUT_SECONDS),
        "prepare_threshold": env.PREPARE_ONLY_WHEN_ASKED,
    }
    assert env.database_from_url("postgres://db/vit?prepare_threshold=5&connect_timeout=2")["OPTIONS"] == {
        "prepare_threshold": 5,
        "connect_timeout": "2",
    }
    with pytest.raises(ImproperlyConfigured, match="prepare_threshold"):
        env.database_from_url("postgres://db/vit?prepare_threshold=often")
    assert env.database_from_url("sqlite:////tmp/x.db")["NAME"] == "/tmp/x.db"
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        env.database_from_url("mysql://localhost/x")
    with pytest.raises(ImproperlyConfigured, match="must name a database"):
        env.database_from_url("postgres://localhost")


def test_a_bad_setting_stops_the_process_at_start_up(tmp_path):
    bad_env = {**os.environ, "VITAMIN_DATA_DIR": str(tmp_path), "VITAMIN_QUOTA_BACKEND": "memcached"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO_DIR, env=bad_env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "VITAMIN_QUOTA_BACKEND" in result.stderr


def test_secret_key_is_generated_per_data_dir_not_hard_coded(settings, data_dir):
    assert settings.SECRET_KEY == (data_dir / "secret_key").read_text().strip()
    assert settings.DATA_DIR == data_dir
