"""The web config file's fields, as the exporter-toolkit format defines them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from exporter.core.durations import parse_duration
from exporter.web.basic_auth import BcryptHash

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "RequireClientCert",  # the toolkit's old spelling of RequireAnyClientCert
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
GoDuration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class _Strict(BaseModel):
    # Unknown keys are refused, as Go's yaml.UnmarshalStrict does in the toolkit: a typo
    # like `basic_auth_user` must not silently leave /metrics open.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TLSServerConfig(_Strict):
    """`tls_server_config`."""

    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    client_auth_type: ClientAuthType | None = None
    client_ca_file: str | None = None
    client_allowed_sans: list[str] | None = None
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    cipher_suites: list[str] | None = None
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] | None = None

    @property
    def enabled(self) -> bool:
        """Whether TLS is on: the toolkit's rule, any certificate or client-auth setting."""
        return any(
            value
            for value in (
                self.cert,
                self.key,
                self.client_ca,
                self.cert_file,
                self.key_file,
                self.client_auth_type,
                self.client_ca_file,
            )
        )


class HTTPServerConfig(_Strict):
    """`http_server_config`."""

    http2: bool = True
    headers: dict[str, str] | None = None


class RateLimitConfig(_Strict):
    """`rate_limit`: a token bucket over all requests (0s interval: off)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    interval: GoDuration = 0.0
    burst: int = Field(0, ge=0)


class WebConfigFile(_Strict):
    """The whole file."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig | None = None
    basic_auth_users: dict[str, BcryptHash] | None = None
    auth_excluded_paths: list[str] | None = None
    rate_limit: RateLimitConfig | None = None
