#!/usr/bin/env bash
# Prove Specula's GPU paths on a machine with an NVIDIA GPU, and print one summary table.
#
#   scripts/gpu_check.sh
#
# Checks, each on CUDA and each failing when CUDA is not what ran:
#   selftest   `specula --self-test --require-cuda` (fails unless inference runs on CUDA)
#   proposals  the shipped models' proposals on CUDA equal the CPU's (IoU >= 0.99 per image
#              and class) on a few real photos of $SPECULA_DATA (default ../shared/data),
#              else on the sample images
#   train      `specula train --device cuda` for one epoch on a tiny project
#   torchrun   the same under `torchrun --nproc_per_node 1`, which must initialise NCCL
#   bench      bench/bench_inference.py --device cuda (its figures in the table)
#
# Installs nothing beyond the project: it uses $SPECULA_PYTHON, else .venv/bin/python, and
# runs ./quickstart --install-only when neither exists. Without a GPU (no nvidia-smi, or
# one that lists no GPU) it says "no GPU: nothing to check (...)", marks every check
# "not run" and exits 0. Exit 1 when a check fails.
#
# Environment: SPECULA_PYTHON (interpreter with the project's dependencies; the repository
# is put on PYTHONPATH), SPECULA_DATA, GPU_CHECK_STEPS (comma list of the checks above;
# default all), GPU_CHECK_OUT (folder for the logs; default a new temporary folder),
# GPU_CHECK_TIMEOUT (seconds per check, default 900).
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
ALL_STEPS="selftest proposals train torchrun bench"
STEPS=${GPU_CHECK_STEPS:-$ALL_STEPS}
STEPS=${STEPS//,/ }
LIMIT=${GPU_CHECK_TIMEOUT:-900}
declare -A RESULT DETAIL TITLE
TITLE[selftest]="specula --self-test --require-cuda"
TITLE[proposals]="shipped models: CUDA proposals = CPU (IoU >= 0.99)"
TITLE[train]="specula train --device cuda, 1 epoch"
TITLE[torchrun]="torchrun --nproc_per_node 1, NCCL, 1 epoch"
TITLE[bench]="bench/bench_inference.py --device cuda"
for s in $ALL_STEPS; do RESULT[$s]="not run"; DETAIL[$s]=""; done

table() {
    echo
    echo "| check | result | detail |"
    echo "|---|---|---|"
    for s in $ALL_STEPS; do
        echo "| ${TITLE[$s]} | ${RESULT[$s]} | ${DETAIL[$s]} |"
    done
}

# ---------------------------------------------------------------- is there a GPU?
NO_GPU=""
if ! command -v nvidia-smi >/dev/null 2>&1; then
    NO_GPU="nvidia-smi not found"
else
    SMI=$(nvidia-smi -L 2>&1)
    if [ $? -ne 0 ] || ! grep -q "^GPU " <<<"$SMI"; then
        NO_GPU="nvidia-smi lists no GPU: $(head -n 1 <<<"$SMI")"
    fi
fi
if [ -n "$NO_GPU" ]; then
    echo "no GPU: nothing to check ($NO_GPU)"
    for s in $ALL_STEPS; do DETAIL[$s]="no GPU"; done
    table
    exit 0
fi
echo "GPU: $(head -n 1 <<<"$SMI"); $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 | sed 's/^/driver /')"

# ---------------------------------------------------------------- the project's Python
PY=${SPECULA_PYTHON:-}
if [ -z "$PY" ]; then
    if [ ! -x .venv/bin/python ]; then
        echo "no .venv: ./quickstart --install-only"
        ./quickstart --install-only || { echo "quickstart failed: cannot check"; exit 1; }
    fi
    PY="$REPO/.venv/bin/python"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t specula-gpu-check-XXXXXX)}
mkdir -p "$OUT"
export SPECULA_HOME="$OUT/home"  # never the user's registry or settings
export QT_QPA_PLATFORM=offscreen
echo "python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])' 2>&1)); logs: $OUT"
SPECULA=("$PY" -m specula)

wanted() { [[ " $STEPS " == *" $1 "* ]]; }
why() {  # why LOG...: the first line in these logs that says what went wrong, else the last line
    local line
    line=$(cat "$@" 2>/dev/null | grep -m 1 -E '"event": "error"|^FAILED|CUDA unavailable[^;)]*|Error: |error: ' \
        | grep -o -E '"message": .*|CUDA unavailable[^;)]*|^FAILED.*|[A-Za-z]*Error: .*|error: .*' | head -n 1)
    if [ -n "$line" ]; then echo "$line" | cut -c1-200 | tr '|' '/'; else last_line "$@"; fi
}
run_logged() {  # run_logged LOG CMD...: the command under the per-check time limit, output to LOG
    local log=$1; shift
    timeout "$LIMIT" "$@" >"$log" 2>&1
}
last_line() {  # last_line LOG...: the last non-empty line of the last of these logs that has output
    local f log=""
    for f in "$@"; do [ -s "$f" ] && log=$f; done
    [ -n "$log" ] && grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-160 | tr '|' '/'
}

# ---------------------------------------------------------------- selftest
if wanted selftest; then
    log="$OUT/selftest.log"
    if run_logged "$log" "${SPECULA[@]}" --self-test --require-cuda; then
        RESULT[selftest]=PASS
        DETAIL[selftest]=$(grep -o "inference on CUDA[^;]*" "$log" | head -n 1)
    else
        RESULT[selftest]=FAIL
        DETAIL[selftest]="$(grep -m 1 -o "^FAILED [a-z-]*" "$log"): $(grep -o -m 1 "CUDA unavailable[^)]*" "$log" || why "$log")"
        # why: does ONNX Runtime reach CUDA once onnxruntime.preload_dlls() has loaded the
        # nvidia-* wheels' libraries (what a source install may lack)?
        "$PY" - >"$OUT/selftest-diagnosis.log" 2>&1 <<'EOF'
import numpy as np
import onnxruntime as ort
from inference.runtime import _PROBE_MODEL
print("providers:", ort.get_available_providers())
def on_cuda():
    try:
        s = ort.InferenceSession(_PROBE_MODEL, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        s.run(None, {"x": np.zeros(1, np.float32)})
        return s.get_providers()[0] == "CUDAExecutionProvider"
    except Exception as exc:
        print("session:", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False
print("CUDA as installed:", on_cuda())
if hasattr(ort, "preload_dlls"):
    ort.preload_dlls()
    print("CUDA after onnxruntime.preload_dlls():", on_cuda())
EOF
        DETAIL[selftest]+="; diagnosis: $(grep -h "^CUDA" "$OUT/selftest-diagnosis.log" | tr '\n' ' ' | tr '|' '/')"
    fi
fi

# ---------------------------------------------------------------- proposals: CUDA = CPU
photos() {  # photos DATASET SAMPLE_FOLDER: up to 4 real photos, else the sample's
    local data=${SPECULA_DATA:-$REPO/../shared/data}
    local found
    found=$(ls "$data/$1/image/"*.jpg 2>/dev/null | sort | head -n 4)
    if [ -n "$found" ]; then echo "$found"; else ls "$REPO/assets/$2/"*.jpg | sort; fi
}
if wanted proposals; then
    RESULT[proposals]=PASS
    DETAIL[proposals]=""
    for spec in "mirror-glass-semantic:mirror-glass:glass-gdd:sample_project" "cracks-semantic:inspection:cracks-deepcrack:sample_inspection"; do
        IFS=: read -r model palette dataset sample <<<"$spec"
        mapfile -t images < <(photos "$dataset" "$sample")
        ok=1
        for dev in cpu cuda; do
            proj="$OUT/proposals/$model-$dev"
            rm -rf "$proj"; mkdir -p "$proj"
            cp "${images[@]}" "$proj/"
            log="$OUT/proposals-$model-$dev.log"
            run_logged "$log" "${SPECULA[@]}" init "$proj" --palette "$palette" \
                && run_logged "$log.propose" "${SPECULA[@]}" propose "$proj" --model "$model" --device "$dev" \
                && run_logged "$log.export" "${SPECULA[@]}" export "$proj" --to coco "$OUT/proposals/$model-$dev.json" --rle --states proposed \
                || { ok=0; DETAIL[proposals]+="$model $dev failed: $(why "$log" "$log.propose" "$log.export") "; }
            if [ "$dev" = cuda ] && [ $ok = 1 ] && ! grep -q "inference on CUDA" "$log.propose"; then
                ok=0; DETAIL[proposals]+="$model did not run on CUDA ($(why "$log.propose")). "
            fi
        done
        if [ $ok = 1 ]; then
            # per image and class: the union of the proposals' masks, IoU of CUDA's against the CPU's
            verdict=$("$PY" - "$OUT/proposals/$model-cpu.json" "$OUT/proposals/$model-cuda.json" <<'EOF'
import json, sys
import numpy as np
from pycocotools import mask as cm
def unions(path):
    data = json.load(open(path))
    names = {im["id"]: im["file_name"] for im in data["images"]}
    cats = {c["id"]: c["name"] for c in data["categories"]}
    out = {}
    for a in data["annotations"]:
        seg = dict(a["segmentation"])
        if isinstance(seg["counts"], str):
            seg["counts"] = seg["counts"].encode()
        m = cm.decode(seg).astype(bool)
        key = (names[a["image_id"]], cats[a["category_id"]])
        out[key] = out[key] | m if key in out else m
    return out, len(data["annotations"])
cpu, n_cpu = unions(sys.argv[1])
gpu, n_gpu = unions(sys.argv[2])
ious = []
for key in set(cpu) | set(gpu):
    a, b = cpu.get(key), gpu.get(key)
    if a is None or b is None:
        ious.append((0.0, key)); continue
    union = np.logical_or(a, b).sum()
    ious.append((float(np.logical_and(a, b).sum() / union) if union else 1.0, key))
worst = min(ious) if ious else (1.0, ("-", "-"))
print(f"{'ok' if worst[0] >= 0.99 else 'BAD'} min IoU {worst[0]:.4f} ({worst[1][0]} {worst[1][1]}), "
      f"{len(ious)} image-classes, {n_cpu} CPU / {n_gpu} CUDA proposals")
EOF
            )
            [[ "$verdict" == ok* ]] || ok=0
            DETAIL[proposals]+="$model on ${#images[@]} photos: ${verdict#ok }. "
        fi
        [ $ok = 1 ] || RESULT[proposals]=FAIL
    done
fi

# ---------------------------------------------------------------- training on CUDA, then under torchrun
tiny_project() {  # tiny_project FOLDER: the sample images with a few accepted masks
    rm -rf "$1"
    "$PY" -c "import sys; from pathlib import Path; sys.path.insert(0, 'packaging'); from build import make_tiny_project; print(make_tiny_project(Path(sys.argv[1])))" "$1"
}
if wanted train; then
    log="$OUT/train.log"
    if tiny_project "$OUT/train_project" >"$log" 2>&1 && run_logged "$log.run" "${SPECULA[@]}" train "$OUT/train_project" \
            --task semantic --epochs 1 --device cuda --json --registry "$OUT/registry" --name tiny-cuda; then
        RESULT[train]=PASS
        DETAIL[train]="$(grep -c '"step"' "$log.run") steps; $(grep -m 1 '"published"' "$log.run" | cut -c1-120 | tr '|' '/')"
    else
        RESULT[train]=FAIL
        DETAIL[train]=$(why "$log" "$log.run")
    fi
fi
if wanted torchrun; then
    log="$OUT/torchrun.log"
    if tiny_project "$OUT/ddp_project" >"$log" 2>&1 && NCCL_DEBUG=INFO run_logged "$log.run" "$PY" -m torch.distributed.run \
            --nproc_per_node 1 -m specula train "$OUT/ddp_project" --task semantic --epochs 1 --device cuda --json \
            --registry "$OUT/registry" --name tiny-ddp; then
        if grep -q "NCCL INFO" "$log.run"; then
            RESULT[torchrun]=PASS
            DETAIL[torchrun]="NCCL $(grep -o -m 1 'NCCL version [0-9.+a-z]*' "$log.run" | sed 's/NCCL version //'); $(grep -c '"step"' "$log.run") steps"
        else
            # it trained, but never on a process group: not the DistributedDataParallel path
            RESULT[torchrun]=FAIL
            DETAIL[torchrun]="trained, but NCCL was never initialised (no NCCL INFO line): with WORLD_SIZE 1 training.common.setup_distributed makes no process group"
        fi
    else
        RESULT[torchrun]=FAIL
        DETAIL[torchrun]=$(why "$log" "$log.run")
    fi
fi

# ---------------------------------------------------------------- the inference benchmark on CUDA
if wanted bench; then
    log="$OUT/bench.log"
    if run_logged "$log" "$PY" bench/bench_inference.py --device cuda && grep -q "inference on CUDA" "$log"; then
        RESULT[bench]=PASS
        DETAIL[bench]=$(grep -E "^1024x1024: |x[0-9]+ \(" "$log" | cut -c1-150 | tr '\n' ' ' | tr '|' '/')
    else
        RESULT[bench]=FAIL
        DETAIL[bench]=$(why "$log")
    fi
fi

table
for s in $ALL_STEPS; do
    [ "${RESULT[$s]}" = FAIL ] && exit 1
done
exit 0
