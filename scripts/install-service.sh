#!/usr/bin/env bash
# Installs MindooDB mesh as a system service from this checkout:
#   - the package in /opt/mindoodb (dist/src, config/, its production node_modules
#     with the pinned Node 24 at /opt/mindoodb/node_modules/.bin/node),
#   - /usr/local/bin/mindoodb, a wrapper that runs the CLI with that Node,
#   - the system user and group `mindoodb` (no login shell, no home),
#   - /etc/mindoodb (root:mindoodb 0750) for one config file per organisation,
#   - the template unit /etc/systemd/system/mindoodb@.service.
# Safe to run again: it replaces the package, keeps configs and data, and
# restarts running instances so they pick up the new code.
#
# Usage: sudo scripts/install-service.sh [--root DIR] [--no-build] [--reinstall] [--no-restart]
#   --root DIR    install under DIR instead of / (also DESTDIR=DIR), as for a
#                 package build or a test: paths inside the installed files still
#                 say /opt/mindoodb; no user is created, no systemctl is run, and
#                 root is not required
#   --no-build    use the checkout's existing dist/ instead of `npm run build`
#   --reinstall   run `npm ci --omit=dev` even if the installed lockfile matches
#   --no-restart  don't restart running mindoodb@*.service instances
set -euo pipefail

readonly APP=/opt/mindoodb
readonly NAME=mindoodb
readonly UNIT='mindoodb@.service'
readonly ENTRY=dist/src/cli/main.js

die () { echo "install-service: $*" >&2; exit 1; }
say () { echo "==> $*"; }

usage () { sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

root="${DESTDIR:-}"
build=1
reinstall=0
restart=1
while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; root="$2"; shift 2 ;;
    --root=*) root="${1#--root=}"; shift ;;
    --no-build) build=0; shift ;;
    --reinstall) reinstall=1; shift ;;
    --no-restart) restart=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

# An empty root or "/" is the real system.
root="${root%/}"
if [ -n "$root" ]; then
  mkdir -p "$root"
  root="$(cd "$root" && pwd -P)"
  [ "$root" = / ] && root=''
fi
system=0
[ -z "$root" ] && system=1

if [ "$system" = 1 ] && [ "$(id -u)" -ne 0 ]; then
  die "must be run as root (or with --root DIR to stage the files elsewhere)"
fi
command -v npm >/dev/null || die "npm is not installed (it installs the package's dependencies and its pinned Node)"

src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
if [ ! -f "$src/package.json" ] || [ ! -f "$src/package-lock.json" ] || [ ! -f "$src/systemd/$UNIT" ]; then
  die "$src does not look like a MindooDB mesh checkout"
fi
umask 022

# Runs a command in the checkout as the checkout's owner, so that a `sudo` run
# does not leave root-owned node_modules/ and dist/ behind in a user's clone.
in_checkout () {
  local owner
  owner="$(stat -c %U "$src")"
  if [ "$(id -u)" -eq 0 ] && [ "$owner" != root ] && [ "$owner" != UNKNOWN ] && command -v runuser >/dev/null; then
    local home
    home="$(getent passwd "$owner" | cut -d: -f6)"
    (cd "$src" && runuser -u "$owner" -- env HOME="${home:-/tmp}" "$@")
  else
    (cd "$src" && "$@")
  fi
}

# 1. Build in the checkout: the TypeScript build needs the dev dependencies.
if [ "$build" = 1 ]; then
  if [ ! -d "$src/node_modules" ]; then
    say "installing build dependencies in $src (npm ci)"
    in_checkout npm ci --no-audit --no-fund --update-notifier=false
  fi
  say "building (npm run build)"
  in_checkout npm run build --update-notifier=false
fi
[ -f "$src/$ENTRY" ] || die "$src/$ENTRY is missing: build first (npm ci && npm run build) or drop --no-build"

# 2. Stage the package next to its destination with production dependencies
#    only, then swap it in, so a failed install leaves the old one in place.
dest="$root$APP"
parent="$(dirname "$dest")"
mkdir -p "$parent"
stage="$(mktemp -d "$parent/.mindoodb.new.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"

say "staging the package in $stage"
mkdir -p "$stage/dist"
cp -R "$src/dist/src" "$stage/dist/src"
cp -R "$src/config" "$src/systemd" "$stage/"
cp "$src/package.json" "$src/package-lock.json" "$stage/"
if [ -f "$src/README.md" ]; then cp "$src/README.md" "$stage/"; fi

reused=0
if [ "$reinstall" = 0 ] && [ -d "$dest/node_modules" ] && cmp -s "$src/package-lock.json" "$dest/package-lock.json" \
  && "$dest/node_modules/.bin/node" --version >/dev/null 2>&1; then
  say "dependencies unchanged: keeping $APP/node_modules"
  # Hard links: nothing below node_modules is changed in place.
  cp -al "$dest/node_modules" "$stage/node_modules" 2>/dev/null || cp -a "$dest/node_modules" "$stage/node_modules"
  reused=1
fi
if [ "$reused" = 0 ]; then
  say "installing production dependencies (npm ci --omit=dev)"
  (cd "$stage" && npm ci --omit=dev --no-audit --no-fund --update-notifier=false)
fi
node_version="$("$stage/node_modules/.bin/node" --version)" || die "the pinned Node did not install"
case "$node_version" in
  v24.*) ;;
  *) die "expected the pinned Node 24, found $node_version" ;;
esac

if [ -e "$dest" ]; then
  old="$(mktemp -d "$parent/.mindoodb.old.XXXXXX")"
  mv "$dest" "$old/"
  mv "$stage" "$dest"
  rm -rf "$old"
else
  mv "$stage" "$dest"
fi
trap - EXIT
say "installed $APP (Node $node_version)"

# 3. The CLI on the PATH, running with the pinned Node.
mkdir -p "$root/usr/local/bin"
cat > "$root/usr/local/bin/$NAME.tmp" <<EOF
#!/bin/sh
# MindooDB mesh CLI, installed by scripts/install-service.sh: runs it with the pinned Node 24.
exec $APP/node_modules/.bin/node $APP/$ENTRY "\$@"
EOF
chmod 0755 "$root/usr/local/bin/$NAME.tmp"
mv "$root/usr/local/bin/$NAME.tmp" "$root/usr/local/bin/$NAME"

# 4. The service user and group.
if [ "$system" = 1 ]; then
  if ! getent group "$NAME" >/dev/null; then
    say "creating system group $NAME"
    groupadd --system "$NAME"
  fi
  if ! getent passwd "$NAME" >/dev/null; then
    say "creating system user $NAME"
    nologin="$(command -v nologin || echo /usr/sbin/nologin)"
    useradd --system --gid "$NAME" --no-create-home --home-dir /nonexistent \
      --shell "$nologin" --comment "MindooDB mesh node" "$NAME"
  fi
fi

# 5. The config directory: root writes the configs, the service only reads them.
mkdir -p "$root/etc/$NAME"
chmod 0750 "$root/etc/$NAME"
if [ "$system" = 1 ]; then chown "root:$NAME" "/etc/$NAME"; fi

# 6. The unit.
mkdir -p "$root/etc/systemd/system"
install -m 0644 "$src/systemd/$UNIT" "$root/etc/systemd/system/$UNIT"
say "installed /etc/systemd/system/$UNIT"

if [ "$system" = 1 ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "$restart" = 1 ]; then
    running="$(systemctl list-units --type=service --state=running --plain --no-legend "$NAME@*.service" | awk '{print $1}')"
    for unit in $running; do
      say "restarting $unit"
      systemctl restart "$unit"
    done
  fi
elif [ "$system" = 1 ]; then
  say "systemd is not running here: skipped daemon-reload"
fi

cat <<EOF

MindooDB mesh is installed${root:+ under $root}. To run a node for an organisation, say "acme":

  1. Create its tenant, node identity and config (all options: mindoodb init --help):
       sudo mindoodb --config /etc/mindoodb/acme.json init --tenant acme \\
         --data-dir /var/lib/mindoodb/acme --rpc-socket /run/mindoodb/acme/rpc.sock \\
         --listen /ip4/0.0.0.0/tcp/4001
     and add what else it needs (shares, "metrics": {"port": 9464}, ...) to that file.
  2. Let the service read it; configs hold topic secrets, so nobody else may:
       sudo chown root:mindoodb /etc/mindoodb/acme.json && sudo chmod 0640 /etc/mindoodb/acme.json
     (systemd hands /var/lib/mindoodb/acme over to the mindoodb user when the service starts)
  3. Start it now and at boot, and watch it:
       sudo systemctl enable --now mindoodb@acme
       journalctl -u mindoodb@acme -f
       sudo mindoodb --config /etc/mindoodb/acme.json status

Edit a config's shares, then apply them without a restart: sudo systemctl reload mindoodb@acme
EOF
