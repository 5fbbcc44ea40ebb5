#!/bin/sh
# Removes the deskside agent from this Mac.
#
#   sudo /Library/Deskside/uninstall.sh                 keep identity and key
#   sudo /Library/Deskside/uninstall.sh --remove-state  also delete them
#
# Stops the session helpers and the service, removes the launchd jobs, the
# app, the command-line link, the logs and the _deskside account, and makes
# the system forget the package receipt. Keeping the state allows a later
# reinstall to come back with the same device identity. Uninstalling does not
# revoke the device at the relay: `deskside devices revoke DEVICE` does.
#
# UNTESTED: never run on a Mac.
set -eu

SERVICE_USER=_deskside
SERVICE_GROUP=_deskside
DAEMON_LABEL=com.deskside.agent
AGENT_LABEL=com.deskside.session-helper
DAEMON_PLIST=/Library/LaunchDaemons/com.deskside.agent.plist
AGENT_PLIST=/Library/LaunchAgents/com.deskside.session-helper.plist
INSTALL_DIR=/Library/Deskside
APP_EXE="$INSTALL_DIR/DesksideAgent.app/Contents/MacOS/deskside-agent"
CLI_LINK=/usr/local/bin/deskside-agent
STATE_DIR="/Library/Application Support/deskside-agent"
LOG_DIR=/Library/Logs/deskside-agent
PKG_ID=com.deskside.agent.pkg

usage() {
	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

remove_state=0
for arg in "$@"; do
	case "$arg" in
	--remove-state) remove_state=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		printf 'uninstall.sh: unknown argument: %s\n' "$arg" >&2
		usage >&2
		exit 2
		;;
	esac
done

if [ "$(id -u)" -ne 0 ]; then
	printf 'uninstall.sh: run it as root: sudo %s\n' "$0" >&2
	exit 1
fi

say() {
	printf '%s\n' "$*"
}

# 1. Stop the session helpers in every GUI session, then the service.
for uid in $(dscl . -list /Users UniqueID | awk '$2 >= 500 { print $2 }'); do
	launchctl bootout "gui/$uid/$AGENT_LABEL" >/dev/null 2>&1 || true
done
launchctl bootout "system/$DAEMON_LABEL" >/dev/null 2>&1 || true
say "stopped the service and the session helpers"

# 2. Files.
rm -f "$DAEMON_PLIST" "$AGENT_PLIST"
if [ -L "$CLI_LINK" ] && [ "$(readlink "$CLI_LINK")" = "$APP_EXE" ]; then
	rm -f "$CLI_LINK"
fi
rm -rf "$INSTALL_DIR" "$LOG_DIR"
say "removed the launchd jobs, $INSTALL_DIR and $LOG_DIR"

if [ "$remove_state" -eq 1 ]; then
	rm -rf "$STATE_DIR"
	say "removed $STATE_DIR (identity and private key)"
else
	say "kept $STATE_DIR (identity and private key); rerun with --remove-state to delete it"
fi

# 3. The service account. Files it owned in a kept state directory keep its
#    old UID; a reinstall chowns them to the new account.
if dscl . -read "/Users/$SERVICE_USER" >/dev/null 2>&1; then
	dscl . -delete "/Users/$SERVICE_USER"
fi
if dscl . -read "/Groups/$SERVICE_GROUP" >/dev/null 2>&1; then
	dscl . -delete "/Groups/$SERVICE_GROUP"
fi
say "removed the $SERVICE_USER account"

# 4. The package receipt, so that a reinstall is a fresh install.
pkgutil --forget "$PKG_ID" >/dev/null 2>&1 || true
say "deskside agent uninstalled"
