#!/usr/bin/env bash
# Installs Debian's headless chromium for the browser tests (no browser download by a test tool).
# Best effort: the browser tests skip with a reason when this fails.
set -u
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup_browser: need root and apt-get to install chromium" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq chromium >/dev/null 2>&1
command -v chromium >/dev/null 2>&1
