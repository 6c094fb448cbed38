#!/usr/bin/env bash
# Make sure the system packages mintline's devstack and checks need are present on Debian 12.
# Idempotent: only packages whose commands are missing get installed; with nothing missing it
# doesn't even run `apt-get update`. Run as root.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [[ ${EUID} -ne 0 ]]; then
    echo "install.sh: must run as root (apt-get install)" >&2
    exit 1
fi

missing=()

command -v redis-server >/dev/null || missing+=(redis-server)
# The server binaries live outside PATH, in /usr/lib/postgresql/<version>/bin.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
command -v node >/dev/null || missing+=(nodejs npm)
# Debian's v1 docker-compose; used to validate the compose files, not to run containers.
command -v docker-compose >/dev/null || missing+=(docker-compose)
# Debian's prometheus package ships promtool too.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    missing+=(prometheus)
fi

# PgBouncer in transaction pooling mode, in front of the test PostgreSQL (devstack/pgbouncer_server.py).
[[ -x /usr/sbin/pgbouncer ]] || command -v pgbouncer >/dev/null || missing+=(pgbouncer)
# Reference CIDs for the local IPFS store's tests (`ipfs_cid FILE`).
command -v ipfs_cid >/dev/null || missing+=(ipfs-cid)
# Headless browser for the GIF and status page tests (driven by Playwright, which downloads nothing).
command -v chromium >/dev/null || missing+=(chromium)

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install.sh: all system packages present"
    exit 0
fi

# devstack runs its own servers on free ports, so stop the packages' postinst from starting system
# daemons on 5432/6379/6432/9090. Only when no policy is in place already (Docker images ship one).
policy=/usr/sbin/policy-rc.d
if [[ ! -e ${policy} ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${policy}"
    chmod 755 "${policy}"
    trap 'rm -f "${policy}"' EXIT
fi

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

for pkg in "${missing[@]}"; do
    echo "install.sh: installed ${pkg} $(dpkg-query -W -f='${Version}' "${pkg}")"
done
