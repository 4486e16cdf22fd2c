# shellcheck shell=bash
# bench/lib.sh: cluster plumbing shared by the benchmarks (bench/round_trip,
# bench/heartbeat_cost, bench/cutover) and scripts/demo.  Sourced, not run.
#
# Before sourcing, a benchmark sets BENCH (its name, for messages) and "set -euo
# pipefail", and may set BENCH_DB (the database, default postgres),
# BENCH_WORK_PREFIX (name of the temporary directory, default ua_bench) and
# BENCH_INSTALL (shared or private: where the extension is installed, see
# build_extension).  Sourcing it reads OLD, NEW (major versions, default 15 and 17)
# and KEEP, creates the temporary directory $WORK (socket directory $SOCK) and
# installs the cleanup that stops both clusters and removes $WORK on exit, failure
# or Ctrl-C (KEEP=1 keeps it).
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
# For a cutover (scripts/demo, bench/cutover): setup_cutover_pair (the contract's
# setup: peers both ways, publication, subscription, new side fenced), primary_side,
# and the write load that follows the primary: load_start, load_stop, load_commits,
# load_commits_by_side.

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

BENCH_DB=${BENCH_DB:-postgres}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/${BENCH_WORK_PREFIX:-ua_bench}.XXXXXX")
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
# Running servers: PostgreSQL refuses to run as root, so root runs them as "postgres"
# (created by Debian's postgresql packages, which scripts/pg_toolchain 15 installs:
# hence checked by prepare_db_user once the toolchains are there, not here).

DB_USER=
[ "$(id -u)" != 0 ] || DB_USER=postgres

# prepare_db_user: under root, check that $DB_USER exists and give it $WORK.
prepare_db_user() {
	[ -n "$DB_USER" ] || return 0
	getent passwd "$DB_USER" >/dev/null || die "running as root needs a \"$DB_USER\" system user"
	chown "$DB_USER" "$WORK" "$SOCK"
}

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
#
# Where it is installed depends on BENCH_INSTALL:
#   shared   (the default) into the toolchain's installation, under the lock
#            scripts/test holds, since both write the same installations;
#   private  into a private installation under $WORK (private_installation), which
#            is then the one the side runs: the shared installations are not
#            written, so there is no lock to wait for (a scripts/test run holds it
#            for all its length), and other sessions installing their own builds
#            there meanwhile cannot change what this run uses.
build_extension() {
	local side=$1 v=${VERSION[$1]} src=$WORK/build-${VERSION[$1]}
	local pg_config=${BIN[$side]}/pg_config
	if [ ! -d "$src" ]; then # same version on both sides: built once
		mkdir -p "$src"
		if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
			(cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
				tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -C "$src" -xf -
		else
			cp -a "$REPO/." "$src"
		fi
		log "building the extension for PostgreSQL $v"
		if ! make -C "$src" PG_CONFIG="$pg_config" clean >"$WORK/build-$v.log" 2>&1 ||
			! make -C "$src" PG_CONFIG="$pg_config" >>"$WORK/build-$v.log" 2>&1; then
			tail -n 30 "$WORK/build-$v.log" >&2
			die "building the extension for PostgreSQL $v failed"
		fi
		if [ "${BENCH_INSTALL:-shared}" = private ]; then
			make -C "$src" PG_CONFIG="$pg_config" DESTDIR="$WORK/stage-$v" install \
				>>"$WORK/build-$v.log" 2>&1 || {
				tail -n 30 "$WORK/build-$v.log" >&2
				die "installing the extension for PostgreSQL $v failed"
			}
		elif ! flock "${TMPDIR:-/tmp}/upgrade_assist-install.lock" \
			make -C "$src" PG_CONFIG="$pg_config" install >>"$WORK/build-$v.log" 2>&1; then
			tail -n 30 "$WORK/build-$v.log" >&2
			die "installing the extension for PostgreSQL $v failed"
		fi
	fi
	[ "${BENCH_INSTALL:-shared}" != private ] || private_installation "$side"
}

# private_installation SIDE: $WORK/pg-NN, a copy of that version's installation (its
# bin, pkglib, share and include directories and libpq, at the same paths below
# $WORK/pg-NN, so that PostgreSQL's relocation finds the library and share
# directories next to the binaries, and pg_config answers for the copy) made of hard
# links, with the extension's files of $WORK/stage-NN put in as new files
# (--remove-destination: the shared files are never written through a link).
# BIN[SIDE] becomes its bin directory.
private_installation() {
	local side=$1 v=${VERSION[$1]} pg_config=${BIN[$1]}/pg_config root=$WORK/pg-${VERSION[$1]} d
	if [ ! -d "$root" ]; then
		for d in "$("$pg_config" --bindir)" "$("$pg_config" --pkglibdir)" "$("$pg_config" --sharedir)" \
			"$("$pg_config" --includedir)"; do
			[ ! -e "$root$d" ] || continue
			mkdir -p "$root$(dirname "$d")"
			if ! cp -al "$d" "$root$d" 2>/dev/null; then # another file system
				rm -rf "$root$d"
				cp -a "$d" "$root$d"
			fi
		done
		# libpq only of the library directory (on Debian it is the system's)
		d=$("$pg_config" --libdir)
		mkdir -p "$root$d"
		cp -al "$d"/libpq.* "$root$d/" 2>/dev/null || cp -a "$d"/libpq.* "$root$d/" 2>/dev/null || true
		cp -a --remove-destination "$WORK/stage-$v/." "$root/"
	fi
	BIN[$side]=$root$("$pg_config" --bindir)
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
		-U postgres -d "$BENCH_DB" "$@"
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
# between free_port and the server's bind.  Creates $BENCH_DB unless it is postgres.
start_cluster() {
	local side=$1 attempt
	for attempt in 1 2 3; do
		PORT[$side]=$(free_port)
		if as_db "${BIN[$side]}/pg_ctl" -D "$WORK/$side" \
			-l "$WORK/$side.log" -o "-p ${PORT[$side]}" -w -t 60 start >/dev/null 2>&1; then
			RUNNING[$side]=1
			if [ "$BENCH_DB" != postgres ]; then
				"${BIN[$side]}/createdb" -h "$SOCK" -p "${PORT[$side]}" -U postgres "$BENCH_DB" ||
					die "cannot create database $BENCH_DB on the $side cluster"
			fi
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
	prepare_db_user
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
	psql_on new -v old_conn="host=$SOCK port=${PORT[old]} dbname=$BENCH_DB user=postgres" <<-'SQL'
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
	psql_on old -v port="${PORT[new]}" -v peer="$PEER" -v db="$BENCH_DB" <<-SQL
		\\set pw \`cat '$WORK/password'\`
		CREATE SERVER :"peer" FOREIGN DATA WRAPPER upgrade_assist
			OPTIONS (host '127.0.0.1', port :'port', dbname :'db');
		CREATE USER MAPPING FOR CURRENT_USER SERVER :"peer"
			OPTIONS (user 'upgrader', password :'pw');
	SQL

	(umask 077 && echo "127.0.0.1:${PORT[new]}:$BENCH_DB:upgrader:$password" >"$WORK/pgpass")
}

# ---------------------------------------------------------------------------
# A cutover pair (scripts/demo, bench/cutover): the setup of docs/setup.md
# (one setup for both directions).  The peers are new_side (defined on old) and old_side (defined on new),
# reached over TCP on 127.0.0.1 as the superuser role ua_admin with a password.

# postgresql.conf lines a cutover needs beyond init_cluster's (put them in BENCH_CONF)
# shellcheck disable=SC2034 # used by the scripts that source this file
CUTOVER_CONF="max_worker_processes = 16"

declare -A PEER_OF=([old]=new_side [new]=old_side)
declare -A OTHER=([old]=new [new]=old)

# create_cutover_schema SCALE: pgbench's tables with data at that scale on old, the
# same tables empty on new (pgbench -i -I dtp: tables and primary keys; the
# subscription copies the rows), and bench/cutover_schema.sql on both.
create_cutover_schema() {
	local scale=$1 side
	if ! "${BIN[old]}/pgbench" -i -q -s "$scale" -h "$SOCK" -p "${PORT[old]}" -U postgres \
		"$BENCH_DB" >"$WORK/pgbench-init.log" 2>&1 ||
		! "${BIN[new]}/pgbench" -i -I dtp -s "$scale" -h "$SOCK" -p "${PORT[new]}" -U postgres \
			"$BENCH_DB" >>"$WORK/pgbench-init.log" 2>&1; then
		tail "$WORK/pgbench-init.log" >&2
		die "pgbench -i failed"
	fi
	for side in old new; do
		psql_on "$side" -f "$HERE/cutover_schema.sql"
	done
}

# setup_cutover_pair: with both clusters running and the user's tables created on
# both (empty on new): the extension and the role ua_admin on both, peers and user
# mappings both ways, publication "upgrade" FOR ALL TABLES on old, subscription
# "upgrade" on new (waits until every table is ready), then the new side fenced.
# The password is generated here and kept in $WORK/password (mode 600), read by psql
# from that file so that it is never on a command line.
setup_cutover_pair() {
	local side
	(umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$WORK/password")
	for side in old new; do
		psql_on "$side" -v other_port="${PORT[${OTHER[$side]}]}" -v peer="${PEER_OF[$side]}" \
			-v db="$BENCH_DB" <<-SQL
			\\set pw \`cat '$WORK/password'\`
			SET client_min_messages = warning;
			CREATE EXTENSION upgrade_assist;
			CREATE ROLE ua_admin SUPERUSER LOGIN PASSWORD :'pw';
			CREATE SERVER :"peer" FOREIGN DATA WRAPPER upgrade_assist
				OPTIONS (host '127.0.0.1', port :'other_port', dbname :'db');
			CREATE USER MAPPING FOR CURRENT_USER SERVER :"peer"
				OPTIONS (user 'ua_admin', password :'pw');
		SQL
	done
	psql_on old -c "CREATE PUBLICATION upgrade FOR ALL TABLES"
	psql_on new -v old_port="${PORT[old]}" -v db="$BENCH_DB" <<-SQL
		\\set pw \`cat '$WORK/password'\`
		SET client_min_messages = warning;
		SELECT format('host=127.0.0.1 port=%s dbname=%s user=ua_admin password=%s',
		              :'old_port', :'db', :'pw') AS conn \\gset
		CREATE SUBSCRIPTION upgrade CONNECTION :'conn' PUBLICATION upgrade;
	SQL
	log "waiting for the initial copy"
	wait_until new 600 "SELECT count(*) > 0 AND bool_and(srsubstate = 'r') FROM pg_subscription_rel"
	psql_on new -c "SELECT FROM upgrade_assist.fence('new side: until cutover')" >/dev/null
}

# primary_side SIDE...: print the first of these sides that is not fenced; fail when
# all are (in the middle of a cutover) or cannot be asked.
primary_side() {
	local side
	for side in "$@"; do
		if [ "$(psql_on "$side" -Atc 'SELECT fenced FROM upgrade_assist.fence_status' 2>/dev/null)" = f ]; then
			echo "$side"
			return 0
		fi
	done
	return 1
}

# ---------------------------------------------------------------------------
# Write load that follows the primary.
#
# A pgbench client that meets the fence (SQLSTATE 25006) or is terminated by the
# fence's drain is aborted: pgbench retries only serialization failures and
# deadlocks, and once all its clients are aborted it exits.  The driver then asks
# which side is unfenced (every 10 ms while a cutover has both fenced) and starts a
# new pgbench there, as an application's connection pool would reconnect.  Each
# pgbench logs every transaction with its completion time (--log), so the commits
# the clients saw acknowledged, and the gaps between them, can be read afterwards
# (load_commits); those gaps include the driver's reaction (one psql per side and
# look) and pgbench's connection set-up, as an application's would.
#
# Files in $LOAD_DIR: driver.log (one line per pgbench started and ended:
# epoch seconds, start|exit, number, side, exit status), pgbench.N.log (its output,
# with the clients' errors), tx.N.* (its transaction logs).

LOAD_DIR=$WORK/load
LOAD_PID=

# load_start CLIENTS THREADS MAX_SECONDS PGBENCH_ARGS...: start the load in the
# background; it stops after MAX_SECONDS at the latest (pgbench -T).
load_start() {
	local clients=$1 threads=$2 max=$3
	shift 3
	mkdir -p "$LOAD_DIR"
	rm -f "$LOAD_DIR/stop"
	load_driver "$clients" "$threads" $((SECONDS + max)) "$@" >>"$LOAD_DIR/driver.log" 2>&1 &
	LOAD_PID=$!
}

# load_driver CLIENTS THREADS DEADLINE PGBENCH_ARGS...: the loop load_start runs
# in the background (a subshell: the EXIT trap is not inherited).
load_driver() {
	local clients=$1 threads=$2 deadline=$3 n=0 prev=new side rc pid
	shift 3
	while [ ! -e "$LOAD_DIR/stop" ] && [ "$SECONDS" -lt "$deadline" ]; do
		# after a fence, the other side is the likely primary: ask it first
		if ! side=$(primary_side "${OTHER[$prev]}" "$prev"); then
			sleep 0.01
			continue
		fi
		# the side it just left is still unfenced: pgbench failed for another
		# reason (see load_aborts); do not spin
		[ "$n" = 0 ] || [ "$side" != "$prev" ] || sleep 0.2
		n=$((n + 1))
		echo "$(date +%s.%N) start $n $side"
		"${BIN[new]}/pgbench" -n -c "$clients" -j "$threads" -T $((deadline - SECONDS)) \
			--log --log-prefix="$LOAD_DIR/tx.$n" "$@" \
			-h "$SOCK" -p "${PORT[$side]}" -U postgres "$BENCH_DB" >"$LOAD_DIR/pgbench.$n.log" 2>&1 &
		pid=$!
		echo "$pid" >"$LOAD_DIR/pgbench.pid"
		rc=0
		wait "$pid" || rc=$?
		echo "$(date +%s.%N) exit $n $side $rc"
		prev=$side
	done
	rm -f "$LOAD_DIR/pgbench.pid"
}

# load_stop: end the load and wait for it.  pgbench stops cleanly on SIGALRM (its -T
# timer: clients finish the transaction in hand, the logs are flushed); the signal
# is repeated in case the driver was just starting a new pgbench.
load_stop() {
	local pid
	[ -n "$LOAD_PID" ] || return 0
	touch "$LOAD_DIR/stop"
	while kill -0 "$LOAD_PID" 2>/dev/null; do
		pid=$(cat "$LOAD_DIR/pgbench.pid" 2>/dev/null || true)
		[ -z "$pid" ] || kill -ALRM "$pid" 2>/dev/null || true
		sleep 0.1
	done
	wait "$LOAD_PID" 2>/dev/null || true
	LOAD_PID=
}

# load_commits_by_side: print the completion time (epoch seconds) and the side of
# every transaction the load's clients saw committed, "TIME SIDE" per line, sorted
# (the side of pgbench run N is in driver.log's "start N SIDE" line).
load_commits_by_side() {
	local files=("$LOAD_DIR"/tx.*)
	[ -e "${files[0]}" ] || return 0
	awk '
		FNR == NR { if ($2 == "start") side[$3] = $4; next }
		FNR == 1 { n = FILENAME; sub(/.*\/tx\./, "", n); sub(/\..*/, "", n) }
		$3 ~ /^[0-9]+$/ { printf "%d.%06d %s\n", $5, $6, side[n] }' \
		"$LOAD_DIR/driver.log" "${files[@]}" | sort -n
}

# load_commits: print the completion times (epoch seconds) of every transaction the
# load's clients saw committed, sorted.
load_commits() {
	load_commits_by_side | cut -d ' ' -f 1
}

# load_aborts: the clients' errors of the load, counted by kind: "fence" (SQLSTATE
# 25006, the write fence), "terminated" (ended by the fence's drain) and "other"
# (anything else: a bug, to be looked at in $LOAD_DIR/pgbench.N.log).
load_aborts() {
	cat "$LOAD_DIR"/pgbench.*.log 2>/dev/null | awk '
		/client [0-9]+ .*aborted/ {
			if ($0 ~ /write fence is up/) fence++
			else if ($0 ~ /FATAL|terminat|backend died|connection/) term++
			else other++
		}
		END { printf "fence %d terminated %d other %d\n", fence, term, other }'
}

# ---------------------------------------------------------------------------
# Many sequenced tables (bench/cutover TABLES=...).

# create_many_tables FROM TO: tables public.many_FROM .. public.many_TO, each
# "(id bigserial PRIMARY KEY, v int)" (its own sequence), created empty on both
# sides, in transactions of 200 tables (the lock table), on the fenced side through
# an exempt session; then the subscription of the fenced side is refreshed without
# copy (the tables are empty) and waited for.
create_many_tables() {
	local from=$1 to=$2 side standby sub
	for side in old new; do
		psql_on "$side" -v from="$from" -v to="$to" <<-'SQL' >/dev/null
			SELECT upgrade_assist.fence_exempt_session();
			SET bench.lo = :'from';
			SET bench.hi = :'to';
			DO $$
			BEGIN
			    FOR i IN current_setting('bench.lo')::int .. current_setting('bench.hi')::int LOOP
			        EXECUTE format('CREATE TABLE public.%I (id bigserial PRIMARY KEY, v int)',
			                       'many_' || i);
			        IF i % 200 = 0 THEN
			            COMMIT;
			        END IF;
			    END LOOP;
			END $$;
		SQL
	done
	standby=$(primary_side old new) || die "no side is unfenced"
	standby=${OTHER[$standby]}
	sub=$(psql_on "$standby" -Atc "SELECT subname FROM pg_subscription WHERE subenabled")
	psql_on "$standby" -c "SELECT upgrade_assist.fence_exempt_session()" \
		-c "ALTER SUBSCRIPTION \"$sub\" REFRESH PUBLICATION WITH (copy_data = false)" >/dev/null
	wait_until "$standby" 600 "SELECT bool_and(srsubstate = 'r') FROM pg_subscription_rel"
}

# touch_many_tables SIDE N: one row into each of many_1 .. many_N on SIDE, in
# transactions of 500 tables.
touch_many_tables() {
	local side=$1 n=$2
	psql_on "$side" -v n="$n" <<-'SQL' >/dev/null
		SET bench.n = :'n';
		DO $$
		BEGIN
		    FOR i IN 1 .. current_setting('bench.n')::int LOOP
		        EXECUTE format('INSERT INTO public.%I (v) VALUES (0)', 'many_' || i);
		        IF i % 500 = 0 THEN
		            COMMIT;
		        END IF;
		    END LOOP;
		END $$;
	SQL
}
