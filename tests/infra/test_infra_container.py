"""Static checks of the Dockerfile and .dockerignore (no Docker engine here): multi-stage, locked runtime deps
only, non-root, health check on /healthz, `voicelive-worker run` as the entry point."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def instructions() -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "dangling line continuation"
    out: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip()))
    return out


def stages() -> list[tuple[str, str]]:
    """(image, alias) per FROM."""
    found = []
    for ins in instructions():
        if ins.keyword == "FROM":
            parts = ins.args.split()
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else ""
            found.append((parts[0], alias))
    return found


def final(keyword: str) -> list[Instruction]:
    last = len(stages()) - 1
    return [i for i in instructions() if i.stage == last and i.keyword == keyword]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def test_multi_stage_with_pinned_slim_python() -> None:
    found = stages()
    assert len(found) >= 2
    for image, _ in found:
        assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", image), image
    python_minor = {image.split(":")[1].split("-")[0] for image, _ in found}
    assert len(python_minor) == 1, "build and runtime stages must share the interpreter (venv is copied)"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11" and tuple(int(x) for x in python_minor.pop().split(".")) >= (3, 11)


def test_runtime_copies_only_the_venv_from_the_build_stage() -> None:
    build_alias = stages()[0][1]
    copies = final("COPY")
    assert copies, "runtime stage copies nothing"
    for ins in copies:
        assert ins.args.startswith(f"--from={build_alias} "), ins.args
        assert ins.args.split()[-2:] == ["/app/.venv", "/app/.venv"], ins.args


def test_dependencies_come_from_uv_lock_frozen_without_dev_groups() -> None:
    runs = [i.args for i in instructions() if i.keyword == "RUN" and "uv sync" in i.args]
    assert len(runs) == 2, "deps layer + project layer"
    for cmd in runs:
        words = shlex.split(cmd)
        assert "--frozen" in words or "--locked" in words, cmd
        assert "--no-dev" in words, cmd
        assert words[words.index("--no-group") + 1] == "devstack", cmd
        assert "--group" not in words and "--all-groups" not in words and "--all-extras" not in words
    assert "--no-install-project" in runs[0]
    assert "--no-editable" in runs[1]
    copied = " ".join(i.args for i in instructions() if i.keyword == "COPY" and i.stage == 0)
    assert "uv.lock" in copied and "pyproject.toml" in copied
    # No pip install of project requirements behind uv's back; uv itself is pinned.
    pip = [i.args for i in instructions() if i.keyword == "RUN" and "pip install" in i.args]
    assert all(re.search(r"\buv==\d+\.\d+\.\d+\b", p) for p in pip), pip
    assert not any("requirements" in i.args for i in instructions())


def test_uv_version_matches_the_lock_format_writer() -> None:
    pin = re.search(r"uv==(\d+\.\d+\.\d+)", DOCKERFILE.read_text())
    assert pin
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    assert lock["version"] == 1  # the lock format this uv reads


def test_runs_as_non_root() -> None:
    users = final("USER")
    assert users, "no USER in the runtime stage"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "numeric uid so Kubernetes-style runAsNonRoot can verify it"
    # The USER comes after the last RUN (nothing runs as root afterwards).
    ordered = [i for i in instructions() if i.stage == len(stages()) - 1]
    last_user = max(n for n, i in enumerate(ordered) if i.keyword == "USER")
    assert all(i.keyword != "RUN" for i in ordered[last_user:])


def test_healthcheck_hits_healthz_on_health_port() -> None:
    checks = final("HEALTHCHECK")
    assert len(checks) == 1
    args = checks[0].args
    assert "--interval=" in args and "--timeout=" in args
    cmd = exec_form(args[args.index("CMD") + 3 :].strip())
    text = " ".join(cmd)
    assert "/healthz" in text and "HEALTH_PORT" in text and "127.0.0.1" in text
    env = " ".join(i.args for i in final("ENV"))
    assert "HEALTH_PORT=8080" in env
    assert [i.args for i in final("EXPOSE")] == ["8080"]


def test_entrypoint_is_voicelive_worker_run() -> None:
    (entry,) = final("ENTRYPOINT")
    (cmd,) = final("CMD")
    assert exec_form(entry.args) + exec_form(cmd.args) == ["voicelive-worker", "run"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["voicelive-worker"] == "worker.cli:app"
    env = " ".join(i.args for i in final("ENV"))
    assert "PATH=/app/.venv/bin:$PATH" in env
    assert "PYTHONUNBUFFERED=1" in env


def test_no_secrets_or_dev_files_baked_in() -> None:
    text = DOCKERFILE.read_text()
    assert not re.search(r"(?i)(connection_string|api_key|password|secret)\s*=", text)
    assert not any(i.keyword == "ADD" for i in instructions())


def dockerignore_excludes(path: str) -> bool:
    """Apply .dockerignore rules in order (last match wins; `!` re-includes), like Docker does."""
    excluded = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        pattern = pattern.rstrip("/")
        candidates = [path] + [str(Path(*Path(path).parts[:n])) for n in range(1, len(Path(path).parts))]
        if any(fnmatch(c, pattern) or fnmatch(c, pattern.replace("**/", "")) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_only_what_the_build_needs() -> None:
    for needed in ("pyproject.toml", "uv.lock", "README.md", "worker/cli.py", "devstack/__init__.py"):
        assert not dockerignore_excludes(needed), needed
    for unwanted in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        ".env",
        "infra/main.bicep",
        "bench/x",
    ):
        assert dockerignore_excludes(unwanted), unwanted
    # Everything the Dockerfile COPYs from the context survives .dockerignore.
    for ins in instructions():
        if ins.keyword == "COPY" and not ins.args.startswith("--from="):
            for source in ins.args.split()[:-1]:
                assert (REPO / source).exists(), source
                assert not dockerignore_excludes(source), source
