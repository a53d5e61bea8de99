"""A setting that fails at start-up ends it with one sentence naming the setting, exit 2."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from exporter.store.checkpoint import Checkpoint

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


def _without_root_file_access() -> None:
    # CI runs as root, which reads and writes whatever the mode bits say. Dropping the
    # two DAC capabilities from the bounding set before exec makes the child a root that
    # obeys them, as a non-root user would.
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def start(
    tmp_path: Path, *args: str, as_user: bool = False, command: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The exporter with `args` over working defaults; returns once it exits."""
    preexec: Callable[[], None] | None = None
    if as_user and os.geteuid() == 0:
        preexec = _without_root_file_access
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            *command,
            "--letta.url=http://127.0.0.1:9",
            *(() if command else (f"--state.path={tmp_path / 'state.sqlite'}",)),
            *(() if command else ("--web.listen-address=127.0.0.1:0",)),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=preexec,
    )


def one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    """The error line: the last of stderr, and no traceback before it."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_a_port_in_use_names_the_listen_address(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start(tmp_path, f"--web.listen-address=127.0.0.1:{port}")
    assert one_sentence(result) == (
        "letta-exporter: --web.listen-address (LETTA_EXPORTER_WEB_LISTEN_ADDRESS): "
        f"cannot listen on 127.0.0.1:{port}: another process is listening there"
    )


def test_an_unwritable_state_directory_names_the_state_path(tmp_path: Path) -> None:
    directory = tmp_path / "read-only"
    directory.mkdir(mode=0o555)
    result = start(tmp_path, f"--state.path={directory / 'state.sqlite'}", as_user=True)
    assert one_sentence(result) == (
        "letta-exporter: --state.path (LETTA_EXPORTER_STATE_PATH): "
        f"state directory {directory} is not writable (Permission denied)"
    )
    missing = tmp_path / "missing"
    result = start(tmp_path, f"--state.path={missing / 'state.sqlite'}")
    assert one_sentence(result).endswith(f"state directory {missing} does not exist")


def test_an_unwritable_state_file_names_the_state_path(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    Checkpoint(state).close()
    state.chmod(0o444)
    result = start(tmp_path, f"--state.path={state}", as_user=True)
    assert one_sentence(result) == (
        "letta-exporter: --state.path (LETTA_EXPORTER_STATE_PATH): "
        f"state file {state} is not writable (Permission denied)"
    )


def test_a_state_file_held_by_another_exporter_names_the_state_path(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    held = Checkpoint(state)  # the same exclusive lock a running exporter holds
    try:
        result = start(tmp_path, f"--state.path={state}")
    finally:
        held.close()
    assert one_sentence(result) == (
        "letta-exporter: --state.path (LETTA_EXPORTER_STATE_PATH): "
        f"state file {state} is in use by another letta-exporter process"
    )


def test_an_unreadable_key_file_names_the_key_file_setting(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("secret-key\n")
    key_file.chmod(0o000)
    for command in ((), ("check",)):
        result = start(tmp_path, f"--letta.api-key-file={key_file}", as_user=True, command=command)
        line = one_sentence(result)
        assert line.endswith(
            "invalid --letta.api-key-file (LETTA_API_KEY_FILE): "
            f"cannot read {key_file}: Permission denied"
        ), line
        assert "secret-key" not in result.stderr
    missing = tmp_path / "missing-key"
    result = start(tmp_path, f"--letta.api-key-file={missing}")
    assert one_sentence(result).endswith(f"cannot read {missing}: No such file or directory")


def test_an_unreadable_headers_file_names_the_headers_file_setting(tmp_path: Path) -> None:
    headers = tmp_path / "headers"
    headers.write_text("X-Tenant: secret-tenant\n")
    headers.chmod(0o000)
    for command in ((), ("check",)):
        result = start(tmp_path, f"--letta.headers-file={headers}", as_user=True, command=command)
        line = one_sentence(result)
        assert "--letta.headers-file" in line, line
        assert str(headers) in line, line
        assert "secret-tenant" not in result.stderr
    missing = tmp_path / "missing-headers"
    line = one_sentence(start(tmp_path, f"--letta.headers-file={missing}"))
    assert "--letta.headers-file" in line and "No such file or directory" in line, line
