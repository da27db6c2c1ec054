#!/usr/bin/env bash
# Fetch the Debian Reference manual in SmolLM3's six European languages (HTML and PDF) from
# the Debian archive into data/external/debian-reference/{html,pdf}/<lang>/ (git-ignored):
# a real multilingual web + PDF corpus for specs/examples/debian-reference/ (shared OFFLINE.md).
# Needs apt-get and dpkg-deb (Debian/Ubuntu). Nothing fetched here is committed.
set -euo pipefail
dest="${1:-data/external/debian-reference}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for lang in en fr es de it pt; do
  (cd "$work" && apt-get download "debian-reference-$lang" >/dev/null 2>&1) \
    || { echo "apt-get download debian-reference-$lang failed (is this Debian/Ubuntu with a reachable archive?)" >&2; exit 1; }
  deb="$(ls "$work"/debian-reference-"$lang"_*.deb)"
  dpkg-deb -x "$deb" "$work/x-$lang"
  mkdir -p "$dest/html/$lang" "$dest/pdf/$lang"
  cp "$work/x-$lang"/usr/share/debian-reference/*."$lang".html "$dest/html/$lang/"
  cp "$work/x-$lang"/usr/share/debian-reference/*."$lang".pdf "$dest/pdf/$lang/"
  echo "$lang: $(ls "$dest/html/$lang" | wc -l) HTML pages, $(ls "$dest/pdf/$lang" | wc -l) PDF ($(basename "$deb"))"
done
