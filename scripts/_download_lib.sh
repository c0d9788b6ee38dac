# Shared by scripts/download_div2k.sh and scripts/download_benchmarks.sh (sourced, not run).
# Needs ARCHIVES (the folder holding downloaded archives and their SHA256SUMS) set by the caller.

fetch() { # fetch URL FILE: resumable download to FILE (via FILE.part)
  local url="$1" out="$2"
  if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 5 --retry-delay 5 -C - -o "$out.part" "$url"
  elif command -v wget >/dev/null 2>&1; then
    wget -c --tries=5 -O "$out.part" "$url"
  else
    echo "error: need curl or wget to download $url" >&2; exit 1
  fi
  mv "$out.part" "$out"
}

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

check_sum() { # check_sum NAME: compare ARCHIVES/NAME with, or record it into, ARCHIVES/SHA256SUMS
  local name="$1" sum known
  sum="$(sha256 "$ARCHIVES/$name")"
  touch "$ARCHIVES/SHA256SUMS"
  known="$(awk -v n="$name" '$2 == n {print $1}' "$ARCHIVES/SHA256SUMS")"
  if [ -z "$known" ]; then
    echo "$sum  $name" >> "$ARCHIVES/SHA256SUMS"
    echo "  sha256 $sum (recorded in $ARCHIVES/SHA256SUMS)"
  elif [ "$known" != "$sum" ]; then
    echo "error: $name sha256 $sum differs from the recorded $known: delete it and re-run" >&2
    exit 1
  fi
}
