"""schemathesis fuzzes ``pixelwise serve``'s API from the app's own OpenAPI schema, in-process
(through the ASGI app, no network): every answer must be documented in the schema and match its
response schema, no answer may be a server error, and requests that break the schema must be
refused with a 4xx.

The cases come from the schema's Hypothesis strategy under a plain ``@given`` rather than from
schemathesis's pytest plugin, whose fixture-based schemas do not run under pytest 9. Half of the
valid cases carry a real image instead of the random bytes the schema allows, so that the
successful answers are checked against their schema too. A valid form may still be refused
(422): the schema cannot say that the bytes must be an image, nor that the CRF applies to
checkpoints only, so schemathesis's "valid data is accepted" check is left out.
"""

from __future__ import annotations

import pytest

from tests.serve.helpers import scene_png

pytest.importorskip("fastapi", reason="pixelwise serve needs the serve extra: pip install -e '.[serve]'")
schemathesis = pytest.importorskip("schemathesis", reason="the API fuzz needs schemathesis (a dev dependency)")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

EXAMPLES = 25  # per generation mode
IMAGES = [scene_png(seed, size) for seed, size in ((0, 24), (1, (16, 40)), (2, 33))]


@pytest.mark.reliability(fault="schemathesis: 50 requests generated from the app's own OpenAPI schema, valid and "
                               "invalid",
                         outcome="every answer is documented and matches its schema; none is a 5xx, invalid ones "
                                 "get a 4xx")
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_api_conforms_to_its_schema(app, mode, record_inputs):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    image = st.sampled_from([None, *IMAGES]) if mode == GenerationMode.POSITIVE else st.none()

    @given(case=schema.as_strategy(generation_mode=mode), image=image)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case, image):
        if image is not None and isinstance(case.body, dict) and "file" in case.body:
            case.body["file"] = image
        record_inputs("serve_api")
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    check()
