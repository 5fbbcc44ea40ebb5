# deskside-relay %postun ($1: 0 = erase, 1 = upgrade). RPM has no purge:
# the database, keys, configuration and user stay; remove them with
#   rm -rf /var/lib/deskside-relay /etc/deskside/relay.toml && userdel deskside-relay
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
