#!/usr/bin/env bash
# Builds callwatch_<version>_<arch>.deb with dpkg-deb from a staging
# directory: no cargo-deb to compile, so CI can package the binary it has
# already built.
#
#   packaging/deb/build.sh [--binary PATH] [--out DIR]
#
# --binary defaults to target/release/callwatch if it exists, else
# target/debug/callwatch (CI packages the debug build `cargo test` left
# behind rather than spending minutes on a release build; a package for
# real use should be built after `cargo build --release`). The binary is
# stripped of debug info in the package either way.
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=""
out="target/deb"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--out DIR]" >&2; exit 1 ;;
    esac
done
if [ -z "$binary" ]; then
    if [ -x target/release/callwatch ]; then binary=target/release/callwatch
    else binary=target/debug/callwatch; fi
fi
[ -x "$binary" ] || { echo "no binary at $binary: run cargo build [--release] first" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/callwatch_${version}_${arch}"

# The binary, stripped (a debug build is ~250 MB with its debug info).
install -D -m 0755 "$binary" "$root/usr/bin/callwatch"
strip --strip-debug "$root/usr/bin/callwatch"

# Config: the shipped file with absolute paths, so `callwatch check -c
# /etc/callwatch/callwatch.toml` means the same from any directory.
install -d -m 0755 "$root/etc/callwatch"
sed -e 's|^dir = "rules"$|dir = "/etc/callwatch/rules"|' \
    -e 's|^dir = "data"$|dir = "/var/lib/callwatch"|' \
    config/callwatch.toml > "$root/etc/callwatch/callwatch.toml"
grep -q '^dir = "/etc/callwatch/rules"$' "$root/etc/callwatch/callwatch.toml"
grep -q '^dir = "/var/lib/callwatch"$' "$root/etc/callwatch/callwatch.toml"
# Example rules are configuration: the operator edits and deletes them,
# and dpkg keeps those changes on upgrade (conffiles).
install -d -m 0755 "$root/etc/callwatch/rules"
install -m 0644 rules/*.rhai "$root/etc/callwatch/rules/"

# The systemd unit: the packaged binary, and the `callwatch` system user
# the package creates instead of a dynamic one (its state directory then
# keeps one owner across reinstalls).
install -d -m 0755 "$root/lib/systemd/system"
sed -e 's|^ExecStart=/usr/local/bin/callwatch |ExecStart=/usr/bin/callwatch |' \
    -e 's|^DynamicUser=yes$|User=callwatch\nGroup=callwatch|' \
    config/callwatch.service > "$root/lib/systemd/system/callwatch.service"
grep -q '^ExecStart=/usr/bin/callwatch ' "$root/lib/systemd/system/callwatch.service"
grep -q '^User=callwatch$' "$root/lib/systemd/system/callwatch.service"

# Docs (the unit's Documentation= points at README.md, kept uncompressed).
doc="$root/usr/share/doc/callwatch"
install -d -m 0755 "$doc/docs" "$doc/contrib"
install -m 0644 README.md ARCHITECTURE.md "$doc/"
install -m 0644 docs/*.md "$doc/docs/"
install -m 0644 rules/README.md "$doc/rules.md"
install -m 0644 contrib/* "$doc/contrib/"
cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: callwatch

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

# Completions and the man page, generated from the CLI definition.
gen="$root/usr/bin/callwatch"
install -d -m 0755 "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d" "$root/usr/share/man/man1"
"$gen" completions bash > "$root/usr/share/bash-completion/completions/callwatch"
"$gen" completions zsh > "$root/usr/share/zsh/vendor-completions/_callwatch"
"$gen" completions fish > "$root/usr/share/fish/vendor_completions.d/callwatch.fish"
"$gen" man | gzip -9n > "$root/usr/share/man/man1/callwatch.1.gz"

# Control files.
install -d -m 0755 "$root/DEBIAN"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
(cd "$root" && find etc -type f -printf '/%p\n' | sort) > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: callwatch
Version: $version
Architecture: $arch
Maintainer: callwatch maintainers <callwatch@localhost>
Installed-Size: $size
Depends: adduser, libc6, libgcc-s1
Section: net
Priority: optional
Description: rule-based alerting for Tencent RTC call callbacks
 callwatch receives TUICallKit call callbacks, keeps sliding windows of
 call events per user, platform or app, runs Rhai rules over them and
 notifies by email, webhook or chat when a rule fires and resolves.
CONTROL

mkdir -p "$out"
deb="$out/callwatch_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
