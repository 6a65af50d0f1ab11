"""The published schemas and the `schema` / `validate` commands others script against."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from worker.cli import app
from worker.jobs import schema_for

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.mark.parametrize("kind", ["job", "manifest"])
def test_checked_in_schema_is_current(kind: str) -> None:
    published = json.loads((REPO / "schemas" / f"{kind}.v1.schema.json").read_text())
    assert published == schema_for(kind), "stale schema: run `make schemas`"  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["job", "manifest"])
def test_schema_command_prints_valid_json_schema(kind: str) -> None:
    result = runner.invoke(app, ["schema", kind])
    assert result.exit_code == 0
    jsonschema.Draft202012Validator.check_schema(json.loads(result.stdout))


def test_published_job_schema_accepts_the_design_example_and_rejects_unknown_keys() -> None:
    schema = json.loads((REPO / "schemas" / "job.v1.schema.json").read_text())
    good = {"version": 1, "job_id": "a", "input": {"url": "https://acct.blob.core.windows.net/calls/x.wav"}}
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(good | {"priority": 1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(good | {"job_id": "../x"}, schema)


def test_validate_valid_message(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps(
            {"version": 1, "job_id": "a", "input": {"url": "https://acct.blob.core.windows.net/calls/x.wav"}}
        )
    )
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0
    assert result.stdout.strip() == "valid"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "invalid: InvalidMessage: "),
        (b'{"version": 1}', "invalid: InvalidJob: job_id: Field required"),
        (
            b'{"version":1,"job_id":"a","input":{"url":"https://a.blob.core.windows.net.evil.com/c/x"}}',
            "invalid: InputForbidden: ",
        ),
    ],
)
def test_validate_invalid_message(tmp_path: Path, body: bytes, expected: str) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(body)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stdout.startswith(expected), result.stdout


def test_validate_checks_the_allow_list_when_storage_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net")
    monkeypatch.setenv("ALLOWED_INPUT_CONTAINERS", "acct/audio-in")
    path = tmp_path / "m.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "job_id": "a",
                "input": {"url": "https://acct.blob.core.windows.net/private/x.wav"},
            }
        )
    )
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "not allow-listed" in result.stdout


def test_validate_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "cannot read" in result.output
