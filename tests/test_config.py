"""Settings: flags over environment over defaults; one readable sentence on bad values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli.config import FLAGS, ConfigError, Settings, load_settings
from exporter.core.durations import format_duration, parse_duration


def test_defaults_point_at_a_local_letta() -> None:
    settings = load_settings({})
    assert settings.base_url == "http://localhost:8283"
    assert settings.api_key is None
    assert settings.poll_interval == 15.0


def test_environment_is_read_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETTA_BASE_URL", "http://letta:8283/")
    monkeypatch.setenv("LETTA_EXPORTER_POLL_INTERVAL", "1m")
    settings = load_settings({"poll_interval": "5s"})
    assert settings.base_url == "http://letta:8283"
    assert settings.poll_interval == 5.0


def test_api_key_is_secret_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETTA_API_KEY", "very-secret-value")
    settings = load_settings({})
    assert "very-secret-value" not in repr(settings)
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "very-secret-value"


def test_api_key_can_come_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    settings = load_settings({"api_key_file": str(key_file)})
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "from-file"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"poll_interval": "soon"}, "--poll.interval (LETTA_EXPORTER_POLL_INTERVAL)"),
        ({"base_url": "localhost:8283"}, "--letta.url (LETTA_BASE_URL)"),
        ({"user_id": "nobody"}, "--letta.user-id (LETTA_USER_ID)"),
        ({"letta_page_size": "5000"}, "--letta.page-size (LETTA_EXPORTER_LETTA_PAGE_SIZE)"),
        ({"agents_allow": "("}, "--agents.allow (LETTA_EXPORTER_AGENTS_ALLOW)"),
    ],
)
def test_a_bad_value_is_one_sentence_naming_the_setting(
    overrides: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides)
    message = str(info.value)
    assert message.startswith(f"invalid {named}: ")
    assert "\n" not in message


def test_every_flag_maps_to_a_settings_field() -> None:
    assert {flag.field for flag in FLAGS} <= set(Settings.model_fields)


def test_the_command_exits_2_on_a_bad_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--poll.interval", "never"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid --poll.interval (LETTA_EXPORTER_POLL_INTERVAL)" in result.stderr


def test_environment_variables_derive_from_the_flag_names() -> None:
    sdk_names = {"--letta.url": "LETTA_BASE_URL", "--letta.api-key-file": "LETTA_API_KEY_FILE"}
    sdk_names["--letta.user-id"] = "LETTA_USER_ID"
    sdk_names["--letta.project-id"] = "LETTA_PROJECT_ID"
    sdk_names["--letta.project"] = "LETTA_PROJECT"
    for flag in FLAGS:
        derived = "LETTA_EXPORTER_" + flag.flag[2:].replace(".", "_").replace("-", "_").upper()
        assert flag.env == sdk_names.get(flag.flag, derived)


def test_custom_headers_read_the_sdk_format_and_the_file_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # letta-client's LETTA_CUSTOM_HEADERS: "Name: value" lines, split at the first colon.
    monkeypatch.setenv("LETTA_CUSTOM_HEADERS", "X-Gateway: a:b:c\n\n  X-Team :  blue  \n")
    headers_file = tmp_path / "headers"
    headers_file.write_text("# gateway token, rotated by the platform\nx-team: green\n")
    settings = load_settings({"letta_headers_file": str(headers_file)})
    assert {k: v.get_secret_value() for k, v in settings.extra_headers.items()} == {
        "X-Gateway": "a:b:c",
        "x-team": "green",
    }
    assert "a:b:c" not in repr(settings) and "green" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("X-Gateway s3cret-value", "line 1 of LETTA_CUSTOM_HEADERS is not a 'Name: value' header"),
        ("X-Ok: 1\nBad Name: s3cret-value", "line 2 of LETTA_CUSTOM_HEADERS is not"),
        ("Authorization: Bearer s3cret-value", "sets Authorization (set LETTA_API_KEY"),
        ("x-project-id: s3cret-value", "sets X-Project-Id (set LETTA_PROJECT_ID)"),
        ("X-Project: s3cret-value", "sets X-Project (set LETTA_PROJECT)"),
    ],
)
def test_a_bad_custom_header_names_its_line_never_its_value(
    monkeypatch: pytest.MonkeyPatch, text: str, says: str
) -> None:
    monkeypatch.setenv("LETTA_CUSTOM_HEADERS", text)
    with pytest.raises(ConfigError) as info:
        load_settings({})
    assert says in str(info.value)
    assert "s3cret" not in str(info.value)


def test_a_missing_headers_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*nowhere: No such file"):
        load_settings({"letta_headers_file": str(tmp_path / "nowhere")})


def test_project_settings_and_cloud_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETTA_PROJECT_ID", "proj-123")
    settings = load_settings({"base_url": "https://api.letta.com"})
    assert (settings.project_id, settings.project, settings.cloud) == ("proj-123", None, True)
    assert not load_settings({"base_url": "http://letta:8283"}).cloud
    with pytest.raises(ConfigError, match=r"--letta.project \(LETTA_PROJECT\)"):
        load_settings({"project": "a\nb"})


def test_help_lists_the_commands_the_real_variables_and_defaults_as_written() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"], capture_output=True, text=True, check=True
    )
    text = " ".join(result.stdout.split())  # argparse wraps lines at the terminal width
    assert "letta-exporter check" in text and "check --wait" in text
    assert "letta-exporter demo" in text and "simulated Letta" in text
    for variable in ("LETTA_API_KEY ", "LETTA_API_KEY_FILE", "LETTA_BASE_URL", "LETTA_USER_ID"):
        assert variable in text
    for default in ("default 15s", "default 7d", "default 5m", "default true", "default 10s"):
        assert default in text
    assert "default 15.0" not in text and "default True" not in text


def test_durations_are_shown_as_written() -> None:
    assert [format_duration(s) for s in (0, 0.5, 15, 90, 300, 3600, 5400, 604800)] == [
        "0s",
        "500ms",
        "15s",
        "1m30s",
        "5m",
        "1h",
        "1h30m",
        "7d",
    ]
