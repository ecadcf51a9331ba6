#!/usr/bin/env bash
# EMS installer for Linux: system packages + a project virtualenv.
#
# Idempotent and fast when nothing changed: only missing system packages are
# installed, and pip is skipped while a stamp inside the venv matches a hash of
# setup.cfg + pyproject.toml + the chosen flags.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    cat <<'EOF'
Usage: installer/install.sh [--dev] [--system-only] [--venv DIR] [--help]

Installs what EMS needs on this Linux machine, then creates a virtualenv
(default: .venv at the repository root) and installs EMS into it in editable
mode. Safe to re-run: it only installs what is missing. `ems up` runs the
web view's private MariaDB and serves the web UI with PHP, so MariaDB server,
PHP (cli + mysql) and node/npm are always installed (starting nothing: EMS
runs its own instances), and `npm ci` fetches the web UI's jQuery and
Bootstrap into web/public/vendor (not committed).

  --dev          also install the development / test dependencies: Xvfb and
                 xdotool, the X libraries Qt needs on Xvfb,
                 Chromium + ChromeDriver, iproute2, procps, nginx +
                 php-fpm (the web UI's server config is tested with them;
                 installing them starts nothing);
                 and pip-install EMS with its [dev] extras (pytest, ...)
  --system-only  only install system packages; do not touch the virtualenv
  --venv DIR     virtualenv location (default: <repo>/.venv)
  -h, --help     show this help

Environment:
  PYTHON         interpreter used to create the venv (default: python3 on
                 PATH; must be Python >= 3.11)

Package managers: apt-get (Debian/Ubuntu), dnf, yum, zypper, pacman, apk.
Without root it uses sudo; without sudo it prints what to install and goes on.
The system Python is never pip-installed into (PEP 668): everything Python
goes into the virtualenv.

On a machine without make, run this script first: it installs make too.
Windows: a separate installer, installer/install.ps1, will come.
EOF
}

say()  { printf '==> %s\n' "$*"; }
note() { printf '    note: %s\n' "$*"; }
warn() { printf '!!  %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- arguments
DEV=0
SYSTEM_ONLY=0
VENV="$ROOT/.venv"
while [ $# -gt 0 ]; do
    case "$1" in
        --dev) DEV=1 ;;
        --system-only) SYSTEM_ONLY=1 ;;
        --venv)
            [ $# -ge 2 ] || die "--venv needs a directory"
            VENV="$2"; shift ;;
        --venv=*) VENV="${1#--venv=}" ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
[ -n "$VENV" ] || die "--venv needs a directory"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
VENV="${VENV%/}"
PYTHON="${PYTHON:-python3}"

# Short name for messages: ".venv" rather than /long/path/.venv.
venv_label() {
    case "$VENV" in "$ROOT"/*) printf '%s' "${VENV#"$ROOT"/}" ;; *) printf '%s' "$VENV" ;; esac
}

# ------------------------------------------------------- dependency table
# One row per logical dependency; one column per package manager.
#   name[,name...]  package(s) to install for that manager
#   -               the manager's repositories lack it: skipped with a note
#   =               nothing to install: part of another package there
# Groups: "run" = always, "web" = always (ems up runs a private MariaDB and
#         serves the web UI with PHP; npm fetches its front-end packages),
#         "build" = only if pip has to compile a wheel,
#         "dev" = only with --dev.  python3/python3-venv are checked by
#         function (does the interpreter work?), not only by package.
DEP_TABLE='
# group logical          apt                dnf                   yum                   zypper            pacman            apk
run    make              make               make                  make                  make              make              make
run    python3           python3            python3               python3               python3           python            python3
run    python3-venv      python3-venv       =                     =                     =                 =                 =
run    python3-tk        python3-tk         python3-tkinter       python3-tkinter       python3-tk        tk                py3-tkinter
web    mariadb-server    mariadb-server     mariadb-server        mariadb-server        mariadb           mariadb           mariadb
web    php-cli           php-cli            php-cli               php-cli               php8              php               php83
web    php-mysql         php-mysql          php-mysqlnd           php-mysqlnd           php8-mysql        =                 php83-mysqli,php83-pdo_mysql
web    nodejs            nodejs             nodejs                nodejs                nodejs            nodejs            nodejs
web    npm               npm                npm                   npm                   npm               npm               npm
build  python3-dev       python3-dev        python3-devel         python3-devel         python3-devel     =                 python3-dev
build  gcc               gcc                gcc                   gcc                   gcc               gcc               build-base
dev    xvfb              xvfb               xorg-x11-server-Xvfb  xorg-x11-server-Xvfb  xorg-x11-server-Xvfb xorg-server-xvfb xvfb
dev    xdotool           xdotool            xdotool               xdotool               xdotool           xdotool           xdotool
dev    x11-utils         x11-utils          xdpyinfo              xorg-x11-utils        xdpyinfo          xorg-xdpyinfo     xdpyinfo
dev    libxcb-cursor0    libxcb-cursor0     xcb-util-cursor       xcb-util-cursor       libxcb-cursor0    xcb-util-cursor   xcb-util-cursor
dev    libxcb-icccm4     libxcb-icccm4      xcb-util-wm           xcb-util-wm           libxcb-icccm4     xcb-util-wm       xcb-util-wm
dev    libxcb-keysyms1   libxcb-keysyms1    xcb-util-keysyms      xcb-util-keysyms      libxcb-keysyms1   xcb-util-keysyms  xcb-util-keysyms
dev    libxcb-xinerama0  libxcb-xinerama0   libxcb                libxcb                libxcb-xinerama0  libxcb            libxcb
dev    libxkbcommon-x11-0 libxkbcommon-x11-0 libxkbcommon-x11     libxkbcommon-x11      libxkbcommon-x11-0 libxkbcommon-x11 libxkbcommon-x11
dev    libegl1           libegl1            libglvnd-egl          libglvnd-egl          libEGL1           libglvnd          mesa-egl
dev    libgl1            libgl1             libglvnd-glx          libglvnd-glx          libGL1            libglvnd          mesa-gl
dev    chromium          chromium           chromium              chromium              chromium          chromium          chromium
dev    chromium-driver   chromium-driver    chromedriver          chromedriver          chromedriver      =                 chromium-chromedriver
dev    x11vnc            x11vnc             x11vnc                x11vnc                x11vnc            x11vnc            x11vnc
dev    mosquitto         mosquitto          mosquitto             mosquitto             mosquitto         mosquitto         mosquitto
dev    nats-server       nats-server        nats-server           -                     nats-server       nats-server       nats-server
dev    iproute2          iproute2           iproute               iproute               iproute2          iproute2          iproute2
dev    procps            procps             procps-ng             procps-ng             procps            procps-ng         procps
dev    nginx             nginx              nginx                 nginx                 nginx             nginx             nginx
dev    php-fpm           php-fpm            php-fpm               php-fpm               php8-fpm          php-fpm           php83-fpm
'

# ----------------------------------------------------- package manager
PM=""
for pm in apt-get dnf yum zypper pacman apk; do
    if command -v "$pm" >/dev/null 2>&1; then PM="$pm"; break; fi
done
DISTRO_ID=""
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    DISTRO_ID="$( . /etc/os-release && printf '%s' "${ID:-}" )"
fi

pm_column() {
    case "$PM" in
        apt-get) echo 3 ;; dnf) echo 4 ;; yum) echo 5 ;;
        zypper) echo 6 ;; pacman) echo 7 ;; apk) echo 8 ;;
    esac
}

# Ubuntu ships Chromium under other names (snap-backed transitional debs).
distro_override() {
    local pkg="$1"
    if [ "$PM" = apt-get ] && [ "$DISTRO_ID" = ubuntu ]; then
        case "$pkg" in
            chromium) pkg=chromium-browser ;;
            chromium-driver) pkg=chromium-chromedriver ;;
        esac
    fi
    printf '%s' "$pkg"
}

# Package names for the logical dependency $1 ("" if none; notes on stdout go
# to stderr so the caller can capture the names).
packages_for() {
    local want="$1" col line name val
    col="$(pm_column)"
    while IFS= read -r line; do
        case "$line" in ''|'#'*) continue ;; esac
        # shellcheck disable=SC2086
        set -- $line
        name="$2"
        [ "$name" = "$want" ] || continue
        val="${!col:-}"
        case "$val" in
            =|'') return 0 ;;
            -) note "no $PM package for '$name' on this system: skipped" >&2; return 0 ;;
        esac
        local p
        for p in ${val//,/ }; do
            printf '%s\n' "$(distro_override "$p")"
        done
        return 0
    done <<<"$DEP_TABLE"
}

deps_in_group() {
    local g="$1" line
    while IFS= read -r line; do
        case "$line" in ''|'#'*) continue ;; esac
        # shellcheck disable=SC2086
        set -- $line
        [ "$1" = "$g" ] && printf '%s\n' "$2"
    done <<<"$DEP_TABLE"
    return 0
}

pkg_installed() {
    local p="$1"
    case "$PM" in
        apt-get) dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ;;
        dnf|yum|zypper) rpm -q --whatprovides "$p" >/dev/null 2>&1 ;;
        pacman) pacman -T "$p" >/dev/null 2>&1 ;;
        apk) apk info -e "$p" >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

SUDO=""
CAN_INSTALL=1
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else CAN_INSTALL=0; fi
fi

APT_UPDATED=0
pm_install_cmd() {  # install "$@" (non-interactive)
    case "$PM" in
        apt-get)
            $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" ;;
        dnf) $SUDO dnf install -y -q "$@" ;;
        yum) $SUDO yum install -y -q "$@" ;;
        zypper) $SUDO zypper --non-interactive --quiet install --no-recommends "$@" ;;
        pacman) $SUDO pacman -Sy --needed --noconfirm "$@" ;;
        apk) $SUDO apk add --no-cache "$@" ;;
    esac
}

FAILED_PKGS=()
PM_LOG=""
# Install the packages given as arguments (already known to be missing).
install_packages() {
    [ $# -gt 0 ] || return 0
    if [ "$CAN_INSTALL" -eq 0 ]; then
        warn "not root and no sudo: please install these as root, then re-run:"
        warn "    $PM install $*"
        FAILED_PKGS+=("$@")
        return 0
    fi
    [ -n "$PM_LOG" ] || PM_LOG="$(mktemp "${TMPDIR:-/tmp}/ems-install-packages.XXXXXX")"
    if [ "$PM" = apt-get ] && [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        $SUDO apt-get update -q >>"$PM_LOG" 2>&1 || warn "apt-get update failed (see $PM_LOG); trying to install anyway"
        APT_UPDATED=1
    fi
    say "installing system packages: $*"
    note "$PM output goes to $PM_LOG (a few minutes on a fresh machine)"
    if pm_install_cmd "$@" >>"$PM_LOG" 2>&1; then return 0; fi
    tail -n 15 "$PM_LOG" | sed 's/^/    | /' >&2
    # One unknown package makes the whole batch fail: retry one by one so
    # the others still get installed, and report the ones that failed.
    warn "batch install failed; retrying one package at a time"
    local p
    for p in "$@"; do
        pkg_installed "$p" && continue
        if ! pm_install_cmd "$p" >>"$PM_LOG" 2>&1; then
            note "could not install '$p' with $PM: skipped"
            FAILED_PKGS+=("$p")
        fi
    done
}

# Missing packages for the given logical deps, one per line.
missing_for() {
    local dep p
    for dep in "$@"; do
        while IFS= read -r p; do
            [ -n "$p" ] || continue
            pkg_installed "$p" || printf '%s\n' "$p"
        done < <(packages_for "$dep")
    done
}

python_ok()   { command -v "$PYTHON" >/dev/null 2>&1; }
python_venv_ok() { "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; }
# Tk draws the employee's notices, privacy bar and consent prompt
python_tk_ok() { "$PYTHON" -c 'import tkinter' >/dev/null 2>&1; }

ensure_system() {
    local -a deps=() missing=()
    if [ -z "$PM" ]; then
        warn "no supported package manager found (apt-get, dnf, yum, zypper, pacman, apk)"
        note "install by hand: python3 (>= 3.11) with venv$([ "$DEV" -eq 1 ] && echo ', and the --dev tools listed in --help')"
        return 0
    fi
    command -v make >/dev/null 2>&1 || deps+=(make)
    # Python: judged by what works, not by package names (python3 may come
    # from pyenv, a PPA or a source build).
    python_ok || deps+=(python3)
    if ! python_ok || ! python_venv_ok; then deps+=(python3-venv); fi
    if ! python_ok || ! python_tk_ok; then deps+=(python3-tk); fi
    mapfile -t -O "${#deps[@]}" deps < <(deps_in_group web)
    if [ "$DEV" -eq 1 ]; then
        mapfile -t -O "${#deps[@]}" deps < <(deps_in_group dev)
    fi
    if [ ${#deps[@]} -gt 0 ]; then
        mapfile -t missing < <(missing_for "${deps[@]}" | awk '!seen[$0]++')
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        say "system packages: all present"
    else
        install_packages "${missing[@]}"
    fi
}

# Install python3-dev + gcc (only called when pip could not build a wheel).
ensure_build_deps() {
    [ -n "$PM" ] || return 1
    local -a build=() missing=()
    mapfile -t build < <(deps_in_group build)
    mapfile -t missing < <(missing_for "${build[@]}" | awk '!seen[$0]++')
    [ ${#missing[@]} -gt 0 ] || return 1
    install_packages "${missing[@]}"
    return 0
}

# ------------------------------------------------------------ virtualenv
hash_stdin() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -d' ' -f1
    else cksum | tr ' ' '-'; fi
}

stamp_for() {  # $1 = flag set ("dev" or "run")
    {
        printf 'flags=%s\n' "$1"
        "$VENV/bin/python" -VV 2>&1 || true
        local f
        for f in setup.cfg pyproject.toml; do
            printf '== %s\n' "$f"
            cat "$ROOT/$f" 2>/dev/null || true
        done
        # setuptools' editable install maps the top-level packages that exist
        # at install time; a package added later (new dir/__init__.py) is not
        # importable until pip runs again.
        printf '== packages\n'
        (cd "$ROOT" && ls -d -- */__init__.py 2>/dev/null) || true
    } | hash_stdin
}

check_python_version() {
    python_ok || die "no '$PYTHON' on PATH. Install Python >= 3.11 (with venv) and re-run, or set PYTHON=/path/to/python3.11"
    local v
    v="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        die "EMS needs Python >= 3.11, but '$PYTHON' is $v ($(command -v "$PYTHON")).
       Install a newer Python (e.g. 'apt-get install python3.11 python3.11-venv',
       'dnf install python3.11', pyenv, ...) and re-run with PYTHON=python3.11"
    fi
    if ! python_venv_ok; then
        die "'$PYTHON' ($v) lacks venv/ensurepip. On Debian/Ubuntu: apt-get install python$v-venv"
    fi
}

run_pip() {
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"
}

ensure_venv() {
    local label flags stamp_file want have
    label="$(venv_label)"
    check_python_version

    if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ] && [ -n "$(ls -A "$VENV" 2>/dev/null)" ]; then
        die "$VENV exists and is not a virtualenv; remove it or pick another --venv"
    fi
    if [ -f "$VENV/pyvenv.cfg" ] && ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
        say "$label is broken or too old: recreating"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $label ($("$PYTHON" -c 'import sys; print(sys.version.split()[0])'))"
        "$PYTHON" -m venv "$VENV"
    fi

    flags=run; [ "$DEV" -eq 1 ] && flags=dev
    stamp_file="$VENV/.ems-install-stamp"
    want="$(stamp_for "$flags")"
    have="$(cat "$stamp_file" 2>/dev/null || true)"
    # A dev install also satisfies a plain one (so `make up` after
    # `make test` does not reinstall).
    if [ -n "$have" ] && { [ "$have" = "$want" ] || { [ "$flags" = run ] && [ "$have" = "$(stamp_for dev)" ]; }; }; then
        say "up to date ($label)"
        return 0
    fi

    # PEP 660 editable installs need pip >= 21.3.
    if ! "$VENV/bin/python" -c 'import sys, pip; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (21, 3))' >/dev/null 2>&1; then
        say "upgrading pip in $label"
        run_pip --upgrade pip
    fi

    local target='.[gui]'  # a server install includes the operator console (ems gui)
    [ "$DEV" -eq 1 ] && target='.[dev]'
    say "pip install -e '$target' into $label"
    rm -f "$stamp_file"
    if ! (cd "$ROOT" && run_pip -e "$target"); then
        # Most likely a dependency without a wheel for this platform: get a
        # compiler + Python headers and try once more.
        if ensure_build_deps; then
            say "retrying pip install with build tools"
            (cd "$ROOT" && run_pip -e "$target") || die "pip install failed (see above)"
        else
            die "pip install failed (see above)"
        fi
    fi
    printf '%s\n' "$want" >"$stamp_file"
}

# The web UI's front-end packages (web/package.json -> web/public/vendor),
# fetched again only when the lock file changed since the last install.
ensure_web_assets() {
    local web="$ROOT/web" stamp want
    [ -f "$web/package.json" ] || return 0
    if ! command -v npm >/dev/null 2>&1; then
        warn "npm not found: the web UI will lack jQuery and Bootstrap (install node and npm, then re-run)"
        return 0
    fi
    stamp="$web/public/vendor/.ems-npm-stamp"
    want="$(cat "$web/package.json" "$web/package-lock.json" 2>/dev/null | hash_stdin)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        say "web UI packages up to date (web/public/vendor)"
        return 0
    fi
    say "npm ci: the web UI's jQuery and Bootstrap into web/public/vendor"
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error) || { warn "npm ci failed in $web (see above)"; return 0; }
    printf '%s\n' "$want" >"$stamp"
}

# ------------------------------------------------------------------- main
ensure_system
if [ "$SYSTEM_ONLY" -eq 1 ]; then
    say "system packages done (--system-only: virtualenv not touched)"
else
    ensure_venv
    ensure_web_assets
fi

if [ ${#FAILED_PKGS[@]} -gt 0 ]; then
    warn "not installed: ${FAILED_PKGS[*]} (tests needing them will fail or skip)"
fi

# Called from make (make up / make test): make already knows what comes next.
[ -z "${MAKELEVEL:-}" ] || exit 0

rel="$(venv_label)"
echo
echo "Next:"
if [ "$SYSTEM_ONLY" -eq 0 ]; then
    echo "  make up             # start EMS ($rel/bin/ems up --data-dir var)"
    if [ "$DEV" -eq 1 ]; then
        echo "  make test           # run the test suite ($rel/bin/python -m pytest)"
    else
        echo "  make test           # installs the --dev extras, then runs the tests"
    fi
else
    echo "  installer/install.sh$([ "$DEV" -eq 1 ] && echo ' --dev')   # create the virtualenv"
fi
