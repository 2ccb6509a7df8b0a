#!/usr/bin/env bash
# PostgreSQL 15 + pgvector 0.8.0 for sift's PostgreSQL backend: install, and throwaway servers
# for tests and benchmarks.
#
#   scripts/postgres.sh install            PostgreSQL 15 from Debian, pgvector 0.8.0 built from
#                                          Debian's own (trixie) source package; idempotent
#   scripts/postgres.sh start DIR [--replica | --replicas=N]
#                                          a new primary under DIR (and streaming replicas of
#                                          it), listening on 127.0.0.1 only, trust auth, private
#                                          socket directory; prints shell assignments:
#                                            SIFT_PG_PRIMARY=postgres://postgres@127.0.0.1:P/sift
#                                            SIFT_PG_REPLICA=postgres://postgres@127.0.0.1:Q/sift
#                                            (SIFT_PG_REPLICA2=…, … with --replicas=N)
#                                            SIFT_PG_DIR=DIR
#   scripts/postgres.sh stop DIR           stops what `start DIR` started (fast shutdown)
#   (SIFT_PG_SHARED_BUFFERS sets the servers' shared_buffers; default 128MB, enough for tests)
#   scripts/postgres.sh kill DIR [primary|replica|replicaN]
#                                          SIGKILL the server (crash tests), leaving its data
#   scripts/postgres.sh restart DIR [primary|replica]
#                                          starts a stopped or killed server again (crash recovery)
#
# Why build pgvector: Debian bookworm packages PostgreSQL 15 but not pgvector. Debian trixie's
# source package pgvector 0.8.0-1 is fetched through a temporary deb-src list (nothing is added
# to the system's sources), its upstream tarball checked against a pinned sha256, and built with
# PGXS against PostgreSQL 15 (about 5 s on 2 cores). Tests start and stop their own servers
# through `start`/`stop`; nothing relies on a server left running.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
PGVECTOR_SHA256=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0

die() { echo "postgres.sh: $*" >&2; exit 1; }

# as_postgres CMD...: PostgreSQL refuses to run as root; root runs it as the postgres user.
as_postgres() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

installed() {
  [[ -x $PG_BIN/postgres && -f /usr/share/postgresql/15/extension/vector.control ]]
}

install() {
  if installed && command -v pkill >/dev/null; then
    echo "postgres.sh: PostgreSQL 15 and pgvector present"
    return
  fi
  [[ $(id -u) == 0 ]] || die "installing needs root (apt-get): run as root, or install PostgreSQL 15 and pgvector yourself"
  command -v apt-get >/dev/null || die "installing needs Debian's apt-get; install PostgreSQL 15 and pgvector 0.8 yourself"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    postgresql-15 postgresql-server-dev-15 dpkg-dev make gcc procps >/dev/null
  local work; work="$(mktemp -d)"
  # A private apt configuration that knows only trixie's source index.
  cat >"$work/trixie.sources" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  mkdir -p "$work/lists/partial"
  local apt=(apt-get -qq -o "Dir::Etc::SourceList=$work/trixie.sources"
    -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$work/lists")
  "${apt[@]}" update
  (cd "$work" && "${apt[@]}" source --download-only pgvector=0.8.0-1 2>/dev/null)
  echo "$PGVECTOR_SHA256  $work/pgvector_0.8.0.orig.tar.gz" | sha256sum --check --quiet ||
    die "pgvector_0.8.0.orig.tar.gz does not match its pinned sha256"
  tar -xzf "$work/pgvector_0.8.0.orig.tar.gz" -C "$work"
  make -s -C "$work/pgvector-0.8.0" -j"$(nproc)" PG_CONFIG="$PG_BIN/pg_config" >/dev/null 2>&1 ||
    die "building pgvector failed (make -C $work/pgvector-0.8.0 shows why)"
  make -s -C "$work/pgvector-0.8.0" install PG_CONFIG="$PG_BIN/pg_config" >/dev/null
  rm -rf "$work"
  installed || die "pgvector did not install"
  echo "postgres.sh: installed PostgreSQL 15 and pgvector 0.8.0"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# configure DATA PORT SOCKDIR: settings for a test server (fsync stays on: crash tests rely on it).
configure() {
  cat >>"$1/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = '$3'
wal_level = replica
max_wal_senders = 4
hot_standby = on
hot_standby_feedback = on
shared_buffers = ${SIFT_PG_SHARED_BUFFERS:-128MB}
max_connections = 200
logging_collector = off
EOF
}

start_server() {
  as_postgres "$PG_BIN/pg_ctl" -D "$1" -l "$1.log" -w -t 60 start >/dev/null ||
    die "the server in $1 did not start; see $1.log"
}

start() {
  local dir="$1" replica="${2:-}"
  installed || die "PostgreSQL 15 with pgvector is not installed: run scripts/postgres.sh install"
  [[ -e $dir/primary ]] && die "$dir/primary exists; stop and remove it first"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [[ $(id -u) == 0 ]] && chown postgres "$dir" && chmod 755 "$dir"
  local port; port="$(free_port)"
  as_postgres "$PG_BIN/initdb" -D "$dir/primary" -U postgres -A trust --no-sync -E UTF8 \
    --locale=C.UTF-8 >"$dir/primary.initdb.log" 2>&1 || die "initdb failed; see $dir/primary.initdb.log"
  configure "$dir/primary" "$port" "$dir"
  echo "host replication postgres 127.0.0.1/32 trust" >>"$dir/primary/pg_hba.conf"
  start_server "$dir/primary"
  as_postgres "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres sift
  echo "SIFT_PG_PRIMARY=postgres://postgres@127.0.0.1:$port/sift"
  local replicas=0 i node rport
  case "$replica" in
    "") ;;
    --replica) replicas=1 ;;
    --replicas=*) replicas="${replica#--replicas=}" ;;
    *) die "unknown option $replica (--replica or --replicas=N)" ;;
  esac
  for ((i = 1; i <= replicas; i++)); do
    node=replica; ((i > 1)) && node="replica$i"
    rport="$(free_port)"
    as_postgres "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$dir/$node" \
      -R -X stream --checkpoint=fast >/dev/null
    sed -i "s/^port = $port\$/port = $rport/" "$dir/$node/postgresql.conf"
    start_server "$dir/$node"
    if ((i == 1)); then
      echo "SIFT_PG_REPLICA=postgres://postgres@127.0.0.1:$rport/sift"
    else
      echo "SIFT_PG_REPLICA$i=postgres://postgres@127.0.0.1:$rport/sift"
    fi
  done
  echo "SIFT_PG_DIR=$dir"
}

stop() {
  local dir="$1" node
  for node in "$dir"/replica* "$dir"/primary; do
    node="$(basename "$node")"
    if [[ -f $dir/$node/postmaster.pid ]]; then
      as_postgres "$PG_BIN/pg_ctl" -D "$dir/$node" -m fast -w stop >/dev/null 2>&1 || true
    fi
  done
}

# kill_server DIR NODE: SIGKILL the postmaster and every backend of it at once (a machine
# crash, as the server sees it), then wait until all of them are gone.
kill_server() {
  local pidfile="$1/${2:-primary}/postmaster.pid" pid
  [[ -f $pidfile ]] || die "no server running in $1/${2:-primary}"
  pid="$(head -1 "$pidfile")"
  kill -STOP "$pid" 2>/dev/null || true
  pkill -9 -P "$pid" || true
  kill -9 "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null || pgrep -P "$pid" >/dev/null; do sleep 0.05; done
}

case "${1:-}" in
  install) install ;;
  start) [[ $# -ge 2 ]] || die "usage: postgres.sh start DIR [--replica | --replicas=N]"; start "$2" "${3:-}" ;;
  stop) [[ $# -ge 2 ]] || die "usage: postgres.sh stop DIR"; stop "$2" ;;
  kill) [[ $# -ge 2 ]] || die "usage: postgres.sh kill DIR [primary|replica]"; kill_server "$2" "${3:-}" ;;
  restart)
    [[ $# -ge 2 ]] || die "usage: postgres.sh restart DIR [primary|replica]"
    start_server "$2/${3:-primary}" ;;
  -h | --help | "") sed -n '2,24p' "$0" ;;
  *) die "unknown command $1 (see --help)" ;;
esac
