"""Fixtures shared across the test suite."""

import pytest


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API server (moto) on 127.0.0.1 for the session; yields its endpoint URL.

    While it runs, the environment points boto3 at it: dummy credentials, region us-east-1
    and ``AWS_ENDPOINT_URL_S3``, so library code reaches it through boto3's usual settings,
    with no endpoint written into the code. Only S3 is redirected.
    """
    server_module = pytest.importorskip("moto.server")
    pytest.importorskip("boto3")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield endpoint
    server.stop()


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu are deselected, with one line saying why, where no CUDA GPU is usable
    (CI never has one); on the GPU machine they run."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    from kmeans_stream.backends.cupy import gpu_available

    reason = gpu_available()
    if reason is None:
        return
    config.hook.pytest_deselected(items=gpu_items)
    items[:] = [item for item in items if not item.get_closest_marker("gpu")]
    print(f"\n{len(gpu_items)} gpu tests deselected: {reason}")
