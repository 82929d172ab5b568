"""farmplug.names: the one file-name helper, secret-looking names, and URL/text redaction."""

from __future__ import annotations

import pytest

from farmplug.errors import ConfigError
from farmplug.names import MAX_NAME_CHARS, file_stem, is_secret_name, redact_text, redact_url


@pytest.mark.parametrize(
    "name, stem",
    [
        pytest.param("sh010", "sh010", id="plain"),
        pytest.param("sq01/sh010", "sq01_sh010", id="slash"),
        pytest.param("sq01\\sh010", "sq01_sh010", id="backslash"),
        pytest.param("sh 010 \"q\" 'x' $HOME `id`; rm -rf /\nnext", "sh 010 _q_ 'x' _HOME _id_; rm -rf __next",
                     id="hostile-shell-and-newline"),
        pytest.param("a\tb\x7fc\x85d\u2028e", "a_b_c_d_e", id="control-characters"),
        pytest.param("sh####_%04d_{frames}_{{Param.X}}", "sh______04d__frames____Param.X__",
                     id="frame-tokens-and-templates"),
        pytest.param("sh:010*?<>|", "sh_010_____", id="windows-forbidden"),
        pytest.param(".hidden", "_hidden", id="leading-dot"),
        pytest.param("..x", "_.x", id="dots-not-a-component"),
        pytest.param("trailing. ", "trailing__", id="windows-drops-trailing-dot-and-space"),
        pytest.param("CON", "_CON", id="windows-device"),
        pytest.param("nul.final", "_nul.final", id="windows-device-with-suffix"),
        pytest.param("console", "console", id="not-a-device"),
        pytest.param("é" * 100, "é" * 100, id="200-bytes-of-utf8"),
        pytest.param("x" * MAX_NAME_CHARS, "x" * MAX_NAME_CHARS, id="at-the-limit"),
    ],
)
def test_file_stem_maps_names_to_one_safe_component(name, stem):
    assert file_stem(name) == stem
    assert file_stem(name) == file_stem(name)  # stable: the same name is the same file every time


@pytest.mark.parametrize(
    "name, message",
    [
        pytest.param("", "blank", id="empty"),
        pytest.param("   ", "blank", id="blank"),
        pytest.param("sh\x00010", "NUL", id="nul"),
        pytest.param("..", r"'\.\.' path component", id="dot-dot"),
        pytest.param("sq01/../../etc", r"'\.\.' path component", id="climbs"),
        pytest.param("..\\x", r"'\.\.' path component", id="climbs-windows"),
        pytest.param("x" * (MAX_NAME_CHARS + 1), "121 characters; .* at most 120", id="121-characters"),
        pytest.param("x" * 300, "300 characters", id="300-characters"),
        pytest.param("\U0001f3ac" * 60, "240-byte file name stem; at most 200 bytes", id="over-200-bytes"),
    ],
)
def test_file_stem_refuses_what_no_file_name_can_hold(name, message):
    with pytest.raises(ConfigError, match=message) as caught:
        file_stem(name)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


@pytest.mark.parametrize(
    "name, secret",
    [
        pytest.param("password", True, id="password"),
        pytest.param("password_env", True, id="password-env"),
        pytest.param("api_token", True, id="api-token"),
        pytest.param("accessToken", True, id="camel-token"),
        pytest.param("client_secret", True, id="secret"),
        pytest.param("credentials", True, id="credentials"),
        pytest.param("X-Amz-Credential", True, id="aws-credential"),
        pytest.param("X-Amz-Signature", True, id="aws-signature"),
        pytest.param("key", True, id="key"),
        pytest.param("api_key", True, id="api-key"),
        pytest.param("sshKey", True, id="camel-key"),
        pytest.param("apikey", True, id="apikey"),
        pytest.param("auth", True, id="auth"),
        pytest.param("keyframes", False, id="keyframes"),
        pytest.param("keys", False, id="keys-frame-set"),
        pytest.param("monkey", False, id="monkey"),
        pytest.param("author", False, id="author"),
        pytest.param("passes", False, id="render-passes"),
        pytest.param("name", False, id="name"),
        pytest.param("url", False, id="url"),
    ],
)
def test_is_secret_name(name, secret):
    assert is_secret_name(name) is secret


@pytest.mark.parametrize(
    "url, shown",
    [
        pytest.param("http://user:s3cret@farm:8080/api?token=abc", "http://user:***@farm:8080/api?token=***",
                     id="brief-example"),
        pytest.param("http://farm:8080/api", "http://farm:8080/api", id="nothing-to-hide"),
        pytest.param("https://ghp_T0KEN@host/x", "https://***@host/x", id="token-as-user"),
        pytest.param("http://u:p%40ss@host", "http://u:***@host", id="encoded-at-in-password"),
        pytest.param("http://u:pw@[::1]:81/", "http://u:***@[::1]:81/", id="ipv6"),
        pytest.param("http://h/?page=2&api_key=K&keyframes=1-3", "http://h/?page=2&api_key=***&keyframes=1-3",
                     id="only-secret-parameters"),
        pytest.param("https://b.s3.amazonaws.com/o?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=ab12&X-Amz-Expires=60",
                     "https://b.s3.amazonaws.com/o?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
                     id="presigned"),
        pytest.param("https://app/cb#access_token=xyz&state=1", "https://app/cb#access_token=***&state=1",
                     id="fragment"),
        pytest.param("http://u:pw@[::1/", "http://***", id="unparseable"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "text, secrets, shown",
    [
        pytest.param("HTTPConnectionPool(host='farm', port=81): Max retries exceeded with url: /api/jobs?token=abc "
                     "(Caused by NewConnectionError('refused'))", (),
                     "HTTPConnectionPool(host='farm', port=81): Max retries exceeded with url: /api/jobs?token=*** "
                     "(Caused by NewConnectionError('refused'))", id="requests-message-without-scheme"),
        pytest.param("POST http://admin:hunter2@farm/x failed", (), "POST http://admin:***@farm/x failed",
                     id="url-in-text"),
        pytest.param("Unauthorized: wrangler:s3cr3t-pw", ("s3cr3t-pw", None, ""), "Unauthorized: wrangler:***",
                     id="known-secret-echoed"),
        pytest.param("frame 1 of 2", ("1",), "frame 1 of 2", id="too-short-to-search"),
    ],
)
def test_redact_text(text, secrets, shown):
    assert redact_text(text, secrets) == shown
