"""No secret reaches the disk, through any write path; benign look-alikes are kept intact.

A seeded corpus of made-up, format-valid credentials (many per format) goes through every
public write path: event payloads (dict and JSON text), transcript (tape) entries, tool output
chunks, approval summaries, prompt summaries and details and decision reasons, memory items, run
errors, session labels and text artifacts. Then the raw bytes of the database, its ``-wal`` and
``-shm`` files (while open and after close) and of a backup are scanned for each secret and for
its distinctive body. Benign values that look like secrets go through the same paths and must
read back unchanged through the API.
"""

from __future__ import annotations

import asyncio
import base64
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from journal_core import (
    EventInput,
    Journal,
    JournalReader,
    approvals,
    artifacts,
    memory,
    new_ulid,
    sessions,
    tape,
    tool_jobs,
    verify_file,
)
from journal_core.maintenance import backup

SEED = 20261126
PER_FORMAT = 6
ALNUM = string.ascii_letters + string.digits
TOK = ALNUM + "_-"
B32 = string.ascii_uppercase + "234567"


@dataclass(frozen=True)
class Secret:
    """A made-up credential: the text written, and the substrings that must not be stored."""

    name: str
    text: str
    needles: tuple[str, ...]


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    """Random text that always mixes a digit, an upper- and a lower-case letter when it can."""
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(n))
        classes = [set(string.digits), set(string.ascii_uppercase), set(string.ascii_lowercase)]
        wanted = [c for c in classes if c & set(alphabet)]
        if all(set(value) & c for c in wanted):
            return value


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        if _luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwt(rng: random.Random) -> tuple[str, str]:
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = _b64url(orjson.dumps({"sub": _rand(rng, ALNUM, 12), "iat": rng.randrange(10**9)}))
    signature = _b64url(rng.randbytes(32))
    return f"{header}.{claims}.{signature}", claims


def _pem(rng: random.Random, kind: str) -> tuple[str, str]:
    body = base64.b64encode(rng.randbytes(96)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----", lines[0]


def _card(rng: random.Random, prefix: str, length: int, sep: str) -> tuple[str, str]:
    digits = _luhn_complete(rng, prefix, length)
    if sep and length == 16:
        text = sep.join(digits[i : i + 4] for i in range(0, 16, 4))
    elif sep and length == 15:
        text = sep.join((digits[:4], digits[4:10], digits[10:]))
    else:
        text = digits
    return text, digits


def _formats() -> dict[str, Callable[[random.Random, int], tuple[str, tuple[str, ...]]]]:
    """Each format: (rng, index) -> (text, needles). The first needle is the full secret."""

    def simple(prefix: str, alphabet: str, n: int) -> Callable[..., tuple[str, tuple[str, ...]]]:
        def make(rng: random.Random, _: int) -> tuple[str, tuple[str, ...]]:
            body = _rand(rng, alphabet, n)
            return prefix + body, (prefix + body, body)

        return make

    def github_classic(rng: random.Random, i: int) -> tuple[str, tuple[str, ...]]:
        prefix = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "ghp_"][i % 6]
        body = _rand(rng, ALNUM, 36)
        return prefix + body, (prefix + body, body)

    def slack_token(rng: random.Random, i: int) -> tuple[str, tuple[str, ...]]:
        body = f"{rng.randrange(10**11, 10**12)}-{rng.randrange(10**11, 10**12)}-" + _rand(
            rng, ALNUM, 24
        )
        prefix = ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxb-"][i % 6]
        return prefix + body, (prefix + body, body)

    def slack_webhook(rng: random.Random, _: int) -> tuple[str, tuple[str, ...]]:
        path = f"services/T{_rand(rng, B32, 8)}/B{_rand(rng, B32, 8)}/{_rand(rng, ALNUM, 24)}"
        return f"https://hooks.slack.com/{path}", (path, path.rsplit("/", 1)[1])

    def stripe(rng: random.Random, i: int) -> tuple[str, tuple[str, ...]]:
        prefix = ["sk_live_", "rk_live_", "sk_test_", "rk_test_", "sk_live_", "sk_test_"][i % 6]
        body = _rand(rng, ALNUM, 24 + i)
        return prefix + body, (prefix + body, body)

    def openai_legacy(rng: random.Random, _: int) -> tuple[str, tuple[str, ...]]:
        body = _rand(rng, ALNUM, 20) + "T3BlbkFJ" + _rand(rng, ALNUM, 20)
        return "sk-" + body, ("sk-" + body, body)

    def jwt(rng: random.Random, _: int) -> tuple[str, tuple[str, ...]]:
        token, claims = _jwt(rng)
        return token, (token, claims)

    def jwt_header(rng: random.Random, _: int) -> tuple[str, tuple[str, ...]]:
        token, claims = _jwt(rng)
        return f"Authorization: Bearer {token}", (token, claims)

    def pem(rng: random.Random, i: int) -> tuple[str, tuple[str, ...]]:
        kinds = ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"]
        text, first_line = _pem(rng, kinds[i % len(kinds)])
        return text, (first_line,)

    def bearer(rng: random.Random, i: int) -> tuple[str, tuple[str, ...]]:
        token = _rand(rng, ALNUM, 20 + i)
        head = ["Authorization: Bearer", "authorization: bearer", "BEARER"][i % 3]
        return f"{head} {token}", (token,)

    def basic(rng: random.Random, i: int) -> tuple[str, tuple[str, ...]]:
        user, password = _rand(rng, string.ascii_lowercase, 6), _rand(rng, ALNUM, 12 + i)
        cred = base64.b64encode(f"{user}:{password}".encode()).decode()
        return f"Authorization: Basic {cred}", (cred,)

    def userinfo(rng: random.Random, i: int) -> tuple[str, tuple[str, ...]]:
        password = _rand(rng, ALNUM, 12 + i)
        scheme = ["postgres", "mysql", "https", "redis", "amqp", "mongodb+srv"][i % 6]
        return f"{scheme}://svc:{password}@db{i}.internal:5432/app", (password,)

    def query(rng: random.Random, i: int) -> tuple[str, tuple[str, ...]]:
        value = _rand(rng, ALNUM, 14 + i)
        name = ["token", "api_key", "access_token", "key", "client_secret", "password"][i % 6]
        return f"https://api.example.com/v1/items?{name}={value}&page=2", (value,)

    def card(rng: random.Random, i: int) -> tuple[str, tuple[str, ...]]:
        prefix, length = [("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16)][i % 5]
        text, digits = _card(rng, prefix, length, ["", " ", "-"][i % 3])
        return f"card {text} exp 12/29", (text, digits)

    def keyword(rng: random.Random, i: int) -> tuple[str, tuple[str, ...]]:
        value = _rand(rng, ALNUM, 12 + i)
        form = [
            "password={}",
            "api_key: {}",
            'secret="{}"',
            "PGPASSWORD={} psql",
            "client_secret = '{}'",
            "--password={}",
        ][i % 6]
        return form.format(value), (value,)

    def aws_secret(rng: random.Random, _: int) -> tuple[str, tuple[str, ...]]:
        value = _rand(rng, ALNUM + "/+", 40)
        return f"aws_secret_access_key = {value}", (value,)

    return {
        "aws_access_key": simple("AKIA", B32, 16),
        "aws_temp_key": simple("ASIA", B32, 16),
        "aws_secret": aws_secret,
        "github_classic": github_classic,
        "github_fine_grained": simple("github_pat_", ALNUM + "_", 82),
        "gitlab": simple("glpat-", TOK, 20),
        "slack_token": slack_token,
        "slack_webhook": slack_webhook,
        "stripe": stripe,
        "openai_project": simple("sk-proj-", ALNUM, 48),
        "openai_legacy": openai_legacy,
        "anthropic": simple("sk-ant-api03-", TOK, 93),
        "google": simple("AIza", TOK, 35),
        "jwt": jwt,
        "jwt_bearer": jwt_header,
        "pem": pem,
        "npm": simple("npm_", ALNUM, 36),
        "pypi": simple("pypi-AgEIcHlwaS5vcmc", TOK, 60),
        "bearer": bearer,
        "basic": basic,
        "url_userinfo": userinfo,
        "url_query": query,
        "card": card,
        "keyword": keyword,
        "aws_secret_env": simple("AWS_SECRET_ACCESS_KEY=", ALNUM, 40),
    }


def secret_corpus() -> list[Secret]:
    rng = random.Random(SEED)
    corpus = []
    for name, make in _formats().items():
        for i in range(PER_FORMAT):
            text, needles = make(rng, i)
            corpus.append(Secret(f"{name}_{i}", text, needles))
    return corpus


def benign_corpus() -> list[str]:
    """Values that look like secrets (long, random-ish, numeric) but are not."""
    rng = random.Random(SEED + 1)
    values: list[str] = []
    for _ in range(8):
        values.append(str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        values.append(rng.randbytes(20).hex())  # git SHA
        values.append(rng.randbytes(32).hex())  # sha256
        values.append(new_ulid())
        values.append(f"order #{rng.randrange(10**9, 10**10)}")
        values.append(f"ORD-{rng.randrange(10**5, 10**6)}-{rng.randrange(10**3, 10**4)}")
        card = _luhn_complete(rng, "4", 16)
        broken = card[:-1] + str((int(card[-1]) + 1) % 10)  # Luhn fails
        assert not _luhn_ok(broken)
        values.append(broken)
        values.append(f"invoice {broken[:4]} {broken[4:8]} {broken[8:12]} {broken[12:]}")
    values += [
        "user_session_manager",
        "getAuthorizationHeader",
        "the Bearer of bad news",
        "password reset requested for alice",
        "tokenizer.encode(text)",
        "sk-learn-style-name",
        "max_tokens=4096",
        "https://example.com/docs?page=2&sort=asc",
        "deploy to us-east-1 at 12:30",
        "SELECT id FROM users WHERE key_id = 7",
        "v1.2.3-rc.4+build.567",
        "2026-11-26T06:30:00Z",
        "ghp_short",
        "AKIA is a prefix",
        "192.168.10.254:8080",
        "README.md line 42",
    ]
    assert len(set(values)) == len(values)
    return values


PATHS = (
    "event_dict",
    "event_json_text",
    "tape",
    "tool_output",
    "approval_summary",
    "approval_prompt",
    "approval_reason",
    "memory",
    "run_error",
    "session_label",
    "artifact",
)


@dataclass
class _Written:
    """Where each value went, so that it can be read back."""

    event_dict: int = 0
    event_json_text: int = 0
    tape: tuple[str, int] = ("", 0)
    tool_output: tuple[str, int] = ("", 0)
    approval: str = ""
    memory: str = ""
    run: str = ""
    session: str = ""
    artifact: str = ""


async def _write_everywhere(journal: Journal, text: str, index: int) -> _Written:
    """``text`` through every write path; returns where it landed."""
    written = _Written()
    session_id, run_id = new_ulid(), new_ulid()

    def event(payload: object) -> EventInput:
        return EventInput(
            session_id=session_id,
            run_id=run_id,
            kind="tool_executed",
            actor="plugin",
            principal="agent:scan",
            device_id="host",
            payload=payload,
        )

    first, second = await asyncio.gather(
        journal.append(event({"text": text, "nested": {"list": [text]}})),
        journal.append(event(orjson.dumps({"output": text}).decode())),
    )
    written.event_dict, written.event_json_text = first.seq, second.seq

    session = await sessions.create_session(
        journal,
        session_key=f"scan-{index}-{new_ulid()}",
        principal="user:alice",
        device_id="host",
        label=text,
    )
    written.session = session.session_id
    run = await sessions.start_run(journal, session.session_id)
    entry = await tape.append_entry(journal, run.run_id, "model_token", {"text": text})
    written.tape = (run.run_id, entry.seq)
    await sessions.transition_run(journal, run.run_id, "accepted")
    await sessions.transition_run(journal, run.run_id, "failed", error=text)
    written.run = run.run_id

    job = await tool_jobs.create_job(
        journal,
        owner_principal="user:alice",
        device_id="host",
        tool_name="shell.exec",
        backend="local",
        command=f"echo {text}",
    )
    chunk = await tool_jobs.append_output(journal, job.job_id, "stdout", text)
    written.tool_output = (job.job_id, chunk.seq)

    requested = await approvals.request_approval(
        journal,
        principal="agent:helper",
        device_id="host",
        subject_type="tool",
        subject_id="shell",
        summary=text,
        prompt={
            "title": "Run shell command",
            "risk_level": "high",
            "summary": text,
            "details": {"command": text, "args": [text]},
        },
        timeout_seconds=3600,
    )
    await approvals.decide(
        journal,
        requested.approval_id,
        decision="allow",
        scope="once",
        decided_by="user:bob",
        channel="tui",
        reason=text,
    )
    written.approval = requested.approval_id

    item = await memory.ingest(journal, principal="user:alice", content=text, source="chat")
    written.memory = item.memory_id
    artifact = await artifacts.store_artifact(
        journal,
        tool_name="shell",
        content=text,
        mime_type="text/plain",
        sensitivity="internal",
    )
    written.artifact = artifact.artifact_id
    return written


async def _read_back(journal: Journal, reader: JournalReader, written: _Written) -> dict[str, str]:
    """The text as each path gives it back."""
    out: dict[str, str] = {}
    by_dict = await reader.event(written.event_dict)
    by_text = await reader.event(written.event_json_text)
    assert by_dict is not None
    assert by_text is not None
    payload = by_dict.payload()
    assert isinstance(payload, dict)
    out["event_dict"] = payload["text"]
    assert payload["nested"]["list"][0] == payload["text"]
    text_payload = by_text.payload()
    assert isinstance(text_payload, dict)
    out["event_json_text"] = text_payload["output"]
    page = await tape.read_tape(reader, written.tape[0])
    entry_payload = next(e for e in page.entries if e.seq == written.tape[1]).payload()
    assert isinstance(entry_payload, dict)
    out["tape"] = entry_payload["text"]
    output = await tool_jobs.read_output(reader, written.tool_output[0])
    out["tool_output"] = next(e.chunk for e in output.entries if e.seq == written.tool_output[1])
    approval = await approvals.get_approval(reader, written.approval)
    out["approval_summary"] = approval.request_summary
    out["approval_prompt"] = approval.prompt.summary
    assert approval.prompt.details == {
        "command": approval.prompt.summary,
        "args": [approval.prompt.summary],
    }
    out["approval_reason"] = str(approval.decision_reason)
    out["memory"] = (await memory.get_item(reader, written.memory)).content
    out["run_error"] = str((await sessions.get_run(reader, written.run)).last_error)
    out["session_label"] = str((await sessions.get_session(reader, written.session)).label)
    content = await artifacts.read_artifact(journal, written.artifact, reader_name="scan")
    out["artifact"] = content.decode("utf-8")
    assert set(out) == set(PATHS)
    return out


def _disk_bytes(path: Path) -> bytes:
    parts = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")]
    return b"".join(part.read_bytes() for part in parts if part.exists())


def _found(blob: bytes, secret: Secret) -> list[str]:
    return [needle for needle in secret.needles if needle.encode() in blob]


def _canary() -> Secret:
    """A benign random marker written through every path too: the scan must find it."""
    body = _rand(random.Random(SEED + 2), string.ascii_lowercase, 24)
    return Secret("canary", f"canary {body}", (body,))


async def _write_secrets(path: Path, corpus: list[Secret]) -> dict[str, list[str]]:
    """Write every secret through every path; scan the files while the journal is open."""
    async with await Journal.open(path) as journal:
        await _write_everywhere(journal, _canary().text, -1)
        for index, secret in enumerate(corpus):
            await _write_everywhere(journal, secret.text, index)
        open_blob = _disk_bytes(path)
        assert Path(f"{path}-wal").exists()
        assert _found(open_blob, _canary()), "the scan cannot see stored text"
        return {s.name: found for s in corpus if (found := _found(open_blob, s))}


def test_no_secret_reaches_the_disk_through_any_write_path(tmp_path: Path) -> None:
    corpus = secret_corpus()
    texts = {secret.text for secret in corpus}
    assert len(texts) == len(corpus) >= 150
    path = tmp_path / "secrets.db"

    leaks_open = asyncio.run(_write_secrets(path, corpus))
    leaks_closed = {s.name: f for s in corpus if (f := _found(_disk_bytes(path), s))}
    copy = tmp_path / "backup" / "secrets-backup.db"
    backup(path, copy)
    leaks_backup = {s.name: f for s in corpus if (f := _found(_disk_bytes(copy), s))}
    _, report = verify_file(path)
    assert report.ok, report.to_dict()
    assert _found(_disk_bytes(path), _canary())
    assert _found(_disk_bytes(copy), _canary())

    leaked = set(leaks_open) | set(leaks_closed) | set(leaks_backup)
    tried = len(corpus)
    recall = (tried - len(leaked)) / tried
    print(
        f"\nsecrets on disk: {tried} secrets x {len(PATHS)} write paths"
        f" ({tried * len(PATHS)} writes), {len(leaked)} found on disk"
        f" (db/-wal/-shm open, after close, backup); recall {recall:.3f}"
    )
    assert leaks_open == {}, leaks_open
    assert leaks_closed == {}, leaks_closed
    assert leaks_backup == {}, leaks_backup
    assert recall == 1.0


async def _write_benign(path: Path, values: list[str]) -> dict[str, dict[str, str]]:
    async with await Journal.open(path) as journal:
        written = [await _write_everywhere(journal, value, i) for i, value in enumerate(values)]
        async with await JournalReader.open(path) as reader:
            return {
                value: await _read_back(journal, reader, where)
                for value, where in zip(values, written, strict=True)
            }


def test_benign_look_alikes_are_stored_unchanged_on_every_path(tmp_path: Path) -> None:
    values = benign_corpus()
    path = tmp_path / "benign.db"
    read = asyncio.run(_write_benign(path, values))
    changed = {
        (value, where): got
        for value, by_path in read.items()
        for where, got in by_path.items()
        if got != value
    }
    checks = len(values) * len(PATHS)
    precision = (checks - len(changed)) / checks
    print(
        f"\nbenign look-alikes: {len(values)} values x {len(PATHS)} paths = {checks} read-backs,"
        f" {len(changed)} altered; precision {precision:.3f}"
    )
    _, report = verify_file(path)
    assert report.ok, report.to_dict()
    assert changed == {}
    assert precision == 1.0
