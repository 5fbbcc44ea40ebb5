#!/bin/sh
# Builds deskside-agent-VERSION.pkg: a universal (arm64 + x86_64) agent in
# /Library/Deskside/DesksideAgent.app, its LaunchDaemon and LaunchAgent, and
# the preinstall/postinstall scripts.
#
#   installers/macos/build-pkg.sh [VERSION]
#
# Runs on macOS with Xcode command-line tools and rustup. Optional, from the
# environment:
#   DEVELOPER_ID_APP        "Developer ID Application: Name (TEAMID)": sign the app
#   DEVELOPER_ID_INSTALLER  "Developer ID Installer: Name (TEAMID)": sign the pkg
#   NOTARY_PROFILE          keychain profile made with `xcrun notarytool
#                           store-credentials`: notarize and staple the pkg
# Without them the package is unsigned: fine for a test Mac, not for users.
#
# UNTESTED: never run (written on Linux, without macOS tools).
set -eu

die() {
	printf 'build-pkg.sh: %s\n' "$*" >&2
	exit 1
}

run() {
	printf '>> %s\n' "$*"
	"$@"
}

[ "$(uname -s)" = Darwin ] || die "pkgbuild and productbuild exist only on macOS"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

version=${1:-}
if [ -z "$version" ]; then
	# [workspace.package] version = "X.Y.Z[-pre]": keep X.Y.Z.
	version=$(sed -n 's/^version *= *"\([0-9][0-9.]*\).*"/\1/p' "$repo/Cargo.toml" | head -n 1)
fi
case "$version" in
'' | *[!0-9.]* | .* | *.) die "bad version '$version' (expected digits and dots, e.g. 0.1.0)" ;;
esac

pkg_id=com.deskside.agent.pkg
out="$repo/target/installers/macos"
work="$out/work"
root="$work/root"
app="$root/Library/Deskside/DesksideAgent.app"
component="$work/deskside-agent-component.pkg"
product="$out/deskside-agent-$version.pkg"

rm -rf "$work"
mkdir -p "$work" "$out"

# 1. The agent, both architectures, then one universal binary.
for target in aarch64-apple-darwin x86_64-apple-darwin; do
	run rustup target add "$target"
	(cd "$repo" && run cargo build --release --locked --target "$target" -p deskside-agent --bin deskside-agent)
done
run lipo -create -output "$work/deskside-agent" \
	"$repo/target/aarch64-apple-darwin/release/deskside-agent" \
	"$repo/target/x86_64-apple-darwin/release/deskside-agent"
run lipo -info "$work/deskside-agent"

# 2. Payload, laid out as it lands on disk.
mkdir -p "$app/Contents/MacOS" "$root/Library/LaunchDaemons" "$root/Library/LaunchAgents"
install -m 0755 "$work/deskside-agent" "$app/Contents/MacOS/deskside-agent"
sed "s/@VERSION@/$version/g" "$here/Info.plist.in" >"$app/Contents/Info.plist"
install -m 0644 "$here/com.deskside.agent.plist" "$root/Library/LaunchDaemons/com.deskside.agent.plist"
install -m 0644 "$here/com.deskside.session-helper.plist" "$root/Library/LaunchAgents/com.deskside.session-helper.plist"
install -m 0755 "$here/uninstall.sh" "$root/Library/Deskside/uninstall.sh"
run plutil -lint "$app/Contents/Info.plist" \
	"$root/Library/LaunchDaemons/com.deskside.agent.plist" \
	"$root/Library/LaunchAgents/com.deskside.session-helper.plist"

mkdir -p "$work/scripts"
install -m 0755 "$here/scripts/preinstall" "$here/scripts/postinstall" "$work/scripts/"
install -m 0644 "$here/scripts/common.sh" "$work/scripts/"

# 3. Sign the app: hardened runtime (required for notarization) and a secure
#    timestamp. The signature's identifier (com.deskside.agent) and Team ID
#    are what the privacy permissions and the PPPC profile are bound to, so
#    keep signing with the same Developer ID across releases.
if [ -n "${DEVELOPER_ID_APP:-}" ]; then
	run codesign --force --options runtime --timestamp --sign "$DEVELOPER_ID_APP" "$app"
	run codesign --verify --strict --verbose=2 "$app"
	run codesign --display --requirements - "$app"
else
	printf 'build-pkg.sh: DEVELOPER_ID_APP not set: the app is NOT signed\n' >&2
fi

# 4. Component package. Bundles are relocatable by default: Installer would
#    then update a copy of the app found elsewhere on disk instead of
#    writing /Library/Deskside; turn that off for every bundle in the payload.
run pkgbuild --analyze --root "$root" "$work/component.plist"
i=0
while /usr/libexec/PlistBuddy -c "Print :$i" "$work/component.plist" >/dev/null 2>&1; do
	/usr/libexec/PlistBuddy -c "Set :$i:BundleIsRelocatable false" "$work/component.plist"
	i=$((i + 1))
done
run pkgbuild \
	--root "$root" \
	--component-plist "$work/component.plist" \
	--scripts "$work/scripts" \
	--identifier "$pkg_id" \
	--version "$version" \
	--install-location / \
	--ownership recommended \
	"$component"

# 5. Product archive (what MDM and `installer` take), signed if asked.
sed -e "s/@VERSION@/$version/g" -e "s/@COMPONENT_PKG@/$(basename "$component")/g" \
	"$here/distribution.xml" >"$work/distribution.xml"
if [ -n "${DEVELOPER_ID_INSTALLER:-}" ]; then
	run productbuild --distribution "$work/distribution.xml" --package-path "$work" \
		--sign "$DEVELOPER_ID_INSTALLER" --timestamp "$product"
	run pkgutil --check-signature "$product"
else
	printf 'build-pkg.sh: DEVELOPER_ID_INSTALLER not set: the package is NOT signed\n' >&2
	run productbuild --distribution "$work/distribution.xml" --package-path "$work" "$product"
fi

# 6. Notarize and staple (needs both signatures above).
if [ -n "${NOTARY_PROFILE:-}" ]; then
	if [ -z "${DEVELOPER_ID_APP:-}" ] || [ -z "${DEVELOPER_ID_INSTALLER:-}" ]; then
		die "notarization needs DEVELOPER_ID_APP and DEVELOPER_ID_INSTALLER"
	fi
	run xcrun notarytool submit "$product" --keychain-profile "$NOTARY_PROFILE" --wait
	run xcrun stapler staple "$product"
	run xcrun stapler validate "$product"
	run spctl --assess --type install --verbose=2 "$product"
fi

printf 'Built %s\n' "$product"
