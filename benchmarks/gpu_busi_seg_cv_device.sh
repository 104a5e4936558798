#!/usr/bin/env bash
# The GPU machine's half of benchmarks/gpu_busi_seg_cv.py (read its docstring first).
#
# Run from the repository root on a machine with one CUDA GPU, after `python benchmarks/gpu_busi_seg_cv.py prepare
# .device/busi-cv` here and with the wheels the machine lacks in .whl/ (installed into /tmp/site). It trains, side by
# side on the one GPU (CUDA, bf16-mixed, 2 loader workers each):
#   - 5 folds of the shipped busi-seg recipe (Dice + cross-entropy), out/dicece/f<k>;
#   - 5 folds of the same recipe with the focal loss (--focal-gamma 2), out/focal2/f<k>;
#   - the focal recipe refit on the shipped grouped split (base.json), kept for the case that cross-validation
#     chooses it; its test figures are stripped here, unread, since the test split is read once, at the end.
# Each run stops after BUDGET seconds (default 420) whatever its epoch. The fold models come back in float16
# (half the bytes; the rescoring casts them back), the refit in float32, as tars under $OUT.
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/gpu-busi-cv-out}
BUDGET=${BUDGET:-420}
PY=${PY:-python3}          # the machine's Python with CUDA PyTorch
ACCEL=${ACCEL:-gpu}        # cpu, with EXTRA="--max-cases 6 --epochs 2 --max-train-batches 2", to try this script here
EXTRA=${EXTRA:-}
W=/tmp/gpu-busi-cv
mkdir -p "$OUT" "$W"
if [ -z "${SKIP_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 3; }
fi
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1 BREASTDX_DATA="$PWD/.device/busi-cv/data"
F="$PWD/.device/busi-cv/folds"
{ nvidia-smi -L; lscpu | grep -E 'Model name|^CPU\(s\)'
  $PY -c "import torch, monai, lightning, numpy; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0), 'monai', monai.__version__, 'lightning', lightning.__version__, 'numpy', numpy.__version__)"
} 2>&1 | tee "$OUT/env.txt"
COMMON=(--epochs 100 --patience 40 --precision bf16-mixed --inference-dtype float32 --accelerator "$ACCEL" --devices 1
        --num-workers 2 --threads 1 --progress-bar false --n-bootstrap 50 $EXTRA)
timeout 180 $PY -m breastdx train busi-seg --split-file "$F/f0.json" --epochs 1 --max-cases 8 --max-train-batches 2 \
  --accelerator "$ACCEL" --devices 1 --precision bf16-mixed --progress-bar false --n-bootstrap 10 --out "$W/smoke" \
  > "$W/smoke.log" 2>&1 || { tail -80 "$W/smoke.log"; exit 4; }
echo "smoke run passed at $(( $(date +%s) - T0 )) s"
for arm in dicece:0 focal2:2; do
  name=${arm%%:*}; gamma=${arm##*:}
  for f in 0 1 2 3 4; do
    timeout "$BUDGET" $PY -m breastdx train busi-seg --split-file "$F/f$f.json" --focal-gamma "$gamma" "${COMMON[@]}" \
      --out "$W/$name/f$f" > "$W/$name-f$f.log" 2>&1 &
  done
done
timeout "$BUDGET" $PY -m breastdx train busi-seg --split-file "$F/base.json" --focal-gamma 2 "${COMMON[@]}" \
  --out "$W/refit-focal2" > "$W/refit-focal2.log" 2>&1 &
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 30 > "$W/gpu.csv" 2>&1 &
SMI=$!
wait $(jobs -p | grep -v "^$SMI$")
kill $SMI 2>/dev/null
cp "$W/gpu.csv" "$OUT/gpu.csv"
echo "trainings ended at $(( $(date +%s) - T0 )) s"
$PY - "$W" "$OUT" <<'EOF'
import json, sys, tarfile
from pathlib import Path
from safetensors import safe_open
from safetensors.torch import save_file

work, out = Path(sys.argv[1]), Path(sys.argv[2])
keep = ("config.yaml", "versions.json", "metrics.json", "test_per_image.csv", "split.json")
summary = []
def half(path):
    with safe_open(path, "pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, path, metadata=meta)
for arm in ("dicece", "focal2"):
    for part, folds in (("a", (0, 1, 2)), ("b", (3, 4))):
        with tarfile.open(out / f"{arm}_{part}.tar", "w") as tar:
            for f in folds:
                d = work / arm / f"f{f}"
                row = {"arm": arm, "fold": f, "model": (d / "model" / "model.safetensors").is_file()}
                if row["model"]:
                    half(d / "model" / "model.safetensors")
                    if (d / "metrics.json").is_file():  # a run stopped in its final evaluation has none
                        m = json.loads((d / "metrics.json").read_text())
                        t = m["training"]
                        row.update(val_dice=m["validation_metrics"]["dice"]["value"],
                                   test_dice=m["metrics"]["dice"]["value"], best_epoch=t.get("best_epoch"),
                                   epochs_run=t.get("epochs_run"), minutes=round(t.get("train_seconds", 0) / 60, 2))
                    tar.add(d / "model", f"{arm}/f{f}/model")
                    for name in keep:
                        if (d / name).exists():
                            tar.add(d / name, f"{arm}/f{f}/{name}")
                else:
                    row["log_tail"] = (work / f"{arm}-f{f}.log").read_text()[-1500:]
                summary.append(row)
                print(json.dumps(row), flush=True)
d = work / "refit-focal2"
row = {"arm": "refit-focal2", "model": (d / "model" / "model.safetensors").is_file()}
if row["model"]:
    meta = json.loads((d / "model" / "meta.json").read_text())
    for key in ("metrics", "metrics_split"):  # the test figures: unread until cross-validation chooses this recipe
        meta.pop(key, None)
    (d / "model" / "meta.json").write_text(json.dumps(meta, indent=2))
    (d / "model" / "MODEL_CARD.md").unlink(missing_ok=True)
    t = meta.get("training", {})
    row.update(best_epoch=t.get("best_epoch"), epochs_run=t.get("epochs_run"),
               minutes=round(t.get("train_seconds", 0) / 60, 2))
    with tarfile.open(out / "refit_focal2.tar", "w") as tar:
        tar.add(d / "model", "refit-focal2/model")
        for name in ("config.yaml", "versions.json", "split.json"):
            if (d / name).exists():
                tar.add(d / name, f"refit-focal2/{name}")
else:
    row["log_tail"] = (work / "refit-focal2.log").read_text()[-1500:]
summary.append(row)
print(json.dumps(row), flush=True)
(out / "summary.json").write_text(json.dumps(summary, indent=1))
EOF
echo "done at $(( $(date +%s) - T0 )) s"
