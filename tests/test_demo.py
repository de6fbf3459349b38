import numpy as np
import pytest

import kmeans_stream
from kmeans_stream.demo import make_blobs, run

pytest.importorskip("matplotlib")


def test_the_demo_writes_every_output_and_a_loadable_model(tmp_path, capsys):
    outputs = run(tmp_path, backend="numpy")
    printed = capsys.readouterr().out
    for word in ("cluster sizes", "silhouette", "inertia", "mean distance to centroid"):
        assert word in printed
    for what in ("data", "scatter", "histogram", "model"):
        assert outputs[what].is_file()
        assert str(outputs[what]) in printed
    for picture in (outputs["scatter"], outputs["histogram"]):
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = kmeans_stream.load(outputs["model"])
    X, _ = make_blobs(5000, 10, 5, 1.5, 42)
    sizes = np.bincount(model.predict(X), minlength=5)
    assert sorted(sizes.tolist()) == [1000] * 5
