"""Redaction: recall and precision corpora, key names, free text, properties, policies, hostility.

Every credential below is made up: format-valid (right prefix, length and alphabet) so that the
rules see it, and never a real secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal_core import redaction
from journal_core.redaction import (
    DEFAULT_REDACTOR,
    RedactionPolicy,
    Redactor,
    key_parts,
    marker,
)

R = DEFAULT_REDACTOR
MARKER_RE = re.compile(r"<redacted:[A-Za-z0-9_.\-]+>")

# --------------------------------------------------------------------------------------------
# Made-up, format-valid credentials
# --------------------------------------------------------------------------------------------

AWS_ID = "AKIA" + "Z7Q2K5M3N4P6R2T7"
AWS_ID_TEMP = "ASIA" + "QW3ERT7YUI2OPAS5"
AWS_SECRET = "Ab3/" * 10
GITHUB = "ghp_" + "A1b2" * 9
GITHUB_OAUTH = "gho_" + "Zx81" * 9
GITHUB_PAT = "github_pat_" + "11AB" + "Cd3Ef5Gh7J" * 8
GITLAB = "glpat-" + "xY7zQ2wE9rT4uI1oP3aS"
SLACK = "xoxb-" + "123456789012-123456789012-" + "AbCdEfGhIjKlMnOpQrStUvWx"
SLACK_HOOK_PATH = "services/T0FAKE000/B0FAKE000/" + "aBcDeFgHiJkLmNoPqRsTuVwX"
STRIPE = "sk_live_" + "a1B2c3D4" * 3
STRIPE_RESTRICTED = "rk_test_" + "Q9w8E7r6" * 3
OPENAI = "sk-proj-" + "Ab1Cd2Ef3Gh4" * 4
OPENAI_LEGACY = "sk-" + "A1b2C3d4E5f6G7h8I9j0" + "T3BlbkFJ" + "K1l2M3n4O5p6Q7r8S9t0"
OPENAI_BARE = "A1b2C3d4E5f6G7h8I9j0" + "T3BlbkFJ" + "K1l2M3n4O5p6Q7r8S9t0"
ANTHROPIC = "sk-ant-api03-" + "q7Lm2Nx9" * 10 + "AA"
GOOGLE = "AIza" + "Sy" + "D3fG7hJ2kL" * 3 + "9mN"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJmYWtlLXVzZXIiLCJpYXQiOjE3MDAwMDAwMDB9"
    ".ZmFrZS1zaWduYXR1cmUtbm90LXJlYWw"
)
PEM_BODY = "MIIEfakeKEYbody0123456789abcdefFAKE"
NPM = "npm_" + "A1b2C3d4E5f6" * 3
PYPI = "pypi-AgEIcHlwaS5vcmc" + "CJDI3YjQ5" * 6


def pem(kind: str, *, end: bool = True) -> str:
    """A PEM private-key block with a fake body."""
    block = f"-----BEGIN {kind}-----\n{PEM_BODY}\n{PEM_BODY[::-1]}\n"
    return block + (f"-----END {kind}-----" if end else "")


def luhn_ok(digits: str) -> bool:
    """Independent Luhn check, used to prove the benign numbers fail it."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def dumps(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# --------------------------------------------------------------------------------------------
# Recall corpus: every rule, in every placement
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    """Free text holding one secret, the substring that must vanish and the rule to fire."""

    name: str
    text: str
    secret: str
    rule: str


LEAKS = (
    Leak("aws_id", AWS_ID, AWS_ID, "aws_access_key"),
    Leak("aws_id_temp", f"id={AWS_ID_TEMP};", AWS_ID_TEMP, "aws_access_key"),
    Leak("aws_secret", f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET, "aws_secret_key"),
    Leak("aws_secret_env", f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET, "aws_secret_key"),
    Leak("github", GITHUB, GITHUB[4:], "github_token"),
    Leak("github_oauth", f"token {GITHUB_OAUTH}", GITHUB_OAUTH[4:], "github_token"),
    Leak("github_pat", GITHUB_PAT, GITHUB_PAT[11:], "github_token"),
    Leak("gitlab", GITLAB, GITLAB[6:], "gitlab_token"),
    Leak("slack_token", SLACK, SLACK[5:], "slack_token"),
    Leak(
        "slack_webhook",
        f"https://hooks.slack.com/{SLACK_HOOK_PATH}",
        SLACK_HOOK_PATH,
        "slack_webhook",
    ),
    Leak("stripe", STRIPE, STRIPE[8:], "stripe_key"),
    Leak("stripe_restricted", STRIPE_RESTRICTED, STRIPE_RESTRICTED[8:], "stripe_key"),
    Leak("openai", OPENAI, OPENAI[8:], "openai_key"),
    Leak("openai_legacy", OPENAI_LEGACY, OPENAI_LEGACY[3:], "openai_key"),
    Leak("openai_marker_only", OPENAI_BARE, OPENAI_BARE, "openai_key"),
    Leak("anthropic", ANTHROPIC, ANTHROPIC[13:], "anthropic_key"),
    Leak("google", GOOGLE, GOOGLE, "google_api_key"),
    Leak("jwt", JWT, JWT.split(".")[1], "jwt"),
    Leak("pem_rsa", pem("RSA PRIVATE KEY"), PEM_BODY, "private_key"),
    Leak("pem_pkcs8", pem("PRIVATE KEY"), PEM_BODY, "private_key"),
    Leak("pem_openssh", pem("OPENSSH PRIVATE KEY"), PEM_BODY, "private_key"),
    Leak("pem_ec_unterminated", pem("EC PRIVATE KEY", end=False), PEM_BODY, "private_key"),
    Leak("pem_pgp", pem("PGP PRIVATE KEY BLOCK"), PEM_BODY, "private_key"),
    Leak("npm", NPM, NPM[4:], "npm_token"),
    Leak("pypi", PYPI, PYPI[20:], "pypi_token"),
    Leak("bearer", "Authorization: Bearer x9Y8z7W6v5U4t3", "x9Y8z7W6v5U4t3", "bearer_token"),
    Leak("bearer_http2", "authorization: bearer Zq81Lm2Nx9Pp", "Zq81Lm2Nx9Pp", "bearer_token"),
    Leak("bearer_caps", "BEARER Zq81Lm2Nx9PpQ", "Zq81Lm2Nx9PpQ", "bearer_token"),
    Leak(
        "basic_header",
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",
        "dXNlcjpwYXNzd29yZA==",
        "basic_auth",
    ),
    Leak("basic_bare", "Basic YWxpY2U6czNjcjN0", "YWxpY2U6czNjcjN0", "basic_auth"),
    Leak(
        "userinfo_postgres",
        "postgres://app:S3cretPass1@db.internal:5432/app",
        "S3cretPass1",
        "url_userinfo",
    ),
    Leak(
        "userinfo_https",
        "https://deploy:hunter22@git.example.com/r.git",
        "hunter22",
        "url_userinfo",
    ),
    Leak(
        "query_token",
        "https://api.example.com/v1/items?token=tK9fake2LmQ&page=2",
        "tK9fake2LmQ",
        "url_query_secret",
    ),
    Leak(
        "query_api_key",
        "https://maps.example.com/api?api_key=Qw3rTy9fake&q=x",
        "Qw3rTy9fake",
        "url_query_secret",
    ),
    Leak(
        "query_fragment",
        "https://app.example.com/cb#access_token=Fr4gFakeT0k&state=1",
        "Fr4gFakeT0k",
        "url_query_secret",
    ),
    Leak(
        "query_amz_signature",
        "https://bucket.s3.amazonaws.com/o?X-Amz-Signature=fe5f80f77d5fa3beca038a248ff027d0",
        "fe5f80f77d5fa3beca038a248ff027d0",
        "url_query_secret",
    ),
    Leak(
        "query_key",
        "https://www.example.com/maps?key=Zz9fakekey00&z=3",
        "Zz9fakekey00",
        "url_query_secret",
    ),
    Leak("card_spaces", "card 4111 1111 1111 1111 exp 12/29", "4111 1111", "card_number"),
    Leak("card_dashes", "5555-5555-5555-4444", "5555-5555-5555-4444", "card_number"),
    Leak("card_amex", "amex 378282246310005", "378282246310005", "card_number"),
    Leak("card_discover", "6011111111111117", "6011111111111117", "card_number"),
    Leak("kw_password", "password=hunter2", "hunter2", "keyword_assignment"),
    Leak("kw_api_key_yaml", "api_key: zX9vB7nM5qW3e", "zX9vB7nM5qW3e", "keyword_assignment"),
    Leak("kw_secret_quoted", 'secret="s3cr3t-value"', "s3cr3t-value", "keyword_assignment"),
    Leak("kw_pgpassword", "PGPASSWORD=Tr0ub4dor psql", "Tr0ub4dor", "keyword_assignment"),
    Leak("kw_mysql_pwd", "export MYSQL_PWD=S3cret99", "S3cret99", "keyword_assignment"),
    Leak("kw_env_token", "GITHUB_TOKEN=abc123def456ghi", "abc123def456ghi", "keyword_assignment"),
    Leak(
        "kw_client_secret",
        "client_secret = 'Q1w2E3r4T5y6'",
        "Q1w2E3r4T5y6",
        "keyword_assignment",
    ),
    Leak("kw_go", 'token := "q9W8e7R6t5Y4"', "q9W8e7R6t5Y4", "keyword_assignment"),
    Leak("kw_flag", "--password=Sup3rS3cret", "Sup3rS3cret", "keyword_assignment"),
    Leak(
        "kw_spaces_quoted",
        "DB_PASSWORD='correct horse battery'",
        "correct horse battery",
        "keyword_assignment",
    ),
    Leak("kw_json_text", '"password": "pa55word!"', "pa55word!", "keyword_assignment"),
    Leak(
        "kw_cookie_header",
        "Cookie: session=Zx81abc; theme=dark",
        "session=Zx81abc",
        "keyword_assignment",
    ),
    Leak(
        "kw_digest",
        'Authorization: Digest username="bob", response="6629fae49393a05397450978507c4ef1"',
        "6629fae49393a05397450978507c4ef1",
        "keyword_assignment",
    ),
)


@dataclass(frozen=True)
class Case:
    """A payload, the secrets that must vanish from it and the rule that must fire."""

    name: str
    value: object
    secrets: tuple[str, ...]
    rule: str


def _placements(leak: Leak) -> Iterator[Case]:
    yield Case(f"{leak.name}/value", {"v": leak.text}, (leak.secret,), leak.rule)
    prose = f"Sure, I ran it.\n{leak.text}\nDone, 3 files changed."
    yield Case(f"{leak.name}/prose", {"message": prose}, (leak.secret,), leak.rule)
    nested = {"a": [{"b": {"c": ["x", f"output: {leak.text} (ok)"]}}]}
    yield Case(f"{leak.name}/nested", nested, (leak.secret,), leak.rule)
    as_json = orjson.dumps({"command": leak.text, "cwd": "/tmp"}).decode()
    yield Case(f"{leak.name}/json_string", {"arguments": as_json}, (leak.secret,), leak.rule)
    yield Case(
        f"{leak.name}/key", {"config": {"apiKey": leak.text}}, (leak.secret,), "sensitive_key"
    )


RECALL = [case for leak in LEAKS for case in _placements(leak)] + [
    Case("key/password", {"password": "hunter2"}, ("hunter2",), "sensitive_key"),
    Case("key/number", {"pin": 493817}, ("493817",), "sensitive_key"),
    Case(
        "key/object",
        {"credentials": {"user": "bob", "pass": "Wq9zz"}},
        ("Wq9zz", "bob"),
        "sensitive_key",
    ),
    Case("key/list", {"cookies": ["sid=Ab12", "x=Cd34"]}, ("Ab12", "Cd34"), "sensitive_key"),
    Case("key/header", {"headers": {"X-API-Key": "k-77f0e1"}}, ("k-77f0e1",), "sensitive_key"),
    Case("key/session", {"session": "s%3Afake.9Yz"}, ("9Yz",), "sensitive_key"),
    Case("key/phpsessid", {"PHPSESSID": "ab12cd34ef56"}, ("ab12cd34ef56",), "sensitive_key"),
    Case("key/card", {"card_number": "4000056655665556"}, ("4000056655665556",), "sensitive_key"),
    Case(
        "key/in_json_string",
        {"body": '{"user": "bob", "client_secret": "Zz9Yy8"}'},
        ("Zz9Yy8",),
        "sensitive_key",
    ),
    Case(
        "key/deep_json_string",
        {"a": orjson.dumps({"b": orjson.dumps({"token": "Tt1Uu2"}).decode()}).decode()},
        ("Tt1Uu2",),
        "sensitive_key",
    ),
]


def _redacts(case: Case) -> bool:
    out, fired = R.redact_value(case.value)
    text = dumps(out)
    return case.rule in fired and not any(secret in text for secret in case.secrets)


@pytest.mark.parametrize("case", RECALL, ids=lambda c: c.name)
def test_recall_case(case: Case) -> None:
    out, fired = R.redact_value(case.value)
    text = dumps(out)
    for secret in case.secrets:
        assert secret not in text
    assert case.rule in fired
    assert marker(case.rule) in text


# --------------------------------------------------------------------------------------------
# Precision corpus: look-alikes that must come out untouched
# --------------------------------------------------------------------------------------------

ULID = "01HZX3K5V7Q9W2E4R6T8Y0Z1M3"
BENIGN_NUMBERS = ("4111111111111112", "1234 5678 9012 3455", "5555555555554443")

BENIGN: list[object] = [
    "550e8400-e29b-41d4-a716-446655440000",
    "123e4567-e89b-12d3-a456-426614174000",
    "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    ULID,
    "01ARZ3NDEKTSV4RRFFQ69G5FAV",
    {"content_b64": "aGVsbG8gd29ybGQgZnJvbSB0aGUgYWdlbnQgam91cm5hbA=="},
    "test_redaction_value_roundtrip",
    "journal_core.redaction.RedactionPolicy",
    "/home/agent/project/src/journal_core/redaction.py",
    "C:\\Users\\agent\\AppData\\Local\\Temp\\build-output.txt",
    "~/.config/agent/settings.toml and ../secrets/README.md",
    "add a task-list, check disk-usage, a risk-free change",
    "pip install scikit-learn; import sk-learn-compat-layer-for-tests",
    *BENIGN_NUMBERS,
    "ORD-2024-000123456789",
    "order #1000234567 shipped",
    "2024-11-26T05:35:00.123Z",
    "1732590000000",
    "Tue, 26 Nov 2024 05:35:00 GMT",
    "+1 415 555 2671",
    "(555) 123-4567",
    "+44 20 7946 0958",
    "pk_live_" + "a1B2c3D4" * 3,
    "pk_test_" + "Q9w8E7r6" * 3,
    "the Bearer of bad news",
    "the bearer token scheme is described in RFC 6750",
    "Basic usage: run the tool twice",
    "Authorization header is missing",
    "Authorization: required for this endpoint",
    "akiaz7q2k5m3n4p6r2t7",
    "AKIA is the prefix of access key ids; ASIAN food",
    "token_count: 5",
    "max_tokens=4096",
    "prompt_tokens: 1200, completion_tokens: 80",
    "token: 4096",
    "auth: required",
    "secret: false",
    "password: ${DB_PASSWORD}",
    "api_key: <your-api-key>",
    "password = getpass.getpass()",
    "token = os.environ['GITHUB_TOKEN']",
    "password=password",
    "PWD=/home/agent/project",
    "password: ********",
    "secret_name: OPENAI_KEY",
    "https://example.com/path?page=2&sort=asc",
    "https://example.com/search?q=token+count&key_id=5&sort_key=name",
    "https://github.com/org/repo/pull/42",
    "git@github.com:org/repo.git",
    "ssh://git@github.com/org/repo.git",
    "mail alice@example.com",
    "def redact(self, value: str) -> str:",
    "for key, value in items.items():",
    "if token_count > max_tokens: raise ValueError",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUFake\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
    "ghp_short xoxb-123 glpat-short npm_install pypi-upload AIza-short sk-ant-short",
    "eyJhbGciOiJIUzI1NiJ9",
    "v1.2.3 python3.11 orjson>=3.9",
    "2024-11-26 and 1234 5678",
    "192.168.1.10:8080 00:1A:2B:3C:4D:5E",
    "The password must be at least 12 characters long.",
    "Use a secret manager for credentials. Your session has expired.",
    "[INFO] started worker 3 of 8",
    {
        "prompt_tokens": 1200,
        "completion_tokens": 80,
        "total_tokens": 1280,
        "max_tokens": 4096,
        "token_count": 3,
        "tokens_used": 5,
    },
    {"session_id": ULID, "session_ulid": ULID, "session_key": "cli:alice/fix", "sessionKey": "x"},
    {"author": "alice", "authority": "root", "authored_by": "bob"},
    {"pinpointId": "abc", "keyboard": "us", "monkey": "banana", "passage": "p", "secretary": "J"},
    {"tokenizer": "cl100k_base", "eos_token": "</s>", "max_token": 12, "token_type": "bearer"},
    {"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFake"},
    {"key": "cache/entry", "sort_key": "name", "idempotency_key": "job-17", "keys": ["a"]},
    {"password": None, "secret": False, "token": "", "credentials": {}, "cookies": []},
    {"auth_method": "oauth", "auth_type": "pkce", "oauth_provider": "github"},
    {"amount": 4111111111111111, "when": 1732590000000},
    {"arguments": '{"path": "/home/agent/a.py", "mode": "r"}'},
    {"text": "[1, 2, 3]", "note": "{not json}"},
]


@pytest.mark.parametrize("value", BENIGN, ids=lambda v: dumps(v)[:40])
def test_precision_case(value: object) -> None:
    out, fired = R.redact_value(value)
    assert fired == frozenset()
    assert out is value


def test_benign_numbers_really_fail_luhn() -> None:
    for number in BENIGN_NUMBERS:
        assert not luhn_ok(number.replace(" ", ""))


def test_recall_and_precision_are_perfect_on_the_corpora() -> None:
    assert len(RECALL) >= 60
    assert len(BENIGN) >= 60
    true_positives = sum(_redacts(case) for case in RECALL)
    false_positives = sum(bool(R.redact_value(value)[1]) for value in BENIGN)
    recall = true_positives / len(RECALL)
    precision = true_positives / (true_positives + false_positives)
    assert recall == 1.0
    assert precision == 1.0


# --------------------------------------------------------------------------------------------
# Key names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("apiKey", ("api", "key")),
        ("X-API-Key", ("x", "api", "key")),
        ("client_secret", ("client", "secret")),
        ("PHPSESSID", ("phpsessid",)),
        ("HTTPAuthorization", ("http", "authorization")),
        ("oauth2Token", ("oauth2", "token")),
        ("connect.sid", ("connect", "sid")),
        ("_session", ("session",)),
        ("ASP.NET_SessionId", ("asp", "net", "session", "id")),
        ("", ()),
        ("пароль_token", ("пароль", "token")),
    ],
)
def test_key_parts(key: str, parts: tuple[str, ...]) -> None:
    assert key_parts(key) == parts


SENSITIVE_KEYS = (
    "password", "Password", "PASSWORD", "passwd", "pwd", "mysql_pwd", "passphrase", "secret",
    "client_secret", "clientSecret", "CLIENT_SECRET", "aws_secret_access_key", "api_key",
    "apiKey", "ApiKey", "X-API-Key", "x_api_key", "apikey", "token", "access_token",
    "accessToken", "refresh_token", "id_token", "apiToken", "authToken", "bearerToken",
    "session_token", "csrftoken", "x_csrftoken", "XSRF-TOKEN", "_csrf", "csrf", "authorization",
    "Authorization", "proxy-authorization", "cookie", "set_cookie", "Set-Cookie", "credentials",
    "credential", "private_key", "privateKey", "privatekey", "secret_key", "signature",
    "X-Amz-Signature", "proof", "pin", "pinCode", "pin_code", "pincode", "auth", "basic_auth",
    "session", "user_session", "_session", "sessionid", "PHPSESSID", "JSESSIONID",
    "connect.sid", "ASP.NET_SessionId", "otp", "cvv", "card_number", "creditCard",
    "access_tokens", "token_value", "auth_header", "PGPASSWORD", "dbPassword", "db_password",
)  # fmt: skip
HARMLESS_KEYS = (
    "token_count", "total_tokens", "prompt_tokens", "completion_tokens", "max_tokens",
    "tokens_used", "tokens", "tokenizer", "max_token", "eos_token", "author", "authority",
    "authored_by", "session_id", "session_ulid", "session_key", "sessionKey", "SessionId",
    "session_label", "pinpointId", "keyboard", "monkey", "passage", "secretary", "key", "keys",
    "key_id", "public_key", "sort_key", "idempotency_key", "token_type", "auth_method",
    "auth_type", "oauth_provider", "description", "id", "name", "path", "command", "cwd",
    "stdout", "usage", "model", "role", "content", "tool_call_id", "", "ключ",
)  # fmt: skip


@pytest.mark.parametrize("key", SENSITIVE_KEYS)
def test_sensitive_key(key: str) -> None:
    assert R.is_sensitive_key(key)
    out, fired = R.redact_value({key: "v4lue-Zz9"})
    assert out == {key: marker("sensitive_key")}
    assert fired == {"sensitive_key"}


@pytest.mark.parametrize("key", HARMLESS_KEYS)
def test_harmless_key(key: str) -> None:
    assert not R.is_sensitive_key(key)
    value = {key: "plain words only"}
    assert R.redact_value(value) == (value, frozenset())


def test_unset_values_under_sensitive_keys_stay() -> None:
    value: dict[str, object] = {
        "password": None,
        "secret": True,
        "token": "",
        "credentials": {},
        "pin": [],
    }
    assert R.redact_value(value) == (value, frozenset())


def test_non_string_keys_do_not_break_the_walk() -> None:
    out, fired = R.redact_value({1: "x", None: "password=hunter2", 2.5: [AWS_ID]})
    assert fired == {"keyword_assignment", "aws_access_key"}
    assert AWS_ID not in repr(out)
    assert "hunter2" not in repr(out)


# --------------------------------------------------------------------------------------------
# Free text
# --------------------------------------------------------------------------------------------


def test_free_text_keeps_the_surrounding_text() -> None:
    text = "curl -H 'Authorization: Bearer abcdef123456789' https://x.example/api"
    out, fired = R.redact_text(text)
    assert out == ("curl -H 'Authorization: Bearer <redacted:bearer_token>' https://x.example/api")
    assert fired == {"bearer_token"}


def test_free_text_is_never_truncated() -> None:
    body = "".join(f"line {i}: compiled module_{i}.py in 0.{i % 10}s\n" for i in range(3000))
    text = body + f"export GITHUB_TOKEN={GITHUB}\n" + body
    assert len(text) > 100_000
    out, fired = R.redact_text(text)
    assert fired == {"github_token"}
    assert GITHUB[4:] not in out
    assert out.startswith(body)
    assert out.endswith(body)
    assert len(out) == len(text) - len(GITHUB) + len(marker("github_token"))


def test_clean_text_is_returned_as_the_same_object() -> None:
    text = "All 42 tests passed in 3.2s; see /tmp/report.html for details."
    out, fired = R.redact_text(text)
    assert out is text
    assert fired == frozenset()


def test_several_secrets_in_one_text() -> None:
    text = f"a={AWS_ID} b={GITHUB} c=https://u:p4ssw0rd@h.example/ d=4111-1111-1111-1111"
    out, fired = R.redact_text(text)
    assert fired == {"aws_access_key", "github_token", "url_userinfo", "card_number"}
    for secret in (AWS_ID, GITHUB[4:], "p4ssw0rd", "4111-1111"):
        assert secret not in out


def test_url_keeps_scheme_host_and_other_parameters() -> None:
    out, _ = R.redact_text("https://bob:Pa55w0rd@db.example.com/x?page=2&token=T0k3nFake9&q=a")
    assert out == (
        "https://<redacted:url_userinfo>@db.example.com/x"
        "?page=2&token=<redacted:url_query_secret>&q=a"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token: q9W8e7R6", "token: <redacted:keyword_assignment>"),
        ("sig: hello", "sig: hello"),
        ("password: changeme", "password: <redacted:keyword_assignment>"),
        ("password: str", "password: str"),
        ('token = os.environ["TOKEN"]', 'token = os.environ["TOKEN"]'),
        ("password_policy: strict", "password_policy: strict"),
        (
            "password: correct horse battery",
            "password: <redacted:keyword_assignment> horse battery",
        ),
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIDFAKE/x, Signature=5d672d79\nnext",
            "Authorization: AWS4-HMAC-SHA256 <redacted:keyword_assignment>\nnext",
        ),
        (
            "Set-Cookie: id=a3fWa; Expires=Thu, 21 Oct 2021 07:28:00 GMT; Secure",
            "Set-Cookie: <redacted:keyword_assignment>",
        ),
        (
            "https://s3.example/o?X-Amz-Credential=AKIDFAKE%2F2024&X-Amz-Security-Token=Fw0GFAKE",
            "https://s3.example/o?X-Amz-Credential=<redacted:url_query_secret>"
            "&X-Amz-Security-Token=<redacted:url_query_secret>",
        ),
        (
            "4111111111111111.5 and 4111111111111111",
            "4111111111111111.5 and <redacted:card_number>",
        ),
    ],
)
def test_assignment_and_card_details(text: str, expected: str) -> None:
    assert R.redact_text(text)[0] == expected


def test_unterminated_private_key_is_redacted_to_the_end() -> None:
    out, fired = R.redact_text("key follows\n" + pem("RSA PRIVATE KEY", end=False) + "more\n")
    assert out == "key follows\n<redacted:private_key>"
    assert fired == {"private_key"}


def test_json_in_string_is_reserialised_compactly_only_when_something_fired() -> None:
    loose = '{ "password" : "x1y2" ,  "n": 1 }'
    out, fired = R.redact_value({"args": loose})
    assert out == {"args": '{"password":"<redacted:sensitive_key>","n":1}'}
    assert fired == {"sensitive_key"}
    clean = '{ "path" : "/tmp/a" ,  "n": 1 }'
    value = {"args": clean}
    assert R.redact_value(value)[0] is value


def test_json_in_string_too_deep_to_reserialise_is_replaced_whole() -> None:
    text = "[" * 300 + '{"token": "Tt1Uu2Vv3"}' + "]" * 300  # orjson writes at most 254 levels
    out, fired = R.redact_value({"args": text})
    assert fired == {"sensitive_key"}
    assert out == {"args": marker("sensitive_key")}


# --------------------------------------------------------------------------------------------
# Robustness and properties
# --------------------------------------------------------------------------------------------


def test_deep_trees_do_not_hit_the_recursion_limit() -> None:
    value: object = {"password": "hunter2", "note": f"id {AWS_ID}"}
    for depth in range(1200):
        value = [value] if depth % 2 else {"level": value}
    out, fired = R.redact_value(value)
    assert fired == {"sensitive_key", "aws_access_key"}
    node = out
    for depth in reversed(range(1200)):
        node = node[0] if depth % 2 else node["level"]  # type: ignore[index]
    assert node == {"password": marker("sensitive_key"), "note": "id <redacted:aws_access_key>"}


def test_odd_scalars_pass_through() -> None:
    value = {
        "big": 10**400,
        "nan": float("nan"),
        "inf": float("-inf"),
        "surrogate": "\ud800 lone",
        "": "empty key",
        "ключ": "значение",
        "t": True,
    }
    out, fired = R.redact_value(value)
    assert out is value
    assert fired == frozenset()


def test_surrogates_next_to_secrets() -> None:
    out, fired = R.redact_value({"x": f"\udfff{' '}{GITHUB}\ud800", "y": '["\ud800", 1]'})
    assert fired == {"github_token"}
    assert GITHUB[4:] not in repr(out)


def test_input_is_not_mutated_and_unchanged_branches_are_shared() -> None:
    clean_branch = {"usage": {"prompt_tokens": 3}}
    value = {"a": clean_branch, "b": {"password": "hunter2"}, "c": [1, GITHUB]}
    before = repr(value)
    out, _ = R.redact_value(value)
    assert repr(value) == before
    assert isinstance(out, dict)
    assert out["a"] is clean_branch


def test_marker_format() -> None:
    assert marker("jwt") == "<redacted:jwt>"


SECRET_TEXTS = [leak.text for leak in LEAKS] + [
    "plain words",
    '{"password": "x1", "n": [1, 2]}',
    '[{"api_key": "k1"}, "Bearer q1w2e3r4t5y6"]',
    "<redacted:jwt> already",
]
KEYS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(SENSITIVE_KEYS + HARMLESS_KEYS),
)
CHARS = st.one_of(st.characters(exclude_categories=()), st.sampled_from("\ud800\udbff\udfff"))
TEXT = st.one_of(st.text(CHARS, max_size=40), st.sampled_from(SECRET_TEXTS))
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
TREES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=16,
)


def _no_sensitive_values(value: object) -> bool:
    """Every value under a sensitive key, here or in a JSON string, is unset or a marker."""
    if isinstance(value, dict):
        for key, item in value.items():
            if R.is_sensitive_key(key) and not (
                item is None
                or isinstance(item, bool)
                or item in ("", {}, [])
                or (isinstance(item, str) and MARKER_RE.fullmatch(item))
            ):
                return False
            if not _no_sensitive_values(item):
                return False
        return True
    if isinstance(value, list):
        return all(_no_sensitive_values(item) for item in value)
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return _no_sensitive_values(orjson.loads(value))
        except orjson.JSONDecodeError:
            return True
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES)
def test_property_redact_value(value: object) -> None:
    before = repr(value)
    out, fired = R.redact_value(value)
    assert repr(value) == before  # the input is never mutated
    if not fired:
        assert out is value
    assert _no_sensitive_values(out)
    again, fired_again = R.redact_value(out)
    assert fired_again == frozenset()
    assert again is out


@settings(max_examples=150, deadline=None)
@given(st.text(CHARS, max_size=60), st.sampled_from(LEAKS), st.text(CHARS, max_size=60))
def test_property_secret_in_any_surrounding_text(prefix: str, leak: Leak, suffix: str) -> None:
    text = f"{prefix}\n{leak.text}\n{suffix}"
    out, fired = R.redact_text(text)
    assert leak.secret not in out
    assert leak.rule in fired
    assert R.redact_text(out) == (out, frozenset())


@settings(max_examples=150, deadline=None)
@given(st.text(CHARS, max_size=200))
def test_property_redact_text(text: str) -> None:
    out, fired = R.redact_text(text)
    if not fired:
        assert out is text
    again, fired_again = R.redact_text(out)
    assert fired_again == frozenset()
    assert again is out


# The gates: one Hyperscan pass decides which rule families run. Each gate must accept a
# superset of what its rules accept, so that the result with the gates equals the result with
# every family forced open.
GATE_FRAGMENTS = (
    "password", "PassWord", "pwd", "token", "Secret", "key", "auth", "cookie", "=", ":", '"', "'",
    "\\", " ", "\t", "\n", "ghp_", "github_pat_", "glpat-", "xoxb-", "sk-", "sk_live_", "rk_test_",
    "npm_", "pypi-", "AKIA", "AIza", "Bearer ", "BASIC ", "-----BEGIN", " PRIVATE KEY-----", "eyJ",
    ".", "T3BlbkFJ", "://", "@", "hooks.slack.com/services/", "4111", "1111", "-", "_", "0", "x",
)  # fmt: skip
RANDOMISH = st.text(
    "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789", min_size=4, max_size=60
)
# The shapes the gates hinge on, with their variable parts drawn: keyword, gap, delimiter and
# value; URL userinfo; digit groups and separators.
ASSIGNMENTS = st.builds(
    lambda keyword, upper, gap, delimiter, value: (
        (keyword.upper() if upper else keyword) + gap + delimiter + value
    ),
    st.sampled_from(("password", "passwd", "pwd", "secret", "token", "api_key", "auth", "sig")),
    st.booleans(),
    st.text(" \t\"'\\", max_size=4),
    st.sampled_from(":="),
    RANDOMISH,
)
USERINFO = st.builds(
    "https://{}:{}@example.com".format,
    st.text("ab=%.-\u00e9\u2003", max_size=5),
    st.text("pq:=%.-\u00e9\u2003", min_size=1, max_size=5),
)
DIGIT_GROUPS = st.lists(
    st.text("0123456789", min_size=1, max_size=14), min_size=1, max_size=5
).flatmap(lambda groups: st.sampled_from(" -_").map(lambda sep: sep.join(groups)))
GATE_TEXT = st.lists(
    st.one_of(
        ASSIGNMENTS,
        USERINFO,
        DIGIT_GROUPS,
        st.sampled_from(GATE_FRAGMENTS),
        st.sampled_from([leak.text for leak in LEAKS]),
        RANDOMISH,
        st.text(CHARS, max_size=6),
    ),
    max_size=14,
).map("".join)
ALL_FAMILIES = sum(family for family, _, _ in redaction._GATES)


@settings(max_examples=400, deadline=None)
@given(st.lists(GATE_TEXT, min_size=1, max_size=3))
def test_property_gates_never_hide_what_the_rules_find(texts: list[str]) -> None:
    gated = [R.redact_text(text) for text in texts], R.redact_value(texts)
    with mock.patch.object(redaction, "_families", return_value=ALL_FAMILIES):
        forced = [R.redact_text(text) for text in texts], R.redact_value(texts)
    assert gated == forced


def test_every_leak_opens_its_gate() -> None:
    for leak in LEAKS:
        with mock.patch.object(redaction, "_families", return_value=0):
            assert R.redact_text(leak.text)[1] == frozenset(), leak.name
        assert leak.rule in R.redact_text(leak.text)[1], leak.name


def test_gates_scan_from_many_threads_at_once() -> None:
    # The scan releases the GIL: threads sharing one scratch space would fail with "scratch in
    # use" (or worse); each thread gets its own.
    texts = [f"{'filler text ' * 3000}{leak.text}{' tail' * 3000}" for leak in LEAKS]
    expected = [R.redact_text(text) for text in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(R.redact_text, texts * 6))
    assert results == expected * 6


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------


def test_extra_keys_match_normalised_word_parts() -> None:
    redactor = Redactor(RedactionPolicy(extra_keys=("ssn", "employee id")))
    out, fired = redactor.redact_value(
        {"user_ssn": "123-45-6789", "ssnValue": "x", "employeeId": 5, "ssnx": "kept"}
    )
    assert out == {
        "user_ssn": marker("sensitive_key"),
        "ssnValue": marker("sensitive_key"),
        "employeeId": marker("sensitive_key"),
        "ssnx": "kept",
    }
    assert fired == {"sensitive_key"}


def test_extra_patterns_fire_with_their_own_rule_name() -> None:
    redactor = Redactor(RedactionPolicy(extra_patterns=(("employee_id", r"EMP-\d{6}"),)))
    assert redactor.redact_text("ticket for EMP-123456 done") == (
        "ticket for <redacted:employee_id> done",
        frozenset({"employee_id"}),
    )
    out, fired = redactor.redact_value({"a": ["EMP-654321"], "b": f"and {GITHUB}"})
    assert out == {"a": ["<redacted:employee_id>"], "b": "and <redacted:github_token>"}
    assert fired == {"employee_id", "github_token"}


def test_extra_patterns_see_short_and_anchored_values() -> None:
    redactor = Redactor(RedactionPolicy(extra_patterns=(("ticket", r"^T-\d+$"),)))
    out, fired = redactor.redact_value({"t": "T-42", "u": "see T-42"})
    assert out == {"t": marker("ticket"), "u": "see T-42"}
    assert fired == {"ticket"}


def test_allow_keys_override_built_in_key_rules_but_not_value_rules() -> None:
    redactor = Redactor(RedactionPolicy(allow_keys=("token",)))
    value = {"token": "hello world", "Token": "x"}
    assert redactor.redact_value(value) == (value, frozenset())
    out, fired = redactor.redact_value({"token": GITHUB, "access_token": "abc"})
    assert out == {"token": marker("github_token"), "access_token": marker("sensitive_key")}
    assert fired == {"github_token", "sensitive_key"}


def test_extra_keys_win_over_allow_keys() -> None:
    redactor = Redactor(RedactionPolicy(extra_keys=("token",), allow_keys=("token",)))
    assert redactor.is_sensitive_key("token")


def test_allow_values_are_never_redacted() -> None:
    redactor = Redactor(RedactionPolicy(allow_values=(AWS_ID, "hunter2")))
    value = {"v": AWS_ID, "password": "hunter2", "t": f"key {AWS_ID} and password=hunter2"}
    assert redactor.redact_value(value) == (value, frozenset())
    out, fired = redactor.redact_value({"t": f"{AWS_ID} {AWS_ID_TEMP}"})
    assert out == {"t": f"{AWS_ID} {marker('aws_access_key')}"}
    assert fired == {"aws_access_key"}


def test_invalid_regex_names_the_rule() -> None:
    with pytest.raises(ValueError, match="broken_rule"):
        Redactor(RedactionPolicy(extra_patterns=(("broken_rule", "(unclosed"),)))


def test_invalid_rule_name_is_refused() -> None:
    with pytest.raises(ValueError, match="rule name"):
        Redactor(RedactionPolicy(extra_patterns=(("bad name>", "x"),)))


def test_empty_matches_of_a_policy_pattern_are_ignored() -> None:
    redactor = Redactor(RedactionPolicy(extra_patterns=(("nothing", r"\b"),)))
    assert redactor.redact_text("plain words") == ("plain words", frozenset())


# --------------------------------------------------------------------------------------------
# Hostile input: near-misses at scale finish (no timing assertion; they must not hang)
# --------------------------------------------------------------------------------------------

MB = 1_000_000
NEAR_MISSES = {
    "letters": "a" * MB,
    "capitals": "A" * MB,
    "digits": "4" * MB,
    "colons": ":" * MB,
    "dashes": "-" * MB,
    "sk_prefixes": "sk-" * (MB // 3),
    "akia_prefixes": "AKIA" * (MB // 4),
    "jwt_heads": "eyJ" * (MB // 3),
    "card_groups": "4111 " * (MB // 5),
    "userinfo_without_at": "https://" + "a:" * (MB // 2),
    "token_chars": "aB3-" * (MB // 4),
    "bearer_words": "Bearer " * (MB // 7),
    "keyword_assignments": "token=" * (MB // 24),
    "header_lines": "cookie: " * (MB // 32),
}


@pytest.mark.parametrize("name", NEAR_MISSES)
def test_near_miss_megabytes_find_nothing(name: str) -> None:
    text = NEAR_MISSES[name]
    out, fired = R.redact_text(text)
    assert fired == frozenset()
    assert out is text


def test_hostile_hits_are_redacted() -> None:
    assert R.redact_text("ghp_" + "a" * MB) == (marker("github_token"), frozenset({"github_token"}))
    pem_heads = "-----BEGIN RSA PRIVATE KEY-----" * (MB // 31)
    assert R.redact_text(pem_heads) == (marker("private_key"), frozenset({"private_key"}))
    out, fired = R.redact_text("password=" * (MB // 36))
    assert fired == {"keyword_assignment"}
    assert "password=" in out
