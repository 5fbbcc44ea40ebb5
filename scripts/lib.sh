# Shared helpers for ./quickstart and ./run-tests. Sourced, not executed.

# The Debian/Ubuntu packages the build needs: ring and the bundled SQLite
# compile C, OpenH264 compiles C++ and assembly (nasm), and enigo links
# libxkbcommon.
DESKSIDE_DEB_PACKAGES=(gcc g++ libc6-dev nasm libxkbcommon-dev)
# What the tests need on top: a virtual X display and tools to click, type
# and take screenshots in it; Mesa for the egui windows and the X libraries
# winit loads at run time; and the packaging tools (systemd for
# systemd-analyze, man-db for its man-page check, python3 to read JSON);
# Request Tracker 5 on SQLite for the RT connector's test (tests/src/rt.rs).
DESKSIDE_TEST_DEB_PACKAGES=(xvfb xdotool imagemagick x11-utils
  libgl1 libegl1 libgl1-mesa-dri libx11-6 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0
  dpkg-dev lintian rpm desktop-file-utils systemd man-db python3
  request-tracker5 rt5-db-sqlite)
# The desktop-notification test (tests/tests/help_service.rs): a private
# session bus (dbus-daemon, dbus-send for dunstctl) and a real notification
# daemon.
DESKSIDE_TEST_DEB_PACKAGES+=(dbus dunst)
# The network-switch test across network namespaces (tests/tests/netns_switch.rs):
# iproute2's `ip netns` and veth pairs (it runs as root in CI).
DESKSIDE_TEST_DEB_PACKAGES+=(iproute2)
# The relay's PostgreSQL store tests (relay/src/pg_server.rs): initdb, pg_ctl
# and postgres from Debian's server package, started in a temporary directory.
DESKSIDE_TEST_DEB_PACKAGES+=(postgresql)
# The Windows build and its tests (scripts/windows-tests): mingw-w64 with
# posix threads (.cargo/config.toml names its -posix binaries) and Wine
# (64-bit only: the tests need no 32-bit Windows); wixl builds the MSI
# (installers/windows/build-msi) and msitools reads it back (msiinfo, msibuild).
DESKSIDE_WINDOWS_DEB_PACKAGES=(gcc-mingw-w64-x86-64-posix g++-mingw-w64-x86-64-posix wine wine64 wixl msitools)

# Installs missing Debian packages with apt-get when root; otherwise prints
# the exact command to run and fails.
ensure_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep "install ok installed" >/dev/null; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: missing system packages (${missing[*]}) and no apt-get here; install their equivalents and retry" >&2
    return 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    echo "==> installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "error: missing system packages: ${missing[*]}" >&2
    echo "run:  sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found: install Rust with rustup (https://rustup.rs) and retry" >&2
    return 1
  fi
}

# Adds Rust's x86_64-pc-windows-gnu standard library with rustup if missing.
ensure_windows_target() {
  if rustc --print target-libdir --target x86_64-pc-windows-gnu 2>/dev/null | xargs -r ls 2>/dev/null | grep '^libstd-' >/dev/null; then
    return 0
  fi
  if ! command -v rustup >/dev/null 2>&1; then
    echo "error: the Rust standard library for x86_64-pc-windows-gnu is missing and rustup is not here to add it; install it and retry" >&2
    return 1
  fi
  echo "==> rustup target add x86_64-pc-windows-gnu"
  rustup target add x86_64-pc-windows-gnu
}
