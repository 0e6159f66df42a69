#!/usr/bin/env bash
# Makes sure headless Chromium and its WebDriver are installed, for the sign-in tests
# (tests/e2e/browser.rs drives /usr/bin/chromium through /usr/bin/chromedriver). They come
# from Debian's `chromium` and `chromium-driver` packages, which are built from the same
# source, so the driver always matches the browser; a machine that has both returns at
# once. Otherwise installs them with apt-get, as root or through sudo. Prints both versions
# on stdout (apt-get's output goes to stderr).
#
#   hack/tools/chromium.sh
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

have_both() { [[ -x "$CHROMIUM" && -x "$CHROMEDRIVER" ]]; }

if ! have_both; then
  if [[ $(id -u) -eq 0 ]]; then
    sudo=()
  elif command -v sudo >/dev/null; then
    sudo=(sudo)
  else
    echo "chromium.sh: $CHROMIUM or $CHROMEDRIVER is missing, and installing them needs root" >&2
    echo "  (not root, and no sudo): run as root: apt-get install chromium chromium-driver" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null; then
    echo "chromium.sh: $CHROMIUM or $CHROMEDRIVER is missing, and there is no apt-get to" >&2
    echo "  install them; install Chromium and a matching chromedriver at those paths" >&2
    exit 1
  fi
  echo "installing Debian's chromium and chromium-driver" >&2
  "${sudo[@]}" apt-get update >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends chromium chromium-driver >&2
  if ! have_both; then
    echo "chromium.sh: apt-get finished, yet $CHROMIUM or $CHROMEDRIVER is still missing" >&2
    exit 1
  fi
fi

# Debian's /usr/bin/chromium is a shell wrapper; its /dev/shm check prints a harmless
# `[: ... unexpected operator` when /dev/shm has two mounts, so its stderr is dropped.
"$CHROMIUM" --version 2>/dev/null
"$CHROMEDRIVER" --version
