#!/usr/bin/env bash
# Reproduce the LTE paper's Table 1 (DIV2K validation, RGB PSNR, x2 x3 x4 | x6 x12 x18 x24 x30) and
# Table 2 (Set5, Set14, B100, Urban100, Y PSNR, x2 x3 x4 | x6 x8 x12) from checkpoints, with the
# published numbers beside them.
#
#   scripts/paper_tables.sh [--out DIR] CKPT [CKPT ...]
#
# CKPT: official .pth releases or lte training checkpoints (any mix: LTE, LIIF, Meta-SR, LM-LTE,
# LM-LIIF; EDSR, RDN, SwinIR; the fixed-scale EDSR-baseline / RDN x2, x3, x4 rows, each scored only at
# its own scale). LMF models are scored without CMSR; with it, see CMSR below. Data come from ${LTE_DATA:-load} (scripts/download_div2k.sh, scripts/download_benchmarks.sh);
# a table whose data set is missing is skipped with a note. Writes, under DIR (default
# results/paper_tables):
#   table1.json/.csv  table1/comparison.{md,png,csv}   (DIV2K)
#   table2.json/.csv  table2/comparison.{md,png,csv}   (benchmarks)
# Environment: PYTHON (default: python), DEVICE (auto), CHUNK (30000), LTE_DATA (load), CMSR (a CMSR
# table file, python -m lte.cmsr: every LMF checkpoint is also scored with it, as <model>+cmsr).
set -euo pipefail

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

out="results/paper_tables"
ckpts=()
while (($#)); do
  case "$1" in
    -h | --help) usage 0 ;;
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    -*) echo "error: unknown option '$1' (see $0 --help)" >&2; exit 2 ;;
    *) ckpts+=("$1"); shift ;;
  esac
done
if [[ -n "${CMSR:-}" && ! -f "$CMSR" ]]; then
  echo "error: CMSR='$CMSR' is not a file (build one with python -m lte.cmsr)" >&2
  exit 2
fi
if ((${#ckpts[@]} == 0)); then
  echo "error: no checkpoints given: $0 [--out DIR] CKPT [CKPT ...]" >&2
  exit 2
fi
for c in "${ckpts[@]}"; do
  [[ -f "$c" ]] || { echo "error: checkpoint '$c' does not exist" >&2; exit 2; }
done

py="${PYTHON:-python}"
data="${LTE_DATA:-load}"
device="${DEVICE:-auto}"
chunk="${CHUNK:-30000}"
mkdir -p "$out"

native_scale() {  # native_scale CKPT: a fixed-scale model's own scale, or nothing
  "$py" -c 'import sys; from lte.checkpoint import load_checkpoint
s = load_checkpoint(sys.argv[1]).model.native_scale
print("" if s is None else s)' "$1"
}

is_lmf() {  # is_lmf CKPT: yes when the model has latent modulations (LM-LTE, LM-LIIF)
  "$py" -c 'import sys; from lte.checkpoint import load_checkpoint
print("yes" if load_checkpoint(sys.argv[1]).model.has_complexity else "no")' "$1"
}

run_test() {  # run_test RESULTS_FILE SCALES HYDRA_ARGS...
  local results="$1" scales="$2"; shift 2
  for c in "${ckpts[@]}"; do
    echo "== $c"
    local own
    own=$(native_scale "$c")
    # A fixed-scale model (one network per scale) is scored at its own scale only.
    local these="$scales"
    [[ -n "$own" ]] && these="[$own]"
    # Hydra's override grammar: quote the value so paths with odd characters pass through.
    LTE_DATA="$data" "$py" -m lte.test "ckpt='$c'" "scales=$these" "$@" device="$device" \
      eval.chunk="$chunk" "results_file='$results'" \
      "hydra.run.dir='$out/runs/$(basename "$results" .json)/$(basename "$c")'"
    if [[ -n "${CMSR:-}" && "$(is_lmf "$c")" == yes ]]; then
      LTE_DATA="$data" "$py" -m lte.test "ckpt='$c'" "scales=$these" "$@" device="$device" \
        eval.chunk="$chunk" "eval.cmsr='$CMSR'" "results_file='$results'" \
        "hydra.run.dir='$out/runs/$(basename "$results" .json)/$(basename "$c")-cmsr'"
    fi
  done
}

made=()

# Table 1: DIV2K validation (0801-0900), RGB, s + 6 px shaved.
if [[ -d "$data/DIV2K_valid_HR" ]]; then
  echo "### Table 1: DIV2K validation"
  run_test "$out/table1.json" "[2,3,4,6,12,18,24,30]" testset=div2k
  "$py" -m lte.compare "$out/table1.json" --out "$out/table1" --published --overwrite
  made+=("$out/table1/comparison.md")
else
  echo "skip Table 1: '$data/DIV2K_valid_HR' not found (run scripts/download_div2k.sh)"
fi

# Table 2: benchmarks, Y, s px shaved. Only the sets that are present.
sets=()
for pair in set5:Set5 set14:Set14 b100:B100 urban100:Urban100; do
  if [[ -d "$data/benchmark/${pair#*:}/HR" ]]; then
    sets+=("${pair%%:*}")
  else
    echo "skip ${pair#*:}: '$data/benchmark/${pair#*:}/HR' not found (run scripts/download_benchmarks.sh)"
  fi
done
if ((${#sets[@]})); then
  echo "### Table 2: ${sets[*]}"
  list=$(IFS=,; echo "${sets[*]}")
  run_test "$out/table2.json" "[2,3,4,6,8,12]" "testsets=[$list]"
  "$py" -m lte.compare "$out/table2.json" --out "$out/table2" --published --overwrite
  made+=("$out/table2/comparison.md")
fi

if ((${#made[@]} == 0)); then
  echo "error: no data set found under '$data': run scripts/download_div2k.sh and/or scripts/download_benchmarks.sh" >&2
  exit 2
fi
echo "tables: ${made[*]}"
