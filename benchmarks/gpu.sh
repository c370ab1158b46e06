#!/usr/bin/env bash
# Every GPU check in one run: the CUDA tests, then every benchmark at full size in bf16, each
# under a time limit, into one summary file. Meant for the lent H200 (about 8 minutes, so that
# it can run twice in a 15-minute lease), from the repository root:
#
#   bash benchmarks/gpu.sh wheels      # here, where pip reaches a registry: the wheels the GPU
#                                      # machine lacks, into .whl/ (carried with the run)
#   bash benchmarks/gpu.sh             # there: writes $OUT/gpu_summary.txt and $OUT/gpu_log.txt
#   bash benchmarks/gpu.sh --smoke     # the same steps on the CPU, tiny model, a few seconds each
#
# GPU_STEPS="image click" runs only those steps (tests image click video tracking tiles jobs).
# Summary lines: `step=NAME rc=RC seconds=S` then the benchmark's own last line (key=value).
set -u
cd "$(dirname "$0")/.."

if [ "${1:-}" = "wheels" ]; then
    # Missing on the GPU image (Python 3.12): transformers 5.23 (the reference; it has 5.17)
    # and pycocotools. Everything else the tests and benchmarks import is there.
    exec "${PYTHON:-python3}" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl transformers==5.23.0 pycocotools==2.0.11
fi

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
OUT="${OUT:-out}"
mkdir -p "$OUT"
SUMMARY="$OUT/gpu_summary.txt"
LOG="$OUT/gpu_log.txt"
: >"$SUMMARY"
: >"$LOG"
PY="${PYTHON:-python3}"
# the machine is offline: no hub lookups
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# the GPU image's Python 3.12 takes the carried wheels (the smoke run keeps its own environment)
if [ $SMOKE = 0 ]; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "no .whl/: run 'bash benchmarks/gpu.sh wheels' here and carry .whl" | tee -a "$SUMMARY"
        exit 1
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "wheel install failed" >>"$SUMMARY"; exit 1; }
    export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH#"$PWD"}"  # before the image's own packages
fi

if [ $SMOKE = 1 ]; then
    DEV=cpu FULL=sam3_tiny
    TESTS="tests/core/test_gpu.py tests/core/modeling/test_detector_parity.py"
else
    DEV=cuda FULL=sam3
    # the parity suite, the bf16 agreement tests and the GPU-only tests, on the GPU
    TESTS="tests/core/modeling tests/core/video/test_video_parity.py
        tests/core/video/test_video_concept_parity.py tests/core/video/test_video_multiplex.py
        tests/core/video/test_video_multiplex_concepts.py tests/core/test_precision.py
        tests/core/test_gpu.py"
fi

{
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ) smoke=$SMOKE"
    "$PY" -c "import torch, transformers; print('torch=' + torch.__version__, 'transformers=' + transformers.__version__, 'gpu=' + (torch.cuda.get_device_name(0).replace(' ', '_') if torch.cuda.is_available() else 'none'))"
} >>"$SUMMARY" 2>>"$LOG"

# step NAME LIMIT_S COMMAND...: runs COMMAND under LIMIT_S seconds (smoke: 300; killed 10 s after
# that if it ignores the TERM), logs all of its output and puts its status, time and last figures
# line (key=value, or pytest's summary) in the summary.
step() {
    local name=$1 limit=$2
    shift 2
    case " ${GPU_STEPS:-tests image click video tracking tiles jobs} " in
    *" $name "*) ;;
    *) return 0 ;;
    esac
    [ $SMOKE = 1 ] && limit=300
    echo "=== $name: $*" >>"$LOG"
    local t0=$SECONDS rc
    timeout -k 10 "$limit" "$@" >"$OUT/step.txt" 2>&1
    rc=$?
    cat "$OUT/step.txt" >>"$LOG"
    echo "step=$name rc=$rc seconds=$((SECONDS - t0))" >>"$SUMMARY"
    grep -E '^[A-Za-z0-9_.]+=|[0-9]+ (passed|failed|error)' "$OUT/step.txt" | tail -n 1 >>"$SUMMARY"
    rm -f "$OUT/step.txt"
}

if [ $SMOKE = 1 ]; then
    step tests 120 env SAM3_TEST_DEVICE=$DEV "$PY" -m pytest -q -p no:cacheprovider $TESTS
    step image 90 "$PY" benchmarks/bench_image.py --config $FULL --device $DEV --runs 1
    step click 60 "$PY" benchmarks/bench_interactive.py --config $FULL --device $DEV --runs 2
    step video 100 "$PY" benchmarks/bench_video.py --config $FULL --device $DEV --frames 3 \
        --runs 1 --memory-frames 0 --recondition-frames 0
    step tracking 80 "$PY" benchmarks/bench_video.py --tracking --config $FULL --device $DEV \
        --objects 1,2 --frames 4
    step tiles 40 "$PY" benchmarks/bench_tiles.py --config $FULL --device $DEV --size 300
    step jobs 50 "$PY" benchmarks/bench_jobs.py --runners local --config $FULL --device $DEV \
        --images 6
else
    # limits: 465 s in all (the tiny parity tests are launch-bound on a GPU: about 55 s on a CPU)
    step tests 150 env SAM3_TEST_DEVICE=$DEV "$PY" -m pytest -q -p no:cacheprovider \
        --durations=15 $TESTS
    step image 90 "$PY" benchmarks/bench_image.py --config $FULL --device $DEV --runs 10
    step click 45 "$PY" benchmarks/bench_interactive.py --config $FULL --device $DEV --runs 50
    step tracking 70 "$PY" benchmarks/bench_video.py --tracking --config $FULL --device $DEV \
        --objects 1,16,64 --frames 64 --height 720 --width 1280
    # GPU memory in video length is the tracking step's; the tiny-model memory runs are the CPU's
    step video 45 "$PY" benchmarks/bench_video.py --config $FULL --device $DEV --frames 32 \
        --runs 3 --memory-frames 0 --recondition-frames 0
    step tiles 25 "$PY" benchmarks/bench_tiles.py --config $FULL --device $DEV
    step jobs 40 "$PY" benchmarks/bench_jobs.py --runners local --config $FULL --device $DEV \
        --precision bf16 --images 200 --batch-size 8 --height 480 --width 640
fi
cat "$SUMMARY"
