#!/usr/bin/env bash
# postgres-test-cluster.sh starts a private, throwaway PostgreSQL cluster for
# the tests and prints the DSN that reaches it:
#
#	eval "$(scripts/postgres-test-cluster.sh start)"   # exports HERALD_TEST_POSTGRES_DSN, HERALD_TEST_POSTGRES_DIR
#	scripts/postgres-test-cluster.sh stop "$HERALD_TEST_POSTGRES_DIR"
#
# It installs PostgreSQL with apt-get when initdb/pg_ctl are missing, creates
# the cluster in a temporary directory (data and unix socket both inside it),
# listens on no TCP port, and runs the server as the invoking user, or as the
# postgres user when invoked as root (PostgreSQL refuses to run as root).
# Durability settings are the defaults: the tests measure the real thing.
set -euo pipefail

log() { printf 'postgres-test-cluster: %s\n' "$*" >&2; }

find_bin() {
	local name=$1
	if command -v "$name" >/dev/null 2>&1; then
		command -v "$name"
		return
	fi
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$d/$name" ]; then
			echo "$d/$name"
			return
		fi
	done
	return 1
}

start() {
	if ! find_bin initdb >/dev/null || ! find_bin pg_ctl >/dev/null; then
		log "initdb/pg_ctl not found: installing postgresql with apt-get"
		if [ "$(id -u)" -ne 0 ]; then
			log "not root: install the postgresql package (apt-get install -y postgresql) and retry"
			exit 1
		fi
		DEBIAN_FRONTEND=noninteractive apt-get update >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
	fi
	local initdb pg_ctl
	initdb=$(find_bin initdb)
	pg_ctl=$(find_bin pg_ctl)

	local dir run=()
	dir=$(mktemp -d "${TMPDIR:-/tmp}/herald-pg.XXXXXX")
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
		chown postgres "$dir"
		chmod 700 "$dir"
		run=(runuser -u postgres --)
	fi
	"${run[@]}" "$initdb" -D "$dir/data" -U herald --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		exit 1
	}
	# No TCP: the socket in $dir is the only way in.
	"${run[@]}" "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-c listen_addresses='' -k $dir -c max_connections=200 -c fsync=on" start >&2 || {
		cat "$dir/server.log" >&2
		exit 1
	}
	log "started in $dir"
	printf 'export HERALD_TEST_POSTGRES_DIR=%q\n' "$dir"
	printf 'export HERALD_TEST_POSTGRES_DSN=%q\n' "host=$dir user=herald dbname=postgres sslmode=disable"
}

stop() {
	local dir=${1:?usage: $0 stop DIR}
	local pg_ctl run=()
	pg_ctl=$(find_bin pg_ctl)
	[ "$(id -u)" -eq 0 ] && run=(runuser -u postgres --)
	if [ -d "$dir/data" ]; then
		"${run[@]}" "$pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
	fi
	rm -rf "$dir"
}

case "${1:-}" in
start) start ;;
stop) shift; stop "$@" ;;
*)
	echo "usage: $0 start | stop DIR" >&2
	exit 2
	;;
esac
