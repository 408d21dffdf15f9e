"""Vitamin's Django settings: every value comes from the environment.

Each variable is read once here through the typed helpers in `vitamin.env`,
which register it for the documentation check (tests/vitamin/test_docs.py) and fail
at start-up, naming the variable, when a value is bad.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from vitamin.env import (
    database_from_url,
    env_bool,
    env_int,
    env_list,
    env_networks,
    env_secret,
    env_str,
    sqlite_database,
)

REPO_DIR = Path(__file__).resolve().parents[2]
PLATFORM_DIR = REPO_DIR / "platform"

# --- Where state lives ------------------------------------------------------
DATA_DIR = Path(
    env_str(
        "VITAMIN_DATA_DIR",
        "var",
        "Directory for all local state: SQLite database, Parquet store, broker queue, generated secrets. Relative paths are resolved against the repository root.",
    )
)
if not DATA_DIR.is_absolute():
    DATA_DIR = REPO_DIR / DATA_DIR
try:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
except OSError as exc:
    raise ImproperlyConfigured(f"VITAMIN_DATA_DIR={str(DATA_DIR)!r} cannot be created: {exc.strerror}") from None

STORE_URL = env_str(
    "VITAMIN_STORE_URL",
    None,
    "Where published Parquet versions live: a local path or file:// URL, or s3://bucket/prefix?endpoint_override=host:port&region=... for S3-compatible storage (also connect_timeout=S&request_timeout=S: how long a request to the store may wait, in seconds; about 10 s in all by default). Default: <VITAMIN_DATA_DIR>/store.",
) or str(DATA_DIR / "store")
STORE_CACHE_MAX_MB = env_int(
    "VITAMIN_STORE_CACHE_MAX_MB",
    10240,
    "With an s3:// store: disk the query node's cache of published files (<VITAMIN_DATA_DIR>/store-cache, shared by "
    "every process of the node) may fill, in MiB; the least recently used files are deleted first, never one a "
    "running query reads. Size it to the versions partners query often: a file not cached is fetched before the query.",
    minimum=1,
)

# --- Core Django ------------------------------------------------------------
SECRET_KEY = env_secret(
    "DJANGO_SECRET_KEY",
    "Django's signing key. When unset, one is generated once into <VITAMIN_DATA_DIR>/secret_key and reused.",
    generate_into=DATA_DIR / "secret_key",
)
DEBUG = env_bool("VITAMIN_DEBUG", False, "Django debug mode. Never enable in production: it shows stack traces.")
ALLOWED_HOSTS = env_list(
    "VITAMIN_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"], "Comma-separated host names this server answers to."
)
TRUSTED_PROXIES = env_networks(
    "VITAMIN_TRUSTED_PROXIES",
    "Comma-separated addresses or CIDR networks of the reverse proxies in front of this server. "
    "Only a request from one of them has its X-Forwarded-For believed, for the client address "
    "that audit events record and that failed logins are throttled by. Default: none (REMOTE_ADDR is the client).",
)
CSRF_TRUSTED_ORIGINS = env_list(
    "VITAMIN_CSRF_TRUSTED_ORIGINS",
    [],
    "Comma-separated origins (scheme://host[:port]) trusted for CSRF-protected form posts behind a proxy.",
)
PUBLIC_URL = env_str(
    "VITAMIN_PUBLIC_URL",
    None,
    "External base URL of the server (https://vitamin.example.com), used in links and OAuth metadata. Default: derived from each request.",
)
HTTPS = env_bool(
    "VITAMIN_HTTPS",
    False,
    "Serve behind HTTPS: secure cookies, HSTS, redirect plain HTTP, trust X-Forwarded-Proto from the proxy.",
)
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "vitamin",
    "audit",
    "quotas",
    "institutions",
    "oauth",
    "catalog",
    "access",
    "query",
    "lookups",
    "sharing",
    "portal",
]

MIDDLEWARE = [
    "vitamin.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "vitamin.languages.PageLocaleMiddleware",  # LocaleMiddleware for pages; the API's contract stays English
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "vitamin.urls"
WSGI_APPLICATION = "vitamin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------
_database_url = env_str(
    "DATABASE_URL",
    None,
    "Database connection, e.g. postgres://user:password@host:5432/vitamin. Default: SQLite at <VITAMIN_DATA_DIR>/vitamin.sqlite3.",
)
DATABASES = {
    "default": database_from_url(_database_url) if _database_url else sqlite_database(DATA_DIR / "vitamin.sqlite3")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# The portal speaks English and Simplified Chinese, chosen from the browser's Accept-Language or the
# header's switcher (docs/portal.md, "Languages"); the API, Delta Sharing and OAuth's JSON stay English.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [REPO_DIR / "platform" / "locale"]
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600  # the switcher's choice outlives the browser session
TIME_ZONE = env_str(
    "VITAMIN_TIME_ZONE", "Asia/Shanghai", "Time zone for display and for schedules (cron expressions in dataset specs)."
)
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app folders too, so a fresh checkout works before collectstatic.
WHITENOISE_USE_FINDERS = True

# --- Redis, Celery -----------------------------------------------------------
REDIS_URL = env_str(
    "REDIS_URL", None, "Redis for quota counters (with VITAMIN_QUOTA_BACKEND=redis), e.g. redis://127.0.0.1:6379/0."
)
CELERY_BROKER_URL = (
    env_str(
        "CELERY_BROKER_URL",
        None,
        "Celery broker: redis://... or amqp://... Default: an embedded file-system queue under <VITAMIN_DATA_DIR>/broker, no server needed.",
    )
    or "filesystem://"
)
CELERY_RESULT_BACKEND = (
    env_str(
        "CELERY_RESULT_BACKEND",
        None,
        "Where Celery keeps task state and progress: redis://... or db+postgresql://... Default: SQLite at <VITAMIN_DATA_DIR>/celery-results.sqlite3.",
    )
    or f"db+sqlite:///{DATA_DIR / 'celery-results.sqlite3'}"
)
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = DATA_DIR / "broker" / "queue"
    _processed_dir = DATA_DIR / "broker" / "processed"
    _control_dir = DATA_DIR / "broker" / "control"
    for _folder in (_queue_dir, _processed_dir, _control_dir):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "store_processed": False,
        "control_folder": str(_control_dir),  # broadcast/pidbox exchanges; kombu's default is ./control
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {}  # filled by vitamin.celery from the apps' periodic tasks

# --- Process supervisor (manage.py run) -----------------------------------------
PORT = env_int("PORT", 8000, "TCP port `make run` serves the portal and API on.", minimum=1)
WEB_WORKERS = env_int("VITAMIN_WEB_WORKERS", 2, "Gunicorn worker processes started by `make run`.", minimum=1)
WEB_THREADS = env_int(
    "VITAMIN_WEB_THREADS",
    4,
    "Threads per gunicorn worker process started by `make run` (requests each process serves at once; "
    "docs/operations.md says how the serving model was chosen).",
    minimum=1,
)
WORKER_CONCURRENCY = env_int(
    "VITAMIN_WORKER_CONCURRENCY", 2, "Celery worker processes started by `make run`.", minimum=1
)

# --- Quotas ------------------------------------------------------------------
QUOTA_BACKEND = env_str(
    "VITAMIN_QUOTA_BACKEND",
    "database",
    "Where quota counters live: `database` (the Django database, conditional updates) or `redis` (REDIS_URL, Lua scripts).",
    choices=("database", "redis"),
)
if QUOTA_BACKEND == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("VITAMIN_QUOTA_BACKEND=redis needs REDIS_URL")
OUTAGE_RETRY_AFTER_SECONDS = env_int(
    "VITAMIN_OUTAGE_RETRY_AFTER_SECONDS",
    5,
    "The Retry-After of a 503 answered because the database, the Redis quota store or the Celery broker did not "
    "answer (database_unavailable, quota_unavailable, queue_unavailable): about how long a restart of one takes.",
    minimum=1,
)

# --- Datasets ------------------------------------------------------------------
PSEUDONYM_MASTER_KEY = env_secret(
    "VITAMIN_PSEUDONYM_KEY",
    "Master secret from which per-dataset, per-release pseudonym keys are derived (HKDF). When unset, generated once into <VITAMIN_DATA_DIR>/pseudonym_key. Losing it changes every pseudonym in later releases.",
    generate_into=DATA_DIR / "pseudonym_key",
)
DATASET_SPECS_DIR = REPO_DIR / Path(  # an absolute value replaces REPO_DIR
    env_str(
        "VITAMIN_DATASET_SPECS_DIR",
        "datasets/specs",
        "Folder of dataset spec files synced into the catalog. Relative paths are resolved against the repository root.",
    )
)
REFRESH_STALE_SECONDS = env_int(
    "VITAMIN_REFRESH_STALE_SECONDS",
    30,
    "A running refresh whose heartbeat (written every 2 s while it builds) is older than this, in seconds, is "
    "presumed dead (its worker was killed): the recovery sweep (every 10 s from beat, and when a worker starts) "
    "queues it again, up to 3 attempts, or fails it, and removes its staging and scratch folders.",
    minimum=10,
)
DEMO_TRANSACTIONS = env_int(
    "VITAMIN_DEMO_TRANSACTIONS", 1_000_000, "Source transaction rows the demo datasets are built from.", minimum=1000
)
DEMO_CONSUMERS = env_int(
    "VITAMIN_DEMO_CONSUMERS",
    50_000,
    "Consumers in the demo credit_profiles lookup dataset (one row each; the bench uses 10,000,000).",
    minimum=1000,
)
DEMO_COMPANIES = env_int(
    "VITAMIN_DEMO_COMPANIES",
    1000,
    "Listed companies in the demo market, brand, consumption and attention datasets (at most 2051).",
    minimum=10,
)
PUBLIC_CATALOG = env_bool(
    "VITAMIN_PUBLIC_CATALOG",
    False,
    "Show the portal's catalog listing (metadata only) to visitors who are not signed in. Dataset pages, samples and the API still need an account or a token.",
)

# --- Query ---------------------------------------------------------------------
QUERY_MEMORY_LIMIT_MB = env_int(
    "VITAMIN_QUERY_MEMORY_LIMIT_MB",
    2048,
    "Memory one partner query may use, in MiB: DuckDB's memory_limit in each query worker process, whose "
    "address space is capped at its idle baseline plus this much (a query past it ends with 413 memory_limit_exceeded).",
    minimum=64,
)
QUERY_THREADS = env_int(
    "VITAMIN_QUERY_THREADS",
    2,
    "The most DuckDB threads one partner query runs on: a query gets them while the queries running on the node "
    "(every web and Celery process) times this stay within its cores, and one thread otherwise "
    '(docs/query-internals.md, "Threads by load").',
    minimum=1,
)
QUERY_POOL_SIZE = env_int(
    "VITAMIN_QUERY_POOL_SIZE",
    4,
    "Query worker processes per web or Celery worker process, each running one partner query at a time; "
    "more queries wait up to 10 s, then get 503 server_busy.",
    minimum=1,
)
QUERY_KILL_GRACE_SECONDS = env_int(
    "VITAMIN_QUERY_KILL_GRACE_SECONDS",
    2,
    "Seconds past its plan's time limit after which a query still running is stopped by killing its worker "
    "process (408 time_limit_exceeded; a fresh worker replaces it).",
    minimum=1,
)
QUERY_CONCURRENT_PER_INSTITUTION = env_int(
    "VITAMIN_QUERY_CONCURRENT_PER_INSTITUTION",
    8,
    "Queries (and running jobs) one institution may run at once across all its subscriptions and all "
    "processes; each subscription's plan may allow fewer. More answer 429 quota_exceeded.",
    minimum=1,
)
QUERY_SLOT_LEASE_SECONDS = env_int(
    "VITAMIN_QUERY_SLOT_LEASE_SECONDS",
    10,
    "A query's concurrency slot is a lease this long, renewed every third of it by the process running the "
    "query: a process that dies (killed mid-query) gives its slots back within this many seconds.",
    minimum=3,
)
QUERY_TEMP_MAX_MB = env_int(
    "VITAMIN_QUERY_TEMP_MAX_MB",
    8192,
    "Disk one partner query may spill to, per query worker process, in MiB.",
    minimum=0,
)
JOB_RESULT_SECONDS = env_int(
    "VITAMIN_JOB_RESULT_SECONDS",
    86400,
    "How long a query job's result file can be downloaded, in seconds; after that it is deleted (410 result_expired).",
    minimum=60,
)
WORKBENCH_ROWS = env_int(
    "VITAMIN_WORKBENCH_ROWS",
    1000,
    "Rows the portal's SQL workbench shows of a result (the plan's row cap still applies); exports and jobs get the plan's cap.",
    minimum=1,
)
JOB_QUEUE_SECONDS = env_int(
    "VITAMIN_JOB_QUEUE_SECONDS",
    3600,
    "How long a query job may wait for a free concurrent-query slot of its subscription, in seconds, "
    "counted from submission; after that it fails with quota_exceeded.",
    minimum=0,
)
SHARING_URL_SECONDS = env_int(
    "VITAMIN_SHARING_URL_SECONDS",
    3600,
    "How long a Delta Sharing file URL stays valid after it is issued (long enough for a large download); "
    "with an object store, also the pre-signed URL a query job's result download redirects to.",
    minimum=60,
)
LOOKUP_MAX_ITEMS = env_int(
    "VITAMIN_LOOKUP_MAX_ITEMS",
    10_000,
    "Most items in one lookup batch (POST /api/v1/datasets/{slug}/lookup); a larger batch is refused whole (413).",
    minimum=1,
)
COHORT_MAX_ITEMS = env_int(
    "VITAMIN_COHORT_MAX_ITEMS",
    100_000,
    "Most customers in one cohort assessment (POST /api/v1/datasets/{slug}/cohorts); more are refused whole (413).",
    minimum=1,
)
LOOKUP_MAX_CUTOFFS_PER_DAY = env_int(
    "VITAMIN_LOOKUP_MAX_CUTOFFS_PER_DAY",
    2,
    "Distinct cut-offs one institution may test against one customer's field per day in threshold-only lookups; "
    "a further one is refused for that customer (it would narrow the value down).",
    minimum=1,
)
LOOKUP_REPLAY_HOURS = env_int(
    "VITAMIN_LOOKUP_REPLAY_HOURS",
    24,
    "How long a lookup or cohort answer is kept (encrypted) to be replayed for the same transaction id.",
    minimum=1,
)
SHARING_TOKEN_DAYS = env_int(
    "VITAMIN_SHARING_TOKEN_DAYS",
    365,
    "Lifetime of the bearer token in a version-1 Delta Sharing profile (`sharing_profile --version 1`).",
    minimum=1,
)
SHARING_PAGE_MAX = env_int(
    "VITAMIN_SHARING_PAGE_MAX",
    1000,
    "Most items one Delta Sharing list answer holds (maxResults is capped to it).",
    minimum=1,
)

# --- Logging -------------------------------------------------------------------
LOG_FORMAT = env_str(
    "VITAMIN_LOG_FORMAT",
    "auto",
    "`json`, `text`, or `auto` (text on a terminal, JSON otherwise).",
    choices=("auto", "json", "text"),
)
LOG_LEVEL = env_str("VITAMIN_LOG_LEVEL", "INFO", "Root log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "vitamin.logs.RequestIdFilter"}},
    "formatters": {"vitamin": {"()": "vitamin.logs.formatter_for", "log_format": LOG_FORMAT}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "vitamin", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
    },
}

# --- Email ---------------------------------------------------------------------
EMAIL_BACKEND = env_str(
    "VITAMIN_EMAIL_BACKEND",
    "vitamin.mail.ConsoleBackend",
    "Django email backend. The default prints each e-mail on stderr (the `make run` console); use django.core.mail.backends.smtp.EmailBackend with the VITAMIN_EMAIL_* settings for real mail.",
)
EMAIL_HOST = env_str("VITAMIN_EMAIL_HOST", "localhost", "SMTP host.")
EMAIL_PORT = env_int("VITAMIN_EMAIL_PORT", 25, "SMTP port.", minimum=1)
EMAIL_HOST_USER = env_str("VITAMIN_EMAIL_USER", "", "SMTP user name.")
EMAIL_HOST_PASSWORD = env_str("VITAMIN_EMAIL_PASSWORD", "", "SMTP password.")
EMAIL_USE_TLS = env_bool("VITAMIN_EMAIL_USE_TLS", False, "Use STARTTLS for SMTP.")
DEFAULT_FROM_EMAIL = env_str(
    "VITAMIN_EMAIL_FROM", "Vitamin <no-reply@vitamin.local>", "Sender address of notification mail."
)
PASSWORD_RESET_TIMEOUT = env_int(
    "VITAMIN_PASSWORD_RESET_SECONDS",
    3600,
    "How long a mailed password reset link works, in seconds (it also stops once the password is changed).",
    minimum=60,
)
PASSWORD_RESETS_PER_DAY = env_int(
    "VITAMIN_PASSWORD_RESETS_PER_DAY",
    5,
    "Password reset requests one e-mail address may get per day (a calendar day in VITAMIN_TIME_ZONE), whether or "
    "not an account has it. A request over this limit, or over VITAMIN_PASSWORD_RESETS_PER_IP_PER_DAY, sends no "
    "mail, is audited as denied, and gets the same answer as any other.",
    minimum=1,
)
PASSWORD_RESETS_PER_IP_PER_DAY = env_int(
    "VITAMIN_PASSWORD_RESETS_PER_IP_PER_DAY",
    20,
    "Password reset requests one client IP address may make per day, whatever addresses they name (the address "
    "audit events record: behind a proxy, list it in VITAMIN_TRUSTED_PROXIES, or every visitor shares its limit).",
    minimum=1,
)

# --- REST API ------------------------------------------------------------------
REST_FRAMEWORK = {
    "EXCEPTION_HANDLER": "vitamin.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's own, except that JSON nested deeper than vitamin.parsers.MAX_JSON_DEPTH, or a NUL
    # character in any field, is a 400.
    "DEFAULT_PARSER_CLASSES": [
        "vitamin.parsers.JSONParser",
        "vitamin.parsers.FormParser",
        "vitamin.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Vitamin API",
    "DESCRIPTION": "Open financial data sharing: catalog, subscriptions, SQL queries and jobs, usage. Delta Sharing under /delta-sharing/: whole versions of open datasets for pandas, Spark and other connectors. Consented lookups (scope lookup): batches of consenting customers answered with their fields or Y/N against a cut-off, and cohort assessments of consenting customers with groups below k left out. Audit (scope audit:read): your institution's own audit events with every hash, and verification of the audit chain.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
}

# --- OAuth 2.0 authorization server ----------------------------------------------
ACCESS_TOKEN_SECONDS = env_int(
    "VITAMIN_ACCESS_TOKEN_SECONDS", 3600, "Lifetime of OAuth access tokens, in seconds.", minimum=60
)
REFRESH_TOKEN_SECONDS = env_int(
    "VITAMIN_REFRESH_TOKEN_SECONDS",
    30 * 24 * 3600,
    "Lifetime of each OAuth refresh token, in seconds; every refresh rotates it and starts a new lifetime.",
    minimum=60,
)
CLIENT_SECRET_OVERLAP_SECONDS = env_int(
    "VITAMIN_CLIENT_SECRET_OVERLAP_SECONDS",
    24 * 3600,
    "After an OAuth client secret is rotated, how long the old secret keeps working, in seconds (0: not at all).",
    minimum=0,
)
AUTH_FAILURES_PER_MINUTE = env_int(
    "VITAMIN_AUTH_FAILURES_PER_MINUTE",
    10,
    "Failed OAuth client authentications allowed per minute for one client id and for one IP address; then 429.",
    minimum=1,
)

# --- Audit log -------------------------------------------------------------------
AUDIT_READS_PER_MINUTE = env_int(
    "VITAMIN_AUDIT_READS_PER_MINUTE",
    60,
    "Reads of its own audit trail (API pages and chain verifications) one institution may make per minute; "
    "then 429 rate_limited. Not charged to any plan.",
    minimum=1,
)
AUDIT_FULL_VERIFY_SECONDS = env_int(
    "VITAMIN_AUDIT_FULL_VERIFY_SECONDS",
    3600,
    "How long a verification of the whole audit chain is reused: in between, a verification on request checks "
    "only the events appended since (docs/audit.md). 0: verify the whole chain every time.",
    minimum=0,
)

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
SESSION_COOKIE_AGE = int(timedelta(hours=12).total_seconds())
