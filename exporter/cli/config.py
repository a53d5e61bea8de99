"""Settings, read and validated once: flags override environment variables override defaults.

Every flag has one environment variable: `--poll.interval` is
`LETTA_EXPORTER_POLL_INTERVAL`. The Letta connection uses the names Letta's own SDKs use
(`LETTA_BASE_URL`, `LETTA_API_KEY`, `LETTA_CUSTOM_HEADERS`). The API key and custom headers
have no flag, so they never show in `ps`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from exporter.core.durations import format_duration, parse_duration
from exporter.letta.headers import HeaderError, merge, parse_headers, read_headers_file

ENV_PREFIX: Final = "LETTA_EXPORTER_"
CLOUD_HOSTS: Final = ("api.letta.com",)


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


# The user:password@ part of a URL, a credential: never shown.
_USERINFO: Final = re.compile(r"(?<=://)[^@/\s]*@")


def without_userinfo(url: str) -> str:
    """`url` without its user:password@ part."""
    return _USERINFO.sub("", url, count=1)


class Settings(BaseSettings):
    """Validated configuration of one exporter process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", populate_by_name=True
    )

    base_url: str = Field(
        "http://localhost:8283", validation_alias=AliasChoices("base_url", "LETTA_BASE_URL")
    )
    api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("api_key", "LETTA_API_KEY")
    )
    api_key_file: Path | None = Field(
        None, validation_alias=AliasChoices("api_key_file", "LETTA_API_KEY_FILE")
    )
    user_id: str | None = Field(None, validation_alias=AliasChoices("user_id", "LETTA_USER_ID"))
    # letta-client's `project_id` and deprecated `project` options, sent as X-Project-Id
    # and X-Project; the SDKs have no variables for them, these names follow LETTA_*.
    project_id: str | None = Field(
        None, validation_alias=AliasChoices("project_id", "LETTA_PROJECT_ID")
    )
    project: str | None = Field(None, validation_alias=AliasChoices("project", "LETTA_PROJECT"))
    custom_headers: SecretStr | None = Field(
        None, validation_alias=AliasChoices("custom_headers", "LETTA_CUSTOM_HEADERS")
    )
    letta_headers_file: Path | None = None
    letta_timeout: PositiveDuration = 10.0
    letta_retries: int = Field(3, ge=0, le=10)
    letta_max_response_bytes: int = Field(32 * 1024 * 1024, ge=64 * 1024)
    letta_page_size: int = Field(1000, ge=1, le=1000)
    poll_interval: PositiveDuration = 15.0
    poll_lookback: Duration = 300.0
    poll_max_pages: int = Field(100, ge=1)
    runs_grace_period: Duration = 5.0
    runs_callback_wait: Duration = 30.0
    runs_stale_after: PositiveDuration = 3600.0
    runs_forget_after: PositiveDuration = 7 * 86400.0
    runs_max_open: int = Field(100_000, ge=1)
    backfill: Duration | None = None
    web_listen_address: str = ":9834"
    web_config_file: Path | None = None
    # Open by default: kubelet httpGet probes cannot send basic-auth credentials, and the
    # two endpoints reveal no metric data, only whether the exporter is alive and ready.
    web_health_open: bool = True
    state_path: Path = Path("letta-exporter.sqlite")
    agents_allow: str | None = None
    agents_deny: str | None = None
    agents_label_limit: int = Field(500, ge=1)
    agents_names: bool = True
    models_label_limit: int = Field(100, ge=1)
    tools_label_limit: int = Field(200, ge=1)
    enrich_usage: bool = True
    enrich_steps: bool = True
    enrich_metrics: bool = True
    enrich_step_timings: bool = False
    enrich_concurrency: int = Field(8, ge=1, le=256)
    enrich_max_attempts: int = Field(5, ge=1, le=50)
    letta_rate_limit: float = Field(50.0, ge=0)
    cost_price_file: Path | None = None
    traces_settle_delay: Duration = 20.0
    traces_max_pending: int = Field(10_000, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    _extra_headers: dict[str, SecretStr] = PrivateAttr(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError(f"{without_userinfo(value)!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("user_id")
    @classmethod
    def _letta_user_id(cls, value: str | None) -> str | None:
        # Letta answers 400 to anything else (letta-runs-api.md §1.2); fail at start instead.
        if value is not None and not re.fullmatch(r"user-[0-9a-f-]{36}", value):
            raise ValueError(f"{value!r} is not a Letta user id like user-<uuid4>")
        return value

    @field_validator("api_key_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        # Checked here, not only where the key is read, so the error names this setting.
        if value is not None:
            _read_key(value)
        return value

    @field_validator("project_id", "project")
    @classmethod
    def _header_value(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or re.search(r"[\x00-\x1f\x7f]", value)):
            raise ValueError(f"{value!r} cannot be sent as a header value")
        return value.strip() if value is not None else None

    @field_validator("agents_allow", "agents_deny")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
        return value

    @field_validator("web_listen_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not [host]:port")
        return value

    @model_validator(mode="after")
    def _timings_need_steps(self) -> Settings:
        if self.enrich_step_timings and not self.enrich_steps:
            raise ValueError("--enrich.step-timings needs --enrich.steps (it reads step ids)")
        return self

    @model_validator(mode="after")
    def _key_from_file(self) -> Settings:
        if self.api_key_file is not None:
            if self.api_key is not None:
                raise ValueError("set LETTA_API_KEY or LETTA_API_KEY_FILE, not both")
            key = _read_key(self.api_key_file)
            object.__setattr__(self, "api_key", SecretStr(key) if key else None)
        return self

    @field_validator("custom_headers", "letta_headers_file")
    @classmethod
    def _parsable_headers(cls, value: SecretStr | Path | None) -> SecretStr | Path | None:
        # Checked per field, so the error names the variable or flag (values never shown).
        _headers_from(value)
        return value

    @model_validator(mode="after")
    def _custom_headers(self) -> Settings:
        # The file wins over the variable: it is the deployment's own, mounted secret.
        self._extra_headers = merge(
            _headers_from(self.custom_headers), _headers_from(self.letta_headers_file)
        )
        return self

    @model_validator(mode="after")
    def _one_authorization(self) -> Settings:
        # httpx sends a URL's user:password as basic auth, the key as a bearer token: both
        # are the Authorization header, and the request would fail on every poll.
        if _USERINFO.search(self.base_url) and self.api_key is not None:
            raise ValueError(
                "LETTA_BASE_URL (--letta.url) carries a user and password and an API key is "
                "set: both would be the Authorization header; keep one"
            )
        return self

    @property
    def display_url(self) -> str:
        """The base URL as logs and errors show it: without a user or password."""
        return without_userinfo(self.base_url)

    @property
    def extra_headers(self) -> dict[str, SecretStr]:
        """Headers from LETTA_CUSTOM_HEADERS and --letta.headers-file (the file wins)."""
        return dict(self._extra_headers)

    @property
    def cloud(self) -> bool:
        """True when the URL is Letta Cloud's API (the key is an API key, not a password)."""
        host = self.base_url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0].lower()
        return host in CLOUD_HOSTS

    @property
    def enrich_endpoints(self) -> tuple[str, ...]:
        """The enrichment endpoints switched on."""
        wanted = {
            "usage": self.enrich_usage,
            "steps": self.enrich_steps,
            "metrics": self.enrich_metrics,
            "step_timings": self.enrich_step_timings,
        }
        return tuple(name for name, on in wanted.items() if on)

    @property
    def listen_host_port(self) -> tuple[str, int]:
        """(host, port); an empty host means all interfaces."""
        host, _, port = self.web_listen_address.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


def _read_key(path: Path) -> str:
    """The key in LETTA_API_KEY_FILE, stripped; ValueError when the file cannot be read."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


def _headers_from(source: SecretStr | Path | None) -> dict[str, SecretStr]:
    """The headers of LETTA_CUSTOM_HEADERS (text) or --letta.headers-file (a path)."""
    try:
        if isinstance(source, Path):
            return read_headers_file(source)
        if source is not None:
            return parse_headers(source.get_secret_value(), "LETTA_CUSTOM_HEADERS")
    except HeaderError as exc:
        raise ValueError(str(exc)) from None
    return {}


@dataclass(frozen=True, slots=True)
class Flag:
    """One command-line flag and the settings field it sets."""

    flag: str
    field: str
    help: str

    @property
    def env(self) -> str:
        """The environment variable read when the flag is absent."""
        alias = Settings.model_fields[self.field].validation_alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[-1])
        return ENV_PREFIX + self.field.upper()


FLAGS: Final = (
    Flag("--letta.url", "base_url", "Letta server root URL"),
    Flag("--letta.api-key-file", "api_key_file", "file holding the Letta API key or password"),
    Flag("--letta.user-id", "user_id", "actor for self-hosted servers (sent as user_id header)"),
    Flag("--letta.project-id", "project_id", "Letta Cloud project id (sent as X-Project-Id)"),
    Flag("--letta.project", "project", "Letta Cloud project slug, deprecated (sent as X-Project)"),
    Flag(
        "--letta.headers-file",
        "letta_headers_file",
        "file of extra request headers, one 'Name: value' a line (like LETTA_CUSTOM_HEADERS)",
    ),
    Flag("--letta.timeout", "letta_timeout", "timeout of one HTTP request"),
    Flag("--letta.retries", "letta_retries", "retries of a failed request (5xx, 429, timeouts)"),
    Flag("--letta.max-response-bytes", "letta_max_response_bytes", "largest response accepted"),
    Flag("--letta.page-size", "letta_page_size", "runs per list request (1-1000)"),
    Flag("--poll.interval", "poll_interval", "time between poll cycles"),
    Flag("--poll.lookback", "poll_lookback", "how far behind the newest run each cycle re-reads"),
    Flag("--poll.max-pages", "poll_max_pages", "list pages per cycle; the rest waits for the next"),
    Flag("--runs.grace-period", "runs_grace_period", "wait after a run ends before counting it"),
    Flag("--runs.callback-wait", "runs_callback_wait", "extra wait for a run's callback result"),
    Flag("--runs.stale-after", "runs_stale_after", "open runs older than this count as stale"),
    Flag("--runs.forget-after", "runs_forget_after", "stop following open runs older than this"),
    Flag("--runs.max-open", "runs_max_open", "most open runs followed at once"),
    Flag("--backfill", "backfill", "on first start, also count runs created this far back"),
    Flag("--web.listen-address", "web_listen_address", "address of /metrics"),
    Flag(
        "--web.config.file",
        "web_config_file",
        "exporter-toolkit web config (YAML): TLS and basic auth for the endpoints",
    ),
    Flag(
        "--web.health-open",
        "web_health_open",
        "leave /healthz and /readyz outside basic auth (true/false)",
    ),
    Flag("--state.path", "state_path", "SQLite file holding counters and positions"),
    Flag("--agents.allow", "agents_allow", "regex of agent ids to include"),
    Flag("--agents.deny", "agents_deny", "regex of agent ids to exclude"),
    Flag("--agents.label-limit", "agents_label_limit", "distinct agent label values"),
    Flag(
        "--agents.names",
        "agents_names",
        "read agent names from the agents list for letta_agent_info (true/false)",
    ),
    Flag("--models.label-limit", "models_label_limit", "distinct model label values"),
    Flag("--tools.label-limit", "tools_label_limit", "distinct tool label values"),
    Flag(
        "--enrich.usage",
        "enrich_usage",
        "fetch /usage of each finished run when /steps did not answer (true/false)",
    ),
    Flag("--enrich.steps", "enrich_steps", "fetch /steps: tokens by model, step counts"),
    Flag("--enrich.metrics", "enrich_metrics", "fetch tools used: /metrics, else messages"),
    Flag("--enrich.step-timings", "enrich_step_timings", "fetch each step's timings"),
    Flag("--enrich.concurrency", "enrich_concurrency", "runs enriched at once"),
    Flag("--enrich.max-attempts", "enrich_max_attempts", "tries before a detail is given up"),
    Flag("--letta.rate-limit", "letta_rate_limit", "most requests per second to Letta (0: no cap)"),
    Flag("--cost.price-file", "cost_price_file", "TOML/YAML model prices for the cost metric"),
    Flag(
        "--traces.settle-delay",
        "traces_settle_delay",
        "wait after a run ends before reading its /trace (spans reach ClickHouse late)",
    ),
    Flag(
        "--traces.max-pending",
        "traces_max_pending",
        "runs whose spans may wait for export; beyond it the oldest are dropped",
    ),
    Flag("--log.level", "log_level", "debug, info, warning or error"),
    Flag("--log.format", "log_format", "text or json"),
)
_BY_FIELD: Final = {flag.field: flag for flag in FLAGS}


def shown_default(field: str) -> str | None:
    """A setting's default as a user writes it (`15s`, `7d`, `true`); None: no default."""
    info = Settings.model_fields[field]
    default = info.default
    if default is None:
        return None
    if isinstance(default, bool):
        return "true" if default else "false"
    if any(getattr(meta, "func", None) is parse_duration for meta in info.metadata):
        return format_duration(float(default))
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


class ConfigError(Exception):
    """A setting is invalid; the message is one sentence naming it."""


def setting_error(field: str, problem: str) -> ConfigError:
    """A start-up problem caused by one setting, as one sentence naming its flag and
    variable (a port in use, an unwritable state directory)."""
    flag = _BY_FIELD[field]
    return ConfigError(f"{flag.flag} ({flag.env}): {problem}")


def load_settings(overrides: dict[str, Any]) -> Settings:
    """Build Settings from flag values (by field name) over the environment."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """The first validation error as one sentence naming the flag and variable."""
    error = exc.errors(include_url=False)[0]
    loc = error.get("loc", ())
    name = str(loc[0]) if loc else ""
    field = next((f for f, info in Settings.model_fields.items() if _matches(name, f, info)), "")
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if field in _BY_FIELD:
        flag = _BY_FIELD[field]
        return f"invalid {flag.flag} ({flag.env}): {message}"
    if field == "api_key":
        return f"invalid LETTA_API_KEY: {message}"
    if field == "custom_headers":
        return f"invalid LETTA_CUSTOM_HEADERS: {message}"
    if not field:
        return f"invalid configuration: {message}"
    return f"invalid {ENV_PREFIX}{field.upper()}: {message}"


def _matches(name: str, field: str, info: Any) -> bool:
    if name == field:
        return True
    alias = info.validation_alias
    return isinstance(alias, AliasChoices) and name in alias.choices
