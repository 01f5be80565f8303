from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from oore import __version__
from oore.config import DEFAULT_CORS_ORIGINS, ConfigError, settings_from_argv


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OORED_LISTEN_ADDR",
        "OORED_DATA_DIR",
        "OORE_DATA_DIR",
        "OORED_DATABASE_URL",
        "OORE_CORS_ORIGINS",
        "OORE_CORS_ORIGIN",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = settings_from_argv([])
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8787)
    assert settings.database_url is None
    assert settings.cors_origins == DEFAULT_CORS_ORIGINS
    assert settings.data_dir.name == "oore"


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OORED_LISTEN_ADDR", "0.0.0.0:9000")
    monkeypatch.setenv("OORED_DATA_DIR", "/env/dir")
    assert settings_from_argv([]).listen == "0.0.0.0:9000"
    settings = settings_from_argv(["--listen", "127.0.0.1:0", "--data-dir", str(tmp_path)])
    assert settings.listen_port == 0 and settings.data_dir == tmp_path


def test_cors_origin_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OORE_CORS_ORIGINS", raising=False)
    monkeypatch.setenv("OORE_CORS_ORIGIN", "https://one.example")
    assert settings_from_argv([]).cors_origins == ("https://one.example",)
    monkeypatch.setenv(
        "OORE_CORS_ORIGINS", "https://a.example, https://b.example/\nhttps://a.example"
    )
    assert settings_from_argv([]).cors_origins == ("https://a.example", "https://b.example")


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("OORED_LISTEN_ADDR", "nonsense", "HOST:PORT"),
        ("OORED_LISTEN_ADDR", "127.0.0.1:70000", "0..65535"),
        ("OORED_DATABASE_URL", "mysql://x", "postgresql://"),
        ("OORE_CORS_ORIGINS", "not-an-origin", "scheme://"),
        ("OORE_PUBLIC_URL", "ftp://ci.example", "http(s)://"),
        ("OORE_PUBLIC_URL", "https://user@ci.example", "without credentials"),
        ("OORE_ARTIFACT_DELIVERY_URL", "ftp://dl.example", "http(s)://"),
        ("OORED_ARTIFACT_TTL_DAYS", "0", "greater than or equal to 1"),
        ("OORED_LOG_FORMAT", "xml", "must be text or json, got 'xml'"),
        ("OORED_ACCESS_LOG", "maybe", "valid boolean"),
        ("OORE_APP_STORE_CONNECT_API_BASE_URL", "ftp://apple", "must be http(s)://"),
    ],
)
def test_bad_values_give_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        settings_from_argv([])
    message = str(caught.value)
    assert fragment in message and "\n" not in message
    assert variable in message


def test_artifact_storage_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OORE_PUBLIC_URL", " https://ci.example/ ")
    monkeypatch.setenv("OORE_ARTIFACT_DELIVERY_URL", "https://dl.example/")
    monkeypatch.setenv("OORED_ARTIFACT_TTL_DAYS", "30")
    monkeypatch.setenv("OORE_S3_BUCKET", "builds")
    monkeypatch.setenv("OORE_S3_ENDPOINT", "https://s3.example")
    monkeypatch.setenv("OORE_S3_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hush")
    settings = settings_from_argv([])
    assert settings.public_url == "https://ci.example"
    assert settings.artifact_delivery_url == "https://dl.example"
    assert settings.artifact_ttl_days == 30
    assert (settings.s3_bucket, settings.s3_endpoint, settings.s3_region) == (
        "builds",
        "https://s3.example",
        "eu-west-1",
    )
    assert settings.aws_secret_access_key is not None
    assert settings.aws_secret_access_key.get_secret_value() == "hush"
    assert "hush" not in repr(settings)


def test_the_warpgate_ticket_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from_argv([]).warpgate_ticket is None
    monkeypatch.setenv("OORE_WARPGATE_TICKET", "  ")
    assert settings_from_argv([]).warpgate_ticket is None
    monkeypatch.setenv("OORE_WARPGATE_TICKET", " ticket-from-env ")
    settings = settings_from_argv([])
    assert settings.warpgate_ticket is not None
    assert settings.warpgate_ticket.get_secret_value() == "ticket-from-env"
    assert "ticket-from-env" not in repr(settings)
    monkeypatch.setenv("OORE_WARPGATE_TICKET", "t" * 1025)
    with pytest.raises(ConfigError, match="OORE_WARPGATE_TICKET") as caught:
        settings_from_argv([])
    assert "t" * 1025 not in str(caught.value)


def test_app_store_connect_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OORE_APP_STORE_CONNECT_API_BASE_URL", raising=False)
    default = settings_from_argv([]).app_store_connect_api_base_url
    assert default == "https://api.appstoreconnect.apple.com"
    monkeypatch.setenv("OORE_APP_STORE_CONNECT_API_BASE_URL", " http://127.0.0.1:9000/asc/ ")
    assert settings_from_argv([]).app_store_connect_api_base_url == "http://127.0.0.1:9000/asc"


def test_the_names_the_daemon_answers_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OORED_LISTEN_ADDR", "Build-Box.lan:8787")
    monkeypatch.setenv("OORED_ALLOWED_HOSTS", "ci.internal, CI.Internal:443 runners.internal.")
    names = settings_from_argv([]).host_names
    assert names[0] == "build-box.lan"
    assert socket.gethostname().lower() in names
    assert {"ci.internal", "runners.internal"} <= set(names)
    assert len(names) == len(set(names))
    monkeypatch.setenv("OORED_ALLOWED_HOSTS", "https://ci.internal")
    with pytest.raises(ConfigError, match="OORED_ALLOWED_HOSTS"):
        settings_from_argv([])


def test_oored_version_prints_the_package_version_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oore.daemon", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"oored {__version__}")


def test_log_format_and_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OORED_LOG_FORMAT", raising=False)
    monkeypatch.delenv("OORED_ACCESS_LOG", raising=False)
    settings = settings_from_argv([])
    assert (settings.log_format, settings.access_log) == ("text", False)
    monkeypatch.setenv("OORED_LOG_FORMAT", "JSON")
    monkeypatch.setenv("OORED_ACCESS_LOG", "1")
    settings = settings_from_argv([])
    assert (settings.log_format, settings.access_log) == ("json", True)
    assert settings_from_argv(["--log-format", "text"]).log_format == "text"
    with pytest.raises(ConfigError, match=r"--log-format / OORED_LOG_FORMAT: must be text or json"):
        settings_from_argv(["--log-format", "yaml"])


def test_live_event_stream_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    from oore.daemon import events_config

    monkeypatch.delenv("OORED_EVENT_VIEWERS_PER_USER", raising=False)
    monkeypatch.delenv("OORED_EVENT_VIEWERS_TOTAL", raising=False)
    defaults = events_config(settings_from_argv([]))
    assert (defaults.viewers_per_user, defaults.viewers_total) == (32, 2000)
    monkeypatch.setenv("OORED_EVENT_VIEWERS_PER_USER", "4")
    monkeypatch.setenv("OORED_EVENT_VIEWERS_TOTAL", "100")
    configured = events_config(settings_from_argv([]))
    assert (configured.viewers_per_user, configured.viewers_total) == (4, 100)
    monkeypatch.setenv("OORED_EVENT_VIEWERS_TOTAL", "0")
    with pytest.raises(ConfigError, match="OORED_EVENT_VIEWERS_TOTAL"):
        settings_from_argv([])


def test_workers_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OORED_WORKERS", raising=False)
    assert settings_from_argv([]).workers == 1
    monkeypatch.setenv("OORED_WORKERS", "3")
    assert settings_from_argv([]).workers == 3
    assert settings_from_argv(["--workers", "2"]).workers == 2


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "65"])
def test_bad_worker_counts_are_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^invalid --workers / OORED_WORKERS: "):
        settings_from_argv(["--workers", value])


def test_bad_worker_count_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oore.daemon", "--workers", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "oored: invalid --workers / OORED_WORKERS: Input should be greater than or equal to 1"
    ]
    assert list(tmp_path.iterdir()) == []


def test_the_workers_option_says_how_many_to_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oore.daemon", "--help"], capture_output=True, text=True, timeout=30
    )
    assert "--workers N" in result.stdout
    assert "one per core, leaving a core to PostgreSQL" in " ".join(result.stdout.split())
