"""One settings class for every service (env prefix ``EXPORTS_``)."""

from __future__ import annotations

import secrets
from functools import cached_property

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Codex's own default (auth.jwt_secret) is one of them: a Codex still on it signs tokens anyone
# can forge, so beside it the exports refuse to start too.
CODEX_DEFAULT_SECRET = "INSECURE_DEFAULT_SECRET_CHANGE_IN_PRODUCTION"  # noqa: S105
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "placeholder", "dev", CODEX_DEFAULT_SECRET.lower()}
)
MIN_SECRET_LENGTH = 32


def parse_nats_servers(value: str) -> list[str]:
    """Split ``EXPORTS_NATS_URL``: comma-separated server URLs, spaces around them ignored.

    ``nats://a:4222, nats://b:4222`` gives both; a bare ``host:port`` gets ``nats://``. Empty
    entries (a trailing comma) are dropped, repeats kept once; no URL at all is an error.
    """
    servers: list[str] = []
    for part in value.split(","):
        url = part.strip()
        if not url:
            continue
        if "://" not in url:
            url = "nats://" + url
        scheme, _, rest = url.partition("://")
        if scheme not in ("nats", "tls", "ws", "wss") or not rest or "/" in rest.rstrip("/"):
            raise ValueError(
                f"EXPORTS_NATS_URL: {part.strip()!r} is not a NATS server URL "
                "(expected e.g. nats://host:4222, several separated by commas)"
            )
        if url not in servers:
            servers.append(url)
    if not servers:
        raise ValueError(
            "EXPORTS_NATS_URL names no server (expected e.g. nats://host:4222, "
            "several separated by commas)"
        )
    return servers


class Settings(BaseSettings):
    """Configuration shared by api, worker and janitor, read from the environment."""

    model_config = SettingsConfigDict(env_prefix="EXPORTS_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    # Catalog reads (the worker's snapshot and COPY, the api's estimates and library list) go
    # here, e.g. a streaming read replica; empty: the same database as database_url. Job state
    # (the exports schema's rows, claims, heartbeats, outbox) always stays on database_url.
    catalog_database_url: SecretStr = SecretStr("")
    # How long an export waits for the replica to replay up to the primary's WAL position taken
    # when the export starts, before the attempt fails (retried; see shared.catalog_db).
    catalog_max_lag_seconds: float = Field(default=30.0, gt=0)
    # One server, or a cluster's servers separated by commas (SPEC §14): every client gets the
    # whole list and moves to another server when its own goes away. See ``nats_servers``.
    nats_url: str = "nats://127.0.0.1:4222"
    # Replicas of the EXPORTS stream and of its durable consumers (1 on a single server; 3 on a
    # cluster of 3 survives the loss of one). Applied to an existing stream at start-up.
    stream_replicas: int = Field(default=1, ge=1, le=5)

    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = "exports"
    s3_secret_key: SecretStr = SecretStr("")
    s3_bucket: str = "codex-exports"
    s3_region: str = "us-east-1"
    s3_secure: bool = False

    jwt_secret: SecretStr = SecretStr("")
    jwt_ttl_seconds: int = Field(default=86400, gt=0)
    # Lifetime of a download link (SPEC §11): the browser must start, and resume, within it.
    download_link_seconds: int = Field(default=60, gt=0)
    dev_mode: bool = False

    retention_seconds: int = Field(default=604800, gt=0)
    max_concurrent_per_user: int = Field(default=3, gt=0)
    max_completed_per_user: int = Field(default=10, gt=0)
    storage_cap_bytes: int = Field(default=2 * 1024**3, gt=0)
    max_deliver: int = Field(default=5, gt=0)
    sweep_interval_seconds: int = Field(default=300, ge=1)
    worker_concurrency: int = Field(default=2, gt=0)
    # Scheduled exports (SPEC §12): the shortest interval a cron may ask for; the spread of due
    # times (a schedule fires 0 … spread-1 s after its due time, the same offset every time);
    # how long a run waits before trying again when its owner is at the concurrency limit.
    min_schedule_seconds: int = Field(default=3600, ge=1)
    schedule_spread_seconds: int = Field(default=60, ge=0, le=3600)
    schedule_retry_seconds: float = Field(default=30.0, gt=0)
    # Fairness lanes (shared/lanes.py): an export of fewer rows than this, counted at create,
    # runs in the small lane; 0 sends every export to the large lane (no reserved lane).
    small_export_rows: int = Field(default=1000, ge=0)
    # The small lane's own slots in each worker, beside its worker_concurrency large ones.
    worker_small_slots: int = Field(default=4, gt=0)

    ack_wait_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=2.0, gt=0)
    stale_after_seconds: float = Field(default=60.0, gt=0)
    batch_rows: int = Field(default=1000, gt=0)
    orphan_age_seconds: int = Field(default=3600, ge=0)
    part_size_bytes: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)
    # PostgreSQL renders the rows (services/worker/render); false: the Python encoders do.
    render_in_database: bool = True

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    # Every request body (HTTP and export.submit): larger ones answer 413, and an HTTP body
    # must have arrived whole this many seconds after its headers, else 408.
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    # Request rate limits (services/api/ratelimit.py), Codex's defaults: a token bucket per
    # signed-in user and per anonymous client IP, shared by every api replica through NATS.
    rate_limit_enabled: bool = True
    rate_limit_user_per_second: float = Field(default=50.0, gt=0)
    rate_limit_user_burst: int = Field(default=200, gt=0)
    rate_limit_anon_per_second: float = Field(default=10.0, gt=0)
    rate_limit_anon_burst: int = Field(default=50, gt=0)
    # NATS slower than this: the request passes without a limit (fail open, logged, counted).
    rate_limit_timeout_seconds: float = Field(default=1.0, gt=0)
    # The proxies whose X-Forwarded-For names the client (uvicorn's --forwarded-allow-ips:
    # comma-separated addresses or networks, "*" for any); the anonymous bucket is per client.
    forwarded_allow_ips: str = "127.0.0.1"
    # Worker and janitor serve /metrics, /healthz and /readyz here; 0 turns that off.
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _nats_servers_listed(self) -> Settings:
        parse_nats_servers(self.nats_url)  # raises with the setting named
        return self

    @cached_property
    def nats_servers(self) -> list[str]:
        """``EXPORTS_NATS_URL`` as the list of server URLs every NATS client connects with."""
        return parse_nats_servers(self.nats_url)

    @model_validator(mode="after")
    def _secrets_are_real(self) -> Settings:
        secret = self.jwt_secret.get_secret_value()
        if self.dev_mode:
            if not secret:
                # Dev mode only: a process-local secret, so tokens never outlive the process.
                self.jwt_secret = SecretStr(secrets.token_urlsafe(48))
            return self
        return self

    def require_production_secrets(self) -> None:
        """Refuse to start a service outside dev mode with a placeholder or short JWT secret."""
        if self.dev_mode:
            return
        secret = self.jwt_secret.get_secret_value()
        if secret.lower() in PLACEHOLDER_SECRETS or len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(
                "EXPORTS_JWT_SECRET must be set to a random value of at least "
                f"{MIN_SECRET_LENGTH} characters (or set EXPORTS_DEV_MODE=true for development)"
            )

    @property
    def catalog_url(self) -> str:
        """Where the catalog is read: ``catalog_database_url``, else ``database_url``."""
        return self.catalog_database_url.get_secret_value() or self.database_url

    @property
    def catalog_is_separate(self) -> bool:
        """Whether catalog reads go to another database than the job state (a read replica)."""
        return self.catalog_url != self.database_url

    @cached_property
    def s3_url(self) -> str:
        scheme = "https" if self.s3_secure else "http"
        return f"{scheme}://{self.s3_endpoint}"
