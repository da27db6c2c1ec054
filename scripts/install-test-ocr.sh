#!/usr/bin/env bash
# The tesseract binary for the PDF chain's OCR backend (repro.data.pdf TesseractOcr), which
# the OCR tests use, from Debian's `tesseract-ocr` package (with its recommended English
# language data). A no-op when it is on PATH; where it cannot be installed (no apt-get, not
# root, no mirror) it says so and exits 0, and the tests that need it skip. `make test` calls
# it, and so CI (.ci/run) installs nothing a local `make test` would not.
set -uo pipefail

if command -v tesseract >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "note: no apt-get here; install tesseract by hand for the OCR tests (they skip without it)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "note: not root, cannot apt-get install tesseract-ocr; the OCR tests will be skipped"
  exit 0
fi
# Try the current package lists first (fast); refresh them only if that fails.
apt-get install -y -qq tesseract-ocr >/dev/null 2>&1 \
  || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq tesseract-ocr >/dev/null 2>&1)
if command -v tesseract >/dev/null; then
  echo "installed $(tesseract --version 2>/dev/null | head -1)"
else
  echo "note: tesseract-ocr could not be installed with apt-get; the OCR tests will be skipped"
fi
exit 0
