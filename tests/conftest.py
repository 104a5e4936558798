"""Shared test settings: ONNX graphs exported by the tests go to a temporary folder, not the user's cache."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _onnx_cache_in_a_temporary_folder(tmp_path_factory):
    import breastdx.inference.backends as backends

    folder = tmp_path_factory.mktemp("onnx-cache")
    original = backends.onnx_cache_dir
    backends.onnx_cache_dir = lambda: folder
    yield folder
    backends.onnx_cache_dir = original
