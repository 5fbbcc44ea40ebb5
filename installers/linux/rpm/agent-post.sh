# deskside-agent %post ($1: 1 = install, 2 = upgrade). Same layout as the
# Debian package: see installers/linux/deb/agent/postinst.
getent passwd deskside-agent >/dev/null || \
    useradd --system --user-group --home-dir /var/lib/deskside-agent --no-create-home \
        --shell /sbin/nologin --comment "deskside agent" deskside-agent
install -d -m 0755 /etc/deskside
install -d -o deskside-agent -g deskside-agent -m 0700 /var/lib/deskside-agent
if [ -n "${DESKSIDE_ENROLL_TOKEN:-}" ]; then
    (umask 077 && printf '%s\n' "$DESKSIDE_ENROLL_TOKEN" >/etc/deskside/enroll-token)
fi
if [ -e /etc/deskside/enroll-token ]; then
    env -u DESKSIDE_ENROLL_TOKEN /usr/bin/deskside-agent --state-dir /var/lib/deskside-agent enroll --from-config || {
        msg="enrollment with the installation token failed (reason above); the agent is installed and will retry /etc/deskside/enroll-token when it starts. Or enroll with a new token: sudo deskside-agent enroll TOKEN"
        echo "deskside-agent: $msg" >&2
        logger -t deskside-agent -p daemon.err "$msg" 2>/dev/null || :
    }
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl enable --now deskside-agent.service >/dev/null 2>&1 || :
    else
        systemctl try-restart deskside-agent.service >/dev/null 2>&1 || :
    fi
fi
