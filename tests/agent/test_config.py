"""The agent's configuration: a full file parses, and every invalid setting is refused."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from attestd.agent.config import AgentConfig, load_config, parse_config
from attestd.agent.errors import ConfigError
from attestd.evidence import MAX_RUNTIME_LOG_EVENTS

MR_TD = "5a" * 48
XFAM = "e7" * 8

FULL_TOML = f"""
[agent]
state_dir = "/var/lib/attestd-test"
log_level = "debug"

[tee]
backend = "simulated-tdx"

[tee.simulated]
mr_td = "{MR_TD}"
xfam = "{XFAM}"

[listen]
unix_socket = "/run/attestd/test.sock"
unix_socket_mode = 0o600
tcp_address = "0.0.0.0:8443"

[listen.tls]
cert = "/etc/attestd/server.pem"
key = "/etc/attestd/server.key"
client_ca = "/etc/attestd/clients.pem"

[artifacts]
roots = ["/srv/models", "/srv/data"]

[limits]
max_message_bytes = 1048576
max_artifacts_per_call = 8
max_event_content_bytes = 1024
max_log_events_in_evidence = 500
log_page_size = 50
"""


def full() -> dict[str, Any]:
    """A valid configuration touching every option, as tomllib would return it."""
    return {
        "agent": {"state_dir": "/var/lib/attestd-test", "log_level": "debug"},
        "tee": {"backend": "simulated-tdx", "simulated": {"mr_td": MR_TD, "xfam": XFAM}},
        "listen": {
            "unix_socket": "/run/attestd/test.sock",
            "unix_socket_mode": 0o600,
            "tcp_address": "0.0.0.0:8443",
            "tls": {
                "cert": "/etc/attestd/server.pem",
                "key": "/etc/attestd/server.key",
                "client_ca": "/etc/attestd/clients.pem",
            },
        },
        "artifacts": {"roots": ["/srv/models", "/srv/data"]},
        "limits": {
            "max_message_bytes": 1 << 20,
            "max_artifacts_per_call": 8,
            "max_event_content_bytes": 1024,
            "max_log_events_in_evidence": 500,
            "log_page_size": 50,
        },
    }


def minimal() -> dict[str, Any]:
    return {"tee": {"backend": "simulated-tdx"}}


def parse(raw: dict[str, Any], **kwargs: Any) -> AgentConfig:
    return parse_config(raw, base_dir=Path("/etc/attestd"), **kwargs)


def with_value(table_path: str, key: str, value: Any, base: dict[str, Any] | None = None) -> dict:
    """``base`` (default: full()) with ``table_path.key`` set to ``value``."""
    raw = copy.deepcopy(base if base is not None else full())
    table = raw
    for part in table_path.split(".") if table_path else []:
        table = table.setdefault(part, {})
    table[key] = value
    return raw


def refused(raw: dict[str, Any], *needles: str, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as err:
        parse(raw, **kwargs)
    message = str(err.value)
    for needle in needles:
        assert needle in message, message
    assert err.value.reason == "config_invalid"
    return message


# -- valid files --------------------------------------------------------------------


def test_full_config_parses_to_the_values_written(tmp_path: Path) -> None:
    path = tmp_path / "attestd.toml"
    path.write_text(FULL_TOML)
    config = load_config(path)
    assert config == parse(full())
    assert config.state_dir == Path("/var/lib/attestd-test")
    assert config.log_level == "debug"
    assert config.tee.backend == "simulated-tdx"
    assert dict(config.tee.simulated.values) == {
        "mr_td": bytes.fromhex(MR_TD),
        "xfam": bytes.fromhex(XFAM),
    }
    assert config.listen.unix_socket == Path("/run/attestd/test.sock")
    assert config.listen.unix_socket_mode == 0o600
    assert config.listen.tcp_address == "0.0.0.0:8443"
    assert config.listen.tls is not None
    assert config.listen.tls.cert == Path("/etc/attestd/server.pem")
    assert config.listen.tls.key == Path("/etc/attestd/server.key")
    assert config.listen.tls.client_ca == Path("/etc/attestd/clients.pem")
    assert config.artifact_roots == (Path("/srv/models"), Path("/srv/data"))
    assert config.limits.max_message_bytes == 1 << 20
    assert config.limits.max_artifacts_per_call == 8
    assert config.limits.max_event_content_bytes == 1024
    assert config.limits.max_log_events_in_evidence == 500
    assert config.limits.log_page_size == 50


def test_minimal_config_takes_the_documented_defaults() -> None:
    config = parse(minimal())
    assert config.state_dir == Path("/var/lib/attestd")
    assert config.log_level == "info"
    assert dict(config.tee.simulated.values) == {}
    assert config.listen.unix_socket == Path("/run/attestd/attestd.sock")
    assert config.listen.unix_socket_mode == 0o660
    assert config.listen.tcp_address is None
    assert config.listen.tls is None
    assert config.artifact_roots == ()
    assert config.limits.max_message_bytes == 4 << 20
    assert config.limits.max_artifacts_per_call == 64
    assert config.limits.max_event_content_bytes == 64 << 10
    assert config.limits.max_log_events_in_evidence == MAX_RUNTIME_LOG_EVENTS
    assert config.limits.log_page_size == 1000


def test_relative_paths_are_resolved_against_the_config_files_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "attestd.toml"
    path.write_text(
        """
[agent]
state_dir = "state"
[tee]
backend = "simulated-tdx"
[listen]
unix_socket = "run/attestd.sock"
tcp_address = "localhost:9000"
[listen.tls]
cert = "tls/server.pem"
key = "../secret/server.key"
client_ca = "/abs/ca.pem"
[artifacts]
roots = ["models", "/srv/data"]
"""
    )
    config = load_config(path)
    base = folder.resolve()
    assert config.state_dir == base / "state"
    assert config.listen.unix_socket == base / "run" / "attestd.sock"
    assert config.listen.tls is not None
    assert config.listen.tls.cert == base / "tls" / "server.pem"
    assert config.listen.tls.key == base.parent / "secret" / "server.key"
    assert config.listen.tls.client_ca == Path("/abs/ca.pem")
    assert config.artifact_roots == (base / "models", Path("/srv/data"))


def test_empty_unix_socket_with_tcp_listens_on_tcp_only() -> None:
    config = parse(with_value("listen", "unix_socket", ""))
    assert config.listen.unix_socket is None
    assert config.listen.tcp_address == "0.0.0.0:8443"


@pytest.mark.parametrize("address", ["localhost:1", "10.0.0.1:65535", "[::1]:8443"])
def test_host_port_addresses_are_accepted(address: str) -> None:
    assert parse(with_value("listen", "tcp_address", address)).listen.tcp_address == address


# -- unknown keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "name"),
    [
        ("", "config.colour"),
        ("agent", "config.agent.colour"),
        ("tee", "config.tee.colour"),
        ("tee.simulated", "config.tee.simulated.colour"),
        ("listen", "config.listen.colour"),
        ("listen.tls", "config.listen.tls.colour"),
        ("artifacts", "config.artifacts.colour"),
        ("limits", "config.limits.colour"),
    ],
)
def test_unknown_key_at_each_level_is_refused_by_name(table: str, name: str) -> None:
    refused(with_value(table, "colour", "blue"), f"unknown option {name}")


def test_misspelt_security_setting_is_not_ignored() -> None:
    raw = full()
    raw["listen"]["tls"]["client_cas"] = raw["listen"]["tls"].pop("client_ca")
    refused(raw, "config.listen.tls.client_ca is required")


# -- types --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("limits", "log_page_size", True),  # bool is an int in Python; not here
        ("limits", "max_message_bytes", False),
        ("listen", "unix_socket_mode", True),
        ("limits", "max_artifacts_per_call", 8.0),
        ("limits", "max_artifacts_per_call", "8"),
        ("artifacts", "roots", "/srv/models"),  # a string is not a list of one
        ("agent", "state_dir", 5),
        ("agent", "log_level", ["info"]),
        ("tee", "backend", True),
        ("tee.simulated", "mr_td", 5),
        ("listen", "tcp_address", 8443),
        ("listen", "tls", "/etc/attestd/tls"),
        ("", "limits", [1, 2]),
        ("", "agent", "x"),
    ],
)
def test_wrong_type_is_refused_by_name(table: str, key: str, value: Any) -> None:
    where = f"config.{table}.{key}" if table else f"config.{key}"
    refused(with_value(table, key, value), where, "wrong type")


def test_list_with_a_non_string_is_refused() -> None:
    refused(
        with_value("artifacts", "roots", ["/srv/models", 3]),
        "config.artifacts.roots must be a list of strings",
    )


def test_unknown_log_level_is_refused() -> None:
    refused(with_value("agent", "log_level", "verbose"), "config.agent.log_level")


# -- ranges -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("limits", "max_message_bytes", (64 << 10) - 1),
        ("limits", "max_message_bytes", (64 << 20) + 1),
        ("limits", "max_artifacts_per_call", 0),
        ("limits", "max_artifacts_per_call", 4097),
        ("limits", "max_event_content_bytes", 0),
        ("limits", "max_event_content_bytes", (64 << 10) + 1),
        ("limits", "max_log_events_in_evidence", 0),
        ("limits", "max_log_events_in_evidence", MAX_RUNTIME_LOG_EVENTS + 1),
        ("limits", "log_page_size", 0),
        ("limits", "log_page_size", 100_001),
        ("listen", "unix_socket_mode", -1),
        ("listen", "unix_socket_mode", 0o1000),
        ("evidence", "signing_percent", 0),
        ("evidence", "signing_percent", 101),
    ],
)
def test_out_of_range_integer_is_refused(table: str, key: str, value: int) -> None:
    refused(with_value(table, key, value), f"config.{table}.{key} must be between")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_message_bytes", 64 << 10),
        ("max_message_bytes", 64 << 20),
        ("max_event_content_bytes", 64 << 10),
        ("log_page_size", 1),
        ("max_log_events_in_evidence", MAX_RUNTIME_LOG_EVENTS),
    ],
)
def test_range_bounds_are_inclusive(key: str, value: int) -> None:
    assert getattr(parse(with_value("limits", key, value)).limits, key) == value


@pytest.mark.parametrize("percent", [1, 100])
def test_signing_percent_takes_its_bounds_and_defaults_to_60(percent: int) -> None:
    assert parse(minimal()).evidence.signing_percent == 60
    assert parse(with_value("evidence", "signing_percent", percent)).evidence.signing_percent == (
        percent
    )


# -- [tee] --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["zz" * 48, "5a" * 47 + "5", "0x" + "5a" * 47])
def test_simulated_value_that_is_not_hex_is_refused(text: str) -> None:
    refused(with_value("tee.simulated", "mr_td", text), "config.tee.simulated.mr_td is not hex")


@pytest.mark.parametrize(
    ("key", "size", "given"),
    [("mr_td", 48, 47), ("rtmr2", 48, 49), ("xfam", 8, 48), ("tee_tcb_svn", 16, 8)],
)
def test_simulated_value_of_the_wrong_length_is_refused(key: str, size: int, given: int) -> None:
    refused(
        with_value("tee.simulated", key, "ab" * given),
        f"config.tee.simulated.{key} must be {size} bytes, got {given}",
    )


def test_every_simulated_measurement_is_accepted_at_its_size() -> None:
    sizes = {
        "mr_td": 48,
        "rtmr0": 48,
        "rtmr1": 48,
        "rtmr2": 48,
        "mr_config_id": 48,
        "mr_owner": 48,
        "mr_owner_config": 48,
        "mr_seam": 48,
        "td_attributes": 8,
        "xfam": 8,
        "tee_tcb_svn": 16,
    }
    raw = with_value("tee", "simulated", {k: "AB" * n for k, n in sizes.items()})
    values = parse(raw).tee.simulated.values
    assert dict(values) == {k: b"\xab" * n for k, n in sizes.items()}


def test_unknown_backend_is_refused_with_the_known_ones() -> None:
    refused(with_value("tee", "backend", "tdx-magic"), "'tdx-magic'", "simulated-tdx")


def test_missing_backend_is_refused() -> None:
    refused({}, "config.tee.backend is required")


def test_tee_override_of_the_wrong_type_in_the_file_is_still_refused() -> None:
    refused(
        with_value("tee", "backend", 1),
        "config.tee.backend",
        "wrong type",
        tee_override="simulated-tdx",
    )


def test_tee_override_replaces_a_missing_backend() -> None:
    assert parse({}, tee_override="simulated-tdx").tee.backend == "simulated-tdx"


def test_unknown_tee_override_is_refused() -> None:
    refused(minimal(), "'no-such-tee'", tee_override="no-such-tee")


def test_tee_override_takes_precedence_over_the_files_backend() -> None:
    raw = with_value("tee", "backend", "tdx")
    del raw["tee"]["simulated"]
    assert parse(raw).tee.backend == "tdx"
    assert parse(raw, tee_override="simulated-tdx").tee.backend == "simulated-tdx"


def test_simulated_values_for_a_hardware_backend_are_refused() -> None:
    raw = with_value("tee", "backend", "tdx")
    with pytest.raises(ConfigError, match=r"config\.tee\.simulated"):
        parse(raw)


def test_simulated_snp_takes_its_own_values() -> None:
    raw = with_value("tee", "backend", "simulated-snp")
    raw["tee"]["simulated"] = {"measurement": "ab" * 48, "host_data": "cd" * 32, "guest_svn": 3}
    values = parse(raw).tee.simulated.values
    assert values == {
        "measurement": bytes.fromhex("ab" * 48),
        "host_data": bytes.fromhex("cd" * 32),
        "guest_svn": 3,
    }
    raw["tee"]["simulated"] = {"mr_td": "ab" * 48}
    with pytest.raises(ConfigError, match="mr_td"):
        parse(raw)


# -- [listen] -----------------------------------------------------------------------


def test_tcp_address_without_tls_is_refused() -> None:
    raw = full()
    del raw["listen"]["tls"]
    refused(raw, "config.listen.tcp_address needs [listen.tls]")


@pytest.mark.parametrize(
    "address", ["8443", "localhost", ":8443", "localhost:", "localhost:0", "host:65536", "h:x1"]
)
def test_address_that_is_not_host_port_is_refused(address: str) -> None:
    refused(with_value("listen", "tcp_address", address), repr(address), "is not HOST:PORT")


def test_neither_unix_socket_nor_tcp_is_refused() -> None:
    refused(
        with_value("listen", "unix_socket", "", minimal()),
        "config.listen has neither unix_socket nor tcp_address",
    )


@pytest.mark.parametrize("key", ["cert", "key", "client_ca"])
def test_tls_without_each_file_is_refused(key: str) -> None:
    raw = full()
    del raw["listen"]["tls"][key]
    refused(raw, f"config.listen.tls.{key} is required")


# -- reading the file ---------------------------------------------------------------


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_directory_instead_of_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_unreadable_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "attestd.toml"
    path.write_text(FULL_TOML)

    real_open = os.open

    def denied(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(name) == path:
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, flags, *args, **kwargs)

    # chmod 0 does not stop root, so the refusal is simulated where it happens.
    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(ConfigError, match=r"cannot read .*Permission denied"):
        load_config(path)


@pytest.mark.parametrize("content", [b"[tee\nbackend = 1", b"a = ", b"\xff\xfe[tee]"])
def test_invalid_toml_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "attestd.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(path)


def test_load_config_passes_tee_override_on(tmp_path: Path) -> None:
    path = tmp_path / "attestd.toml"
    path.write_text("[agent]\nlog_level = 'warning'\n")
    config = load_config(path, tee_override="simulated-tdx")
    assert config.tee.backend == "simulated-tdx"
    assert config.log_level == "warning"


def test_vmpl_is_for_sev_snp_only() -> None:
    raw = with_value("tee", "backend", "sev-snp")
    del raw["tee"]["simulated"]
    raw["tee"]["vmpl"] = 2
    assert parse(raw).tee.vmpl == 2
    raw["tee"]["vmpl"] = 4
    with pytest.raises(ConfigError, match="vmpl"):
        parse(raw)
    raw = with_value("tee", "backend", "simulated-tdx")
    raw["tee"]["vmpl"] = 1
    with pytest.raises(ConfigError, match="sev-snp backend only"):
        parse(raw)


# -- hostile files (issue 10: deep nesting, FIFOs, huge files) ------------------------

DEEP_TOML = "a = " + "[" * 3000 + "]" * 3000 + "\n"


def test_toml_nested_3000_levels_is_a_config_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "attestd.toml"
    path.write_text(DEEP_TOML)
    with pytest.raises(ConfigError, match="nested too deeply") as caught:
        load_config(path)
    assert caught.value.reason == "config_invalid"
    assert str(path) in str(caught.value)


def test_attestd_refuses_to_start_on_a_deeply_nested_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from attestd.agent.main import main

    path = tmp_path / "attestd.toml"
    path.write_text(DEEP_TOML)
    assert main(["--config", str(path)]) != 0
    assert '"reason": "config_invalid"' in capsys.readouterr().err


def test_a_fifo_as_config_is_refused_without_blocking(tmp_path: Path) -> None:
    from tests.test_shared_files import make_fifo, within

    fifo = make_fifo(tmp_path / "attestd.toml")
    with pytest.raises(ConfigError, match="FIFO, not a regular file") as caught:
        within(10, lambda: load_config(fifo))
    assert caught.value.reason == "config_invalid"


def test_an_oversize_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "attestd.toml"
    path.write_bytes(b"#" * ((1 << 20) + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path)


# -- [pipeline]: who may use the Unix socket ------------------------------------------


def test_pipeline_allow_lists_default_to_anyone() -> None:
    config = parse(minimal())
    assert config.pipeline.allowed_uids == frozenset()
    assert config.pipeline.allowed_gids == frozenset()


def test_pipeline_allow_lists_parse_to_sets_of_ids() -> None:
    raw = with_value("pipeline", "allowed_uids", [1000, 0, 1000, 4294967294], minimal())
    raw = with_value("pipeline", "allowed_gids", [997], raw)
    config = parse(raw)
    assert config.pipeline.allowed_uids == frozenset({0, 1000, 4294967294})
    assert config.pipeline.allowed_gids == frozenset({997})


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("allowed_uids", 1000, "config.pipeline.allowed_uids has the wrong type (int)"),
        ("allowed_uids", "1000", "config.pipeline.allowed_uids has the wrong type (str)"),
        ("allowed_uids", ["1000"], "config.pipeline.allowed_uids[0] must be an integer"),
        ("allowed_gids", [1, True], "config.pipeline.allowed_gids[1] must be an integer"),
        ("allowed_gids", [1.5], "config.pipeline.allowed_gids[0] must be an integer"),
        ("allowed_uids", [-1], "config.pipeline.allowed_uids[0] must be between 0 and 4294967294"),
        ("allowed_gids", [2**32 - 1], "allowed_gids[0] must be between 0 and 4294967294"),
        ("allowed_users", [1], "unknown option config.pipeline.allowed_users"),
    ],
)
def test_a_bad_pipeline_allow_list_is_refused(key: str, value: Any, needle: str) -> None:
    refused(with_value("pipeline", key, value, minimal()), needle)


def test_an_allow_list_without_a_unix_socket_is_refused() -> None:
    raw = with_value("listen", "unix_socket", "", full())
    raw = with_value("pipeline", "allowed_gids", [997], raw)
    refused(raw, "apply to the Unix socket", "config.listen.unix_socket is empty")
    raw["pipeline"]["allowed_gids"] = []
    assert parse(raw).listen.unix_socket is None  # empty lists say nothing: accepted
