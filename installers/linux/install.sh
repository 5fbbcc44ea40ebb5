#!/bin/sh
# Installs deskside from a release archive on Linux systems without dpkg or
# rpm, after checking the archive's SHA-256; --uninstall reverses it.
#
#   sudo sh install.sh deskside-VERSION-ARCH-linux.tar.gz [--agent] [--relay] [--console]
#   sudo sh install.sh --uninstall [--purge]
#
# The checksum is read from ARCHIVE.sha256 beside the archive, or given with
# --sha256 HEX. Without a component flag, all three are installed. An agent
# token may be given with DESKSIDE_ENROLL_TOKEN (used once, as with the
# packages). --root DIR installs into another root (tests, images); then no
# service is started. Every installed path is listed in
# ROOT/var/lib/deskside-install/manifest, which --uninstall reads.
set -eu

ROOT=/
ARCHIVE=
SHA256=
UNINSTALL=0
PURGE=0
COMPONENTS=
BIN_DIR=/usr/local/bin

die() { echo "install.sh: $*" >&2; exit 1; }
usage() { sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || usage; ROOT="$2"; shift 2 ;;
        --sha256) [ $# -ge 2 ] || usage; SHA256="$2"; shift 2 ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        --agent) COMPONENTS="$COMPONENTS agent"; shift ;;
        --relay) COMPONENTS="$COMPONENTS relay"; shift ;;
        --console) COMPONENTS="$COMPONENTS console"; shift ;;
        -h|--help) usage ;;
        -*) echo "install.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$ARCHIVE" ] || usage; ARCHIVE="$1"; shift ;;
    esac
done
[ -n "$COMPONENTS" ] || COMPONENTS="agent relay console"
ROOT="${ROOT%/}"
STATE="$ROOT/var/lib/deskside-install"
MANIFEST="$STATE/manifest"
live() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }
has() { case " $COMPONENTS " in *" $1 "*) return 0 ;; esac; return 1; }

add_user() {
    name="$1"; home="$2"
    if [ -z "$ROOT" ]; then
        getent passwd "$name" >/dev/null && return 0
        useradd --system --user-group --home-dir "$home" --no-create-home \
            --shell /usr/sbin/nologin --comment "$name" "$name"
    else
        grep -q "^$name:" "$ROOT/etc/passwd" 2>/dev/null && return 0
        useradd --prefix "$ROOT" --system --user-group --home-dir "$home" --no-create-home \
            --shell /usr/sbin/nologin --comment "$name" "$name"
    fi
    echo "user $name" >>"$MANIFEST"
}

del_user() {
    if [ -z "$ROOT" ]; then
        userdel "$1" >/dev/null 2>&1 || true
        groupdel "$1" >/dev/null 2>&1 || true
    else
        userdel --prefix "$ROOT" "$1" >/dev/null 2>&1 || true
        groupdel --prefix "$ROOT" "$1" >/dev/null 2>&1 || true
    fi
}

# Copies SRC to ROOT/DEST with MODE and records it.
put() {
    install -D -m "$3" "$1" "$ROOT$2"
    echo "file $2" >>"$MANIFEST"
}

uninstall() {
    [ -f "$MANIFEST" ] || die "nothing to uninstall: $MANIFEST not found"
    if live; then
        systemctl disable --now deskside-agent.service deskside-relay.service >/dev/null 2>&1 || true
    fi
    users=
    while read -r kind path; do
        case "$kind" in
            file) rm -f "$ROOT$path" ;;
            user) users="$users $path" ;;
        esac
    done <"$MANIFEST"
    if live; then systemctl daemon-reload || true; fi
    if [ "$PURGE" -eq 1 ]; then
        rm -rf "$ROOT/var/lib/deskside-agent" "$ROOT/var/lib/deskside-relay" \
            "$ROOT/etc/deskside/relay.toml" "$ROOT/etc/deskside/enroll-token"
        for user in $users; do del_user "$user"; done
    fi
    rm -rf "$STATE"
    rmdir "$ROOT/etc/deskside" 2>/dev/null || true
    echo "deskside uninstalled${ROOT:+ from $ROOT}$( [ "$PURGE" -eq 1 ] || echo ' (state, configuration and users kept; --purge removes them)')."
}

if [ "$UNINSTALL" -eq 1 ]; then
    uninstall
    exit 0
fi

[ -n "$ARCHIVE" ] || usage
[ -f "$ARCHIVE" ] || die "no such archive: $ARCHIVE"
if [ -z "$SHA256" ]; then
    [ -f "$ARCHIVE.sha256" ] || die "no checksum: put $ARCHIVE.sha256 beside the archive or pass --sha256 HEX"
    SHA256="$(cut -d' ' -f1 "$ARCHIVE.sha256")"
fi
actual="$(sha256sum "$ARCHIVE" | cut -d' ' -f1)"
[ "$actual" = "$SHA256" ] || die "checksum mismatch for $ARCHIVE: expected $SHA256, got $actual. The download is damaged or not the published file; nothing was installed."
[ ! -f "$MANIFEST" ] || die "deskside is already installed${ROOT:+ in $ROOT}; run install.sh --uninstall first"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$ARCHIVE"
src="$(find "$work" -mindepth 1 -maxdepth 1 -type d -print -quit)"
[ -x "$src/bin/deskside-agent" ] || die "$ARCHIVE is not a deskside release archive"

install -d -m 0755 "$STATE" "$ROOT/etc/deskside"
: >"$MANIFEST"
unit_dir=/etc/systemd/system

if has console; then
    put "$src/bin/deskside" "$BIN_DIR/deskside" 0755
    put "$src/completions/deskside.bash" /usr/local/share/bash-completion/completions/deskside 0644
fi
for page in "$src"/man/*.1.gz; do
    put "$page" "/usr/local/share/man/man1/$(basename "$page")" 0644
done
if has relay; then
    put "$src/bin/deskside-relay" "$BIN_DIR/deskside-relay" 0755
    add_user deskside-relay /var/lib/deskside-relay
    sed "s|/usr/bin/|$BIN_DIR/|g" "$src/systemd/deskside-relay.service" >"$work/relay.service"
    put "$work/relay.service" "$unit_dir/deskside-relay.service" 0644
    # The kernel ceilings for the relay's UDP buffers (the file says why);
    # applied at the next boot, and raised now below when live.
    put "$src/sysctl/60-deskside-relay.conf" /etc/sysctl.d/60-deskside-relay.conf 0644
    install -d -m 0700 "$ROOT/var/lib/deskside-relay"
    if [ ! -e "$ROOT/etc/deskside/relay.toml" ]; then
        "$src/bin/deskside-relay" init-config --config "$ROOT/etc/deskside/relay.toml"
    fi
fi
if has agent; then
    put "$src/bin/deskside-agent" "$BIN_DIR/deskside-agent" 0755
    add_user deskside-agent /var/lib/deskside-agent
    sed "s|/usr/bin/|$BIN_DIR/|g" "$src/systemd/deskside-agent.service" >"$work/agent.service"
    put "$work/agent.service" "$unit_dir/deskside-agent.service" 0644
    sed "s|/usr/bin/|$BIN_DIR/|g" "$src/xdg/deskside-session-helper.desktop" >"$work/helper.desktop"
    put "$work/helper.desktop" /etc/xdg/autostart/deskside-session-helper.desktop 0644
    sed "s|/usr/bin/|$BIN_DIR/|g" "$src/xdg/deskside-ask-for-help.desktop" >"$work/ask-for-help.desktop"
    put "$work/ask-for-help.desktop" /usr/share/applications/deskside-ask-for-help.desktop 0644
    install -d -m 0700 "$ROOT/var/lib/deskside-agent"
    if [ -n "${DESKSIDE_ENROLL_TOKEN:-}" ]; then
        (umask 077 && printf '%s\n' "$DESKSIDE_ENROLL_TOKEN" >"$ROOT/etc/deskside/enroll-token")
    fi
fi

# Ownership: by name inside the target root.
if [ -z "$ROOT" ]; then
    if has relay; then
        chown deskside-relay:deskside-relay /var/lib/deskside-relay
        chown root:deskside-relay /etc/deskside/relay.toml && chmod 0640 /etc/deskside/relay.toml
    fi
    has agent && chown deskside-agent:deskside-agent /var/lib/deskside-agent
fi

if live; then
    systemctl daemon-reload
    if has relay; then
        # Raised, never lowered; best effort (a container may refuse).
        for key in net.core.rmem_max net.core.wmem_max; do
            now="$(sysctl -n "$key" 2>/dev/null)" || continue
            [ "$now" -ge 8388608 ] 2>/dev/null || sysctl -q -w "$key=8388608" >/dev/null 2>&1 || true
        done
    fi
    has relay && systemctl enable --now deskside-relay.service
    has agent && systemctl enable --now deskside-agent.service
    echo "deskside installed and started."
else
    echo "deskside installed${ROOT:+ in $ROOT}; services not started (no running systemd${ROOT:+, or another root})."
fi
