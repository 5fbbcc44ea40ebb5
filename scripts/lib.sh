# Shared helpers for ./quickstart and ./run-tests. Sourced, not executed.

# The Debian/Ubuntu packages the build and the tests need. ring and the
# bundled SQLite compile C code, so a C compiler and libc headers are needed.
DESKSIDE_DEB_PACKAGES=(gcc libc6-dev)

# Installs missing Debian packages with apt-get when root; otherwise prints
# the exact command to run and fails.
ensure_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
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
