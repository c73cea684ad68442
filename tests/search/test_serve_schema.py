"""The search service's OpenAPI schema as a contract (``GET /api/openapi.json``).

Static checks: every error a route can answer is listed in its ``responses`` as
``{"detail": string}`` (no FastAPI ``HTTPValidationError``), the query of ``POST /api/search`` is
a ``oneOf`` of its four kinds, the upload's multipart field is described, and media routes
declare their media types. Then schemathesis generates requests from the schema for every
operation (valid and invalid ones, derandomized, bounded) against the app in-process, over the
index of tests/search/test_serve_api.py (:func:`tests.search_testing.build_serve_gallery`): no
5xx, and every response documented (status code, content type, body).
"""

import functools

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from ian_d2.search.serve import create_app
from tests.search_testing import build_serve_gallery

TOKEN = "t0ken-for-the-schema-tests-0123"
ERROR = {"$ref": "#/components/schemas/ErrorDetail"}

# every error status each operation can answer (401: any /api route of a server with a token;
# 400: also a body that cannot be parsed, e.g. not UTF-8)
EXPECTED_ERRORS = {
    ("get", "/api/index"): {401},
    ("get", "/api/sources"): {401},
    ("get", "/api/sources/{source_id}/frames"): {401, 404, 422},
    ("get", "/api/sources/{source_id}/video"): {401, 404, 416, 422},
    ("head", "/api/sources/{source_id}/video"): {401, 404, 416, 422},
    ("get", "/api/frames/{frame_id}.jpg"): {401, 404, 422},
    ("get", "/api/frames/{frame_id}"): {401, 404, 422},
    ("get", "/api/detections/{detection_id}/crop.jpg"): {401, 404, 422},
    ("get", "/api/detections/{detection_id}"): {401, 404, 422},
    ("post", "/api/uploads"): {400, 401, 413, 422},
    ("get", "/api/uploads/{upload_id}.jpg"): {401, 404, 422},
    ("post", "/api/search"): {400, 401, 404, 422},
    ("get", "/api/index/jobs"): {401},
    ("post", "/api/index/jobs"): {400, 401, 422},
    ("get", "/api/index/jobs/{job_id}"): {401, 404, 422},
    ("post", "/api/session"): {400, 401, 422},
}
# schema-valid requests that the server may still refuse, and why (the schema cannot say it)
SEMANTIC_REFUSALS = {
    ("post", "/api/uploads"): {422},  # the file must decode as an image
    ("post", "/api/index/jobs"): {400},  # the paths must name footage under the root
    ("post", "/api/search"): {422},  # a query box must lie inside its frame or upload
}
MAX_EXAMPLES = 60  # per operation: the module runs in about 20 s on 2 cores


@pytest.fixture(scope="module")
def gallery(synthetic_cuhk_sysu, tmp_path_factory):
    """The index of the service's tests (the synthetic video and 4 still images)."""
    tmp = str(tmp_path_factory.mktemp("serve_schema"))
    return build_serve_gallery(tmp, synthetic_cuhk_sysu.images)


@pytest.fixture(scope="module")
def app(gallery, tmp_path_factory):
    """The service over the gallery, with a footage root holding no footage (every job is
    refused, 400) and no job worker."""
    root = tmp_path_factory.mktemp("footage")
    (root / "notes.txt").write_text("not footage")
    app = create_app(
        gallery.index_dir, model=gallery.model, footage_roots=[str(root)], start_jobs=False
    )
    yield app
    app.state.ctx.jobs.close()


@pytest.fixture(scope="module")
def openapi(app):
    """The app's OpenAPI schema, as served."""
    return TestClient(app).get("/api/openapi.json").json()


@pytest.fixture(scope="module")
def ids(app):
    """Real ids of the served index (a video's and a still image's), for generated requests to
    reach the answers of known ids too (200, 206, a search's hits), not only 404."""
    snap = app.state.ctx.state.current()
    video = next(s for s in snap.sources if s.kind == "video")
    image = next(s for s in snap.sources if s.kind == "image")
    return {
        "source_id": [video.id, image.id],
        "frame_id": [snap.frame_id(video, int(video.frames[1])), snap.frame_id(image, 0)],
        "detection_id": [snap.detection_id(0), snap.detection_id(snap.num_rows - 1)],
    }


@pytest.fixture(scope="module")
def api_schema(app):
    """The schema loaded by schemathesis, its requests sent to the app in-process (no 10 s
    timeout: the first request of a video converts it, slow on a loaded machine)."""
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    schema.config.update(request_timeout=600)
    return schema


def _operations(openapi):
    """(method, path, operation) of every operation of the schema."""
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            yield method, path, op


# static contract ---------------------------------------------------------------------------------
def test_errors_are_detail_strings(openapi):
    """Every error status of EXPECTED_ERRORS, and no other, answered as ErrorDetail; FastAPI's
    validation error components are gone."""
    components = openapi["components"]["schemas"]
    assert "HTTPValidationError" not in components and "ValidationError" not in components
    detail = components["ErrorDetail"]
    assert detail["required"] == ["detail"]
    assert list(detail["properties"]) == ["detail"]
    assert detail["properties"]["detail"]["type"] == "string"
    seen = set()
    for method, path, op in _operations(openapi):
        seen.add((method, path))
        codes = {int(c) for c in op["responses"] if 400 <= int(c) < 500}
        assert codes == EXPECTED_ERRORS[(method, path)], (method, path)
        for code in codes:
            content = op["responses"][str(code)]["content"]
            assert content == {"application/json": {"schema": ERROR}}, (method, path, code)
    assert seen == set(EXPECTED_ERRORS)


def test_query_is_one_of_four_kinds(openapi):
    """QuerySpec: a oneOf of four closed objects, each with its non-empty id (and box), the
    other keys null only: ``{"query": {}}`` is not schema-valid any more."""
    components = openapi["components"]["schemas"]
    assert components["SearchRequest"]["properties"]["query"] == {
        "$ref": "#/components/schemas/QuerySpec"
    }
    kinds = [ref["$ref"].rsplit("/", 1)[-1] for ref in components["QuerySpec"]["oneOf"]]
    assert kinds == ["DetectionQuery", "TrackQuery", "FrameQuery", "UploadQuery"]
    for kind, key in zip(kinds, ("detection_id", "track_id", "frame_id", "upload_id")):
        model = components[kind]
        assert model["additionalProperties"] is False
        with_box = key in ("frame_id", "upload_id")
        assert set(model["required"]) == ({key, "box"} if with_box else {key})
        assert (model["properties"][key]["type"], model["properties"][key]["minLength"]) == (
            "string", 1
        )  # fmt: skip
        others = set(model["properties"]) - {key} - ({"box"} if with_box else set())
        assert all(model["properties"][k]["type"] == "null" for k in others), kind
        if with_box:
            box = model["properties"]["box"]
            assert (box["type"], box["minItems"], box["maxItems"]) == ("array", 4, 4)


def test_upload_and_media_are_described(openapi):
    """The upload's multipart body (field ``file``, binary), and the media types of images and
    videos."""
    body = openapi["paths"]["/api/uploads"]["post"]["requestBody"]
    assert body["required"] is True
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["additionalProperties"] is False
    assert form["properties"]["file"]["type"] == "string"
    assert form["properties"]["file"]["format"] == "binary"
    for path in (
        "/api/frames/{frame_id}.jpg",
        "/api/detections/{detection_id}/crop.jpg",
        "/api/uploads/{upload_id}.jpg",
    ):
        assert list(openapi["paths"][path]["get"]["responses"]["200"]["content"]) == ["image/jpeg"]
    video = openapi["paths"]["/api/sources/{source_id}/video"]["get"]["responses"]
    assert set(video["200"]["content"]) == set(video["206"]["content"]) == {
        "video/mp4", "video/webm"
    }  # fmt: skip


def test_token_refusals_are_documented(gallery, openapi):
    """With a token, every operation answers 401 without it: a status its schema lists."""
    app = create_app(gallery.index_dir, model=gallery.model, token=TOKEN, start_jobs=False)
    try:
        client = TestClient(app)
        for method, path, op in _operations(openapi):
            url = path.replace("{", "").replace("}", "")  # any id: refused before it is read
            body = {"token": "wrong"} if path == "/api/session" else None
            r = client.request(method.upper(), url, json=body)
            assert r.status_code == 401, (method, path)
            assert "401" in op["responses"]
            if method != "head":
                assert set(r.json()) == {"detail"}
    finally:
        app.state.ctx.jobs.close()


# generated requests ------------------------------------------------------------------------------
def _strategy(operation, ids, gallery):
    """Requests of ``operation``: schema-valid and schema-invalid ones, then schema-valid ones with
    the real ids of ``ids`` (path parameters; a search's query) or a real image (an upload)."""
    inputs = (operation.path_parameters, operation.query, operation.headers)
    options = [operation.as_strategy(GenerationMode.POSITIVE)]
    if any(len(p) for p in inputs) or operation.body:
        options.append(operation.as_strategy(GenerationMode.NEGATIVE))
    for name, values in ids.items():
        if "{%s}" % name in operation.path:
            options += [operation.as_strategy(path_parameters={name: v}) for v in values]
    if operation.path == "/api/search":
        for query in [{"detection_id": d} for d in ids["detection_id"]] + [
            {"frame_id": ids["frame_id"][0], "box": [10, 20, 60, 120]}
        ]:
            options.append(operation.as_strategy().map(functools.partial(_with_query, query)))
    if operation.path == "/api/uploads":
        with open(gallery.images[0], "rb") as f:
            options.append(operation.as_strategy(body={"file": f.read()}))
    return st.one_of(options)


def _with_query(query, case):
    """``case`` (a schema-valid search) with the query ``query``."""
    case.body = {**case.body, "query": query}
    return case


@pytest.mark.parametrize("method, path", sorted(EXPECTED_ERRORS))
def test_generated_requests_keep_the_contract(api_schema, ids, gallery, method, path):
    """No 5xx; status code, content type, headers and body as the schema says; schema-valid
    requests answered 2xx or 404 (an unknown id), or refused only as SEMANTIC_REFUSALS says."""
    operation = api_schema[path][method.upper()]
    accepted = {200, 202, 206, 404} | SEMANTIC_REFUSALS.get((method, path), set())
    # positive_data_acceptance: replaced by the check below (with SEMANTIC_REFUSALS)
    excluded = [positive_data_acceptance]

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
    )
    @given(case=_strategy(operation, ids, gallery))
    def check(case):
        response = case.call_and_validate(excluded_checks=excluded)
        if case.meta.generation.mode.is_positive:
            assert response.status_code in accepted, (response.status_code, response.text)

    check()
