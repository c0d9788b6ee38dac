#!/usr/bin/env bash
# Download the SR benchmark sets (Set5, Set14, B100, Urban100) and unpack them into
#   ${LTE_DATA:-./load}/benchmark/{Set5,Set14,B100,Urban100}/HR/<name>.png
#   ${LTE_DATA:-./load}/benchmark/<set>/LR_bicubic/X{2,3,4}/<name>x{2,3,4}.png
#
# Source: the benchmark.tar bundle published by the EDSR authors (EDSR-PyTorch README, "benchmark
# datasets"), which the LIIF and LTE READMEs also point to. It holds the HR images and MATLAB-bicubic
# LR images of each set, already in this layout. The original sets come from Bevilacqua et al. 2012
# (Set5), Zeyde et al. 2010 (Set14), Martin et al. 2001 (B100, the BSD100 test images) and Huang
# et al. 2015 (Urban100); their licences are those of the original authors.
#
# Usage: scripts/download_benchmarks.sh [--keep-archive]
# Environment: LTE_DATA (target root, default ./load), BENCHMARK_URL (a mirror of benchmark.tar,
# default https://cv.snu.ac.kr/research/EDSR/benchmark.tar).
#
# Downloads resume (curl -C - / wget -c) and finished steps are skipped. Verification: no official
# checksum is published, so the tar is listed in full (a truncated tar fails), the unpacked image
# counts are checked (HR 5 / 14 / 100 / 100, and as many LR images per scale), and the archive's
# sha256 is written to archives/SHA256SUMS on the first download and checked on later runs.
set -euo pipefail

URL="${BENCHMARK_URL:-https://cv.snu.ac.kr/research/EDSR/benchmark.tar}"
ROOT="${LTE_DATA:-./load}"
ARCHIVES="$ROOT/archives"
NAME=benchmark.tar
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --keep-archive) KEEP=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "error: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

source "$(dirname "${BASH_SOURCE[0]}")/_download_lib.sh"  # fetch, sha256, check_sum

declare -A EXPECTED=([Set5]=5 [Set14]=14 [B100]=100 [Urban100]=100)

count_img() { find "$1" -maxdepth 1 -type f \( -name '*.png' -o -name '*.bmp' \) 2>/dev/null | wc -l | tr -d ' '; }

all_ok() { # every set has its HR and LR x2/x3/x4 images
  local set s
  for set in "${!EXPECTED[@]}"; do
    [ "$(count_img "$ROOT/benchmark/$set/HR")" = "${EXPECTED[$set]}" ] || return 1
    for s in 2 3 4; do
      [ "$(count_img "$ROOT/benchmark/$set/LR_bicubic/X$s")" = "${EXPECTED[$set]}" ] || return 1
    done
  done
}

if all_ok; then
  echo "ok: $ROOT/benchmark already holds Set5, Set14, B100 and Urban100"
  exit 0
fi

mkdir -p "$ARCHIVES"
tar_ok() { tar -tf "$1" >/dev/null 2>&1; }
if [ ! -f "$ARCHIVES/$NAME" ] || ! tar_ok "$ARCHIVES/$NAME"; then
  rm -f "$ARCHIVES/$NAME"
  echo "downloading $URL"
  fetch "$URL" "$ARCHIVES/$NAME"
  tar_ok "$ARCHIVES/$NAME" || { echo "error: $ARCHIVES/$NAME is damaged: delete it and re-run" >&2; exit 1; }
fi

check_sum "$NAME"

# Unpack into a scratch folder first, then move the sets into place: the bundle's top folder is
# "benchmark/", and a half-unpacked set must never look complete.
scratch="$(mktemp -d "$ROOT/.benchmark.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
echo "unpacking $NAME"
tar -xf "$ARCHIVES/$NAME" -C "$scratch"
src="$(dirname "$(find "$scratch" -type d -name Set5 | head -n 1)")"
if [ -z "$src" ] || [ ! -d "$src/Set5" ]; then
  echo "error: $NAME holds no Set5 folder: is $URL the EDSR benchmark bundle?" >&2
  exit 1
fi
mkdir -p "$ROOT/benchmark"
for set in "${!EXPECTED[@]}"; do
  if [ ! -d "$src/$set" ]; then echo "error: $NAME holds no $set folder" >&2; exit 1; fi
  rm -rf "$ROOT/benchmark/$set"
  mv "$src/$set" "$ROOT/benchmark/$set"
done

for set in Set5 Set14 B100 Urban100; do
  n="$(count_img "$ROOT/benchmark/$set/HR")"
  [ "$n" = "${EXPECTED[$set]}" ] || { echo "error: $ROOT/benchmark/$set/HR holds $n images, expected ${EXPECTED[$set]}" >&2; exit 1; }
  for s in 2 3 4; do
    n="$(count_img "$ROOT/benchmark/$set/LR_bicubic/X$s")"
    [ "$n" = "${EXPECTED[$set]}" ] || { echo "error: $ROOT/benchmark/$set/LR_bicubic/X$s holds $n images, expected ${EXPECTED[$set]}" >&2; exit 1; }
  done
  echo "ok: $ROOT/benchmark/$set (${EXPECTED[$set]} HR, LR x2/x3/x4)"
done
if [ "$KEEP" = 0 ]; then rm -f "$ARCHIVES/$NAME"; fi
echo "benchmarks are ready under $ROOT/benchmark"
