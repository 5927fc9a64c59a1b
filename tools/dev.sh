#!/usr/bin/env bash
# Make a Debian machine ready for this repository, then run the charm locally or the tests.
#
#   sudo bash tools/dev.sh local [args]     tox -e local -- args   (the charm against a real Synapse)
#   sudo bash tools/dev.sh test [tox args]  tox [tox args]         (every env in tox.ini's envlist)
#   sudo bash tools/dev.sh setup            only prepare the machine
#
# Preparing is idempotent and quick once done: Debian packages are installed only when one
# is missing (apt-get update runs only then), and tox is installed, pinned, into a venv under
# .tox/ only when that venv lacks that version. Root is needed: the workload tests and the
# local run isolate Synapse with unshare and mounts, and apt-get installs packages.
set -euo pipefail

TOX_VERSION="4.67.15"
MIN_PYTHON="3.11"
# util-linux: unshare, setpriv; postgresql and redis-server: real servers for the workload tests;
# python3 and python3-venv: the workload harness builds Synapse's venv from Debian's /usr/bin/python3
# (Synapse runs as uid 991, which cannot read a Python installed under /root).
# nginx, prometheus (promtool), radosgw, ceph-mon and ceph-osd (S3 on a one-OSD memstore cluster), xmlsec1 (SAML), locales, openssl and iproute2: the
# reverse proxy, observability, backup, SSO and federation workload tests.
DEBIAN_PACKAGES=(util-linux postgresql redis-server python3 python3-venv nginx prometheus radosgw ceph-mon ceph-osd xmlsec1 locales openssl
    ca-certificates iproute2)
# Locales the workload tests initialise PostgreSQL clusters with (a database that is not
# C-collated, as a non-default PostgreSQL gives); `locales` ships only C, C.UTF-8 and POSIX.
LOCALES=(en_US.UTF-8)

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_VENV="$REPO/.tox/.dev-tools"

say() { printf 'dev.sh: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

usage() {
    sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        die "must run as root (the tests use unshare and mount, and packages come from apt-get): sudo bash tools/dev.sh $*"
    fi
}

# The python3 that runs tox (and so the tox envs); it must be at least MIN_PYTHON.
find_python() {
    local python
    python="$(command -v python3 || true)"
    [ -n "$python" ] || die "python3 is not on PATH; install Debian's python3 (apt-get install python3)"
    if ! "$python" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$MIN_PYTHON'.split('.'))))"; then
        die "$python is $("$python" -V 2>&1); the charm needs Python $MIN_PYTHON or newer"
    fi
    printf '%s\n' "$python"
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

install_debian_packages() {
    local python="$1" missing=() package
    local packages=("${DEBIAN_PACKAGES[@]}")
    # Debian's own python3 needs python3-venv for `python3 -m venv`; other builds ship it.
    if ! "$python" -c "import ensurepip, venv" 2>/dev/null; then
        packages+=(python3-venv)
    fi
    for package in "${packages[@]}"; do
        is_installed "$package" || missing+=("$package")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -q
    apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
}

# Whether `locale -a` lists the locale (glibc lists en_US.UTF-8 as en_US.utf8).
has_locale() {
    local wanted
    wanted="$(printf '%s' "$1" | tr 'A-Z' 'a-z' | tr -d '-')"
    locale -a 2>/dev/null | tr 'A-Z' 'a-z' | tr -d '-' | grep -qx "$wanted"
}

generate_locales() {
    local name missing=()
    for name in "${LOCALES[@]}"; do
        has_locale "$name" || missing+=("$name")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi
    say "generating locales: ${missing[*]}"
    for name in "${missing[@]}"; do
        # Uncomment Debian's line for it, or add one: "en_US.UTF-8 UTF-8".
        if grep -qE "^# *${name//./\\.} " /etc/locale.gen 2>/dev/null; then
            sed -i -E "s/^# *(${name//./\\.} )/\\1/" /etc/locale.gen
        elif ! grep -qE "^${name//./\\.} " /etc/locale.gen 2>/dev/null; then
            printf '%s %s\n' "$name" "${name##*.}" >>/etc/locale.gen
        fi
    done
    locale-gen >/dev/null
}

install_tox() {
    local python="$1"
    if [ -x "$TOOLS_VENV/bin/tox" ] && [ "$("$TOOLS_VENV/bin/python" -c 'import tox; print(tox.__version__)' 2>/dev/null)" = "$TOX_VERSION" ]; then
        return
    fi
    say "installing tox $TOX_VERSION into $TOOLS_VENV"
    rm -rf "$TOOLS_VENV"
    mkdir -p "$(dirname "$TOOLS_VENV")"
    "$python" -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/python" -m pip install -q --disable-pip-version-check "tox==$TOX_VERSION"
}

setup() {
    local python
    python="$(find_python)"
    install_debian_packages "$python"
    generate_locales
    install_tox "$python"
}

main() {
    [ "$#" -ge 1 ] || usage
    local command="$1"
    shift
    case "$command" in
        local | test | setup) ;;
        -h | --help | help) usage ;;
        *)
            say "unknown command: $command"
            usage
            ;;
    esac
    require_root "$command" "$@"
    setup
    cd "$REPO"
    case "$command" in
        local) exec "$TOOLS_VENV/bin/tox" -e local -- "$@" ;;
        test) exec "$TOOLS_VENV/bin/tox" "$@" ;;
        setup) say "ready: $TOOLS_VENV/bin/tox" ;;
    esac
}

main "$@"
