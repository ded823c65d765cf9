#!/usr/bin/env bash
# Install the Debian packages the kernel sandbox needs (prmforge.verifiers.sandbox).
# Idempotent: runs `apt-get update` and `apt-get install` only when something is missing.
# Safe to run as root in CI; as another user it re-runs itself through sudo when sudo exists.
#
#   bubblewrap   namespaces (bwrap)
#   libseccomp2  the seccomp filter compiler that pyseccomp loads (pip: pyseccomp)
#   python3      Debian's interpreter, readable by the unprivileged sandbox uid, runs the jailed code
#   gcc, libc6-dev  compile step for C samples
#   util-linux   (essential on Debian; listed for the record)
#   postgresql   the registry's PostgreSQL tests start a private server on loopback (initdb, pg_ctl)
#   chromium, fonts-dejavu-core  the report test renders the HTML report headless and screenshots it
set -euo pipefail

PACKAGES=(bubblewrap libseccomp2 python3 gcc libc6-dev postgresql chromium fonts-dejavu-core)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-deps: all present (${PACKAGES[*]})"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-system-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
command -v bwrap >/dev/null
