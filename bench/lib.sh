# shellcheck shell=bash
# bench/lib.sh: cluster plumbing shared by the benchmarks (bench/round_trip,
# bench/heartbeat_cost).  Sourced, not run.
#
# Before sourcing, a benchmark sets BENCH (its name, for messages) and "set -euo
# pipefail".  Sourcing it reads OLD, NEW (major versions, default 15 and 17) and KEEP,
# creates the temporary directory $WORK (socket directory $SOCK) and installs the
# cleanup that stops both clusters and removes $WORK on exit, failure or Ctrl-C.
#
# Hooks a benchmark may set after sourcing:
#   BENCH_CLEANUP     name of a function cleanup runs first (stop a load, say)
#   BENCH_LOG_TAILS   files in $WORK whose tails are printed when the run fails
#                     (default: old.log new.log)
#   BENCH_CONF        extra postgresql.conf lines for both clusters (init_cluster)
#
# Functions: toolchain, build_extension, check_server_access, as_db, free_port,
# psql_on, init_cluster, start_cluster, wait_until, setup_subscription, setup_peer,
# and prepare_clusters, which runs the usual sequence up to two started clusters.

OLD=${OLD:-15}
NEW=${NEW:-17}
KEEP=${KEEP:-0}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PEER=new_peer

BENCH_CLEANUP=${BENCH_CLEANUP:-}
BENCH_LOG_TAILS=${BENCH_LOG_TAILS:-old.log new.log}
BENCH_CONF=${BENCH_CONF:-}

log() { echo "$BENCH: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Per-cluster state, indexed by "old" and "new".
declare -A VERSION=([old]=$OLD [new]=$NEW)
declare -A BIN=()       # bin directory of that version (clients, pg_config)
declare -A PORT=()
declare -A RUNNING=()

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ua_bench.XXXXXX")
SOCK=$WORK/sock
mkdir -p "$SOCK"

# ---------------------------------------------------------------------------
# Cleanup: the benchmark's own hook, stop both clusters, print log tails on failure,
# remove $WORK.

cleanup() {
	local rc=$? f
	trap - EXIT INT TERM
	if [ -n "$BENCH_CLEANUP" ]; then
		"$BENCH_CLEANUP" || true
	fi
	for side in new old; do
		if [ -n "${RUNNING[$side]:-}" ]; then
			as_db "${BIN[$side]}/pg_ctl" -D "$WORK/$side" -m immediate -w stop >/dev/null 2>&1 || true
		fi
	done
	if [ "$rc" != 0 ]; then
		for f in $BENCH_LOG_TAILS; do
			[ -s "$WORK/$f" ] || continue
			echo "---- tail of $f" >&2
			tail -n 12 "$WORK/$f" >&2
		done
	fi
	if [ "$KEEP" = 1 ]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Running servers: PostgreSQL refuses to run as root, so root runs them as "postgres".

DB_USER=
if [ "$(id -u)" = 0 ]; then
	DB_USER=postgres
	getent passwd "$DB_USER" >/dev/null || die "running as root needs a \"$DB_USER\" system user"
	chown "$DB_USER" "$WORK" "$SOCK"
fi

# as_db CMD...: run a server-side command (initdb, pg_ctl) as the user owning the data.
as_db() {
	if [ -n "$DB_USER" ]; then
		(cd "$WORK" && runuser -u "$DB_USER" -- "$@")
	else
		"$@"
	fi
}

# ---------------------------------------------------------------------------
# Toolchain and extension build.

# toolchain NN: print the bin directory of PostgreSQL NN.
toolchain() {
	"$REPO/scripts/pg_toolchain" "$1" || die "no PostgreSQL $1 toolchain"
}

# build_extension SIDE: build and install the extension for that side's version, in a
# private copy of the working tree (in a git checkout: tracked and untracked files,
# ignored ones left out), so that the checkout and its build products are left alone.
# Installing takes the lock scripts/test holds, since both write the same installations.
build_extension() {
	local side=$1 v=${VERSION[$1]} src=$WORK/build-${VERSION[$1]}
	local pg_config=${BIN[$side]}/pg_config
	[ -d "$src" ] && return 0 # same version on both sides: built once
	mkdir -p "$src"
	if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		(cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
			tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -C "$src" -xf -
	else
		cp -a "$REPO/." "$src"
	fi
	log "building the extension for PostgreSQL $v"
	if ! make -C "$src" PG_CONFIG="$pg_config" clean >"$WORK/build-$v.log" 2>&1 ||
		! make -C "$src" PG_CONFIG="$pg_config" >>"$WORK/build-$v.log" 2>&1 ||
		! flock "${TMPDIR:-/tmp}/upgrade_assist-install.lock" \
			make -C "$src" PG_CONFIG="$pg_config" install >>"$WORK/build-$v.log" 2>&1; then
		tail -n 30 "$WORK/build-$v.log" >&2
		die "building or installing the extension for PostgreSQL $v failed"
	fi
}

# check_server_access SIDE: when root runs the servers as $DB_USER, that user must be
# able to run that version's binaries (scripts/pg_toolchain builds under
# /var/cache/upgrade_assist for root for this reason).
check_server_access() {
	local bin=${BIN[$1]}
	if [ -n "$DB_USER" ] && ! runuser -u "$DB_USER" -- test -x "$bin/postgres" 2>/dev/null; then
		die "user $DB_USER cannot run $bin/postgres; use an installation it can read"
	fi
}

# ---------------------------------------------------------------------------
# Clusters.

# free_port: print a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# psql_on SIDE ARGS...: psql as the bootstrap superuser over the unix socket.
psql_on() {
	local side=$1
	shift
	"${BIN[$side]}/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "${PORT[$side]}" \
		-U postgres -d postgres "$@"
}

# init_cluster SIDE: initdb and configure $WORK/SIDE.
init_cluster() {
	local side=$1 data=$WORK/$1
	as_db "${BIN[$side]}/initdb" -D "$data" -U postgres -N -E UTF8 --locale=C \
		--auth-local=trust --auth-host=scram-sha-256 >"$WORK/initdb-$side.log" 2>&1 ||
		{ cat "$WORK/initdb-$side.log" >&2; die "initdb of the $side cluster failed"; }
	cat >>"$data/postgresql.conf" <<-EOF

		# bench/$BENCH
		listen_addresses = '127.0.0.1'
		unix_socket_directories = '$SOCK'
		wal_level = logical
		shared_preload_libraries = 'upgrade_assist'
		fsync = on
		synchronous_commit = on
		password_encryption = 'scram-sha-256'
		max_wal_senders = 10
		max_replication_slots = 10
	EOF
	if [ -n "$BENCH_CONF" ]; then
		printf '%s\n' "$BENCH_CONF" >>"$data/postgresql.conf"
	fi
}

# start_cluster SIDE: start on a free port; a few attempts in case the port was taken
# between free_port and the server's bind.
start_cluster() {
	local side=$1 attempt
	for attempt in 1 2 3; do
		PORT[$side]=$(free_port)
		if as_db "${BIN[$side]}/pg_ctl" -D "$WORK/$side" \
			-l "$WORK/$side.log" -o "-p ${PORT[$side]}" -w -t 60 start >/dev/null 2>&1; then
			RUNNING[$side]=1
			log "$side cluster: PostgreSQL $(psql_on "$side" -Atc 'SHOW server_version'), port ${PORT[$side]}"
			return
		fi
		log "$side cluster did not start on port ${PORT[$side]} (attempt $attempt)"
	done
	die "the $side cluster does not start"
}

# wait_until SIDE TIMEOUT_S QUERY: poll QUERY on SIDE until it returns "t".
wait_until() {
	local side=$1 timeout=$2 query=$3 deadline
	deadline=$((SECONDS + timeout))
	while [ "$(psql_on "$side" -Atc "$query")" != t ]; do
		[ "$SECONDS" -lt "$deadline" ] || die "timed out after ${timeout}s waiting for: $query"
		sleep 0.2
	done
}

# prepare_clusters: toolchains, the extension built and installed for both versions,
# both clusters created and started.
prepare_clusters() {
	local side
	for side in old new; do
		BIN[$side]=$(toolchain "${VERSION[$side]}")
	done
	for side in old new; do
		build_extension "$side"
		check_server_access "$side"
	done
	for side in old new; do
		init_cluster "$side"
		start_cluster "$side"
	done
}

# ---------------------------------------------------------------------------
# Replication and peer.

# setup_subscription: a FOR ALL TABLES publication bench_pub on old and subscription
# bench_sub on new copying the data (the tables must exist on new already); waits for
# the initial copy.
setup_subscription() {
	psql_on old -c "CREATE PUBLICATION bench_pub FOR ALL TABLES"
	psql_on new -v old_conn="host=$SOCK port=${PORT[old]} dbname=postgres user=postgres" <<-'SQL'
		SET client_min_messages = warning;
		CREATE SUBSCRIPTION bench_sub CONNECTION :'old_conn' PUBLICATION bench_pub
			WITH (copy_data = true);
	SQL
	log "waiting for the initial copy"
	wait_until new 600 "SELECT count(*) > 0 AND bool_and(srsubstate IN ('r', 's'))
	                    FROM pg_subscription_rel"
}

# setup_peer: the new cluster becomes peer $PEER of the old one, reached over TCP with
# a password, as a DBA would set it up: role upgrader (member of pg_monitor, reads the
# extension's tables) on new, foreign server and user mapping on old.  The password
# is also written to the passfile $WORK/pgpass for clients of the benchmark.
setup_peer() {
	local password
	password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
	# psql reads it from a file (\set pw `cat`), so that it is never on a command line.
	(umask 077 && printf '%s' "$password" >"$WORK/password")

	psql_on new <<-SQL
		\\set pw \`cat '$WORK/password'\`
		CREATE ROLE upgrader LOGIN PASSWORD :'pw';
		GRANT pg_monitor TO upgrader;
		GRANT USAGE ON SCHEMA upgrade_assist TO upgrader;
		GRANT SELECT ON ALL TABLES IN SCHEMA upgrade_assist TO upgrader;
	SQL
	psql_on old -v port="${PORT[new]}" -v peer="$PEER" <<-SQL
		\\set pw \`cat '$WORK/password'\`
		CREATE SERVER :"peer" FOREIGN DATA WRAPPER upgrade_assist
			OPTIONS (host '127.0.0.1', port :'port', dbname 'postgres');
		CREATE USER MAPPING FOR CURRENT_USER SERVER :"peer"
			OPTIONS (user 'upgrader', password :'pw');
	SQL

	(umask 077 && echo "127.0.0.1:${PORT[new]}:postgres:upgrader:$password" >"$WORK/pgpass")
}
