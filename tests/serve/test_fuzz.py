"""Schema-driven fuzzing with response conformance (schemathesis, in process over ASGI).

Every operation of the app's own OpenAPI document gets generated requests, valid and invalid,
with and without the API key; every answer is checked by every built-in schemathesis check
(no 5xx, status documented, content type and body as documented, documented headers present,
valid data accepted, invalid data rejected, auth not ignored, unsupported methods 405, ...).

The default run is small (``LIVEREC_FUZZ_CASES`` default 60, plus the ~620 cases of the
coverage phase, ~15 s);
CI runs it sized up as a step of its own:

    LIVEREC_FUZZ_CASES=10000 python -m pytest -p no:cacheprovider tests/serve/test_fuzz.py

One deliberate widening: valid-shaped requests may get 422 when the value names something the
service does not hold (an unknown item id, a history without a known item, an item hidden by a
flag), combines parameters that exclude each other (category and attribute; re-ranking
weights above 1 together), or is a query without a letter or digit, which no schema can
express; :func:`positive_422_is_semantic` checks that such a 422 is one of those and never a
schema-level rejection.
"""

from __future__ import annotations

import math
import os
import sys

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.config._checks import POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES  # noqa: E402

from liverec.serve.access import ACCESS, openapi_path  # noqa: E402
from liverec.serve.app import create_app  # noqa: E402

ADMIN_KEY = "fuzz-admin-key-0123456789"
SEMANTIC_422 = {"unknown_item", "no_known_item", "exclusive", "timestamp_in_future",
                "hidden_item", "weights_above_one", "no_query_word"}
CASES = int(os.environ.get("LIVEREC_FUZZ_CASES") or 60)
COUNT = {"cases": 0, "failed": 0, "operations": set(), "statuses": {}}


SETTINGS = {"store": "memory://", "api_key": f"{ADMIN_KEY},read:r-key", "torch_threads": 1}
CONFIG = SchemathesisConfig.from_dict({
    "auth": {"openapi": {"ApiKey": {"api_key": ADMIN_KEY}}},  # schemathesis also drops it
    "checks": {"positive_data_acceptance": {
        "expected-statuses": [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "422"]}}})
# Building the app and its document loads nothing; the lifespan (started by schemathesis at the
# first request) loads the run that fixture ``fuzz_app`` names in the app's settings.
APP = create_app(run_dir="set-by-fuzz_app", **SETTINGS)
schema = schemathesis.openapi.from_dict(APP.openapi(), config=CONFIG)
schema.app = APP  # requests go to the app in process (ASGI)


@pytest.fixture(scope="module")
def fuzz_app(serve_run):
    APP.state.settings = APP.state.settings.model_copy(update={"run_dir": serve_run})
    return APP


@schemathesis.check
def positive_422_is_semantic(ctx, response, case) -> bool | None:
    """A valid-shaped request answered 422 names an unknown reference, not a bad shape."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    kinds = {e.get("type") for e in response.json().get("errors", ())}
    assert kinds and kinds <= SEMANTIC_422, f"valid data rejected by shape: {response.text}"
    return None


@schema.parametrize()
@settings(max_examples=max(1, math.ceil(CASES / 10)), deadline=None, derandomize=True,
          database=None, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz_conforms(case, fuzz_app):
    COUNT["cases"] += 1
    COUNT["operations"].add(case.operation.label)
    try:
        r = case.call_and_validate(additional_checks=[positive_422_is_semantic])
    except Exception:  # counted, then reported by hypothesis/schemathesis as usual
        COUNT["failed"] += 1
        raise
    COUNT["statuses"].setdefault(case.operation.label, set()).add(r.status_code)


def test_fuzz_reached_every_operation_and_the_case_count(capsys):
    """Runs after the fuzz tests of this module: they covered every operation and, in the
    sized run, at least LIVEREC_FUZZ_CASES cases."""
    if not COUNT["cases"]:
        pytest.skip("the fuzz tests did not run in this session")
    ops = {f"{op.method.upper()} {op.path}" for op in
           (r.ok() for r in schema.get_all_operations())}
    assert COUNT["operations"] >= ops
    for method, path in ACCESS:  # the key was sent: not everything was refused
        statuses = COUNT["statuses"][f"{method} {openapi_path(path)}"]
        assert statuses - {401, 403}, (method, path)
    assert COUNT["cases"] >= CASES, COUNT["cases"]
    assert COUNT["failed"] == 0, COUNT["failed"]
    with capsys.disabled():
        sys.stdout.write(f"\nfuzz: {COUNT['cases']} cases over {len(COUNT['operations'])} "
                         f"operations, 0 failures\n")
