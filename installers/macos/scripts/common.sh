# Shared by preinstall and postinstall (sourced, not executed).
# POSIX sh; the caller has already run `set -eu`.
# UNTESTED: never run on a Mac.
# shellcheck shell=sh
# The constants are used by the scripts that source this file:
# shellcheck disable=SC2034

SERVICE_USER=_deskside
SERVICE_GROUP=_deskside
SERVICE_REALNAME="deskside agent"
DAEMON_LABEL=com.deskside.agent
AGENT_LABEL=com.deskside.session-helper
DAEMON_PLIST=/Library/LaunchDaemons/com.deskside.agent.plist
AGENT_PLIST=/Library/LaunchAgents/com.deskside.session-helper.plist
APP_DIR=/Library/Deskside/DesksideAgent.app
APP_EXE="$APP_DIR/Contents/MacOS/deskside-agent"
CLI_LINK=/usr/local/bin/deskside-agent
STATE_DIR="/Library/Application Support/deskside-agent"
LOG_DIR=/Library/Logs/deskside-agent
# Service IDs are searched downwards from here to ID_LOWEST: below 500, so
# the account is a system account (hidden, outside the normal user range),
# and above the range Apple's own daemons use.
ID_HIGHEST=499
ID_LOWEST=300

log() {
	# Installer scripts' output goes to /var/log/install.log.
	printf 'deskside-agent %s: %s\n' "${SCRIPT_NAME:-installer}" "$*"
}

die() {
	log "error: $*" >&2
	exit 1
}

require_startup_volume() {
	# $1: the target volume the installer passes as the script's third argument.
	if [ "${1:-/}" != "/" ]; then
		die "this package installs a system service and must go on the startup volume, not $1"
	fi
}

id_in_use() {
	# True if $1 is a user ID or a group ID in the local directory.
	dscl . -list /Users UniqueID | awk -v id="$1" '$2 == id { found = 1 } END { exit found ? 0 : 1 }' && return 0
	dscl . -list /Groups PrimaryGroupID | awk -v id="$1" '$2 == id { found = 1 } END { exit found ? 0 : 1 }' && return 0
	return 1
}

free_system_id() {
	# Prints the highest ID in [ID_LOWEST, ID_HIGHEST] that is free both as a
	# user ID and as a group ID.
	candidate=$ID_HIGHEST
	while [ "$candidate" -ge "$ID_LOWEST" ]; do
		if ! id_in_use "$candidate"; then
			printf '%s\n' "$candidate"
			return 0
		fi
		candidate=$((candidate - 1))
	done
	return 1
}

ensure_service_account() {
	# Creates the _deskside group and user if missing: hidden, no password,
	# no shell, no home. Idempotent.
	if ! dscl . -read "/Groups/$SERVICE_GROUP" >/dev/null 2>&1; then
		gid=$(free_system_id) || die "no free ID between $ID_LOWEST and $ID_HIGHEST for group $SERVICE_GROUP"
		log "creating group $SERVICE_GROUP ($gid)"
		dscl . -create "/Groups/$SERVICE_GROUP"
		dscl . -create "/Groups/$SERVICE_GROUP" PrimaryGroupID "$gid"
		dscl . -create "/Groups/$SERVICE_GROUP" RealName "$SERVICE_REALNAME"
		dscl . -create "/Groups/$SERVICE_GROUP" Password '*'
	fi
	gid=$(dscl . -read "/Groups/$SERVICE_GROUP" PrimaryGroupID | awk '{ print $2 }')
	case "$gid" in
	'' | *[!0-9]*) die "cannot read the group ID of $SERVICE_GROUP" ;;
	esac

	if ! dscl . -read "/Users/$SERVICE_USER" >/dev/null 2>&1; then
		# Same number as the group when it is free as a user ID.
		if dscl . -list /Users UniqueID | awk -v id="$gid" '$2 == id { found = 1 } END { exit found ? 0 : 1 }'; then
			uid=$(free_system_id) || die "no free ID between $ID_LOWEST and $ID_HIGHEST for user $SERVICE_USER"
		else
			uid=$gid
		fi
		log "creating user $SERVICE_USER ($uid)"
		dscl . -create "/Users/$SERVICE_USER"
		dscl . -create "/Users/$SERVICE_USER" UniqueID "$uid"
		dscl . -create "/Users/$SERVICE_USER" PrimaryGroupID "$gid"
		dscl . -create "/Users/$SERVICE_USER" RealName "$SERVICE_REALNAME"
		dscl . -create "/Users/$SERVICE_USER" UserShell /usr/bin/false
		dscl . -create "/Users/$SERVICE_USER" NFSHomeDirectory /var/empty
		dscl . -create "/Users/$SERVICE_USER" Password '*'
		dscl . -create "/Users/$SERVICE_USER" IsHidden 1
	fi
	if ! dscl . -read "/Groups/$SERVICE_GROUP" GroupMembership 2>/dev/null | grep -qw -- "$SERVICE_USER"; then
		dscl . -append "/Groups/$SERVICE_GROUP" GroupMembership "$SERVICE_USER"
	fi
}

ensure_directories() {
	# State: only the service user. -R also fixes ownership after a reinstall
	# that gave _deskside a different UID, and covers an enroll-token file IT
	# placed there as root before installing. chown -R does not follow
	# symbolic links.
	mkdir -p "$STATE_DIR"
	chown -R "$SERVICE_USER:$SERVICE_GROUP" "$STATE_DIR"
	chmod 0700 "$STATE_DIR"
	if [ -f "$STATE_DIR/enroll-token" ]; then
		chmod 0600 "$STATE_DIR/enroll-token"
	fi

	# Logs: written by the service user, readable by administrators.
	mkdir -p "$LOG_DIR"
	touch "$LOG_DIR/agent.log"
	chown -R "$SERVICE_USER:admin" "$LOG_DIR"
	chmod 0750 "$LOG_DIR"
	chmod 0640 "$LOG_DIR/agent.log"
}

gui_user_ids() {
	# UIDs of regular local accounts (500 and up); the caller tries each one's
	# GUI domain, which exists only for users logged in graphically.
	dscl . -list /Users UniqueID | awk '$2 >= 500 { print $2 }'
}

bootout_session_helpers() {
	for uid in $(gui_user_ids); do
		launchctl bootout "gui/$uid/$AGENT_LABEL" >/dev/null 2>&1 || true
	done
}

bootout_daemon() {
	launchctl bootout "system/$DAEMON_LABEL" >/dev/null 2>&1 || true
}
