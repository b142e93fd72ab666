#!/usr/bin/env bash
# Builds the TEST DOUBLE of Grafana (version $2, e.g. 12.2.1+testdouble) in $1, in Grafana's layouts (run inside
# a Debian container with apt-utils, gnupg and dpkg-dev): the package grafana_<v>_amd64.deb in a signed APT
# repository <root>/apt (dists/stable/main/binary-amd64, pool/main/g/grafana, gpg.key) and the standalone
# archive <root>/oss/release/grafana-<v>.linux-amd64.tar.gz (+ .sha256). The program is grafana_double.py, a
# Python script that needs python3 and python3-yaml. Last line of stdout: "<sha256 of gpg.key> <sha256 of tar.gz>".
set -euo pipefail
root=$1
version=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
export GNUPGHOME=$work/gnupg
rm -rf "$root"
apt=$root/apt
mkdir -p "$GNUPGHOME" "$apt/pool/main/g/grafana" "$apt/dists/stable/main/binary-amd64" "$root/oss/release"
chmod 700 "$GNUPGHOME"

# The configuration the program reads first: Grafana's defaults for the keys it knows (unknown keys are kept).
defaults_ini() {
  cat <<'DEFAULTS'
##################### TEST DOUBLE of Grafana: defaults (do not change; put settings in grafana.ini) #########
app_mode = production
instance_name = ${HOSTNAME}

[paths]
data = data
logs = data/log
plugins = data/plugins
provisioning = conf/provisioning

[server]
protocol = http
http_addr =
http_port = 3000
domain = localhost
root_url = %(protocol)s://%(domain)s:%(http_port)s/
serve_from_sub_path = false
cert_file =
cert_key =

[database]
type = sqlite3
path = grafana.db

[analytics]
reporting_enabled = true
check_for_updates = true

[security]
disable_initial_admin_creation = false
admin_user = admin
admin_password = admin
admin_email = admin@localhost
secret_key = SW2YcwTIb9zpOOhoPsMm
cookie_secure = false

[users]
allow_sign_up = false

[auth.anonymous]
enabled = false
org_name = Main Org.
org_role = Viewer

[auth.basic]
enabled = true

[dashboards]
default_home_dashboard_path =

[log]
mode = console file
level = info
DEFAULTS
}

# home DIR: Grafana's home directory layout (bin, conf, public) with the program and its wrappers.
home() {
  local dir=$1 cmd
  mkdir -p "$dir/bin" "$dir/conf" "$dir/public"
  sed "s|^VERSION = .*|VERSION = \"$version\"  # set by build.sh|" "$here/grafana_double.py" >"$dir/bin/grafana"
  for cmd in server cli; do
    sed "s/@CMD@/$cmd/g" >"$dir/bin/grafana-$cmd" <<'EOF'
#!/bin/sh
# TEST DOUBLE of Grafana: grafana-@CMD@ runs "grafana @CMD@", as Grafana's does.
exec "$(dirname "$(readlink -f "$0")")/grafana" @CMD@ "$@"
EOF
  done
  chmod 755 "$dir/bin/"*
  defaults_ini >"$dir/conf/defaults.ini"
  # sample.ini (and /etc/grafana/grafana.ini): every setting commented out, as Grafana ships them.
  defaults_ini | sed -e 's/^\([a-z_]\)/;\1/' -e '1s/defaults (do not change.*/sample configuration/' >"$dir/conf/sample.ini"
  printf '<!DOCTYPE html><html><body><h1>TEST DOUBLE of Grafana %s</h1><p>Not Grafana.</p></body></html>\n' \
    "$version" >"$dir/public/index.html"
}

deb=$work/deb
home "$deb/usr/share/grafana"
mkdir -p "$deb/DEBIAN" "$deb/usr/sbin" "$deb/etc/default" "$deb/lib/systemd/system"
mkdir -p "$deb/etc/grafana/provisioning/"{datasources,dashboards,plugins,alerting}
cp "$deb/usr/share/grafana/conf/sample.ini" "$deb/etc/grafana/grafana.ini"
# /usr/sbin wrappers, like the real package's: they add the package's paths (so that `grafana-cli admin ...`
# uses /var/lib/grafana/grafana.db); @CMD@ is server or cli, empty for /usr/sbin/grafana.
wrapper() {
  sed "s/@CMD@/$1/" <<'EOF'
#!/bin/sh
# TEST DOUBLE of Grafana: runs /usr/share/grafana/bin/grafana with the package's paths.
[ -f /etc/default/grafana-server ] && . /etc/default/grafana-server
home=${GRAFANA_HOME:-/usr/share/grafana}
data=${DATA_DIR:-/var/lib/grafana}
cmd=@CMD@
if [ -z "$cmd" ]; then
  case ${1:-} in cli | server) cmd=$1 && shift ;; *) exec "$home/bin/grafana" "$@" ;; esac
fi
exec "$home/bin/grafana" "$cmd" --homepath="$home" --config="${CONF_FILE:-/etc/grafana/grafana.ini}" \
  cfg:default.paths.data="$data" cfg:default.paths.logs="${LOG_DIR:-/var/log/grafana}" \
  cfg:default.paths.plugins="${PLUGINS_DIR:-$data/plugins}" \
  cfg:default.paths.provisioning="${PROVISIONING_CFG_DIR:-/etc/grafana/provisioning}" "$@"
EOF
}
wrapper "" >"$deb/usr/sbin/grafana"
wrapper server >"$deb/usr/sbin/grafana-server"
wrapper cli >"$deb/usr/sbin/grafana-cli"
chmod 755 "$deb/usr/sbin/"*
cat >"$deb/etc/default/grafana-server" <<'EOF'
GRAFANA_USER=grafana
GRAFANA_GROUP=grafana
GRAFANA_HOME=/usr/share/grafana
LOG_DIR=/var/log/grafana
DATA_DIR=/var/lib/grafana
MAX_OPEN_FILES=10000
CONF_DIR=/etc/grafana
CONF_FILE=/etc/grafana/grafana.ini
RESTART_ON_UPGRADE=true
PLUGINS_DIR=/var/lib/grafana/plugins
PROVISIONING_CFG_DIR=/etc/grafana/provisioning
PID_FILE_DIR=/run/grafana
EOF
cat >"$deb/lib/systemd/system/grafana-server.service" <<'EOF'
[Unit]
Description=Grafana instance (TEST DOUBLE of Grafana, built by llm_monitor.fleet's tests)
Wants=network-online.target
After=network-online.target

[Service]
EnvironmentFile=/etc/default/grafana-server
User=grafana
Group=grafana
Type=simple
Restart=on-failure
WorkingDirectory=/usr/share/grafana
RuntimeDirectory=grafana
RuntimeDirectoryMode=0750
ExecStart=/usr/share/grafana/bin/grafana server --config=/etc/grafana/grafana.ini --pidfile=/run/grafana/grafana-server.pid --packaging=deb cfg:default.paths.logs=/var/log/grafana cfg:default.paths.data=/var/lib/grafana cfg:default.paths.plugins=/var/lib/grafana/plugins cfg:default.paths.provisioning=/etc/grafana/provisioning
LimitNOFILE=10000
TimeoutStopSec=20

[Install]
WantedBy=multi-user.target
EOF
chmod 644 "$deb/etc/default/grafana-server" "$deb/lib/systemd/system/grafana-server.service"
cat >"$deb/DEBIAN/control" <<EOF
Package: grafana
Version: $version
Architecture: amd64
Maintainer: llm_monitor.fleet tests <tests@invalid>
Depends: python3, python3-yaml
Section: default
Priority: optional
Description: TEST DOUBLE of Grafana, built by llm_monitor.fleet's tests - not Grafana
 A small Python program that stands in for Grafana in the collection's molecule tests: it reads
 grafana.ini, provisions data sources and dashboards (refusing what breaks Grafana's schema) and
 serves the few HTTP API endpoints the tests use. It is not Grafana and draws no graphs.
EOF
printf '/etc/grafana/grafana.ini\n/etc/default/grafana-server\n' >"$deb/DEBIAN/conffiles"
cat >"$deb/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# TEST DOUBLE of Grafana: creates the grafana user and its directories; like Grafana's package, starts nothing.
set -e
if [ "$1" = configure ]; then
  getent group grafana >/dev/null || groupadd --system grafana
  getent passwd grafana >/dev/null ||
    useradd --system --gid grafana --home-dir /usr/share/grafana --no-create-home --shell /bin/false grafana
  mkdir -p /var/lib/grafana/plugins /var/log/grafana
  chown grafana:grafana /var/lib/grafana /var/lib/grafana/plugins /var/log/grafana
  chmod 755 /var/lib/grafana /var/log/grafana
  chown -R root:grafana /etc/grafana
  chmod 640 /etc/grafana/grafana.ini
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
  echo "grafana (TEST DOUBLE) is installed but not started or enabled: the role manages grafana-server.service."
fi
EOF
chmod 755 "$deb/DEBIAN/postinst"
debfile=$apt/pool/main/g/grafana/grafana_${version}_amd64.deb
dpkg-deb --root-owner-group --build "$deb" "$debfile" >/dev/null

# The APT repository, indexed with apt-ftparchive and signed with a key generated here.
gpg --batch --passphrase '' --quick-gen-key 'llm_monitor.fleet TEST DOUBLE Grafana repository <tests@invalid>' \
  ed25519 sign never 2>/dev/null
gpg --batch --armor --export >"$apt/gpg.key"
(
  cd "$apt"
  apt-ftparchive packages pool/main >dists/stable/main/binary-amd64/Packages
  gzip -9nk dists/stable/main/binary-amd64/Packages
  apt-ftparchive -o APT::FTPArchive::Release::Origin=llm_monitor.fleet-tests \
    -o APT::FTPArchive::Release::Label='TEST DOUBLE of Grafana' -o APT::FTPArchive::Release::Suite=stable \
    -o APT::FTPArchive::Release::Codename=stable -o APT::FTPArchive::Release::Components=main \
    -o APT::FTPArchive::Release::Architectures=amd64 release dists/stable >"$work/Release"
  mv "$work/Release" dists/stable/Release
  gpg --batch --yes --clearsign -o dists/stable/InRelease dists/stable/Release
  gpg --batch --yes --armor --detach-sign -o dists/stable/Release.gpg dists/stable/Release
)

# The standalone archive: a single top directory grafana-v<version>/.
home "$work/archive/grafana-v$version"
tarball=$root/oss/release/grafana-$version.linux-amd64.tar.gz
tar -C "$work/archive" --owner=0 --group=0 --numeric-owner -czf "$tarball" "grafana-v$version"
sum=$(sha256sum "$tarball" | cut -d' ' -f1)
printf '%s' "$sum" >"$tarball.sha256"
rm -rf "$work"
echo "$(sha256sum "$apt/gpg.key" | cut -d' ' -f1) $sum"
