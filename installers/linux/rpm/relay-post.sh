# deskside-relay %post ($1: 1 = install, 2 = upgrade). Same layout as the
# Debian package: see installers/linux/deb/relay/postinst.
getent passwd deskside-relay >/dev/null || \
    useradd --system --user-group --home-dir /var/lib/deskside-relay --no-create-home \
        --shell /sbin/nologin --comment "deskside relay" deskside-relay
# Room for a reconnect storm on the relay's UDP socket (see
# /usr/lib/sysctl.d/60-deskside-relay.conf, which systemd-sysctl applies at
# boot): raised now, never lowered. Best effort: a container may not let us
# write /proc/sys (the relay then logs the cap and the sysctl to raise).
for key in net.core.rmem_max net.core.wmem_max; do
    now="$(sysctl -n "$key" 2>/dev/null)" || continue
    [ "$now" -ge 8388608 ] 2>/dev/null || sysctl -q -w "$key=8388608" >/dev/null 2>&1 || :
done
install -d -m 0755 /etc/deskside
install -d -o deskside-relay -g deskside-relay -m 0700 /var/lib/deskside-relay
if [ ! -e /etc/deskside/relay.toml ]; then
    /usr/bin/deskside-relay init-config --config /etc/deskside/relay.toml
    chown root:deskside-relay /etc/deskside/relay.toml
    chmod 0640 /etc/deskside/relay.toml
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl enable --now deskside-relay.service >/dev/null 2>&1 || :
    else
        systemctl try-restart deskside-relay.service >/dev/null 2>&1 || :
    fi
fi
