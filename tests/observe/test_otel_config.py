"""The OpenTelemetry settings: read and checked like every setting (one clear line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironrt.config import ConfigError, Settings


def load(home: Path, **env: str) -> Settings:
    return Settings.load({"IRONRT_HOME": str(home), **env})


def test_off_by_default_and_both_endpoints_read(tmp_path: Path) -> None:
    s = load(tmp_path)
    assert (s.otlp_endpoint, s.otel_endpoint, s.otel_capture_content) == (None, None, False)
    s = load(
        tmp_path,
        IRONRT_OTLP_ENDPOINT="http://127.0.0.1:4318",
        OTEL_EXPORTER_OTLP_ENDPOINT="https://collector.example:4318",
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="SPAN_ONLY",
    )
    assert s.otlp_endpoint == "http://127.0.0.1:4318"
    assert s.otel_endpoint == "https://collector.example:4318"
    assert s.otel_capture_content is True
    (tmp_path / "config.toml").write_text('otlp_endpoint = "http://10.0.0.1:4318"\n')
    assert load(tmp_path).otlp_endpoint == "http://10.0.0.1:4318"


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("IRONRT_OTLP_ENDPOINT", "collector:4318", "IRONRT_OTLP_ENDPOINT must be an http"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://x", "OTEL_EXPORTER_OTLP_ENDPOINT must be an"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "maybe", "a boolean"),
    ],
)
def test_a_bad_value_is_refused_naming_it(tmp_path: Path, name: str, raw: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load(tmp_path, **{name: raw})
