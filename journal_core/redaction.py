"""Secret redaction applied to every payload before it is hashed or written.

A :class:`Redactor` walks a JSON-like tree (what ``orjson.loads`` returns) and

1. replaces the whole value of every *sensitive key* (``password``, ``apiKey``, ``X-Auth-Token``,
   ...) by ``<redacted:sensitive_key>``;
2. replaces, inside every other string, only the spans that match a known credential format
   (cloud and SaaS tokens, JWTs, PEM private keys, URL credentials, Luhn-valid card numbers,
   ``password=...`` assignments, ...) by ``<redacted:RULE>``;
3. parses strings that hold a JSON object or array, redacts them structurally and re-serialises
   them, but only when something fired inside.

Nothing is truncated, the input is never mutated, and a value in which nothing fired is returned
as the very same object. The rules, their precision choices and their known limits are specified
in ``docs/redaction.md``.

Every event passes through here, so the common case (nothing to redact) must be cheap. The walk
first *checks* the tree without copying it: key names hit a per-redactor cache, and all string
values are joined and scanned once by a Hyperscan database holding one *gate* per rule family
(a multi-pattern automaton, linear in the text). Only when a gate opens does the second,
copy-on-write pass run the precise rules of that gate's family. Each gate accepts a superset of
what its rules accept, so the fast path never hides a secret the slow path would have found.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import hyperscan
import orjson

__all__ = ["DEFAULT_REDACTOR", "RedactionPolicy", "Redactor", "key_parts", "marker"]


def marker(rule: str) -> str:
    """Return the text that replaces a secret found by ``rule``: ``<redacted:RULE>``."""
    return f"<redacted:{rule}>"


_SENSITIVE_KEY: Final = "sensitive_key"
_SENSITIVE_KEY_MARKER: Final = marker(_SENSITIVE_KEY)
_EMPTY: Final[frozenset[str]] = frozenset()
_MARKER_RE: Final = re.compile(r"<redacted:[A-Za-z0-9_.\-]+>")
_RULE_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# The shortest text a built-in rule can fire on is ``pwd=x``.
_MIN_TEXT: Final = 5
# Key names repeat endlessly across events; bound the cache so hostile payloads cannot grow it.
_KEY_CACHE_MAX: Final = 8192
_JSON_START: Final = frozenset("{[ \t\r\n")
_SCALARS: Final = frozenset({int, float, bool, type(None)})
_CONTAINERS: Final = (dict, list)

# --------------------------------------------------------------------------------------------
# Key names
# --------------------------------------------------------------------------------------------

_CAMEL_LOWER_UPPER: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_CAMEL_ACRONYM: Final = re.compile(r"(?<=[A-Z])(?=[A-Z][a-z])")
_NON_WORD: Final = re.compile(r"[\W_]+")


def key_parts(key: str) -> tuple[str, ...]:
    """Split a key name into lower-case word parts.

    Splits on every non-alphanumeric character and on camelCase boundaries, keeping acronyms and
    run-together names whole: ``apiKey`` -> ``("api", "key")``, ``X-API-Key`` ->
    ``("x", "api", "key")``, ``HTTPAuthorization`` -> ``("http", "authorization")``,
    ``PHPSESSID`` -> ``("phpsessid",)``.
    """
    spaced = _CAMEL_ACRONYM.sub(" ", _CAMEL_LOWER_UPPER.sub(" ", key))
    return tuple(part.lower() for part in _NON_WORD.split(spaced) if part)


# A word part that makes any key sensitive wherever it stands.
_STRONG_PARTS: Final = frozenset(
    {
        "secret", "secrets", "password", "passwords", "passwd", "pwd", "mysqlpwd", "passphrase",
        "passcode", "credential", "credentials", "creds", "authorization", "cookie", "cookies",
        "signature", "sig", "proof", "pin", "pincode", "csrf", "xsrf", "csrftoken", "xsrftoken",
        "sessionid", "phpsessid", "jsessionid", "sessid", "apikey", "apikeys", "privatekey",
        "secretkey", "otp", "totp", "cvv", "cvc", "cvv2",
    }
)  # fmt: skip
# Run-together lower-case names (``pgpassword``, ``clientsecret``, ``setcookie``).
_STRONG_SUFFIXES: Final = (
    "password", "passwd", "passphrase", "secret", "secrets", "credential", "credentials",
    "cookie", "cookies", "authorization", "signature", "apikey", "privatekey", "secretkey",
    "csrftoken", "xsrftoken", "sessionid",
)  # fmt: skip
_STRONG_PREFIXES: Final = (
    "password", "passwd", "passphrase", "credential", "apikey", "privatekey", "secretkey",
)  # fmt: skip
# Names that only make sense whole: ``connect.sid`` is Express's session cookie.
_JOINED_NAMES: Final = frozenset({"connectsid", "aspnetsessionid", "jsessionid", "phpsessid"})
# ``<qualifier>_key``: a key of this kind is key material, a bare ``key`` is a dictionary key.
_KEY_QUALIFIERS: Final = frozenset(
    {
        "api", "private", "secret", "access", "signing", "encryption", "master", "app", "auth",
        "client", "ssh", "gpg", "pgp", "license",
    }
)  # fmt: skip
# Words that name a credential only when they are what the field *is* (its last word part).
_HEAD_WORDS: Final = frozenset({"token", "auth", "session", "bearer", "jwt"})
# ``token_value``, ``auth_header``: the head word is still what the value holds.
_VALUE_SUFFIXES: Final = frozenset(
    {
        "value", "val", "str", "string", "raw", "data", "header", "headers", "plain",
        "plaintext", "b64", "base64", "hex", "bytes", "text",
    }
)  # fmt: skip
# ``max_token``, ``eos_token``: model and tokenizer vocabulary, not credentials.
_METRIC_PREFIXES: Final = frozenset(
    {
        "max", "min", "num", "n", "total", "count", "prompt", "completion", "input", "output",
        "cache", "cached", "reasoning", "per", "avg", "mean", "eos", "bos", "pad", "unk",
        "special", "stop", "end", "start", "sep", "cls", "mask",
    }
)  # fmt: skip
# ``access_tokens`` (plural) and ``accesstoken`` (run together) are credentials only with these.
_TOKEN_QUALIFIERS: Final = frozenset(
    {
        "access", "refresh", "id", "auth", "api", "bearer", "oauth", "session", "csrf", "xsrf",
        "personal", "bot", "app", "service", "security", "jwt", "sas", "secret", "client",
        "user", "github", "gitlab", "slack", "npm", "pypi", "hf", "huggingface", "discord",
        "telegram", "device", "registration", "push", "webhook", "deploy", "private", "signing",
    }
)  # fmt: skip
_SENSITIVE_PAIRS: Final = frozenset(
    {
        ("connect", "sid"), ("card", "number"), ("card", "num"), ("card", "no"),
        ("credit", "card"), ("debit", "card"), ("cc", "number"), ("cc", "num"),
    }
)  # fmt: skip


def _builtin_sensitive(parts: tuple[str, ...]) -> bool:
    """The built-in key rule on normalised word parts (see docs/redaction.md)."""
    if "".join(parts) in _JOINED_NAMES:
        return True
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if part in _STRONG_PARTS or part.endswith(_STRONG_SUFFIXES):
            return True
        if part.startswith(_STRONG_PREFIXES):
            return True
        prev = parts[i - 1] if i else ""
        nxt = parts[i + 1] if i < last else None
        if (prev, part) in _SENSITIVE_PAIRS:
            return True
        if part in ("key", "keys") and prev in _KEY_QUALIFIERS:
            return True
        if part in _HEAD_WORDS:
            if part == "token" and prev in _METRIC_PREFIXES:
                continue
            if nxt is None or nxt in _VALUE_SUFFIXES:
                return True
        elif part == "tokens":
            if nxt is None and prev in _TOKEN_QUALIFIERS:
                return True
        elif part.endswith(("token", "tokens")):
            if part.removesuffix("s").removesuffix("token") in _TOKEN_QUALIFIERS:
                return True
        elif part.endswith(("key", "keys")) and (
            part.removesuffix("s").removesuffix("key") in _KEY_QUALIFIERS
        ):
            return True
    return False


def _contains_run(parts: tuple[str, ...], run: tuple[str, ...]) -> bool:
    width = len(run)
    return any(parts[i : i + width] == run for i in range(len(parts) - width + 1))


# --------------------------------------------------------------------------------------------
# Value rules
# --------------------------------------------------------------------------------------------

# An edit replaces text[start:end] by marker(rule).
_Edit = tuple[int, int, str]
# A decision on one regex match, given the original text.
_Decide = Callable[["re.Match[str]", str], "_Edit | None"]

_PLACEHOLDER_WORDS: Final = frozenset(
    {
        "null", "none", "nil", "true", "false", "undefined", "yes", "no", "on", "off",
        "required", "optional", "redacted", "[redacted]", "[filtered]", "hidden", "masked",
        "str", "string", "int", "bool", "bytes", "any", "secretstr", "",
    }
)  # fmt: skip
_PLACEHOLDER_RE: Final = re.compile(
    r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|%[A-Za-z_][A-Za-z0-9_]*%|\{\{.*\}\}|\{[^{}]*\}"
    r"|<[^<>]*>|[xX]{3,}",
    re.DOTALL,
)
_ALNUM_RE: Final = re.compile("[A-Za-z0-9]")
_CODE_REFERENCE_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _is_placeholder(value: str) -> bool:
    """Values people write instead of a secret: empty, ``${VAR}``, ``<token>``, ``***``...

    A value without a single letter or digit (``{``, ``--``) is punctuation, not a secret.
    """
    return (
        value.lower() in _PLACEHOLDER_WORDS
        or _PLACEHOLDER_RE.fullmatch(value) is not None
        or _ALNUM_RE.search(value) is None
    )


_DIGIT_RE: Final = re.compile("[0-9]")
_UPPER_RE: Final = re.compile("[A-Z]")
_LOWER_RE: Final = re.compile("[a-z]")


def _looks_random(value: str) -> bool:
    """True for machine-made credentials, false for words (``authentication``, ``required``).

    A credential of 8+ characters almost surely holds a digit or mixes upper and lower case
    past its first character; an English word or a lower-case identifier does not.
    """
    if len(value) < 8:
        return False
    head = value[:64]  # enough to judge; keeps the test cheap on huge values
    if _DIGIT_RE.search(head):
        return True
    return _UPPER_RE.search(head, 1) is not None and _LOWER_RE.search(head, 1) is not None


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_TOK = r"A-Za-z0-9_\-"

# Rule regexes start with a literal wherever they can (CPython's ``re`` jumps between occurrences
# of a literal quickly, but tests a character class at every position); a boundary check that
# logically comes first is written as a look-behind right after the literal.
_PEM_RE: Final = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|.*)",
    re.DOTALL,
)
_JWT_RE: Final = re.compile(rf"eyJ(?<![{_TOK}]eyJ)[{_TOK}]{{8,}}+\.eyJ[{_TOK}]{{8,}}+\.[{_TOK}]*+")
_AWS_GOOGLE_RE: Final = re.compile(
    r"A(?:(?P<aws>(?:KIA|SIA|BIA|CCA)(?<![A-Za-z0-9].{4})[A-Z2-7]{16}(?![A-Za-z0-9]))"
    rf"|(?P<google>Iza(?<![{_TOK}].{{4}})[{_TOK}]{{35}}(?![{_TOK}])))"
)
_GIT_RE: Final = re.compile(
    rf"g(?<![{_TOK}]g)(?:(?P<github>h[pousr]_[A-Za-z0-9]{{36,}}+|ithub_pat_[A-Za-z0-9_]{{82,}}+)"
    rf"|(?P<gitlab>lpat-[{_TOK}]{{20,}}+))"
)
_SLACK_TOKEN_RE: Final = re.compile(rf"xox(?<![{_TOK}]xox)[baprs]-[A-Za-z0-9\-]{{10,}}+")
_SLACK_WEBHOOK_RE: Final = re.compile(
    r"://hooks\.slack\.com/(?P<path>(?:services|workflows|triggers)/[A-Za-z0-9_/+\-]{8,}+)"
)
# Matches from the ``k`` of ``sk_live_``; the decision widens the span by the one letter before.
_STRIPE_RE: Final = re.compile(
    rf"k_(?:live|test)_(?<=[rs]k_...._)(?<![{_TOK}].k_...._)[A-Za-z0-9]{{24,}}+"
)
_SK_RE: Final = re.compile(
    rf"sk-(?<![{_TOK}]sk-)(?:(?P<anthropic>ant-[{_TOK}]{{20,}}+)|(?P<openai>[{_TOK}]{{20,}}+))"
)
_OPENAI_MARK_RE: Final = re.compile(rf"(?<![{_TOK}])[{_TOK}]{{20,}}T3BlbkFJ[{_TOK}]{{20,}}+")
_NPM_RE: Final = re.compile(r"npm_(?<![A-Za-z0-9_]npm_)[A-Za-z0-9]{36,}+")
_PYPI_RE: Final = re.compile(rf"pypi-AgEIcHlwaS5vcmc(?<![{_TOK}].{{20}})[{_TOK}]{{50,}}+")
_USERINFO_RE: Final = re.compile(r"://(?P<ui>[^\s/?#@:\"'<>\\]*+:(?P<pw>[^\s/?#@\"'<>\\]++))@")
_BEARER_RE: Final = re.compile(
    rf"B(?:earer|EARER)(?<![{_TOK}].{{6}})[ \t]+(?P<cred>[A-Za-z0-9._~+/\-]++=*+)"
)
_BASIC_RE: Final = re.compile(
    rf"B(?:asic|ASIC)(?<![{_TOK}].{{5}})[ \t]+"
    r"(?P<cred>[A-Za-z0-9+/]{6,}+={0,2})(?![A-Za-z0-9+/=])"
)
_CARD_RE: Final = re.compile(
    r"[2-6](?<![0-9A-Za-z_.,/#\-].)(?:[0-9]{12,18}+"
    r"|[0-9]{3}(?P<s1>[ \-])[0-9]{4}(?P=s1)[0-9]{4}(?P=s1)[0-9]{1,7}+"
    r"|[0-9]{3}(?P<s2>[ \-])[0-9]{6}(?P=s2)[0-9]{4,5}+)"
    r"(?![0-9A-Za-z_]|[.,\-][0-9])"
)

# Assignments ``<identifier><gap><delimiter><value>`` (keyword_assignment, aws_secret_key and
# url_query_secret) are found from the delimiter: every ``:`` is first turned into ``=`` (same
# length, so positions hold), and look-behinds check that the identifier before it ends with a
# keyword (see _ends_with). The identifier and the value are then read around that position.
_ASSIGN_ENDINGS: Final = (
    "password", "passwd", "passphrase", "pwd", "secret", "token", "credential", "credentials",
    "authorization", "cookie", "signature", "sig", "auth", "sessionid", "key",
)  # fmt: skip
_ASSIGN_GAPS: Final = tuple(
    b + q + w for b in ("", "\\") for q in ("", '"', "'") for w in ("", " ", "\t")
)
_KEYWORD_ENDINGS: Final = (
    "passphrase", "password", "passwd", "authorization", "credentials", "credential", "cookie",
    "signature", "sessionid", "secret", "token", "pwd", "auth", "sig",
)  # fmt: skip
_ASSIGN_KEY_QUALIFIERS: Final = (
    "api", "access", "secret", "private", "auth", "signing", "encryption", "client", "master",
    "app",
)  # fmt: skip
# Matched against the identifier reversed, so that "ends with" is one anchored match.
_KEYWORD_REVERSED_RE: Final = re.compile(
    "|".join(k[::-1] for k in _KEYWORD_ENDINGS)
    + r"|yek[_.\-]?(?:"
    + "|".join(q[::-1] for q in _ASSIGN_KEY_QUALIFIERS)
    + ")",
    re.IGNORECASE | re.ASCII,
)
_PASSWORD_KEYWORDS: Final = frozenset({"password", "passwd", "passphrase", "pwd", "secret"})
_AWS_SECRET_IDENT_RE: Final = re.compile(
    r"(?:.*[_.\-])?(?:aws[_.\-]?secret[_.\-]?(?:access[_.\-]?)?|secret[_.\-]?access[_.\-]?)key"
)
_AWS_SECRET_VALUE_RE: Final = re.compile(r"[A-Za-z0-9/+]{40}")
# The window before a delimiter, reversed: gap (reversed), then the identifier (reversed).
_IDENT_BEFORE_RE: Final = re.compile(r"([ \t]?)([\"']?)(\\?)([A-Za-z0-9_.\-]{1,128})")
# A value is judged on its first 64 characters and, once accepted, followed to its end: a
# rejected long value is never scanned whole, which keeps hostile repetition linear.
_VALUE_RE: Final = re.compile(
    r"[ \t]*(?:\\\"(?P<eq>(?:[^\"\\\n]|\\[^\"\n]){0,64})"
    r"|\"(?P<dq>(?:[^\"\\\n]|\\.){0,64})"
    r"|'(?P<sq>[^'\n]{0,64})"
    r"|(?P<bare>[^\s\"'`,;&<>()\[\]\\]{1,64}))"
)
_VALUE_REST_RE: Final = {
    "eq": re.compile(r"(?:[^\"\\\n]|\\[^\"\n])*+"),
    "dq": re.compile(r"(?:[^\"\\\n]|\\.)*+"),
    "sq": re.compile(r"[^'\n]*+"),
    "bare": re.compile(r"[^\s\"'`,;&<>()\[\]\\]*+"),
}
_QUERY_VALUE_RE: Final = re.compile(r"[^&#;\s\"'<>]++")
_HEADER_VALUE_RE: Final = re.compile(r"[ \t]*(?P<quote>[\"']?)(?P<value>[^\n\"']{0,64})")
# The rest of a header: to the end of the line, or to the closing quote when it is quoted.
_UNTIL_QUOTE: Final = {
    "": re.compile(r"[^\n]*+"),
    '"': re.compile(r'(?:[^\n"\\]|\\.)*+'),
    "'": re.compile(r"(?:[^\n'\\]|\\.)*+"),
}
_SCHEME_RE: Final = re.compile(r"[ \t]*([\"']?)([A-Za-z][A-Za-z0-9_\-]*)[ \t]+([^\s\"']+)")


def _either_case(ch: str) -> set[str]:
    return {ch.lower(), ch.upper()}


def _ends_with(
    suffixes: Iterable[str], anchor: str, variants: Callable[[str], set[str]] = _either_case
) -> str:
    """A pattern matching ``anchor`` when the text up to it ends with one of ``suffixes``.

    The anchor is the pattern's literal prefix: the regex engine jumps between its occurrences
    quickly. At each, two one-character look-behinds (the last and the second-to-last character)
    reject most positions; then one look-behind per suffix length tests the remaining
    candidates. Inside a look-behind every alternative starts with a literal or a class, which
    the engine rejects in one test. ``variants`` gives the characters a suffix character may
    appear as in the scanned text (by default: either case).
    """

    def chars(text: str) -> str:
        return "".join(cls(ch) for ch in text)

    def cls(*text: str) -> str:
        allowed = sorted({v for ch in text for v in variants(ch)})
        escaped = "".join(re.escape(c) for c in allowed)
        return escaped if len(allowed) == 1 else f"[{escaped}]"

    unique = sorted(set(suffixes))
    assert all(len(suffix) >= 2 for suffix in unique)
    by_length: dict[int, set[str]] = {}
    for suffix in unique:
        by_length.setdefault(len(suffix), set()).add(chars(suffix))
    end = re.escape(anchor)
    last = cls(*(suffix[-1] for suffix in unique))
    second = cls(*(suffix[-2] for suffix in unique))
    groups = "|".join(
        f"(?<=(?:{'|'.join(sorted(group))}){end})" for _, group in sorted(by_length.items())
    )
    return f"{end}(?<={last}{end})(?<={second}.{end})(?:{groups})"


_ASSIGN_RE: Final = re.compile(
    _ends_with((e + g for e in _ASSIGN_ENDINGS for g in _ASSIGN_GAPS), "="), re.DOTALL
)

# Gates. One pattern per rule family, each accepting a superset of what the family's rules
# accept (a keyword then a delimiter, a token prefix, a literal that starts a format, ...), all
# compiled into one Hyperscan database: one pass of a multi-pattern automaton over the UTF-8
# bytes finds every family whose gate opens. Python's ``re`` takes one pass per gate, at
# several times the cost (docs/performance.md).
_F_ASSIGN: Final = 1
_F_TOKEN: Final = 2
_F_ABJ: Final = 4
_F_AT: Final = 8
_F_CARD: Final = 16

# Provider token prefixes. Their gate folds ``-`` and ``_`` together: ``sk-`` also opens it for
# ``sk_live_``.
_TOKEN_PREFIXES: Final = (
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xoxb-", "xoxa-", "xoxp-",
    "xoxr-", "xoxs-", "sk-", "rk_live_", "rk_test_", "npm_", "pypi-",
)  # fmt: skip
# The literals that start the formats of the A/B/J family (named for the letters most begin
# with).
_ABJ_LITERALS: Final = (
    "AKIA", "ASIA", "ABIA", "ACCA", "AIza", "Bearer", "BEARER", "Basic", "BASIC", "-----BEGIN",
    "eyJ", "T3BlbkFJ",
)  # fmt: skip
_GATES: Final = (
    # An assignment keyword, up to three characters (backslash, quote, space or tab) and a
    # delimiter; and a Slack webhook's host.
    (
        _F_ASSIGN,
        "(?:" + "|".join(_ASSIGN_ENDINGS) + r")[ \t\"'\\]{0,3}[:=]|://hooks\.slack\.com/",
        hyperscan.HS_FLAG_CASELESS,
    ),
    (
        _F_TOKEN,
        "(?:" + "|".join(re.sub("[-_]", "[-_]", p[:-1]) for p in _TOKEN_PREFIXES) + ")[-_]",
        0,
    ),
    (_F_ABJ, "|".join(re.escape(literal) for literal in _ABJ_LITERALS), 0),
    # ``scheme://user:password@``: the userinfo rule's own pattern (Hyperscan's ``\s`` is ASCII
    # only: a wider class than the rule's, so still a superset).
    (_F_AT, r"://[^\s/?#@:\"'<>\\]*:[^\s/?#@\"'<>\\]+@", 0),
    # 13 digits in a row or two groups of four split by a space or dash (a card's first
    # groups); the precise shapes, issuer digit and Luhn check come later.
    (_F_CARD, r"[0-9]{4}(?:[0-9]{9}|[ \-][0-9]{4})", 0),
)


@functools.cache
def _gate_database() -> hyperscan.Database:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[pattern.encode("ascii") for _, pattern, _ in _GATES],
        ids=[family for family, _, _ in _GATES],
        elements=len(_GATES),
        flags=[flags | hyperscan.HS_FLAG_SINGLEMATCH for _, _, flags in _GATES],
    )
    return database


# Per thread: Hyperscan's scratch space must not be shared, and the scan releases the GIL.
_GATE_THREAD: Final = threading.local()


def _gate_opened(family: int, _start: int, _end: int, _flags: int, opened: list[int]) -> None:
    opened.append(family)


def _families(text: str) -> int:
    """The rule families whose gate opens on ``text``: a superset of the families that fire."""
    try:
        database, scratch = _GATE_THREAD.scanner
    except AttributeError:
        # Compiled at first use, not at import: it takes tens of milliseconds.
        database = _gate_database()
        scratch = hyperscan.Scratch(database)
        _GATE_THREAD.scanner = (database, scratch)
    opened: list[int] = []
    # Positional arguments: keyword parsing would cost half as much as the scan itself.
    database.scan(text.encode("utf-8", "surrogatepass"), _gate_opened, 0, opened, scratch)
    return sum(opened)  # each family is reported at most once (single-match), so this is an OR


def _decide_pem(m: re.Match[str], text: str) -> _Edit:
    return m.start(), m.end(), "private_key"


def _decide_jwt(m: re.Match[str], text: str) -> _Edit:
    return m.start(), m.end(), "jwt"


def _decide_aws_google(m: re.Match[str], text: str) -> _Edit:
    return m.start(), m.end(), "aws_access_key" if m.group("aws") else "google_api_key"


def _decide_git(m: re.Match[str], text: str) -> _Edit:
    return m.start(), m.end(), "github_token" if m.group("github") else "gitlab_token"


def _decide_slack_token(m: re.Match[str], text: str) -> _Edit:
    return m.start(), m.end(), "slack_token"


def _decide_slack_webhook(m: re.Match[str], text: str) -> _Edit:
    return m.start("path"), m.end("path"), "slack_webhook"


def _decide_stripe(m: re.Match[str], text: str) -> _Edit:
    return m.start() - 1, m.end(), "stripe_key"


def _decide_sk(m: re.Match[str], text: str) -> _Edit | None:
    body = m.group("anthropic") or m.group("openai")
    if not _looks_random(body.removeprefix("proj-").removeprefix("ant-")):
        return None  # ``sk-learn-some-long-name``: a hyphenated word, not a key
    return m.start(), m.end(), "anthropic_key" if m.group("anthropic") else "openai_key"


def _decide_openai_mark(m: re.Match[str], text: str) -> _Edit:
    return m.start(), m.end(), "openai_key"


def _decide_npm(m: re.Match[str], text: str) -> _Edit:
    return m.start(), m.end(), "npm_token"


def _decide_pypi(m: re.Match[str], text: str) -> _Edit:
    return m.start(), m.end(), "pypi_token"


def _decide_userinfo(m: re.Match[str], text: str) -> _Edit | None:
    if _is_placeholder(m.group("pw")):
        return None
    return m.start("ui"), m.end("ui"), "url_userinfo"


def _decide_bearer(m: re.Match[str], text: str) -> _Edit | None:
    cred = m.group("cred")
    if len(cred) < 8 or not (
        len(cred) >= 24 or _looks_random(cred) or any(c in "._~+/-=" for c in cred)
    ):
        return None  # "the Bearer of bad news": prose, not a header
    return m.start("cred"), m.end("cred"), "bearer_token"


def _basic_credential(cred: str) -> bool:
    """``Basic`` + base64 of ``user:password`` (printable text holding a colon)."""
    if len(cred) % 4:
        return False
    try:
        decoded = base64.b64decode(cred, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return ":" in decoded and decoded.isprintable()


def _decide_basic(m: re.Match[str], text: str) -> _Edit | None:
    context = text[max(0, m.start() - 64) : m.start()].lower()
    if not (_basic_credential(m.group("cred")) or "authorization" in context):
        return None
    return m.start("cred"), m.end("cred"), "basic_auth"


def _decide_card(m: re.Match[str], text: str) -> _Edit | None:
    digits = m.group().replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or not _luhn_ok(digits):
        return None
    return m.start(), m.end(), "card_number"


def _keyword_of(ident: str, reversed_ident: str) -> tuple[str, int] | None:
    """The keyword ``ident`` ends with, lower-cased, and where it starts; None if none does.

    The keyword must start a word part (``db_token``, ``dbToken``, ``DB_TOKEN``), except the
    password words, which are unambiguous even run together (``PGPASSWORD``).
    """
    found = _KEYWORD_REVERSED_RE.match(reversed_ident)
    if found is None:
        return None
    keyword = found.group()[::-1].lower()
    start = len(ident) - len(keyword)
    if keyword in ("password", "passwd", "passphrase") or start == 0:
        return keyword, start
    prev, first = ident[start - 1], ident[start]
    if (
        not prev.isalnum()
        or (first.isupper() and (prev.islower() or prev.isdigit()))  # camelCase
        or (prev.isupper() and ident[start:].isupper())  # GITHUBTOKEN, OLDPWD
    ):
        return keyword, start
    return None


def _header_edit(text: str, start: int, keyword: str, outer_quote: str) -> _Edit | None:
    """``Authorization: <scheme> <credentials>`` and ``Cookie: ...`` header lines.

    A header runs to the end of its line, or to the closing quote when it is quoted (its value,
    or the whole ``'Authorization: ...'`` as in a ``curl -H`` argument). Acceptance is decided
    on at most the first 64 characters, and only an accepted header is followed to its end, so
    that hostile repetition stays linear.
    """
    if keyword == "authorization":
        scheme = _SCHEME_RE.match(text, start)
        if scheme is None:
            return None
        name = scheme.group(2).lower()
        token = scheme.group(3)
        cred_start, cred_end = scheme.span(3)
        if name in ("bearer", "basic", "token"):
            credential = len(token) >= 16 or _looks_random(token)
        else:  # Digest, AWS4-HMAC-SHA256...: parameters or one opaque blob to the header's end
            credential = "=" in text[cred_start : cred_start + 64] or _looks_random(token)
        if _is_placeholder(token) or not credential:
            return None  # "Authorization: required for this endpoint" is prose
        if name not in ("bearer", "basic", "token"):
            rest = _UNTIL_QUOTE[scheme.group(1) or outer_quote].match(text, cred_start)
            assert rest is not None
            cred_end = cred_start + len(rest.group().rstrip())
        rule = {"bearer": "bearer_token", "basic": "basic_auth"}.get(name, "keyword_assignment")
        return cred_start, cred_end, rule
    head = _HEADER_VALUE_RE.match(text, start)
    assert head is not None
    value = head.group("value")
    if len(value) < 64:
        value = value.rstrip()
        if _is_placeholder(value) or not ("=" in value or _looks_random(value)):
            return None
    elif not ("=" in value or _looks_random(value)):
        return None
    value_start = head.start("value")
    rest = _UNTIL_QUOTE[head.group("quote") or outer_quote].match(text, value_start)
    assert rest is not None
    return value_start, value_start + len(rest.group().rstrip()), "keyword_assignment"


def _decide_assignment(m: re.Match[str], text: str) -> _Edit | None:
    """An assignment found at its delimiter (``m`` matched the ``:``-to-``=`` translated text)."""
    pos = m.start()
    delimiter = text[pos]
    value_start = pos + 1
    follower = text[value_start : value_start + 1]
    if (delimiter, follower) in ((":", "="), ("=", ">")):
        value_start += 1  # ``token := x``, ``password => x``
    elif follower in ("=", ":"):
        return None  # ``==`` compares, ``::`` scopes
    before = _IDENT_BEFORE_RE.match(text[max(0, pos - 134) : pos][::-1])
    if before is None:
        return None
    reversed_ident = before.group(4)
    ident = reversed_ident[::-1]
    ident_start = pos - len(before.group(0))
    found = _keyword_of(ident, reversed_ident)
    in_query = (
        ident_start > 0
        and text[ident_start - 1] in "?&#;"
        and delimiter == "="
        and len(before.group(0)) == len(ident)
    )
    if in_query:
        if found is None and ident.lower() != "key":
            return None
        query_value = _QUERY_VALUE_RE.match(text, value_start)
        if query_value is None or _is_placeholder(query_value.group()[:256]):
            return None
        return query_value.start(), query_value.end(), "url_query_secret"
    if found is None:
        return None
    keyword = found[0]
    if keyword in ("authorization", "cookie") and delimiter == ":":
        outer = text[ident_start - 1] if ident_start else ""
        return _header_edit(text, value_start, keyword, outer if outer in ("'", '"') else "")
    value_match = _VALUE_RE.match(text, value_start)
    if value_match is None:
        return None
    kind = value_match.lastgroup
    assert kind is not None
    start, end = value_match.span(kind)
    value = text[start:end]
    if _AWS_SECRET_VALUE_RE.fullmatch(value) and _AWS_SECRET_IDENT_RE.fullmatch(ident.lower()):
        return start, end, "aws_secret_key"
    if keyword in _PASSWORD_KEYWORDS:
        if keyword == "pwd" and value.startswith(("/", "~")):
            return None  # PWD=/home/me is the shell's working directory
    elif not _looks_random(value):
        return None  # ``token: 4096``, ``auth: required``
    if kind == "bare" and (
        text[end : end + 1] in ("(", "[") or _CODE_REFERENCE_RE.fullmatch(value)
    ):
        return None  # ``token = make_token()``, ``password = args.password``: code
    if _is_placeholder(value) or value.lower() == ident.lower():
        return None
    if end - start == 64:
        rest = _VALUE_REST_RE[kind].match(text, end)
        assert rest is not None
        end = rest.end()
    return start, end, "keyword_assignment"


@dataclass(frozen=True, slots=True)
class _TextRule:
    """One built-in value rule: its family, a cheap guard, a regex, a decision per match."""

    family: int
    need: str  # a substring the text must hold (one character: a memchr)
    regex: re.Pattern[str]
    decide: _Decide
    colon_as_equals: bool = False


# Order matters: the widest spans (a PEM block, a JWT) go first so that narrower rules do not
# fire inside them, and the assignment and card rules go last so that they see markers, not
# the tokens the specific rules already named.
_TEXT_RULES: Final = (
    _TextRule(_F_ABJ, "-----BEGIN", _PEM_RE, _decide_pem),
    _TextRule(_F_ABJ, "eyJ", _JWT_RE, _decide_jwt),
    _TextRule(_F_ABJ, "A", _AWS_GOOGLE_RE, _decide_aws_google),
    _TextRule(_F_TOKEN, "g", _GIT_RE, _decide_git),
    _TextRule(_F_TOKEN, "xox", _SLACK_TOKEN_RE, _decide_slack_token),
    _TextRule(_F_ASSIGN, "://hooks.slack.com/", _SLACK_WEBHOOK_RE, _decide_slack_webhook),
    _TextRule(_F_TOKEN, "k_", _STRIPE_RE, _decide_stripe),
    _TextRule(_F_TOKEN, "sk-", _SK_RE, _decide_sk),
    _TextRule(_F_ABJ, "T3BlbkFJ", _OPENAI_MARK_RE, _decide_openai_mark),
    _TextRule(_F_TOKEN, "npm_", _NPM_RE, _decide_npm),
    _TextRule(_F_TOKEN, "pypi-", _PYPI_RE, _decide_pypi),
    _TextRule(_F_AT, "@", _USERINFO_RE, _decide_userinfo),
    _TextRule(_F_ABJ, "B", _BEARER_RE, _decide_bearer),
    _TextRule(_F_ABJ, "B", _BASIC_RE, _decide_basic),
    _TextRule(_F_ASSIGN, "", _ASSIGN_RE, _decide_assignment, colon_as_equals=True),
    _TextRule(_F_CARD, "", _CARD_RE, _decide_card),
)


def _json_container(text: str) -> dict[object, object] | list[object] | None:
    """``text`` parsed when it holds a JSON object or array, else None."""
    stripped = text.strip()
    if not stripped or (stripped[0], stripped[-1]) not in (("{", "}"), ("[", "]")):
        return None
    try:
        parsed = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict | list) else None


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedactionPolicy:
    """Additions to and exceptions from the built-in rules.

    ``extra_keys`` are more sensitive key names, normalised like the built-ins: an entry matches
    any key whose word parts contain the entry's word parts in a row (``"ssn"`` matches ``ssn``,
    ``user_ssn`` and ``ssnValue``). ``extra_patterns`` are ``(rule_name, regex)`` pairs applied to
    every string value and to free text after the built-in rules; a match is replaced by
    ``<redacted:rule_name>``. ``allow_keys`` are key names (compared after normalisation, whole
    name) never treated as sensitive by the built-in key rule; their values are still scanned by
    the value rules, and ``extra_keys`` win over them. ``allow_values`` are exact strings never
    redacted, neither as a whole value nor as a matched span.
    """

    extra_keys: tuple[str, ...] = ()
    extra_patterns: tuple[tuple[str, str], ...] = ()
    allow_keys: tuple[str, ...] = ()
    allow_values: tuple[str, ...] = ()


class Redactor:
    """Removes secrets from JSON-like payloads and free text. Thread-safe; build once, reuse.

    The constructor compiles the policy and raises ``ValueError`` naming the rule when a pattern
    does not compile or a rule name is not a plain identifier. The redaction methods never raise
    on JSON-like input.
    """

    __slots__ = (
        "_allow_keys",
        "_allow_values",
        "_extra_keys",
        "_extra_rules",
        "_key_cache",
        "_min_text",
        "_safe_keys",
    )

    def __init__(self, policy: RedactionPolicy = RedactionPolicy()) -> None:
        extra_rules: list[tuple[re.Pattern[str], _Decide]] = []
        for name, source in policy.extra_patterns:
            if not _RULE_NAME_RE.fullmatch(name):
                raise ValueError(
                    f"redaction rule name {name!r} must be 1-64 letters, digits, '_', '.' or '-'"
                )
            try:
                extra_rules.append((re.compile(source), _whole_match(name)))
            except re.error as exc:
                raise ValueError(f"redaction rule {name!r}: invalid regex: {exc}") from None
        self._extra_rules = tuple(extra_rules)
        # Built-in rules need five characters at least; a policy pattern may need fewer.
        self._min_text = 1 if extra_rules else _MIN_TEXT
        self._extra_keys = tuple(p for p in (key_parts(k) for k in policy.extra_keys) if p)
        self._allow_keys = frozenset(key_parts(k) for k in policy.allow_keys)
        self._allow_values = frozenset(policy.allow_values)
        self._key_cache: dict[object, bool] = {}
        self._safe_keys: set[object] = set()

    # -- keys ----------------------------------------------------------------------------------

    def is_sensitive_key(self, key: object) -> bool:
        """Whether the value under ``key`` is replaced whole (cached per key name)."""
        cached = self._key_cache.get(key)
        if cached is not None:
            return cached
        parts = key_parts(key if isinstance(key, str) else str(key))
        if any(_contains_run(parts, extra) for extra in self._extra_keys):
            sensitive = True
        elif parts in self._allow_keys:
            sensitive = False
        else:
            sensitive = _builtin_sensitive(parts)
        if len(self._key_cache) >= _KEY_CACHE_MAX:
            self._key_cache.clear()
            self._safe_keys.clear()
        self._key_cache[key] = sensitive
        if not sensitive:
            self._safe_keys.add(key)
        return sensitive

    def _masks(self, value: object) -> bool:
        """Whether a value under a sensitive key must be replaced.

        ``null``, booleans, empty strings and containers carry no secret and tell the operator
        "unset"; a value that already is a marker stays as it is, which keeps redaction
        idempotent.
        """
        if value is None or value is True or value is False:
            return False
        if isinstance(value, str):
            return not (
                value == ""
                or value in self._allow_values
                or (value.startswith("<redacted:") and _MARKER_RE.fullmatch(value) is not None)
            )
        if isinstance(value, dict | list):
            return bool(value)
        return True

    # -- text ----------------------------------------------------------------------------------

    def _texts_may_fire(self, texts: list[str]) -> bool:
        if _families(texts[0] if len(texts) == 1 else "\n".join(texts)):
            return True
        # Per string: a policy pattern may anchor on the start or end of a value.
        return bool(self._extra_rules) and any(
            regex.search(t) for regex, _ in self._extra_rules for t in texts
        )

    def _apply(
        self, text: str, scanned: str, regex: re.Pattern[str], decide: _Decide, fired: set[str]
    ) -> str:
        """Replace by markers the spans ``decide`` picks among the matches of ``regex``.

        ``scanned`` is ``text`` or a same-length translation of it. Matches inside a span
        already replaced are skipped before ``decide`` runs, so that work stays linear; spans
        overlapping an earlier marker or equal to an allowed value are left alone.
        """
        pieces: list[str] = []
        last = 0
        markers = [m.span() for m in _MARKER_RE.finditer(text)] if "<redacted:" in text else []
        marker_starts = [start for start, _ in markers]
        for match in regex.finditer(scanned):
            if match.start() < last:
                continue
            edit = decide(match, text)
            if edit is None:
                continue
            start, end, rule = edit
            if start < last or start >= end:
                continue
            if markers:
                i = bisect.bisect_left(marker_starts, end)  # markers starting before the end
                if i and markers[i - 1][1] > start:
                    continue  # never redact inside an earlier marker: keeps redaction idempotent
            if self._allow_values and text[start:end] in self._allow_values:
                continue
            pieces.append(text[last:start])
            pieces.append(marker(rule))
            fired.add(rule)
            last = end
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)

    def _redact_plain(self, text: str, fired: set[str]) -> str:
        """The value rules on one string, without the JSON-in-string step."""
        if len(text) < self._min_text:
            return text
        families = _families(text)
        if families:
            for rule in _TEXT_RULES:
                if rule.family & families and rule.need in text:
                    scanned = text.replace(":", "=") if rule.colon_as_equals else text
                    text = self._apply(text, scanned, rule.regex, rule.decide, fired)
        for regex, decide in self._extra_rules:
            text = self._apply(text, text, regex, decide, fired)
        return text

    def _redact_str(self, text: str, fired: set[str]) -> str:
        if self._allow_values and text in self._allow_values:
            return text
        if text and text[0] in _JSON_START:
            parsed = _json_container(text)
            if parsed is not None:
                inner: set[str] = set()
                redacted = self._redact_tree(parsed, inner)
                if not inner:
                    return text
                fired |= inner
                try:
                    return orjson.dumps(redacted).decode()
                except orjson.JSONEncodeError:
                    # Deeper than orjson serialises: give up the structure, keep no secret.
                    return marker(min(inner))
        return self._redact_plain(text, fired)

    def redact_text(self, text: str) -> tuple[str, frozenset[str]]:
        """Redact free text (an error message, a chunk of tool output).

        All the text is kept; only secret spans become markers. A chunk that is one whole JSON
        object or array is redacted structurally, like a string value. Returns the text (the
        same object when nothing fired) and the names of the rules that fired.
        """
        fired: set[str] = set()
        out = self._redact_str(text, fired)
        return out, frozenset(fired) if fired else _EMPTY

    # -- trees ---------------------------------------------------------------------------------

    def _may_fire(self, root: dict[object, object] | list[object]) -> bool:
        """Check a tree without copying it: could any rule fire anywhere in it?"""
        texts: list[str] = []
        add = texts.append
        stack: list[object] = [root]
        push = stack.append
        safe = self._safe_keys
        allow = self._allow_values
        min_text, json_start, scalars = self._min_text, _JSON_START, _SCALARS
        while stack:
            node = stack.pop()
            values: Iterable[object]
            if isinstance(node, dict):
                if node.keys() <= safe:
                    values = node.values()  # every key already known harmless: checked in C
                else:
                    values = []
                    for key, value in node.items():
                        if not self.is_sensitive_key(key):
                            values.append(value)
                        elif self._masks(value):
                            return True
            else:
                assert isinstance(node, list)
                values = node
            for value in values:
                if isinstance(value, str):
                    if len(value) < min_text or (allow and value in allow):
                        continue
                    if value[0] in json_start:
                        parsed = _json_container(value)
                        if parsed is not None:
                            push(parsed)
                            continue
                    add(value)
                elif type(value) not in scalars and isinstance(value, _CONTAINERS) and value:
                    push(value)
        return bool(texts) and self._texts_may_fire(texts)

    def _redact_tree(self, root: dict[object, object] | list[object], fired: set[str]) -> object:
        """Copy-on-write walk of a container; iterative so that depth never hits a limit."""
        # A frame: [container, iterator over (key, value), copy or None, key in parent, is dict].
        stack: list[list[object]] = [_frame(root, None)]
        while True:
            frame = stack[-1]
            node, items, copy, _, keyed = frame
            assert isinstance(items, Iterable)
            child: object = None
            child_key: object = None
            for key, value in items:
                if keyed and self.is_sensitive_key(key):
                    if not self._masks(value):
                        continue
                    new: object = _SENSITIVE_KEY_MARKER
                    fired.add(_SENSITIVE_KEY)
                elif isinstance(value, str):
                    new = self._redact_str(value, fired)
                elif isinstance(value, dict | list):
                    if value:
                        child, child_key = value, key
                        break
                    continue
                else:
                    continue
                if new is not value:
                    if copy is None:
                        copy = frame[2] = _copy(node)
                    _assign(copy, key, new)
            if child is not None:
                stack.append(_frame(child, child_key))
                continue
            stack.pop()
            result = node if copy is None else copy
            if not stack:
                return result
            if result is not node:
                parent = stack[-1]
                if parent[2] is None:
                    parent[2] = _copy(parent[0])
                _assign(parent[2], frame[3], result)

    def redact_value(self, value: object) -> tuple[object, frozenset[str]]:
        """Redact a JSON-like tree (what ``orjson.loads`` returns).

        Returns a new tree, or the very same object when nothing fired, and the names of the
        rules that fired. The input is never mutated.
        """
        if isinstance(value, str):
            return self.redact_text(value)
        if not isinstance(value, dict | list) or not value or not self._may_fire(value):
            return value, _EMPTY
        fired: set[str] = set()
        out = self._redact_tree(value, fired)
        return out, frozenset(fired) if fired else _EMPTY


def _whole_match(rule: str) -> _Decide:
    def decide(m: re.Match[str], text: str) -> _Edit:
        return m.start(), m.end(), rule

    return decide


def _frame(node: object, key: object) -> list[object]:
    if isinstance(node, dict):
        return [node, iter(node.items()), None, key, True]
    assert isinstance(node, list)
    return [node, enumerate(node), None, key, False]


def _copy(node: object) -> dict[object, object] | list[object]:
    if isinstance(node, dict):
        return dict(node)
    assert isinstance(node, list)
    return list(node)


def _assign(container: object, key: object, value: object) -> None:
    if isinstance(container, dict):
        container[key] = value
    else:
        assert isinstance(container, list)
        assert isinstance(key, int)
        container[key] = value


DEFAULT_REDACTOR: Final = Redactor()
"""A redactor with the built-in rules only, shared by the whole process."""
