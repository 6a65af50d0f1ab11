#!/usr/bin/env bash
# Static security scan of the deploy files: checkov over infra/ (Bicep) and the Dockerfile.
# Exits non-zero on any failed check. Skips are only the inline `#checkov:skip=ID:reason` comments in
# the scanned files. checkov runs isolated with uvx (its dependencies conflict with the project's, so
# it is not in uv.lock); the version is pinned here.
set -euo pipefail

CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

checkov() {
    uvx --quiet --from "checkov==${CHECKOV_VERSION}" checkov "$@"
}

export BC_SKIP_MAPPING=TRUE           # no call to the Prisma Cloud API for guideline mapping
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
export LOG_LEVEL="${LOG_LEVEL:-WARNING}"

status=0
common=(--quiet --compact --download-external-modules false --skip-download --output cli)

echo "checkov ${CHECKOV_VERSION}: infra/ (bicep)"
checkov -d infra --framework bicep "${common[@]}" || status=1

echo "checkov ${CHECKOV_VERSION}: Dockerfile"
checkov -f Dockerfile --framework dockerfile "${common[@]}" || status=1

if [[ $status -ne 0 ]]; then
    echo "check-infra: checkov reported failed checks (fix them or add an inline skip with its reason)" >&2
fi
exit "$status"
