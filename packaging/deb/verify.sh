#!/usr/bin/env bash
# Installs a callwatch .deb (as root, on a machine you can throw away),
# checks every file and promise of the package, then purges it and checks
# that nothing is left. Used by CI:  packaging/deb/verify.sh target/deb/callwatch_*.deb
set -euo pipefail
deb="$1"
fail() { echo "deb verify: $*" >&2; exit 1; }

dpkg -i "$deb" >/dev/null
for f in /usr/bin/callwatch /etc/callwatch/callwatch.toml \
    /lib/systemd/system/callwatch.service /usr/share/doc/callwatch/README.md \
    /usr/share/doc/callwatch/docs/trtc-setup.md /usr/share/doc/callwatch/copyright \
    /usr/share/bash-completion/completions/callwatch \
    /usr/share/zsh/vendor-completions/_callwatch \
    /usr/share/fish/vendor_completions.d/callwatch.fish \
    /usr/share/man/man1/callwatch.1.gz; do
    [ -s "$f" ] || fail "$f missing or empty"
done
ls /etc/callwatch/rules/*.rhai >/dev/null || fail "no example rules in /etc/callwatch/rules"
dpkg-query -W -f='${Conffiles}\n' callwatch | grep -q ' /etc/callwatch/callwatch.toml ' \
    || fail "callwatch.toml is not a conffile"

/usr/bin/callwatch --version | grep -q '^callwatch ' || fail "callwatch --version"
# From another directory: the packaged config must not depend on the cwd.
(cd / && /usr/bin/callwatch check -c /etc/callwatch/callwatch.toml) \
    || fail "callwatch check of the installed config"
getent passwd callwatch >/dev/null || fail "no callwatch user"
[ "$(stat -c %U:%a /var/lib/callwatch)" = "callwatch:700" ] || fail "/var/lib/callwatch owner/mode"
[ "$(stat -c %U:%G:%a /etc/callwatch/callwatch.toml)" = "root:callwatch:640" ] \
    || fail "/etc/callwatch/callwatch.toml owner/mode"

unit=/lib/systemd/system/callwatch.service
systemd-analyze verify "$unit"
systemd-analyze security --offline=true --threshold=25 "$unit" | tail -n 1
doc=$(sed -n 's|^Documentation=file://||p' "$unit")
[ -f "$doc" ] || fail "the unit's Documentation= ($doc) is not installed"
grep -q '^RestartPreventExitStatus=1$' "$unit" || fail "unit restarts on exit 1"

zcat /usr/share/man/man1/callwatch.1.gz | head -n 5 | grep -q '^\.TH callwatch 1' \
    || fail "man page is not groff"
MANWIDTH=80 man -l /usr/share/man/man1/callwatch.1.gz 2>/dev/null | grep -q 'notify-test' \
    || fail "man page does not render"
bash -c 'source /usr/share/bash-completion/completions/callwatch && complete -p callwatch' \
    >/dev/null || fail "bash completion does not load"

dpkg --purge callwatch >/dev/null
for f in /usr/bin/callwatch /etc/callwatch /var/lib/callwatch /lib/systemd/system/callwatch.service; do
    [ ! -e "$f" ] || fail "$f left after purge"
done
! getent passwd callwatch >/dev/null || fail "callwatch user left after purge"
echo "deb verify: $deb installs, checks out and purges cleanly"
