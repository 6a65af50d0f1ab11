"""azure.yaml validates against the published azd v1.0 schema (copied to schemas/), has the one `worker`
service the issue asks for, and its cross-platform hooks exist and print how to enqueue a first job."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "azure.yaml.json"
# sha256 of Azure/azure-dev schemas/v1.0/azure.yaml.json as published (byte-for-byte copy).
SCHEMA_SHA256 = "ff8d40d0d84c4b5ab1a934e61553c8ce985a05da63e63c59f6abcd58ab73b998"


def azure_yaml() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "azure.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_schema_is_the_published_v1_copy() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_azure_yaml_validates_against_the_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(azure_yaml())]
    assert errors == []


def test_schema_rejects_a_broken_azure_yaml() -> None:
    """The validation above has teeth: a wrong field is reported."""
    broken = azure_yaml()
    broken["services"]["worker"]["docker"]["remoteBuild"] = "yes"
    validator = jsonschema.Draft201909Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors(broken))


def test_one_worker_service_on_container_apps_with_remote_build() -> None:
    data = azure_yaml()
    assert data["name"] == "voicelive-batch-worker"
    assert list(data["services"]) == ["worker"]
    worker = data["services"]["worker"]
    # `host` is a free string in the schema: assert it ourselves.
    assert worker["host"] == "containerapp"
    assert worker["language"] == "python"
    assert worker["docker"]["remoteBuild"] is True
    assert (REPO / worker["project"] / worker["docker"]["path"]).is_file()
    assert data["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert (REPO / "infra" / "main.bicep").is_file()
    assert data["requiredVersions"]["azd"].startswith(">=")


def test_service_name_matches_the_bicep_tag_and_output() -> None:
    app = (REPO / "infra" / "modules" / "worker-app.bicep").read_text()
    main = (REPO / "infra" / "main.bicep").read_text()
    assert "'azd-service-name': 'worker'" in app
    assert "output SERVICE_WORKER_NAME string" in main
    params = json.loads((REPO / "infra" / "main.parameters.json").read_text())["parameters"]
    assert params["workerExists"]["value"] == "${SERVICE_WORKER_RESOURCE_EXISTS=false}"


def test_postprovision_hooks_for_both_platforms() -> None:
    hook = azure_yaml()["hooks"]["postprovision"]
    assert hook["posix"]["shell"] == "sh"
    assert hook["windows"]["shell"] == "pwsh"
    for platform in ("posix", "windows"):
        script = REPO / hook[platform]["run"]
        assert script.is_file(), script
        text = script.read_text()
        assert "voicelive-worker enqueue --input" in text
        assert "--auth-mode login" in text  # no account keys anywhere
    assert os.access(REPO / hook["posix"]["run"], os.X_OK)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh")
def test_posix_hook_prints_the_enqueue_command() -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SERVICEBUS_NAMESPACE": "sb-abc.servicebus.windows.net",
        "SERVICEBUS_QUEUE": "audio-jobs",
        "STORAGE_ACCOUNT_NAME": "stabc",
        "STORAGE_ACCOUNT_URL": "https://stabc.blob.core.windows.net/",
        "INPUT_CONTAINER": "input",
    }
    script = REPO / "infra" / "hooks" / "postprovision.sh"
    done = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    assert (
        "voicelive-worker enqueue --input https://stabc.blob.core.windows.net/input/sample.wav" in done.stdout
    )
    assert "sb-abc.servicebus.windows.net" in done.stdout


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh")
def test_posix_hook_fails_clearly_outside_azd() -> None:
    script = REPO / "infra" / "hooks" / "postprovision.sh"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    done = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode != 0
    assert "azd" in done.stderr
