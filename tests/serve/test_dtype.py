"""The service is long-running: ``--dtype auto`` runs bfloat16 wherever the CPU computes it natively, and the
one-shot rule (AMX needed) is back once the service stops."""

import json
import shutil

from fastapi.testclient import TestClient

from breastdx import runtime
from breastdx.serve import ServeSettings, create_app


def test_the_service_runs_bfloat16_on_avx512_bf16_and_restores_the_one_shot_rule(tmp_path, model_dirs, bf16_cpu):
    folder = tmp_path / "busi-seg"
    shutil.copytree(model_dirs["busi-seg"], folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["inference"] = {"validated_dtypes": ["float32", "bfloat16"], "tta": "none"}
    (folder / "meta.json").write_text(json.dumps(meta))
    bf16_cpu("avx512_bf16")
    settings = ServeSettings(auth=False, database_url=f"sqlite:///{tmp_path / 'p.sqlite'}", model_dirs=(folder,))
    with TestClient(create_app(settings)) as client:
        predictor = client.app.state.registry.models["busi-seg"].predictor
        assert (predictor.dtype, predictor.backend) == ("bfloat16", "torch")
    assert runtime.declare_long_running(False) is False  # restored at shut-down
    assert runtime.choose_inference_dtype("auto", ("float32", "bfloat16"), "cpu")[0] == "float32"
