#!/usr/bin/env bash
# Every GPU figure of nerfstage in one run of under 8 minutes, printed as one table: install, hash-grid throughput
# of every backend that imports (torch reference and cpp on the CPU, tcnn and the torch reference on CUDA), lego
# training to its time budget on CUDA (benchmarks/train_lego.py) and 1080p render frames/s of that run
# (benchmarks/render_speed.py). Each part runs under `timeout` inside one overall deadline, so a part that hangs
# costs only its own share; its log stays in the work folder and its row says what happened.
#
#   bash benchmarks/gpu_check.sh            # on a machine with a CUDA GPU (a lent device machine)
#   bash benchmarks/gpu_check.sh --smoke    # CPU, tiny sizes, CUDA parts skipped (tests/test_gpu_check.py)
#
# On a lent device machine (no network; its python3 holds a CUDA torch): the lego data must travel with the
# checkout, e.g. copy ../shared/data/lego_400 to ./shared/data/lego_400 first (a shared/ folder inside the
# checkout travels, 55 MB). Install is `pip install --no-deps --no-build-isolation -e .` (the equivalent of
# `make install` without fetching anything) followed by the first build of both C++ kernels; the install row
# names any dependency still missing (carry it as a wheel).
#
# Environment: PYTHON (default .venv/bin/python if present, else python3); NERFSTAGE_DATA (default ../shared/data,
# else ./shared/data); GPU_CHECK_SMOKE=1 (same as --smoke); GPU_CHECK_WORK (work folder: logs, the lego run;
# default a temp folder); GPU_CHECK_SECONDS (overall deadline, default 470); GPU_CHECK_TRAIN_BUDGET (lego training
# seconds on CUDA, default 90); GPU_CHECK_THREADS (CPU threads of the CPU backends, default 2).
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE="${GPU_CHECK_SMOKE:-0}"
[[ "${1:-}" == "--smoke" ]] && SMOKE=1
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ -z "${NERFSTAGE_DATA:-}" ]]; then
    if [[ -d ../shared/data/lego_400 ]]; then NERFSTAGE_DATA=../shared/data; else NERFSTAGE_DATA=shared/data; fi
fi
export NERFSTAGE_DATA PYTHONUNBUFFERED=1 OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
WORK="${GPU_CHECK_WORK:-$(mktemp -d -t nerfstage-gpu-check-XXXXXX)}"
mkdir -p "$WORK"
ROWS="$WORK/rows.tsv"
: >"$ROWS"
DEADLINE="${GPU_CHECK_SECONDS:-470}"
TRAIN_BUDGET="${GPU_CHECK_TRAIN_BUDGET:-90}"
THREADS="${GPU_CHECK_THREADS:-2}"
LEGO="$NERFSTAGE_DATA/lego_400"
RUN="$WORK/lego_run"

row() { printf '%s\t%s\n' "$1" "$2" >>"$ROWS"; }

# part NAME CAP_SECONDS COMMAND...: run COMMAND under timeout (its cap, or what is left of the deadline), log in
# $WORK/NAME.log. The command writes its own rows; when it fails without one, the part gets a FAILED row.
part() {
    local name="$1" cap="$2"
    shift 2
    local left=$((DEADLINE - SECONDS))
    local limit=$((cap < left ? cap : left))
    local log="$WORK/${name// /_}.log"
    if ((limit < 15)); then
        row "$name" "skipped: out of time (overall deadline ${DEADLINE} s)"
        return
    fi
    local before after rc
    before=$(wc -l <"$ROWS")
    echo "== $name (at most ${limit} s, log $log)" >&2
    timeout -k 10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    after=$(wc -l <"$ROWS")
    if ((rc == 124 || rc == 137)); then
        row "$name" "TIMED OUT after ${limit} s (log: $log)"
    elif ((rc != 0 && after == before)); then
        row "$name" "FAILED (exit $rc): $(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-150)"
    fi
}

install_part() {
    local start=$SECONDS
    if ((SMOKE)); then
        row "install" "skipped: smoke mode (the checkout's environment is used as it is)"
    else
        "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation --disable-pip-version-check -e . || return
        row "install" "pip install -e . in $((SECONDS - start)) s"
    fi
    "$PYTHON" - "$ROWS" <<'EOF' || return
import re, sys, time
from importlib.metadata import PackageNotFoundError, distribution, requires

start = time.perf_counter()
from nerfstage.nerf import march_cpu
from nerfstage.nerf.encoding import cpp

cpp.BACKEND.load()
march_cpu.BACKEND.load()
built = time.perf_counter() - start
missing = []
for requirement in requires("nerfstage") or []:
    if "extra ==" in requirement:
        continue
    name = re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]
    try:
        distribution(name)
    except PackageNotFoundError:
        missing.append(name)
with open(sys.argv[1], "a") as rows:
    rows.write(f"C++ kernels\tboth built or loaded in {built:.1f} s; dependencies missing: "
               f"{', '.join(missing) or 'none'}\n")
EOF
}

export -f row install_part
export SMOKE PYTHON ROWS
HAS_CUDA=$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
if ((SMOKE)); then
    DEVICE=cpu
    TRAIN_ARGS=(--preset preview --steps 3 --max-image-side 40 --eval-stride 100)
    RENDER_ARGS=(--width 64 --height 36 --frames 1 --peer-scale 0.5)
    ENCODING_ARGS=(--batch-log2 10 --steps 1 --rounds 1)
else
    DEVICE=cuda
    TRAIN_ARGS=(--preset default --time-budget "$TRAIN_BUDGET" --eval-stride 8)
    RENDER_ARGS=(--width 1920 --height 1080 --frames 5 --peer-scale 0)
    ENCODING_ARGS=(--batch-log2 16 --cuda-batch-log2 20 --steps 5 --rounds 3)
fi

part "install" 150 bash -c install_part
part "hash grid" 150 "$PYTHON" benchmarks/encoding_speed.py --backends torch,cpp,tcnn,cuda --threads "$THREADS" \
    "${ENCODING_ARGS[@]}" --row-file "$ROWS"
if [[ "$DEVICE" == cuda && "$HAS_CUDA" != 1 ]]; then
    row "lego train (cuda)" "skipped: no CUDA device"
    row "render 1920x1080 (cuda)" "skipped: no CUDA device"
elif [[ ! -d "$LEGO" ]]; then
    row "lego train" "skipped: no lego data at $LEGO (set NERFSTAGE_DATA)"
    row "render" "skipped: no trained lego run"
else
    part "lego train" $((TRAIN_BUDGET + 150)) "$PYTHON" benchmarks/train_lego.py --data "$LEGO" --out "$RUN" \
        --device "$DEVICE" --threads "$THREADS" "${TRAIN_ARGS[@]}" --row-file "$ROWS"
    if compgen -G "$RUN/checkpoints/*.ckpt" >/dev/null; then
        part "render" 120 "$PYTHON" benchmarks/render_speed.py --run "$RUN" --device "$DEVICE" \
            --threads "$THREADS" "${RENDER_ARGS[@]}" --row-file "$ROWS"
    else
        row "render" "skipped: no trained lego run (see the lego train row)"
    fi
fi

MACHINE=$("$PYTHON" -c 'import torch; cuda = torch.cuda.is_available()
print((torch.cuda.get_device_name(0) if cuda else "no CUDA device") + ", torch " + torch.__version__)' 2>/dev/null)
echo
echo "nerfstage GPU check ($( ((SMOKE)) && echo smoke || echo full)): $MACHINE, $(nproc) CPUs," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), ${SECONDS} s in all"
awk -F '\t' '{ if (length($1) > w) w = length($1); name[NR] = $1; fig[NR] = $2 }
    END { fmt = "| %-" w "s | %s |\n"; printf fmt, "part", "figure"; printf "|---|---|\n"
          for (i = 1; i <= NR; i++) printf fmt, name[i], fig[i] }' "$ROWS"
echo "logs and the lego run: $WORK"
