"""Settings for one radpilot installation, read with pydantic-settings.

Precedence, highest first: explicit keyword arguments (the CLI), ``RADPILOT_*`` environment
variables, a ``.env`` file, the config file named by ``RADPILOT_CONFIG`` (YAML or TOML),
then the defaults below.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from radpilot.core.errors import ConfigurationError

__all__ = ["DeidOptions", "Destination", "Settings", "load_settings"]


def _split_list(value: Any) -> Any:
    """Accept ``"A,B"`` from an environment variable as well as a real list."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            return json.loads(stripped)
        return [part.strip() for part in stripped.split(",") if part.strip()]
    return value


class Destination(BaseModel):
    """Where results are delivered: a DICOM node (C-STORE) or a DICOMweb STOW-RS URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    kind: Literal["dicom", "stowrs"] = "dicom"
    ae_title: str = Field("ANY-SCP", min_length=1, max_length=16)
    host: str = "127.0.0.1"
    port: int = Field(104, ge=1, le=65535)
    url: str | None = None  # STOW-RS base URL (…/dicom-web) for kind "stowrs"
    kinds: list[str] = Field(
        default_factory=lambda: ["sr", "seg", "sc", "derived"],
        description="which result objects go there",
    )


class Settings(BaseSettings):
    """Everything an installation can configure.

    Attributes are documented in ``docs/configuration.md``; the environment variable of
    each is its name in upper case with the ``RADPILOT_`` prefix.
    """

    model_config = SettingsConfigDict(
        env_prefix="RADPILOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    data_dir: Path = Path("radpilot-data")
    database_url: str | None = None

    # DICOM receiver
    ae_title: str = Field("RADPILOT", min_length=1, max_length=16)
    dicom_host: str = "0.0.0.0"  # noqa: S104 - a receiver must be reachable by the PACS
    dicom_port: int = Field(11112, ge=0, le=65535)
    http_port: int = Field(8000, ge=0, le=65535)
    allowed_calling_aets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_associations: int = Field(16, ge=1)
    max_pdu_size: int = Field(4_194_304, ge=0)
    network_timeout: float = Field(60.0, gt=0)
    dicom_poll_delay: float = Field(0.0002, gt=0, le=0.1)  # pynetdicom's DUL poll sleep
    receiver_processes: int = Field(1, ge=1, le=64)  # processes sharing the DICOM port
    study_quiet_seconds: float = Field(30.0, gt=0)
    fsync: bool = True
    fsync_directories: bool = False
    min_free_disk_mb: int = Field(256, ge=0)

    # de-identification
    deid_on_intake: bool = False
    deid_key: SecretStr | None = None
    deid_retain_dates: bool = False
    deid_retain_patient_characteristics: bool = False
    deid_retain_device_identity: bool = False
    deid_clean_descriptors: bool = True

    # models, jobs and delivery
    routing_rules: Path | None = None  # YAML; default: <data_dir>/routing.yaml if present
    worker_mode: Literal["embedded", "celery"] = "embedded"
    workers: int = Field(1, ge=0)  # embedded pool size; 0: no in-process worker
    broker_url: str = "redis://127.0.0.1:6379/0"
    job_max_attempts: int = Field(3, ge=1)
    job_retry_seconds: float = Field(5.0, ge=0)  # first backoff; doubles per attempt
    job_lease_seconds: float = Field(
        60.0, gt=0
    )  # a running job without heartbeat this long is re-run
    job_timeout_seconds: float = Field(300.0, gt=0)  # one model call
    batch_size: int = Field(8, ge=1)  # studies per batched forward pass
    job_sweep_seconds: float = Field(30.0, gt=0)  # Celery mode: re-publish due jobs this often
    explain: bool = True  # heatmaps for classifiers
    destinations: Annotated[list[Destination], NoDecode] = Field(default_factory=list)
    delivery_retry_seconds: float = Field(5.0, ge=0)
    delivery_retry_max_seconds: float = Field(300.0, gt=0)
    delivery_keepalive_seconds: float = Field(10.0, ge=0)  # C-STORE association kept open
    http_host: str = "127.0.0.1"

    # web app and API: users, sessions, tokens (docs/web.md, docs/api.md)
    api_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="reader id -> bearer token (JSON object in the env); radiologist role",
    )
    session_idle_minutes: float = Field(30.0, gt=0)  # a session unused this long expires
    session_max_hours: float = Field(12.0, gt=0)  # and every session ends after this
    session_cookie_secure: Literal["auto", "always", "never"] = "auto"  # auto: when https
    signin_max_failures: int = Field(5, ge=1)  # per user name and per client address ...
    signin_window_seconds: float = Field(300.0, gt=0)  # ... in this window, then 429
    max_request_bytes: int = Field(1_048_576, ge=1024)  # larger request bodies get 413
    worklist_patient_names: bool = False  # true: the worklist shows names, not IDs
    events_poll_seconds: float = Field(2.0, gt=0)  # live worklist: how often to look
    hl7_port: int | None = Field(None, ge=0, le=65535)  # MLLP listener for final reports
    # monitoring alerts (docs/monitoring.md)
    alert_rules: Path | None = None  # YAML; default <data dir>/alerts.yaml
    alert_webhook: str | None = None  # new alerts are POSTed here as JSON
    alert_check_seconds: float = Field(300.0, ge=0)  # radpilot serve evaluates rules; 0: never
    alert_smtp_host: str | None = None  # new alerts are also e-mailed through this server
    alert_smtp_port: int = Field(25, ge=1, le=65535)
    alert_smtp_starttls: bool = False
    alert_smtp_user: str | None = None
    alert_smtp_password: SecretStr | None = None
    alert_smtp_from: str = "radpilot@localhost"
    alert_smtp_to: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # embedded: an admin changes model states directly; governed: requests and approvals
    governance: Literal["embedded", "governed"] = "embedded"

    log_level: str = "INFO"

    @field_validator("allowed_calling_aets", "allowed_hosts", "alert_smtp_to", mode="before")
    @classmethod
    def _lists_from_env(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("destinations", mode="before")
    @classmethod
    def _destinations_from_env(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts_are_networks(cls, value: list[str]) -> list[str]:
        for host in value:
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError as exc:
                raise ValueError(
                    f"allowed host {host!r} is not an IP address or network; "
                    "write e.g. 10.0.0.5 or 10.0.0.0/24"
                ) from exc
        return value

    @field_validator("ae_title")
    @classmethod
    def _ae_title_chars(cls, value: str) -> str:
        if value != value.strip() or "\\" in value or not value.isprintable():
            raise ValueError("an AE title is 1-16 printable characters without backslash")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        config = os.environ.get("RADPILOT_CONFIG")
        if config:
            path = Path(config)
            if not path.is_file():
                raise ConfigurationError(
                    f"RADPILOT_CONFIG names {path}, which is not a file; "
                    "point it at a YAML or TOML file or unset it"
                )
            if path.suffix.lower() == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        sources.append(file_secret_settings)
        return tuple(sources)

    # derived places inside the data dir ------------------------------------------------
    @property
    def archive_dir(self) -> Path:
        """Where accepted DICOM files are kept."""
        return self.data_dir / "archive"

    @property
    def quarantine_dir(self) -> Path:
        """Where files held back for review (e.g. burned-in annotation) are kept."""
        return self.data_dir / "quarantine"

    @property
    def reports_dir(self) -> Path:
        """Where generated reports go by default."""
        return self.data_dir / "reports"

    @property
    def models_dir(self) -> Path:
        """Where registered model packages are kept (one folder per name/version)."""
        return self.data_dir / "models"

    @property
    def results_dir(self) -> Path:
        """Where result objects (SR, SEG, key images, reports, heatmaps) are written."""
        return self.data_dir / "results"

    @property
    def alert_rules_path(self) -> Path:
        """The alert rules file in force."""
        return self.alert_rules or self.data_dir / "alerts.yaml"

    @property
    def routing_rules_path(self) -> Path:
        """The routing rules file in force."""
        return self.routing_rules or self.data_dir / "routing.yaml"

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'radpilot.db').resolve()}"

    @property
    def deid_options(self) -> DeidOptions:
        """The PS3.15 options that intake de-identification applies."""
        return DeidOptions(
            retain_dates=self.deid_retain_dates,
            retain_patient_characteristics=self.deid_retain_patient_characteristics,
            retain_device_identity=self.deid_retain_device_identity,
            clean_descriptors=self.deid_clean_descriptors,
        )


class DeidOptions(BaseModel):
    """PS3.15 Annex E profile options (Table E.1-1 columns)."""

    model_config = ConfigDict(frozen=True)

    retain_dates: bool = False
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    clean_descriptors: bool = True


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment and config file, then apply ``overrides``.

    ``None`` values in ``overrides`` are ignored so that unset CLI options fall through.

    Raises
    ------
    ConfigurationError
        If a value is invalid; the message names the setting.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValueError as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from exc
