"""model.tar.gz: SageMaker's artifact, kmeans_stream's own, S3, and archives built to attack."""

import gzip
import io
import json
import os
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from kmeans_stream.exceptions import ModelFormatError
from kmeans_stream.io import artifact, write_ndarrays
from kmeans_stream.io.artifact import read_model_artifact, safe_extract, write_model_artifact

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SAGEMAKER_TAR = FIXTURES / "ndarray" / "model.tar.gz"
MODEL = FIXTURES / "ndarray" / "model_algo-1_list"
TRAVERSAL = FIXTURES / "evil" / "traversal.tar.gz"


def _centers() -> np.ndarray:
    return np.load(FIXTURES / "ndarray" / "centers_8x7.npy")


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def _everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_the_sagemaker_artifact_reads_and_its_state_member_is_ignored():
    centers, state = read_model_artifact(SAGEMAKER_TAR)
    assert centers.dtype == np.float32 and state is None
    np.testing.assert_array_equal(centers, _centers())
    with tarfile.open(SAGEMAKER_TAR) as tar:
        assert any(name.startswith("state_") for name in tar.getnames())


@pytest.mark.parametrize("name", ["model_algo-1", "weights.bin", "no_extension"])
def test_a_bare_model_file_is_told_by_its_magic_not_its_name(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(MODEL.read_bytes())
    centers, state = read_model_artifact(str(path))
    np.testing.assert_array_equal(centers, _centers())
    assert state is None


def test_write_then_read_with_state(tmp_path):
    state = {"k": 8, "counts_": [1.5, 2.0], "aardvark": None}
    path = write_model_artifact(tmp_path / "model.tar.gz", _centers(), state)
    centers, got_state = read_model_artifact(path)
    np.testing.assert_array_equal(centers, _centers())
    assert got_state == state
    with tarfile.open(path) as tar:
        assert tar.getnames() == ["model_algo-1", "kmeans_stream.json"]
        assert tar.extractfile("model_algo-1").read() == MODEL.read_bytes()
        assert tar.extractfile("kmeans_stream.json").read() == json.dumps(
            state, sort_keys=True
        ).encode("utf-8")


def test_write_without_state_into_a_folder_is_reproducible(tmp_path):
    first = write_model_artifact(tmp_path, _centers().astype(np.float64))
    assert first == str(tmp_path / "model.tar.gz")
    data = Path(first).read_bytes()
    write_model_artifact(first, _centers())
    assert Path(first).read_bytes() == data
    with tarfile.open(first) as tar:
        assert tar.getnames() == ["model_algo-1"]
    assert read_model_artifact(first)[1] is None
    assert os.listdir(tmp_path) == ["model.tar.gz"]


def test_a_failed_write_keeps_the_old_model(tmp_path):
    path = write_model_artifact(tmp_path, _centers(), {"k": 8})
    before = Path(path).read_bytes()
    with pytest.raises(TypeError):
        write_model_artifact(path, np.ones((2, 2)), {"bad": object()})
    assert Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["model.tar.gz"]


def test_centers_must_be_2d_to_write(tmp_path):
    with pytest.raises(ValueError, match="2-D"):
        write_model_artifact(tmp_path, np.ones(3))
    assert os.listdir(tmp_path) == []


def test_the_traversal_fixture_is_refused_and_nothing_escapes(tmp_path):
    with pytest.raises(ModelFormatError, match=r"'\.\./\.\./escape\.txt'.*traversal"):
        read_model_artifact(TRAVERSAL)
    target = tmp_path / "a" / "b" / "model"
    with pytest.raises(ModelFormatError, match="traversal"):
        safe_extract(TRAVERSAL, target)
    assert _everything_under(tmp_path) == []


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_file("/abs/model_algo-1", b"x"), "absolute name"),
        (_file("C:/model_algo-1", b"x"), "absolute name"),
        (_file("sub/../../x", b"x"), "traversal"),
        (_file("sub\\..\\x", b"x"), "traversal"),
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (_special("hard", tarfile.LNKTYPE, "model_algo-1"), "hard link"),
        (_special("dev", tarfile.CHRTYPE), "device file"),
        (_special("blk", tarfile.BLKTYPE), "device file"),
        (_special("pipe", tarfile.FIFOTYPE), "fifo"),
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(tmp_path, member, message):
    archive = _tar(tmp_path / "evil.tar.gz", [_file("model_algo-1", MODEL.read_bytes()), member])
    with pytest.raises(ModelFormatError, match=message):
        read_model_artifact(archive)
    with pytest.raises(ModelFormatError, match=message):
        safe_extract(archive, tmp_path / "out")
    assert _everything_under(tmp_path) == ["evil.tar.gz"]


def test_members_over_the_size_cap_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(artifact, "MAX_MEMBER_BYTES", 100)
    archive = _tar(tmp_path / "big.tar.gz", [_file("model_algo-1", MODEL.read_bytes())])
    with pytest.raises(ModelFormatError, match="296 bytes, over 100"):
        read_model_artifact(archive)


def test_archives_with_too_many_members_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(artifact, "MAX_MEMBERS", 5)
    members = [_file("model_algo-1", MODEL.read_bytes())]
    members += [_file(f"state_{i}", b"") for i in range(5)]
    archive = _tar(tmp_path / "many.tar.gz", members)
    with pytest.raises(ModelFormatError, match="more than 5 archive members"):
        read_model_artifact(archive)
    with pytest.raises(ModelFormatError, match="more than 5"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _save(arrays) -> bytes:
    out = io.BytesIO()
    write_ndarrays(out, arrays)
    return out.getvalue()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_file("state_1", b"x")], "no model_algo-1 member"),
        ([_file("sub/model_algo-1", MODEL.read_bytes())], "no model_algo-1 member"),
        ([_file("model_algo-1", _save([np.ones((2, 2))] * 2))], "2 arrays"),
        ([_file("model_algo-1", _save([np.ones(3)]))], "2-D float array"),
        ([_file("model_algo-1", _save([np.ones((2, 2), np.int32)]))], "2-D float array"),
        ([_file("model_algo-1", _save([np.ones((0, 2))]))], "non-empty"),
        ([_file("model_algo-1", MODEL.read_bytes()[:60])], "truncated"),
        ([_file("model_algo-1", b"not a model, nor anything like one")], "bad list magic"),
        ([_file("model_algo-1", MODEL.read_bytes()), _file("kmeans_stream.json", b"[1]")], "list"),
        ([_file("model_algo-1", MODEL.read_bytes()), _file("kmeans_stream.json", b"{")], "JSON"),
    ],
)
def test_bad_models_are_refused(tmp_path, members, message):
    archive = _tar(tmp_path / "model.tar.gz", members)
    with pytest.raises(ModelFormatError, match=message):
        read_model_artifact(archive)


def test_other_layouts_of_a_good_archive_are_read(tmp_path):
    folder = tarfile.TarInfo("./")
    folder.type = tarfile.DIRTYPE
    archive = tmp_path / "model.tar"
    with tarfile.open(archive, "w") as tar:
        tar.addfile(folder)
        info = tarfile.TarInfo("./model_algo-1")
        info.size = len(MODEL.read_bytes())
        tar.addfile(info, io.BytesIO(MODEL.read_bytes()))
    np.testing.assert_array_equal(read_model_artifact(archive)[0], _centers())


@pytest.mark.parametrize("cut", [10, 100, 200, -20])
def test_truncated_or_foreign_files_are_refused(tmp_path, cut):
    path = tmp_path / "model.tar.gz"
    path.write_bytes(SAGEMAKER_TAR.read_bytes()[:cut])
    with pytest.raises(ModelFormatError):
        read_model_artifact(path)
    path.write_bytes(b"hello, I am not a model")
    with pytest.raises(ModelFormatError, match="not a sound tar archive"):
        read_model_artifact(path)


def test_safe_extract_writes_the_members(tmp_path):
    archive = _tar(
        tmp_path / "model.tar.gz",
        [_file("model_algo-1", MODEL.read_bytes()), _file("code/inference.py", b"print(1)\n")],
    )
    target = tmp_path / "opt" / "ml" / "model"
    written = safe_extract(archive, target)
    assert sorted(written) == [str(target / "code/inference.py"), str(target / "model_algo-1")]
    assert (target / "model_algo-1").read_bytes() == MODEL.read_bytes()
    assert (target / "code" / "inference.py").read_text() == "print(1)\n"


def test_safe_extract_does_not_follow_a_symlink_already_in_the_target(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "model"
    target.mkdir()
    (target / "code").symlink_to(outside)
    archive = _tar(tmp_path / "model.tar.gz", [_file("code/x.py", b"boom")])
    with pytest.raises(ModelFormatError, match="outside"):
        safe_extract(archive, target)
    assert list(outside.iterdir()) == []


def test_gzip_of_a_plain_file_is_refused(tmp_path):
    path = tmp_path / "model.tar.gz"
    path.write_bytes(gzip.compress(b"just some text, not a tar archive" * 20))
    with pytest.raises(ModelFormatError):
        read_model_artifact(path)


def test_reading_an_artifact_from_s3(s3_server):
    boto3 = pytest.importorskip("boto3")
    client = boto3.client("s3")  # the endpoint and credentials come from the environment
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    key = "kmeans-2024-01-01/output/model.tar.gz"
    client.put_object(Bucket=bucket, Key=key, Body=SAGEMAKER_TAR.read_bytes())
    client.put_object(Bucket=bucket, Key="bare/model_algo-1", Body=MODEL.read_bytes())
    for uri in (f"s3://{bucket}/{key}", f"s3://{bucket}/bare/model_algo-1"):
        centers, state = read_model_artifact(uri)
        np.testing.assert_array_equal(centers, _centers())
        assert state is None
    with pytest.raises(ValueError, match="not an S3 object URI"):
        read_model_artifact(f"s3://{bucket}")
    with pytest.raises(Exception, match="NoSuchKey|Not Found|404"):
        read_model_artifact(f"s3://{bucket}/missing/model.tar.gz")


def test_reading_a_local_artifact_never_imports_boto3():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from kmeans_stream.io.artifact import read_model_artifact\n"
        f"read_model_artifact({str(SAGEMAKER_TAR)!r})\n"
        "assert 'boto3' not in sys.modules and 'scipy' not in sys.modules\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root)
