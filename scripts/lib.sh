# Shared helpers for ManMan's scripts: progress lines and "use it if running, else install and
# start it" for PostgreSQL, RabbitMQ and the S3-compatible server. Sourced, not run.

set -euo pipefail

MANMAN_HOME="${MANMAN_HOME:-$HOME/.cache/manman}"
mkdir -p "$MANMAN_HOME"
# One build directory for every script, CI and the demo, outside the clone: gRPC's C core is
# built once (about 10-20 minutes on 2 cores), not once per script.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MANMAN_HOME/target}"

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (install sudo or run as root)"; fi
}

port_open() { (echo >"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

wait_port() { # port seconds what
  local i
  for ((i = 0; i < $2 * 10; i++)); do port_open "$1" && return 0; sleep 0.1; done
  die "$3 did not open port $1 within $2 s"
}

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    info "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  info "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open 5432; then info "PostgreSQL: already running on 127.0.0.1:5432"; return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -1)
    # A development box: trust loopback, as on the project's machines.
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  info "PostgreSQL: starting"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_port 5432 60 PostgreSQL
}

ensure_rabbitmq() {
  if port_open 5672; then info "RabbitMQ: already running on 127.0.0.1:5672"; return; fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  info "RabbitMQ: starting"
  as_root rabbitmq-server -detached || true
  wait_port 5672 120 RabbitMQ
  as_root rabbitmqctl await_startup >/dev/null 2>&1 || true
}

# A TLS listener on 127.0.0.1:5671 beside the plain one, with a certificate from the throwaway
# CA in $MANMAN_HOME/tls (the tests connect over amqps with it). Started at runtime through
# rabbitmqctl, so the broker is not restarted and its config file is not touched; the next
# run after a broker restart starts it again.
ensure_rabbitmq_tls() {
  if port_open 5671; then info "RabbitMQ TLS: already listening on 127.0.0.1:5671"; return; fi
  command -v openssl >/dev/null || apt_install openssl
  "$(dirname "${BASH_SOURCE[0]}")/make-test-ca" "$MANMAN_HOME/tls"
  local dir=/etc/rabbitmq/manman-tls
  as_root install -d -m 750 -o rabbitmq -g rabbitmq "$dir"
  as_root install -m 644 -o rabbitmq -g rabbitmq "$MANMAN_HOME/tls/ca.pem" "$MANMAN_HOME/tls/server.pem" "$dir/"
  as_root install -m 600 -o rabbitmq -g rabbitmq "$MANMAN_HOME/tls/server.key" "$dir/"
  info "RabbitMQ TLS: starting a listener on 127.0.0.1:5671 (CA $MANMAN_HOME/tls/ca.pem)"
  # Erlang caches PEM files by name: a CA made again under the same name must be read anew.
  as_root rabbitmqctl eval "ssl:clear_pem_cache()." >/dev/null
  as_root rabbitmqctl eval "rabbit_networking:start_ssl_listener({\"127.0.0.1\", 5671}, \
    [{cacertfile,\"$dir/ca.pem\"},{certfile,\"$dir/server.pem\"},{keyfile,\"$dir/server.key\"}, \
     {verify,verify_none},{fail_if_no_peer_cert,false}], 1)." >/dev/null
  wait_port 5671 30 "RabbitMQ TLS listener"
}

S3_PORT="${S3_PORT:-9000}"
ensure_s3() {
  if port_open "$S3_PORT"; then info "S3 (moto): already running on 127.0.0.1:$S3_PORT"; return; fi
  local venv="$MANMAN_HOME/venv"
  if [ ! -x "$venv/bin/moto_server" ]; then
    info "S3: installing moto[server] from PyPI into $venv"
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$venv"; }
    "$venv/bin/pip" install -q 'moto[server]'
  fi
  info "S3 (moto): starting on 127.0.0.1:$S3_PORT"
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$MANMAN_HOME/moto.log" 2>&1 &
  wait_port "$S3_PORT" 60 "S3 server"
}

ensure_rust_build_deps() {
  local missing=()
  command -v cc >/dev/null || missing+=(build-essential)
  command -v c++ >/dev/null || missing+=(g++)
  command -v cmake >/dev/null || missing+=(cmake)          # gRPC's C core (grpcio-sys)
  command -v protoc >/dev/null || missing+=(protobuf-compiler)
  command -v pkg-config >/dev/null || missing+=(pkg-config)   # openssl-sys: TLS for gRPC, PostgreSQL, AMQP, S3
  [ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
  command -v ccache >/dev/null || missing+=(ccache)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
  use_ccache
}

# gRPC's C core is compiled through ccache: cargo builds it once per profile, feature set and
# check/build mode (a new OUT_DIR each time: `cargo clippy`, the tests, the demo's release
# build and the benchmarks' each had their own 15-20 minute build). Cargo.toml gives
# grpcio-sys the same optimisation in every profile, so every one of those builds compiles the
# same commands, and all but the first are answered from the cache. Paths are made relative
# (CCACHE_BASEDIR, no cwd in the hash) because each build runs in a directory of its own.
use_ccache() {
  command -v ccache >/dev/null || return 0
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache
  export CCACHE_DIR="${CCACHE_DIR:-$MANMAN_HOME/ccache}" CCACHE_BASEDIR="$HOME" CCACHE_NOHASHDIR=1
  export CCACHE_SLOPPINESS=include_file_mtime,include_file_ctime,time_macros,file_macro
  export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
}

# Debian's Chromium and its WebDriver, for the dashboard's browser test.
ensure_browser() {
  command -v chromium >/dev/null && command -v chromedriver >/dev/null && return
  apt_install chromium chromium-driver
}

# mkfs.xfs: the backup tests make a small XFS image (reflinks) to take copy-on-write snapshots on.
ensure_xfs_tools() {
  command -v mkfs.xfs >/dev/null || apt_install xfsprogs
}

ensure_demo_tools() {
  command -v curl >/dev/null || apt_install curl
  command -v openssl >/dev/null || apt_install openssl   # the demo's throwaway CA
  command -v psql >/dev/null || apt_install postgresql-client
}
