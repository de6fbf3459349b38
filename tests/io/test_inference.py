"""Inference payloads (spec 5): the request and response forms of SageMaker's K-Means, both
directions, against the spec's examples and the SDK's RecordIO bytes."""

import json
from pathlib import Path

import numpy as np
import pytest

from kmeans_stream.exceptions import DataFormatError, PayloadError
from kmeans_stream.io import (
    ACCEPT_TYPES,
    CONTENT_TYPES,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    media_type,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recordio"
CSV, JSON, JSONLINES, RECORDIO = (
    "text/csv",
    "application/json",
    "application/jsonlines",
    "application/x-recordio-protobuf",
)
SMALL = np.array([[1.5, 16.0, 14.0, 23.0], [0.1, 0.0, 0.0, -2.0]], dtype=np.float32)


def _sparse(X):
    return pytest.importorskip("scipy.sparse").csr_matrix(X)


def test_media_type_drops_parameters_and_case():
    assert media_type("Text/CSV; label_size=0") == CSV
    assert media_type("application/json;charset=utf-8") == JSON
    assert media_type(" application/jsonlines ") == JSONLINES


def test_the_four_types_both_ways():
    assert set(CONTENT_TYPES) == set(ACCEPT_TYPES) == {CSV, JSON, JSONLINES, RECORDIO}


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [CSV, JSON, JSONLINES, RECORDIO])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_requests_round_trip(content_type, sparse):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 5)) * 1e3 ** rng.integers(-3, 3, size=(7, 5))
    X = np.where(rng.random(X.shape) < 0.5, 0, X).astype(np.float32)
    X[3] = 0  # a sparse row with no stored value
    body = encode_request(_sparse(X) if sparse else X, content_type)
    got = decode_request(body, content_type, n_features=5)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, X)


@pytest.mark.parametrize("content_type", [CSV, JSON, JSONLINES, RECORDIO])
def test_float64_and_int_requests_arrive_as_float32(content_type):
    X = np.array([[0.1, 1e-8, 3e20]])
    np.testing.assert_array_equal(
        decode_request(encode_request(X, content_type), content_type), X.astype(np.float32)
    )
    ints = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(decode_request(encode_request(ints, content_type), content_type),
                                  ints.astype(np.float32))


@pytest.mark.parametrize("content_type", [CSV, JSON, JSONLINES, RECORDIO])
def test_one_dimensional_x_is_one_row(content_type):
    got = decode_request(encode_request(SMALL[0], content_type), content_type)
    np.testing.assert_array_equal(got, SMALL[:1])


@pytest.mark.parametrize("accept", [CSV, JSON, JSONLINES, RECORDIO])
def test_responses_round_trip(accept):
    closest = np.array([0, 7, 2, 65535])
    distance = np.array([0.0, 23.40593910217285, 1e-9, 3e30], dtype=np.float32)
    got_closest, got_distance = decode_response(encode_response(closest, distance, accept), accept)
    assert got_closest.dtype == np.int32 and got_distance.dtype == np.float32
    np.testing.assert_array_equal(got_closest, closest)
    np.testing.assert_array_equal(got_distance, distance)


# -- exact bytes ----------------------------------------------------------------------------


def test_exact_dense_request_bytes():
    assert encode_request(SMALL, CSV) == b"1.5,16.0,14.0,23.0\n0.1,0.0,0.0,-2.0"
    assert encode_request(SMALL, JSON) == (
        b'{"instances":[{"features":[1.5,16.0,14.0,23.0]},{"features":[0.1,0.0,0.0,-2.0]}]}'
    )
    assert encode_request(SMALL, "application/jsonlines; charset=utf-8") == (
        b'{"features":[1.5,16.0,14.0,23.0]}\n{"features":[0.1,0.0,0.0,-2.0]}'
    )


def test_exact_sparse_request_bytes():
    row = '{"data":{"features":{"keys":[0,3],"shape":[4],"values":[0.1,-2.0]}}}'
    assert encode_request(_sparse(SMALL[1:]), JSON) == f'{{"instances":[{row}]}}'.encode()
    assert encode_request(_sparse(SMALL[1:]), JSONLINES) == row.encode()
    assert encode_request(_sparse(SMALL[1:]), CSV) == b"0.1,0.0,0.0,-2.0"


def test_exact_response_bytes():
    closest = np.array([1, 0])
    distance = np.array([3.0, 23.40593910217285], dtype=np.float32)
    assert encode_response(closest, distance, JSON) == (
        b'{"predictions":[{"closest_cluster":1.0,"distance_to_cluster":3.0},'
        b'{"closest_cluster":0.0,"distance_to_cluster":23.40593910217285}]}'
    )
    assert encode_response(closest, distance, JSONLINES) == (
        b'{"distance_to_cluster": 3.0, "closest_cluster": 1.0}\n'
        b'{"distance_to_cluster": 23.40593910217285, "closest_cluster": 0.0}'
    )
    assert encode_response(closest, distance, "text/csv; charset=utf-8") == (
        b"1.0,3.0\n0.0,23.40593910217285"
    )


def test_distances_print_as_the_float_of_their_float32():
    body = encode_response([0], [0.1], JSON)
    assert b'"distance_to_cluster":0.10000000149011612' in body


# -- the SDK's RecordIO bytes ---------------------------------------------------------------


def test_fixture_predictions_decode_and_encode_to_the_same_bytes():
    body = (FIXTURES / "predictions.pbr").read_bytes()
    records = json.loads((FIXTURES / "predictions.json").read_text())["records"]
    closest, distance = decode_response(body, RECORDIO)
    np.testing.assert_array_equal(closest, [r["closest_cluster"][0] for r in records])
    np.testing.assert_array_equal(distance, [r["distance_to_cluster"][0] for r in records])
    assert encode_response(closest, distance, RECORDIO) == body


@pytest.mark.parametrize("name", ["dense_f32", "sparse_f32"])
def test_fixture_requests_decode(name):
    expected = np.load(FIXTURES / f"{name}{'.dense' if 'sparse' in name else ''}.npy")
    got = decode_request((FIXTURES / f"{name}.pbr").read_bytes(), RECORDIO)
    np.testing.assert_array_equal(got, expected)


# -- the spec's request examples (5.1) ------------------------------------------------------

SPEC_ROW = [[1.5, 16.0, 14.0, 23.0]]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"1.5,16.0,14,23.0", CSV),
        (b"1.5,16.0,14,23.0\n", "text/csv;label_size=0"),
        (b"1.5,16.0,14,23.0\r\n\r\n", "text/csv; charset=utf-8"),
        (b'{"instances":[{"features":[1.5,16.0,14.0,23.0]}]}', JSON),
        (b'{"instances":[{"data":{"features":{"values":[1.5,16.0,14.0,23.0]}}}]}', JSON),
        (
            b'{"instances":[{"data":{"features":{"keys":[0,1,2,3],"shape":[4],'
            b'"values":[1.5,16.0,14.0,23.0]}}}]}',
            "Application/JSON",
        ),
        (b'{"features":[1.5,16.0,14.0,23.0]}\n', JSONLINES),
        (b'{"data":{"features":{"values":[1.5,16.0,14.0,23.0]}}}', JSONLINES),
        (b'{"data":{"features":{"keys":[3,0,1,2],"shape":[4],"values":[23,1.5,16,14]}}}',
         JSONLINES),
    ],
)
def test_spec_request_examples(body, content_type):
    np.testing.assert_array_equal(decode_request(body, content_type, n_features=4), SPEC_ROW)


def test_sparse_json_rows_are_densified_with_their_shape():
    body = (
        b'{"instances":[{"data":{"features":{"keys":[1],"shape":[3],"values":[5]}}},'
        b'{"features":[1,2,3]}]}'
    )
    np.testing.assert_array_equal(decode_request(body, JSON), [[0, 5, 0], [1, 2, 3]])


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b"1,2", "text/plain", r"unsupported content type 'text/plain'; supported: text/csv, "),
        (b"", CSV, "empty body"),
        (b" \n ", JSON, "empty body"),
        (b"1,2\n3,x", CSV, r"non-numeric cell 'x' at row 2, column 2"),
        (b"1,2\n\n3,4", CSV, r"non-numeric cell '' at row 2, column 1"),
        (b"1,1_000", CSV, r"non-numeric cell '1_000' at row 1, column 2"),
        (b"1,2,3\n4,5", CSV, r"rows of different lengths: row 2 has 2 features, row 1 has 3"),
        (b"1,nan", CSV, r"non-finite value nan at row 1, column 2"),
        (b"1e39,1", CSV, r"non-finite value 1e\+39 at row 1, column 1 \(as float32\)"),
        (b"1,2,3,4,5", CSV, "expected 7 features, got 5"),
        (b"[[1,2]]", JSON, "a bare JSON list is not a SageMaker request"),
        (b'{"instances":[{"features":[1,2]}]', JSON, "malformed JSON in the body"),
        (b'{"rows":[]}', JSON, r'an object with an "instances" list'),
        (b'{"instances":[]}', JSON, "the request holds no rows"),
        (b'{"instances":[{"features":[1,"2"]}]}', JSON, r"non-numeric cell '2' at row 1, column 2"),
        (b'{"instances":[{"features":[1,true]}]}', JSON, r"cell True at row 1, column 2"),
        (b'{"instances":[{"features":[1,NaN]}]}', JSON, r"non-finite value nan at row 1, column 2"),
        (b'{"instances":[{"features":[1]},{"features":[1,2]}]}', JSON, "different lengths"),
        (b'{"instances":[{"values":[1,2]}]}', JSON, r'row 1 is neither \{"features"'),
        (b'{"instances":[{"features":[]}]}', JSON, "the rows hold no features"),
        (
            b'{"instances":[{"data":{"features":{"keys":[0,5],"shape":[5],"values":[1,2]}}}]}',
            JSON,
            r"row 1: sparse key 5 is out of range for shape \[5\]",
        ),
        (
            b'{"instances":[{"data":{"features":{"keys":[-1],"shape":[5],"values":[1]}}}]}',
            JSON,
            r"sparse key -1 is out of range",
        ),
        (
            b'{"instances":[{"data":{"features":{"keys":[0],"shape":[5],"values":[1,2]}}}]}',
            JSON,
            r"row 1: 1 keys for 2 values",
        ),
        (
            b'{"instances":[{"data":{"features":{"keys":[0],"values":[1]}}}]}',
            JSON,
            r'row 1: "shape" must be a list',
        ),
        (
            b'{"instances":[{"data":{"features":{"shape":[3],"values":[1]}}}]}',
            JSON,
            r"row 1: 1 values for shape \[3\]",
        ),
        (b'{"features":[1,2]}\n{"features":[1,2]', JSONLINES, "malformed JSON on line 2"),
        (b'{"features":[1,2]}\n{"features":["a",2]}', JSONLINES, r"'a' at row 2, column 1"),
        (b'{"instances":[{"features":[1,2]}]}', JSONLINES, r'row 1 is neither \{"features"'),
        (b"\xff\xfe1,2", CSV, "not UTF-8"),
        (b"\n#\xd7\xce\x09\x00\x00\x00garbage", RECORDIO, "malformed RecordIO-protobuf"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(body, content_type, match):
    n_features = 7 if match.startswith("expected") else None
    with pytest.raises(PayloadError, match=match):
        decode_request(body, content_type, n_features=n_features)


def test_a_payload_error_is_a_data_format_error_and_a_value_error():
    assert issubclass(PayloadError, DataFormatError)
    assert issubclass(PayloadError, ValueError)


def test_a_recordio_feature_count_mismatch_is_refused():
    body = encode_request(SMALL, RECORDIO)
    with pytest.raises(PayloadError, match="expected 3 features, got 4"):
        decode_request(body, RECORDIO, n_features=3)


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b"1.0,2.0", "text/html", r"unsupported content type 'text/html'"),
        (b"", JSON, "empty body"),
        (b'{"predictions":[{"closest_cluster":1.0}]}', JSON, r"prediction 1 is not an object"),
        (b'[{"closest_cluster":1.0,"distance_to_cluster":2.0}]', JSON, r'a "predictions" list'),
        (b"1.0,2.0\n1.0", CSV, r"row 2 has 1 cells; a prediction is closest_cluster"),
        (b"1.0,abc", CSV, r"non-numeric cell 'abc' at row 1, column 2"),
        (b"1.5,2.0", CSV, r"closest_cluster 1.5 at row 1 is not a cluster index"),
        (b"0.0,1.0\n-1.0,2.0", CSV, r"closest_cluster -1.0 at row 2"),
        (b'{"distance_to_cluster": 1.0, "closest_cluster": 0.0}\n{', JSONLINES, "on line 2"),
        (b"\n#\xd7\xce\x09\x00\x00\x00garbage", RECORDIO, "malformed RecordIO-protobuf"),
    ],
)
def test_bad_responses_are_refused_with_the_reason(body, content_type, match):
    with pytest.raises(PayloadError, match=match):
        decode_response(body, content_type)


def test_recordio_requests_are_not_predictions():
    with pytest.raises(PayloadError, match="no label"):
        decode_response(encode_request(SMALL, RECORDIO), RECORDIO)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.zeros((2, 2, 2)), "X must be 1-D or 2-D; got 3 dimensions"),
        (np.zeros((0, 3)), "X has no rows"),
        (np.array([[1.0, np.inf]]), r"non-finite value inf at row 1, column 2"),
        (np.array([["a", "b"]]), "X must hold real numbers; got dtype <U1"),
        (np.array([1 + 2j]), "X must hold real numbers; got dtype complex128"),
    ],
)
def test_bad_rows_are_refused_before_sending(X, match):
    with pytest.raises(PayloadError, match=match):
        encode_request(X, CSV)


def test_boolean_rows_are_sent_as_numbers():
    assert encode_request(np.array([[True, False]]), CSV) == b"1.0,0.0"
    assert encode_request(_sparse(np.array([[False, True]])), JSONLINES) == (
        b'{"data":{"features":{"keys":[1],"shape":[2],"values":[1.0]}}}'
    )


def test_a_non_finite_sparse_value_is_named_by_its_place():
    X = _sparse(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))
    X.data[1] = np.nan
    with pytest.raises(PayloadError, match=r"non-finite value nan at row 2, column 3"):
        encode_request(X, JSON)


def test_unknown_encode_types_and_mismatched_columns_are_refused():
    with pytest.raises(PayloadError, match=r"unsupported content type 'text/xml'; supported: "):
        encode_request(SMALL, "text/xml")
    with pytest.raises(PayloadError, match=r"unsupported accept type 'image/png'"):
        encode_response([0], [1.0], "image/png")
    with pytest.raises(PayloadError, match="2 closest_cluster for 1 distances"):
        encode_response([0, 1], [1.0], JSON)
    with pytest.raises(PayloadError, match="closest_cluster must be 1-D"):
        encode_response([[0]], [1.0], JSON)
