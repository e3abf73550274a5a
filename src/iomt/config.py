"""One validated settings object, read from the environment (``IOMT_*``) and ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Platform settings. Every field can be set with an ``IOMT_<NAME>`` environment variable.

    The defaults are the embedded ones: a SQLite file in the data dir, the MQTT broker running
    inside the process, the API on localhost.
    """

    model_config = SettingsConfigDict(env_prefix="IOMT_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path(".iomt"), description="Database, images and keys.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/iomt.db. "
        "For PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )
    mqtt_url: str | None = Field(
        default=None,
        description="External broker, e.g. mqtt://127.0.0.1:1883. Unset: embedded broker.",
    )
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=0, description="Embedded broker port; 0 picks a free one.")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    secret_key: SecretStr | None = Field(
        default=None,
        description="JWT signing key; default: generated once and kept in the data dir.",
    )
    access_token_minutes: int = 15
    session_max_hours: float = Field(
        default=12.0,
        gt=0,
        description="A dashboard sign-in is renewed while in use, for at most this long.",
    )
    login_max_failures: int = Field(
        default=5, ge=1, description="Failed sign-ins per user name that lock it for a while."
    )
    login_max_failures_per_address: int = Field(
        default=50, ge=1, description="Failed sign-ins per client address that lock it."
    )
    login_lock_seconds: int = Field(
        default=300, ge=1, description="Sliding window of both sign-in limits, in seconds."
    )
    triage_window_minutes: int = 15
    models_dir: Path | None = Field(
        default=None, description="Shipped ONNX models; default: the repository's models/."
    )
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "iomt@localhost"
    alert_webhook_urls: list[str] = Field(
        default_factory=list, description='Alert webhooks, JSON list: ["https://..."].'
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key signing webhook bodies (X-Iomt-Signature)."
    )
    max_upload_bytes: int = 32 * 1024 * 1024
    log_level: str = "INFO"

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file inside the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'iomt.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (read once from the environment)."""
    return Settings()
