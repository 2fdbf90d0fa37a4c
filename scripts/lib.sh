# Shared helpers for scripts/serve and scripts/test. Source it, do not run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It sets REPO (the repository root) and defines ensure_prereqs.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '%s\n' "$*"; }

# rustup installs into ~/.cargo/bin; a non-login shell (CI, cron) may not have it on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    PATH="${HOME:-/root}/.cargo/bin:$PATH"
    export PATH
fi

# The redis-module crate runs bindgen at build time, which loads libclang.
have_libclang() {
    # grep reads all of ldconfig's output (no -q) so pipefail never sees a SIGPIPE.
    if command -v ldconfig >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep libclang >/dev/null; then
        return 0
    fi
    compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null
}

# Major version of the redis-server on PATH ("Redis server v=7.0.15 ..." -> 7), or 0.
redis_major() {
    local v
    v="$(redis-server --version 2>/dev/null | sed -n 's/.*v=\([0-9][0-9]*\)\..*/\1/p')"
    printf '%s\n' "${v:-0}"
}

# Fill MISSING_WHAT (tools) and MISSING_PKGS (their Debian packages) with whatever is missing.
find_missing() {
    MISSING_WHAT=()
    MISSING_PKGS=()
    if ! command -v redis-server >/dev/null 2>&1; then
        MISSING_WHAT+=(redis-server)
        MISSING_PKGS+=(redis-server)
    fi
    if ! command -v redis-cli >/dev/null 2>&1; then
        MISSING_WHAT+=(redis-cli)
        MISSING_PKGS+=(redis-tools)
    fi
    # The TLS test makes a self-signed certificate with openssl.
    if ! command -v openssl >/dev/null 2>&1; then
        MISSING_WHAT+=(openssl)
        MISSING_PKGS+=(openssl)
    fi
    if ! have_libclang; then
        MISSING_WHAT+=(libclang)
        MISSING_PKGS+=(libclang-dev)
    fi
}

# Make sure cargo, redis-server >= 7.0, redis-cli and libclang are there. As root with apt-get,
# install what is missing; otherwise print the exact command and exit 1.
ensure_prereqs() {
    if ! command -v cargo >/dev/null 2>&1; then
        say "missing: cargo; install Rust from https://rustup.rs, then run this again"
        exit 1
    fi

    find_missing
    if [ "${#MISSING_PKGS[@]}" -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            say "installing: ${MISSING_PKGS[*]}"
            # On a machine running systemd, installing redis-server also starts the system
            # service on port 6379. That is fine: our servers use their own ports.
            apt-get update
            DEBIAN_FRONTEND=noninteractive apt-get install -y "${MISSING_PKGS[@]}"
            find_missing
            if [ "${#MISSING_PKGS[@]}" -gt 0 ]; then
                say "missing: ${MISSING_WHAT[*]} even after apt-get install -y ${MISSING_PKGS[*]}"
                exit 1
            fi
        else
            say "missing: ${MISSING_WHAT[*]}; run: sudo apt-get install -y ${MISSING_PKGS[*]}"
            exit 1
        fi
    fi

    local major
    major="$(redis_major)"
    if [ "$major" -lt 7 ]; then
        say "redis-server is too old: $(redis-server --version 2>/dev/null); need 7.0 or newer"
        exit 1
    fi
}

# The directory cargo builds into (CARGO_TARGET_DIR if set, made absolute).
target_dir() {
    local t="${CARGO_TARGET_DIR:-$REPO/target}"
    case "$t" in
        /*) ;;
        *) t="$REPO/$t" ;;
    esac
    printf '%s\n' "$t"
}
