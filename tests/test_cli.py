import json

import numpy as np
import pytest

import kmeans_stream
from kmeans_stream.cli import main


@pytest.fixture
def csv_file(tmp_path):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(loc, 0.1, size=(100, 3)) for loc in (0.0, 5.0, 10.0)])
    path = tmp_path / "train.csv"
    np.savetxt(path, X, delimiter=",")
    return path, X


def test_fit_then_predict(csv_file, tmp_path, capsys):
    path, X = csv_file
    model_path = tmp_path / "model.tar.gz"
    assert main(["fit", str(path), "--model", str(model_path), "--k", "3",
                 "--random-state", "0", "--backend", "numpy"]) == 0
    assert "train:msd=" in capsys.readouterr().out
    assert main(["predict", str(model_path), str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(X)
    labels = np.array([float(line.split(",")[0]) for line in lines])
    assert len(np.unique(labels)) == 3
    model = kmeans_stream.load(model_path)
    np.testing.assert_array_equal(labels, model.predict(X))


def test_fit_reads_a_sagemaker_hyperparameters_json(csv_file, tmp_path):
    path, _ = csv_file
    hp = tmp_path / "hyperparameters.json"
    hp.write_text(json.dumps({"k": "3", "feature_dim": "3", "mini_batch_size": "50",
                              "force_dense": "True", "_kvstore": "auto"}))
    model_path = tmp_path / "model.tar.gz"
    assert main(["fit", str(path), "--model", str(model_path), "--hyperparameters", str(hp),
                 "--random-state", "1"]) == 0
    model = kmeans_stream.load(model_path)
    assert model.mini_batch_size == 50 and model.k == 3


def test_errors_are_one_line_and_exit_2(csv_file, tmp_path, capsys):
    path, _ = csv_file
    assert main(["fit", str(path), "--model", str(tmp_path / "m.tar.gz"), "--k", "0"]) == 2
    err = capsys.readouterr().err
    assert "The 'k' parameter of KMeans must be an int" in err
    assert not (tmp_path / "m.tar.gz").exists()


def test_convert_csv_to_recordio_and_back(csv_file, tmp_path):
    path, X = csv_file
    pbr = tmp_path / "train.pbr"
    assert main(["convert", str(path), str(pbr)]) == 0
    back = tmp_path / "back.npy"
    assert main(["convert", str(pbr), str(back)]) == 0
    np.testing.assert_allclose(np.load(back), X.astype(np.float32))
