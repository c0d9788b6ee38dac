#!/usr/bin/env bash
# Download DIV2K (Agustsson & Timofte, NTIRE 2017) from its official site and unpack it into
#   ${LTE_DATA:-./load}/DIV2K_train_HR/0001.png ... 0800.png
#   ${LTE_DATA:-./load}/DIV2K_valid_HR/0801.png ... 0900.png
#   ${LTE_DATA:-./load}/DIV2K_train_LR_bicubic/X{2,3,4}/0001x{2,3,4}.png ...
#   ${LTE_DATA:-./load}/DIV2K_valid_LR_bicubic/X{2,3,4}/0801x{2,3,4}.png ...
#
# Usage: scripts/download_div2k.sh [--valid-only] [--no-train-lr] [--keep-archives]
#   --valid-only     skip the training set, HR and LR (evaluation only needs the validation set)
#   --no-train-lr    skip the 1.6 GB of training LR x2/x3/x4 (only data=div2k_paired, the
#                    fixed-scale baselines, reads them; data=div2k makes its LR on the fly)
#   --keep-archives  keep the .zip files in ${LTE_DATA}/archives after unpacking
# Environment: LTE_DATA (target root, default ./load), DIV2K_BASE_URL (a mirror of the official
# folder, default http://data.vision.ee.ethz.ch/cvl/DIV2K).
#
# Downloads resume (curl -C - / wget -c) and finished steps are skipped, so re-running after an
# interruption is safe. Verification: no official checksums are published, so every archive is
# tested member by member against the CRC-32s stored inside the zip (unzip -t), the unpacked
# image counts are checked (train 800 HR and 800 LR per scale, valid 100 and 100 per scale), and
# the archives' sha256 are written to archives/SHA256SUMS on the first download and checked
# against it on every later run.
set -euo pipefail

BASE_URL="${DIV2K_BASE_URL:-http://data.vision.ee.ethz.ch/cvl/DIV2K}"
ROOT="${LTE_DATA:-./load}"
ARCHIVES="$ROOT/archives"
VALID_ONLY=0
TRAIN_LR=1
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --valid-only) VALID_ONLY=1 ;;
    --no-train-lr) TRAIN_LR=0 ;;
    --keep-archives) KEEP=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "error: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

PY="$(command -v python3 || command -v python || true)"
source "$(dirname "${BASH_SOURCE[0]}")/_download_lib.sh"  # fetch, sha256, check_sum

zip_ok() { # zip_ok FILE: every member's CRC-32 checks out
  if command -v unzip >/dev/null 2>&1; then
    unzip -tqq "$1" >/dev/null 2>&1
  elif [ -n "$PY" ]; then
    "$PY" -c 'import sys, zipfile; sys.exit(zipfile.ZipFile(sys.argv[1]).testzip() is not None)' "$1" 2>/dev/null
  else
    echo "error: need unzip or python3 to test $1" >&2; exit 1
  fi
}

unpack() { # unpack ZIP DEST
  if command -v unzip >/dev/null 2>&1; then
    unzip -qo "$1" -d "$2"
  else
    "$PY" -m zipfile -e "$1" "$2"
  fi
}

count_png() { find "$1" -maxdepth 1 -name '*.png' 2>/dev/null | wc -l | tr -d ' '; }

get() { # get ARCHIVE_NAME TARGET_DIR EXPECTED_COUNT
  local name="$1" target="$2" expected="$3"
  if [ "$(count_png "$ROOT/$target")" = "$expected" ]; then
    echo "ok: $ROOT/$target already holds $expected images"
    return
  fi
  mkdir -p "$ARCHIVES"
  if [ ! -f "$ARCHIVES/$name" ] || ! zip_ok "$ARCHIVES/$name"; then
    rm -f "$ARCHIVES/$name"
    echo "downloading $BASE_URL/$name"
    fetch "$BASE_URL/$name" "$ARCHIVES/$name"
    if ! zip_ok "$ARCHIVES/$name"; then
      echo "error: $ARCHIVES/$name is damaged (zip CRC test failed): delete it and re-run" >&2
      exit 1
    fi
  fi
  check_sum "$name"
  echo "unpacking $name"
  unpack "$ARCHIVES/$name" "$ROOT"
  local got
  got="$(count_png "$ROOT/$target")"
  if [ "$got" != "$expected" ]; then
    echo "error: $ROOT/$target holds $got images, expected $expected" >&2
    exit 1
  fi
  echo "ok: $ROOT/$target ($got images)"
  if [ "$KEEP" = 0 ]; then rm -f "$ARCHIVES/$name"; fi
}

mkdir -p "$ROOT"
if [ "$VALID_ONLY" = 0 ]; then
  get DIV2K_train_HR.zip DIV2K_train_HR 800
  if [ "$TRAIN_LR" = 1 ]; then
    for s in 2 3 4; do
      get "DIV2K_train_LR_bicubic_X$s.zip" "DIV2K_train_LR_bicubic/X$s" 800
    done
  fi
fi
get DIV2K_valid_HR.zip DIV2K_valid_HR 100
for s in 2 3 4; do
  get "DIV2K_valid_LR_bicubic_X$s.zip" "DIV2K_valid_LR_bicubic/X$s" 100
done
echo "DIV2K is ready under $ROOT (train with data=div2k, or data=div2k_paired data.scale=2 for the"
echo "fixed-scale baselines; set LTE_DATA=$ROOT if it is not ./load)"
