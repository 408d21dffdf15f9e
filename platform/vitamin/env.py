"""Typed readers for environment variables, and the registry of every setting.

Each reader registers the variable it reads (name, default, help) so that
`docs/settings.md` can be checked against the settings that really exist, and
each raises `ImproperlyConfigured` naming the variable when a value is bad, so
a misconfigured process fails at start-up instead of at first use.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str


REGISTRY: dict[str, Setting] = {}


def _register(name: str, default: object, help: str) -> str | None:
    REGISTRY[name] = Setting(name, default, help)
    return os.environ.get(name)


def env_str(name: str, default: str | None, help: str, *, choices: tuple[str, ...] = ()) -> str | None:
    raw = _register(name, default, help)
    value = default if raw is None or raw == "" else raw
    if choices and value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return value


def env_bool(name: str, default: bool, help: str) -> bool:
    raw = _register(name, default, help)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")


def env_int(name: str, default: int, help: str, *, minimum: int | None = None) -> int:
    raw = _register(name, default, help)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: list[str], help: str) -> list[str]:
    raw = _register(name, ",".join(default), help)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str, help: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated IP addresses or networks in CIDR form (default: none)."""
    networks = []
    for item in env_list(name, [], help):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


def env_secret(name: str, help: str, *, generate_into: Path | None = None) -> str:
    """Read a secret from NAME, or from the file named by NAME_FILE.

    When neither is set and `generate_into` is given, a random secret is
    created once in that file (mode 0600) and reused by every later start.
    """
    direct = _register(name, None, help)
    file_name = _register(f"{name}_FILE", None, f"Path to a file holding {name} (alternative to {name}).")
    if direct and file_name:
        raise ImproperlyConfigured(f"Set only one of {name} and {name}_FILE")
    if direct:
        return direct
    if file_name:
        try:
            value = Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_name!r} cannot be read: {exc.strerror}") from None
        if not value:
            raise ImproperlyConfigured(f"{name}_FILE={file_name!r} is empty")
        return value
    if generate_into is None:
        raise ImproperlyConfigured(f"{name} (or {name}_FILE) must be set")
    if not generate_into.exists():
        generate_into.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(generate_into, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return generate_into.read_text().strip()


# psycopg prepares a query after this many executions: never, unless the caller asks (prepare=True).
PREPARE_ONLY_WHEN_ASKED = 2**31 - 1
CONNECT_TIMEOUT_SECONDS = 5  # PostgreSQL connection timeout unless the URL says `?connect_timeout=N`


def database_from_url(url: str, *, variable: str = "DATABASE_URL") -> dict:
    """Translate postgres://user:pass@host:port/name?opt=val or sqlite:///path into Django's form."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        if not parts.path.strip("/"):
            raise ImproperlyConfigured(f"{variable} must name a database: postgres://host/NAME")
        # Django turns psycopg's prepared statements off (None); a threshold no query reaches keeps
        # its own queries unprepared while the request path's lookups prepare theirs explicitly
        # (vitamin.prepared). `?prepare_threshold=N` in the URL overrides it.
        # A server that does not answer (a host down, packets dropped) fails a connection within seconds,
        # as a 503 (vitamin.errors), instead of holding a request thread for the TCP timeout.
        options.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
        try:
            options["prepare_threshold"] = int(options.get("prepare_threshold", PREPARE_ONLY_WHEN_ASKED))
        except ValueError:
            raise ImproperlyConfigured(f"{variable}: prepare_threshold must be an integer") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path.startswith("//"):  # sqlite:////absolute/path
            path = path[1:]
        else:  # sqlite:///relative/path
            path = path.lstrip("/")
        return sqlite_database(Path(path))
    raise ImproperlyConfigured(f"{variable} scheme {parts.scheme!r} is not supported (use postgres:// or sqlite:///)")


def sqlite_database(path: Path) -> dict:
    return {
        "ENGINE": "vitamin.sqlite_backend",
        "NAME": str(path),
        "OPTIONS": {
            # IMMEDIATE takes the write lock when a transaction starts, so a
            # read-then-write (audit chain head, quota counters) cannot deadlock.
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        },
        # Kept open between requests like PostgreSQL's: opening one (and its PRAGMAs) per request
        # was about a fifth of a small query's CPU in the web process.
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        # Tests get a file next to this one, not Django's shared-cache in-memory database:
        # that one answers concurrent writers with "database table is locked" instead of
        # waiting, and other processes cannot open it at all.
        "TEST": {"NAME": str(path.with_name(f"test-{path.name}"))},
    }
