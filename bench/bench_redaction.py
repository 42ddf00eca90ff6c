"""Throughput of payload redaction against orjson's own parse-and-serialise.

Builds a deterministic corpus of typical agent-journal payloads (chat messages, tool calls with
paths and commands, tool output, model token chunks, usage records; about 5% carry a made-up
credential), then measures, over the same bytes:

* project:  ``DEFAULT_REDACTOR.redact_value(orjson.loads(b))``
* baseline: ``orjson.dumps(orjson.loads(b))``

and prints the median MB/s of each over ``--repeat`` runs and their ratio (target >= 0.3x).

    python bench/bench_redaction.py [--n N] [--repeat R] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from journal_core.redaction import DEFAULT_REDACTOR

TARGET_RATIO = 0.3

_VOCABULARY = (
    "the a to of and in is it for on that with as this we will I can you file project test run"
    " tests passed failed error warning function class return value import module path directory"
    " config change fix update build install package version release branch commit merge review"
    " request response session token count model prompt output input user agent tool call result"
    " summary plan step next first then after before because should would could database query"
    " index table schema migration journal event chain hash verify report"
)
_WORDS = tuple(_VOCABULARY.split())
_DIRS = ("src", "tests", "docs", "journal_core", "journal_tui", "bench", "scripts", ".github")
_FILES = ("store.py", "reader.py", "README.md", "pyproject.toml", "test_store.py", "app.tcss")
_COMMANDS = (
    "pytest -x -q {path}",
    "git log --oneline -n 20",
    "ls -la {dir}",
    "rg -n 'def {word}' {dir}",
    "cat {path}",
    "python -m {word} --check",
    "git diff --stat HEAD~1",
    "npm run build -- --mode production",
)
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulid(rng: random.Random) -> str:
    return "".join(rng.choice(_B32) for _ in range(26))


def _prose(rng: random.Random, words: int) -> str:
    out: list[str] = []
    for i in range(words):
        word = rng.choice(_WORDS)
        out.append(word.capitalize() if i == 0 or out[-1].endswith(".") else word)
        if rng.random() < 0.08:
            out[-1] += rng.choice((".", ",", ":", "?"))
    return " ".join(out) + "."


def _path(rng: random.Random) -> str:
    depth = rng.randint(1, 3)
    return "/".join(rng.choice(_DIRS) for _ in range(depth)) + "/" + rng.choice(_FILES)


def _command(rng: random.Random) -> str:
    template = rng.choice(_COMMANDS)
    return template.format(path=_path(rng), dir=rng.choice(_DIRS), word=rng.choice(_WORDS))


def _tool_output(rng: random.Random, lines: int) -> str:
    kind = rng.randrange(3)
    out: list[str] = []
    for _ in range(lines):
        if kind == 0:
            size = rng.randint(100, 99999)
            minute = rng.randint(10, 59)
            out.append(
                f"-rw-r--r--  1 agent agent {size:>6} Nov 26 05:{minute} {rng.choice(_FILES)}"
            )
        elif kind == 1:
            status = "PASSED" if rng.random() < 0.9 else "FAILED"
            out.append(f"{_path(rng)}::test_{rng.choice(_WORDS)}_{rng.choice(_WORDS)} {status}")
        else:
            sha = "".join(rng.choice("0123456789abcdef") for _ in range(7))
            out.append(f"{sha} {_prose(rng, rng.randint(4, 9))}")
    return "\n".join(out)


def _secret(rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits

    def body(n: int) -> str:
        return "".join(rng.choice(alnum) for _ in range(n))

    aws_id = "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    return rng.choice(
        (
            f"export GITHUB_TOKEN=ghp_{body(36)}",
            f"curl -H 'Authorization: Bearer {body(32)}' https://api.example.com/v1/items",
            f"OPENAI_API_KEY=sk-proj-{body(48)}",
            f"postgres://app:{body(16)}@db.internal:5432/app",
            f"aws_access_key_id = {aws_id}",
        )
    )


def _payload(rng: random.Random) -> dict[str, object]:
    session, run = _ulid(rng), _ulid(rng)
    now = 1_732_590_000_000 + rng.randint(0, 10**8)
    roll = rng.random()
    payload: dict[str, object]
    if roll < 0.25:
        payload = {
            "type": "message.received",
            "session_id": session,
            "message_id": _ulid(rng),
            "role": rng.choice(("user", "assistant")),
            "channel": "cli",
            "content": _prose(rng, rng.randint(15, 220)),
            "timestamp_unix_ms": now,
            "attachments": [],
        }
    elif roll < 0.50:
        arguments = {
            "command": _command(rng),
            "cwd": f"/home/agent/{rng.choice(_DIRS)}",
            "timeout_ms": 30_000,
            "env": {"CI": "1", "LANG": "C.UTF-8"},
        }
        payload = {
            "type": "tool_proposed",
            "run_id": run,
            "tool_call_id": f"call_{_ulid(rng).lower()}",
            "tool_name": rng.choice(("shell", "read_file", "search", "edit_file")),
            "arguments": orjson.dumps(arguments).decode() if rng.random() < 0.5 else arguments,
            "risk": rng.choice(("low", "medium", "high")),
            "approval_required": rng.random() < 0.3,
            "rationale": _prose(rng, rng.randint(8, 30)),
        }
    elif roll < 0.75:
        payload = {
            "type": "tool_executed",
            "run_id": run,
            "tool_call_id": f"call_{_ulid(rng).lower()}",
            "tool_name": "shell",
            "exit_code": rng.choice((0, 0, 0, 1)),
            "duration_ms": rng.randint(5, 9000),
            "stdout": _tool_output(rng, rng.randint(3, 40)),
            "stderr": "" if rng.random() < 0.7 else _prose(rng, 12),
            "truncated": False,
        }
    elif roll < 0.90:
        payload = {
            "type": "model_token",
            "run_id": run,
            "seq": rng.randint(0, 5000),
            "text": _prose(rng, rng.randint(3, 25)),
            "model": "claude-sonnet-4-5",
            "is_final": False,
            "usage": {
                "prompt_tokens": rng.randint(100, 9000),
                "completion_tokens": rng.randint(1, 900),
                "total_tokens": 0,
            },
        }
    else:
        payload = {
            "type": "run_completed",
            "session_id": session,
            "run_id": run,
            "state": "done",
            "usage": {
                "prompt_tokens": rng.randint(100, 9000),
                "max_tokens": 4096,
                "completion_tokens": rng.randint(1, 900),
                "token_count": 12,
            },
            "stop_reason": "end_turn",
            "cost_usd": round(rng.random(), 5),
            "summary": _prose(rng, rng.randint(10, 60)),
            "files_changed": [_path(rng) for _ in range(rng.randint(0, 5))],
        }
    if rng.random() < 0.05:
        field = "stdout" if "stdout" in payload else "content" if "content" in payload else "note"
        payload[field] = f"{payload.get(field, '')}\n{_secret(rng)}\n"
    return payload


def build_corpus(n: int, seed: int) -> list[bytes]:
    """``n`` serialised payloads, the same for the same seed."""
    rng = random.Random(seed)
    return [orjson.dumps(_payload(rng)) for _ in range(n)]


def _rate(corpus: list[bytes], func: Callable[[bytes], object], total: int) -> float:
    start = time.perf_counter()
    for blob in corpus:
        func(blob)
    return total / (time.perf_counter() - start) / 1e6


def _measure(
    corpus: list[bytes],
    project: Callable[[bytes], object],
    baseline: Callable[[bytes], object],
    repeat: int,
) -> tuple[float, float, float]:
    """Median MB/s of each and median ratio; runs alternate so that load drifts hit both."""
    total = sum(len(b) for b in corpus)
    projects, baselines, ratios = [], [], []
    for _ in range(repeat):
        base = _rate(corpus, baseline, total)
        proj = _rate(corpus, project, total)
        projects.append(proj)
        baselines.append(base)
        ratios.append(proj / base)
    return (
        statistics.median(projects),
        statistics.median(baselines),
        statistics.median(ratios),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a small table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="payloads in the corpus")
    parser.add_argument("--repeat", type=int, default=7, help="runs; the median is reported")
    parser.add_argument("--seed", type=int, default=20241126)
    args = parser.parse_args(argv)

    corpus = build_corpus(args.n, args.seed)
    redact = DEFAULT_REDACTOR.redact_value
    fired = sum(1 for b in corpus if redact(orjson.loads(b))[1])
    sizes = sorted(len(b) for b in corpus)

    def project(blob: bytes) -> object:
        return redact(orjson.loads(blob))

    def baseline(blob: bytes) -> object:
        return orjson.dumps(orjson.loads(blob))

    _measure(corpus, project, baseline, 1)  # warm the key cache
    proj, base, ratio = _measure(corpus, project, baseline, args.repeat)

    median = sizes[len(sizes) // 2]
    print(f"corpus: {len(corpus)} payloads, {sum(sizes) / 1e6:.2f} MB, median {median} B,")
    print(f"        {fired} where a rule fired")
    rows = (
        ("project  redact_value(loads(b))", f"{proj:8.1f} MB/s"),
        ("baseline dumps(loads(b))", f"{base:8.1f} MB/s"),
        (f"ratio (target >= {TARGET_RATIO:.2f}x)", f"{ratio:8.2f} x"),
    )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
