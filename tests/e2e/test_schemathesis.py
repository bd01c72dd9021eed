"""Property-based API testing: schemathesis explores both OpenAPI documents over HTTP.

Every generated request, valid or not, must get a documented status with a body that fits
the document; none may be a 5xx. The CLI is used (not the pytest plugin) so the check runs
exactly as an operator would run it.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from settings import ROOT
from tests.support.accounts import signed_up
from tests.support.environment import DATA_DIR

ST = str(ROOT / ".venv" / "bin" / "st")
# Generation is bounded and seeded so the run is repeatable and takes about a minute per API.
# The stateful phase follows the documents' OpenAPI links (register -> login; a user -> its
# reads), so requests also carry ids and credentials that earlier answers created.
BOUNDS = ["--seed", "20261126", "--request-timeout", "30"]
# A generated consistency token is refused at once (422), so the read API takes as many.
WRITE_EXAMPLES, READ_EXAMPLES = "100", "100"
PHASES = ["--phases", "examples,coverage,fuzzing,stateful"]


CONFIG = str(ROOT / "tests" / "e2e" / "schemathesis.toml")


def _run(url: str, examples: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            ST,
            "--config-file",
            CONFIG,
            "run",
            url,
            "--checks",
            "all",
            "--max-examples",
            examples,
            *BOUNDS,
            *PHASES,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin", "HOME": str(DATA_DIR)},
        cwd=DATA_DIR,  # its report folder lands in the git-ignored data folder
    )


@pytest.fixture(scope="module")
def admin(system):
    return signed_up(system, admin=True)


def _links_covered(output: str) -> int:
    """How many OpenAPI links the stateful phase followed (it is skipped when there are none)."""
    match = re.search(r"API Links:\s+(\d+) covered", output)
    return int(match.group(1)) if match else 0


def test_auth_api_conforms_to_its_document(system):
    result = _run(f"{system.auth_url}/openapi.json", WRITE_EXAMPLES)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert _links_covered(result.stdout) >= 1, result.stdout[-3000:]


def test_query_api_conforms_to_its_document(system, admin):
    # A projected write's consistency token: an unprojected one would (rightly) wait and 503.
    result = _run(
        f"{system.query_url}/openapi.json",
        READ_EXAMPLES,
        "--header",
        f"Authorization: Bearer {admin.token}",
        "--header",
        f"X-Consistency-Token: {admin.consistency_token}",
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert _links_covered(result.stdout) >= 4, result.stdout[-3000:]


def test_the_write_apis_account_commands_conform_with_a_live_token(system):
    # A logged-in admin's token, so that the commands run past authentication: wrong passwords
    # (403, then a 429 lock), unknown users (404), malformed codes (422) must all be documented.
    # The logouts are left out: they would end the very session the run depends on.
    admin = signed_up(system, admin=True)
    result = _run(
        f"{system.auth_url}/openapi.json",
        "40",
        "--include-path-regex",
        "^/(users|admin)/",
        "--header",
        f"Authorization: Bearer {admin.token}",
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
