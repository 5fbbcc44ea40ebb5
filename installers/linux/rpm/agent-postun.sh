# deskside-agent %postun ($1: 0 = erase, 1 = upgrade). RPM has no purge: the
# enrollment and the user stay, so reinstalling keeps the device; remove them
# with  rm -rf /var/lib/deskside-agent && userdel deskside-agent
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
