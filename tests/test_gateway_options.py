"""canary_triton/gateway/options.py: the gateway's settings, each refusal naming the setting, and
the API key from the environment."""

from __future__ import annotations

import pytest

from canary_triton.client.options import DEFAULT_GRPC_URL
from canary_triton.gateway.options import (
    API_KEY_ENV,
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_MODEL_NAME,
    GatewayOptions,
    api_key_from_env,
)


def test_the_defaults():
    o = GatewayOptions()
    assert (o.triton_url, o.host, o.port, o.api_key) == (DEFAULT_GRPC_URL, "127.0.0.1", 8080, None)
    assert o.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 25 * 1024 * 1024  # OpenAI's upload limit
    assert (o.max_in_flight, o.retry_after_s, o.timeout_s, o.retries) == (64, 1, 300.0, 2)
    assert o.model_names == (DEFAULT_MODEL_NAME,) == ("canary-qwen-2.5b",)


def test_aliases_follow_the_model_name():
    o = GatewayOptions(model_name="m", model_aliases=("whisper-1", "asr"))
    assert o.model_names == ("m", "whisper-1", "asr")


def test_the_api_key_is_not_in_the_repr():
    assert "s3cret" not in repr(GatewayOptions(api_key="s3cret"))


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"port": 0}, "port must be in 1..65535, got 0"),
        ({"port": 65536}, "port must be in 1..65535, got 65536"),
        ({"max_upload_bytes": 0}, "max_upload_bytes must be >= 1, got 0"),
        ({"max_in_flight": -1}, "max_in_flight must be >= 1, got -1"),
        ({"retry_after_s": 0}, "retry_after_s must be >= 1, got 0"),
        ({"timeout_s": 0.0}, "timeout_s must be > 0, got 0.0"),
        ({"retries": -1}, "retries must be >= 0, got -1"),
        ({"api_key": "  "}, f"the API key (${API_KEY_ENV}) is set but empty"),
        ({"model_name": ""}, "model_name must not be empty"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(kw, message):
    with pytest.raises(ValueError) as e:
        GatewayOptions(**kw)
    assert str(e.value) == message


def test_the_bounds_themselves_are_allowed():
    o = GatewayOptions(port=65535, max_upload_bytes=1, max_in_flight=1, retry_after_s=1, timeout_s=0.001, retries=0)
    assert (o.port, o.retries) == (65535, 0)


def test_the_api_key_comes_from_the_environment(monkeypatch):
    assert api_key_from_env({API_KEY_ENV: "k"}) == "k"
    assert api_key_from_env({API_KEY_ENV: ""}) is None  # empty: authentication off
    assert api_key_from_env({}) is None
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert api_key_from_env() == "from-env"
    monkeypatch.delenv(API_KEY_ENV)
    assert api_key_from_env() is None
