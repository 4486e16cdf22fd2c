/*-------------------------------------------------------------------------
 *
 * cutover_steps.c
 *	  The cutover worker's steps (the worker's run, abort and cleanup are in
 *	  cutover_worker.c, the caller and the shared state in cutover.c).
 *
 * Every step runs in the cutover worker, throws on failure, and writes what
 * its row shows into detail.  Local work runs in short transactions of its
 * own (ua_xact_begin/ua_xact_end), remote work through remote.c within the
 * attempt's deadline (ua_cutover_remote*); the worker's session on the peer
 * writes through the peer's fence (fence_exempt_session()).  What each step
 * leaves behind is recorded in the run state (UaRun), so that the abort
 * undoes exactly that; the run state also carries the worker's memory
 * context.
 *
 * Locking: the shared state (cutover.h) under its own LWLock, taken only
 * for short writes (UA_CUTOVER_SET).
 *
 * IDENTIFICATION
 *	  src/cutover_steps.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "cutover.h"
#include "cutover_command.h"
#include "fence.h"
#include "marker.h"
#include "preflight.h"
#include "remote.h"
#include "sequences.h"
#include "util.h"

/* ---------------------------------------------------------------------------
 * Statements on the peer
 * ---------------------------------------------------------------------------
 */

/*
 * ua_cutover_remote_ext
 *		One statement on the peer (ua_peer_query_ext) by deadline; may_retry
 *		as there.  Looking the peer up reads catalogs, so a transaction is
 *		started when none is open.  Throws the peer's error.
 */
PGresult *
ua_cutover_remote_ext(UaRun *run, const char *sql, int nparams, const char *const *values,
		  TimestampTz deadline, bool may_retry)
{
	bool		own = !IsTransactionState();
	PGresult   *res;

	if (own)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
	}
	res = ua_peer_query_ext(run->peer, sql, nparams, values, deadline, may_retry);
	if (own)
	{
		CommitTransactionCommand();
		MemoryContextSwitchTo(run->cxt);
	}
	return res;
}

/* One remote statement within the attempt's deadline. */
PGresult *
ua_cutover_remote(UaRun *run, const char *sql, int nparams, const char *const *values)
{
	return ua_cutover_remote_ext(run, sql, nparams, values, run->deadline, true);
}

/* The same, with its own (abort-time) deadline, result discarded. */
void
ua_cutover_remote_until(UaRun *run, const char *sql, int nparams, const char *const *values,
			TimestampTz deadline)
{
	PQclear(ua_cutover_remote_ext(run, sql, nparams, values, deadline, true));
}

/*
 * ua_cutover_remote_exempt
 *		Make the worker's session on the peer write through the peer's fence
 *		(the peer is fenced until the point of no return).
 */
void
ua_cutover_remote_exempt(UaRun *run, TimestampTz deadline)
{
	ua_cutover_remote_until(run, "SELECT upgrade_assist.fence_exempt_session()", 0, NULL,
				deadline);
}

/*
 * ua_marker_on_peer
 *		ua_marker_wait (marker.c) from the worker, which needs a transaction
 *		around it for the peer lookup: microseconds from start until this
 *		origin's marker seq was on the peer, -1 when the deadline came first.
 */
static int64
ua_marker_on_peer(UaRun *run, int64 seq, TimestampTz start, TimestampTz deadline)
{
	int64		waited;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	waited = ua_marker_wait(run->peer, seq, start, deadline, false);
	CommitTransactionCommand();
	MemoryContextSwitchTo(run->cxt);
	return waited;
}

/*
 * ua_reverse_is_prepared_leftover
 *		Does publication upgrade_assist_cutover on the peer exist and
 *		publish no operation?  Prepare creates it so, and only the blackout
 *		makes it publish: a reverse subscription here whose publication is
 *		still in that state has never carried a change.
 */
static bool
ua_reverse_is_prepared_leftover(UaRun *run)
{
	const char *vals[1] = {UA_REVERSE_NAME};
	PGresult   *res;
	bool		prepared;

	res = ua_cutover_remote(run,
				"SELECT NOT (pubinsert OR pubupdate OR pubdelete OR pubtruncate)"
				"  FROM pg_catalog.pg_publication WHERE pubname = $1",
				1, vals);
	prepared = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return prepared;
}

/* ---------------------------------------------------------------------------
 * The steps.  Each throws on failure; detail gets what the row shows.
 * ---------------------------------------------------------------------------
 */

/*
 * ua_cutover_check_basics
 *		The checks both modes begin with: this cluster is not fenced; the
 *		peer has the extension, is another cluster, and is fenced.  Notes
 *		the peer's version in run.
 */
void
ua_cutover_check_basics(UaRun *run)
{
	PGresult   *res;
	bool		other;
	bool		fenced;

	if (ua_fence_is_up())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this cluster is fenced"),
				 errhint("cutover() runs on the cluster that is primary now; to go back, call it on the other cluster.")));

	/* Two statements: fence_status exists only where the extension does. */
	res = ua_cutover_remote(run,
				"SELECT pg_catalog.current_setting('server_version_num'),"
				" (SELECT system_identifier FROM pg_catalog.pg_control_system())::text,"
				" (SELECT extversion FROM pg_catalog.pg_extension"
				"   WHERE extname = 'upgrade_assist')",
				0, NULL);
	run->peer_version = atoi(PQgetvalue(res, 0, 0));
	if (PQgetisnull(res, 0, 2))
	{
		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension upgrade_assist is not installed in the database of peer \"%s\"",
						run->peer)));
	}
	other = strtoi64(PQgetvalue(res, 0, 1), NULL, 10) != ua_origin();
	PQclear(res);
	if (!other)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("peer \"%s\" is this cluster", run->peer)));

	res = ua_cutover_remote(run, "SELECT fenced FROM upgrade_assist.fence_status", 0, NULL);
	fenced = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!fenced)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("peer \"%s\" is not fenced", run->peer),
				 errdetail("Writes on the peer before the cutover would never reach this cluster."),
				 errhint("Fence the new side until its cutover: SELECT upgrade_assist.fence('until cutover') there.")));
}

/*
 * checks: this side is primary, the peer runs the extension and is fenced,
 * exactly one enabled subscription there consumes a slot of this database
 * with a running apply worker, the marker table is in its publications, no
 * leftover reverse subscription here; no other database of this cluster
 * replicates to the peer (cutover_multidb.c); then the preflight with the peer
 * (preflight.c): an error finding whose check cutover(accept => ...) does
 * not name stops the cutover here, before the fence.  Reads only.
 */
static void
ua_step_checks(UaRun *run, StringInfo detail)
{
	PGresult   *res;
	char	   *slots;
	const char *vals[2];
	bool		ok;
	char		accept[UA_ACCEPT_MAX];
	TimestampTz started;
	UaPreflightSummary pf;

	if (run->external)
	{
		ua_external_checks(run, detail);
		return;
	}
	ua_cutover_check_basics(run);

	/* The logical slots of this database: the forward one is among them. */
	ua_xact_begin(NULL);
	ua_spi_exec("SELECT coalesce(pg_catalog.array_agg(slot_name::text), '{}')::text"
		   "  FROM pg_catalog.pg_replication_slots"
		   " WHERE slot_type = 'logical' AND database = pg_catalog.current_database()",
		   0, NULL, true);
	slots = ua_spi_getvalue(0, 1, run->cxt);
	ua_xact_end(run->cxt);

	vals[0] = slots;
	res = ua_cutover_remote(run,
				"SELECT s.subname, s.subslotname, s.subpublications::text,"
				" EXISTS (SELECT 1 FROM pg_catalog.pg_stat_subscription st"
				"          WHERE st.subid = s.oid AND st.pid IS NOT NULL"
				"            AND st.relid IS NULL)"
				"  FROM pg_catalog.pg_subscription s"
				"  JOIN pg_catalog.pg_database d ON d.oid = s.subdbid"
				" WHERE d.datname = pg_catalog.current_database() AND s.subenabled"
				"   AND s.subslotname::text = ANY ($1::text[])",
				1, vals);
	if (PQntuples(res) != 1)
	{
		int			n = PQntuples(res);

		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 n == 0 ?
				 errmsg("no enabled subscription on peer \"%s\" replicates from this database", run->peer) :
				 errmsg("%d enabled subscriptions on peer \"%s\" replicate from this database", n, run->peer),
				 errdetail("A forward subscription is one whose slot is a logical slot of this database; these are %s.",
						   slots),
				 errhint("Subscribe the peer to a publication of this database that includes upgrade_assist.marker.")));
	}
	run->fwd_sub = pstrdup(PQgetvalue(res, 0, 0));
	run->fwd_slot = pstrdup(PQgetvalue(res, 0, 1));
	run->fwd_pubs = pstrdup(PQgetvalue(res, 0, 2));
	ok = PQgetvalue(res, 0, 3)[0] == 't';
	PQclear(res);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("subscription \"%s\" on peer \"%s\" has no running apply worker",
						run->fwd_sub, run->peer),
				 errhint("See the peer's server log and pg_stat_subscription.")));

	ua_xact_begin(NULL);
	vals[0] = run->fwd_slot;
	if (ua_spi_exec("SELECT 1 FROM pg_catalog.pg_replication_slots"
			   " WHERE slot_name = $1 AND active", 1, vals, true) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" of subscription \"%s\" is not in use here",
						run->fwd_slot, run->fwd_sub),
				 errdetail("Forward replication is not running.")));
	vals[0] = run->fwd_pubs;
	if (ua_spi_exec("SELECT 1 FROM pg_catalog.pg_publication_tables"
			   " WHERE pubname = ANY ($1::text[])"
			   "   AND schemaname = 'upgrade_assist' AND tablename = 'marker'",
			   1, vals, true) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table upgrade_assist.marker is not in the publications of subscription \"%s\"",
						run->fwd_sub),
				 errdetail("Publications: %s.", run->fwd_pubs),
				 errhint("Add upgrade_assist.marker to the publication: the cutover proves replication with markers.")));
	if (run->reverse)
	{
		vals[0] = UA_REVERSE_NAME;
		if (ua_spi_exec("SELECT s.subslotname::text = 'ua_cutover_' || $2 || '_' || s.subdbid"
				   "       AND s.subpublications = ARRAY[$1]::text[]"
				   "  FROM pg_catalog.pg_subscription s"
				   " WHERE s.subname = $1"
				   "   AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database"
				   "                   WHERE datname = pg_catalog.current_database())",
				   2, (const char *[]) {UA_REVERSE_NAME,
							psprintf(UINT64_FORMAT, (uint64) ua_origin())},
				   true) != 0)
		{
			bool		ours = strcmp(ua_spi_getvalue(0, 1, run->cxt), "t") == 0;

			if (!ours || !ua_reverse_is_prepared_leftover(run))
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_OBJECT),
						 errmsg("subscription \"%s\" already exists in this database", UA_REVERSE_NAME),
						 errhint("It carries changes from another cluster into this one; drop it if it is left over.")));
			run->leftover_reverse = true;
			appendStringInfo(detail, "%sthe reverse subscription of an attempt interrupted before its fence is here (its publication on the peer publishes nothing): prepare drops it",
							 detail->len ? "; " : "");
		}
#if PG_VERSION_NUM < 160000
		if (!superuser())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be superuser to create the reverse subscription"),
					 errhint("Call cutover() as a superuser, or with reverse => false.")));
#endif
	}
	ua_xact_end(run->cxt);

	/* No other database of this cluster left half moved (cutover_multidb.c). */
	ua_multidb_refuse_uncovered(run);

	/* The preflight, with the findings the caller accepted. */
	LWLockAcquire(ua_cutover_state->lock, LW_SHARED);
	strlcpy(accept, ua_cutover_state->accept, sizeof(accept));
	LWLockRelease(ua_cutover_state->lock);
	started = GetCurrentTimestamp();
	ua_xact_begin("cutover preflight");
	ua_preflight_summarize(run->peer, run->deadline, accept, run->cxt, &pf);
	ua_xact_end(run->cxt);

	/*
	 * The preflight is bounded by the timeout (its peer statement ends at the
	 * deadline) but its time does not count against it: it reads only, before
	 * the fence, and grows with the number of tables; the timeout bounds the
	 * steps that lead to and follow the fence.
	 */
	run->deadline += GetCurrentTimestamp() - started;
	if (pf.blocking > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("preflight found %d error(s): %s", pf.blocking, pf.blocking_list.data),
				 errhint("SELECT * FROM upgrade_assist.preflight('%s') says what each means and what to do; "
						 "once decided, name the check in cutover(..., accept => '{check}').",
						 run->peer)));

	appendStringInfo(detail,
					 "peer on PostgreSQL %d.%d, fenced; forward subscription %s there (slot %s here, publications %s); "
					 "preflight %.0f ms: %d error(s) accepted%s%s%s, %d warning(s)%s%s%s, %d info",
					 run->peer_version / 10000, run->peer_version % 10000, run->fwd_sub, run->fwd_slot, run->fwd_pubs,
					 ua_ms_since(started), pf.accepted,
					 pf.accepted ? " (" : "", pf.accepted_list.data, pf.accepted ? ")" : "",
					 pf.warnings,
					 pf.warnings ? " (" : "", pf.warning_list.data, pf.warnings ? ")" : "",
					 pf.infos);
}

/* lag check: a probe marker reaches the peer within max_lag. */
static void
ua_step_lag(UaRun *run, StringInfo detail)
{
	UaMarker	m;
	int64		waited;
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, run->max_lag_ms);

	ua_xact_begin(NULL);
	ua_insert_marker("probe", "cutover lag check", 0, &m);
	ua_xact_end(run->cxt);
	if (deadline > run->deadline)
		deadline = run->deadline;
	waited = ua_marker_on_peer(run, m.seq, start, deadline);
	if (waited < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication lag exceeds max_lag"),
				 errdetail("Probe marker " INT64_FORMAT " was not on the peer after %.0f ms (max_lag %lld ms).",
						   m.seq, ua_ms_since(start), (long long) run->max_lag_ms),
				 errhint("Wait until sync_status says 'in sync', or raise max_lag.")));
	appendStringInfo(detail, "probe marker " INT64_FORMAT " on the peer after %.1f ms",
					 m.seq, waited / 1000.0);
}

/* fence: raise the fence here (the drain is the next step). */
static void
ua_step_fence(UaRun *run, StringInfo detail)
{
	char		reason[128];
	char	   *failure;

	/* The switch command first (PAUSE a pooler): a failure aborts. */
	if (!ua_cutover_command_run(UA_MOMENT_BEFORE_FENCE, run->attempt, run->peer, &failure))
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("%s", failure),
				 errdetail("Its output is in the server log.")));

	snprintf(reason, sizeof(reason), "cutover to %s (attempt " INT64_FORMAT ")",
			 run->peer, run->attempt);
	ua_xact_begin(NULL);
	/* The fence file keeps whom to ask after a crash (cutover_resolve.c). */
	ua_fence_engage_cutover(reason, run->attempt, MyDatabaseId, GetUserId(), run->peer);
	run->did_fence = true;
	UA_CUTOVER_SET(fenced_at, GetCurrentTimestamp());
	ua_xact_end(run->cxt);
	appendStringInfo(detail, "fenced: %s", reason);
}

/* drain: let write transactions in flight end, then terminate them. */
static void
ua_step_drain(UaRun *run, StringInfo detail)
{
	int64		drain_ms = Min((int64) ua_cutover_drain_ms,
							   Max((int64) 0, (int64) ua_ms_until(run->deadline)));
	int			finished = 0;
	int			terminated = 0;

	ua_xact_begin(NULL);
	ua_fence_drain(drain_ms, &finished, &terminated);
	ua_xact_end(run->cxt);
	appendStringInfo(detail, "%d write transaction(s) finished, %d terminated (drain timeout %lld ms)",
					 finished, terminated, (long long) drain_ms);
}

/* final marker: the last row this side writes before the peer takes over. */
static void
ua_step_marker(UaRun *run, StringInfo detail)
{
	char		note[128];

	snprintf(note, sizeof(note), "cutover attempt " INT64_FORMAT " to %s",
			 run->attempt, run->peer);
	ua_xact_begin(NULL);
	ua_insert_marker("cutover", note, 0, &run->final_marker);
	ua_xact_end(run->cxt);
	appendStringInfo(detail, "marker " INT64_FORMAT " at %X/%X",
					 run->final_marker.seq,
					 (uint32) (run->final_marker.written_lsn >> 32),
					 (uint32) run->final_marker.written_lsn);
}

/* wait for marker: every change committed here before it is on the peer. */
static void
ua_step_wait(UaRun *run, StringInfo detail)
{
	int64		waited = ua_marker_on_peer(run, run->final_marker.seq,
										   GetCurrentTimestamp(), run->deadline);

	if (waited < 0)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("the final marker did not reach peer \"%s\" within the timeout",
						run->peer)));
	appendStringInfo(detail, "marker " INT64_FORMAT " on the peer after %.1f ms",
					 run->final_marker.seq, waited / 1000.0);
}

/* ---------------------------------------------------------------------------
 * Sequences: prepared before the fence, finished inside it (docs/blackout.md)
 * ---------------------------------------------------------------------------
 */

/*
 * ua_peer_session
 *		Make the worker's session on the peer exempt from its fence and
 *		return that session's backend pid: a different pid than before means
 *		the cached connection was replaced (and what the old session held,
 *		such as the sequence plan, is gone).
 */
static int
ua_peer_session(UaRun *run)
{
	PGresult   *res = ua_cutover_remote(run,
										"SELECT pg_catalog.pg_backend_pid() FROM upgrade_assist.fence_exempt_session()",
										0, NULL);
	int			pid = atoi(PQgetvalue(res, 0, 0));

	PQclear(res);
	return pid;
}

/*
 * ua_seq_map_local
 *		run->seq_local[i]: the sequence here of the schema and name of row i
 *		of res (the peer's plan, sequences_prepare()), or InvalidOid when
 *		this side has none.  One local statement.
 */
static void
ua_seq_map_local(UaRun *run, PGresult *res)
{
	int			n = PQntuples(res);
	Datum	   *nsps = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *rels = palloc(sizeof(Datum) * Max(n, 1));
	Oid			types[2] = {TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[2];

	run->seq_local = MemoryContextAllocZero(run->cxt, sizeof(Oid) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		nsps[i] = CStringGetTextDatum(PQgetvalue(res, i, 1));
		rels[i] = CStringGetTextDatum(PQgetvalue(res, i, 2));
	}
	ua_xact_begin(NULL);
	args[0] = PointerGetDatum(construct_array(nsps, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(rels, n, TEXTOID, -1, false, TYPALIGN_INT));
	ua_spi_exec_typed("SELECT u.i::pg_catalog.int4, c.oid"
					  "  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2))"
					  "       WITH ORDINALITY AS u(nsp, rel, i)"
					  "  JOIN pg_catalog.pg_namespace n ON n.nspname = u.nsp"
					  "  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = u.rel"
					  " WHERE c.relkind = 'S' AND c.relpersistence <> 't'",
					  2, types, args, NULL, SPI_OK_SELECT);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int			i = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r],
													SPI_tuptable->tupdesc, 1, &isnull));
		Oid			oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[r],
														 SPI_tuptable->tupdesc, 2, &isnull));

		if (i >= 1 && i <= n)
			run->seq_local[i - 1] = oid;
	}
	ua_xact_end(run->cxt);
}

/*
 * ua_seq_push
 *		Read the state of every mapped sequence here (from its page, no SQL;
 *		42501 naming one the caller may not SELECT from) and apply them to
 *		the peer's plan in batches of UA_SEQ_BATCH, one peer statement and
 *		transaction each (sync_sequences_prepared()).  Returns the number
 *		of sequences moved on the peer.
 */
static int
ua_seq_push(UaRun *run)
{
	StringInfoData lasts;
	StringInfoData called;
	char		token[32];
	char		firstbuf[16];
	char		margin[32];
	const char *vals[5];
	int64	   *values = palloc(sizeof(int64) * Max(run->seq_n, 1));
	bool	   *iscalled = palloc(sizeof(bool) * Max(run->seq_n, 1));
	bool	   *has = palloc(sizeof(bool) * Max(run->seq_n, 1));
	int			moved = 0;

	ua_xact_begin(NULL);
	for (int i = 0; i < run->seq_n; i++)
		has[i] = OidIsValid(run->seq_local[i]) &&
			ua_seq_read_state(run->seq_local[i], true, &values[i], &iscalled[i]);
	ua_xact_end(run->cxt);

	snprintf(token, sizeof(token), INT64_FORMAT, run->seq_token);
	snprintf(margin, sizeof(margin), INT64_FORMAT, run->margin);
	initStringInfo(&lasts);
	initStringInfo(&called);
	for (int first = 0; first < run->seq_n; first += UA_SEQ_BATCH)
	{
		int			last = Min(run->seq_n, first + UA_SEQ_BATCH);
		PGresult   *res;

		resetStringInfo(&lasts);
		resetStringInfo(&called);
		appendStringInfoChar(&lasts, '{');
		appendStringInfoChar(&called, '{');
		for (int i = first; i < last; i++)
		{
			if (i > first)
			{
				appendStringInfoChar(&lasts, ',');
				appendStringInfoChar(&called, ',');
			}
			if (has[i])
				appendStringInfo(&lasts, INT64_FORMAT, values[i]);
			else
				appendStringInfoString(&lasts, "NULL");
			appendStringInfoChar(&called, has[i] && iscalled[i] ? 't' : 'f');
		}
		appendStringInfoChar(&lasts, '}');
		appendStringInfoChar(&called, '}');
		snprintf(firstbuf, sizeof(firstbuf), "%d", first);
		vals[0] = token;
		vals[1] = firstbuf;
		vals[2] = lasts.data;
		vals[3] = called.data;
		vals[4] = margin;
		/*
		 * The batch's commit need not wait for its WAL flush
		 * (synchronous_commit off for that transaction only): the takeover
		 * commits later in the peer's WAL and waits for the flush, which
		 * covers these moves; a crash of the peer before it means no
		 * takeover, and the next attempt plans the sequences again.
		 */
		res = ua_cutover_remote(run,
					"SELECT s.moved"
					"  FROM pg_catalog.set_config('synchronous_commit', 'off', true) c,"
					"       upgrade_assist.sync_sequences_prepared("
					"$1::bigint, $2::integer, $3::bigint[], $4::boolean[], $5::bigint) s",
					5, vals);
		moved += atoi(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	pfree(lasts.data);
	pfree(called.data);
	return moved;
}

/*
 * ua_seq_sync_given
 *		The unprepared way, one peer statement for everything: this side's
 *		states (sequence_states()) given to sync_sequences_given() there.
 *		Used when the peer's session lost its plan.
 */
static void
ua_seq_sync_given(UaRun *run, StringInfo detail)
{
	char	   *vals[5];
	char		margin[32];
	PGresult   *res;

	ua_xact_begin(NULL);
	ua_spi_exec("SELECT coalesce(pg_catalog.array_agg(schema_name ORDER BY schema_name, sequence_name), '{}')::text,"
		   " coalesce(pg_catalog.array_agg(sequence_name ORDER BY schema_name, sequence_name), '{}')::text,"
		   " coalesce(pg_catalog.array_agg(last_value ORDER BY schema_name, sequence_name), '{}')::text,"
		   " coalesce(pg_catalog.array_agg(is_called ORDER BY schema_name, sequence_name), '{}')::text"
		   "  FROM upgrade_assist.sequence_states()",
		   0, NULL, true);
	for (int i = 0; i < 4; i++)
		vals[i] = ua_spi_getvalue(0, i + 1, run->cxt);
	ua_xact_end(run->cxt);
	snprintf(margin, sizeof(margin), INT64_FORMAT, run->margin);
	vals[4] = margin;

	ua_cutover_remote_exempt(run, run->deadline);
	res = ua_cutover_remote(run,
				"SELECT count(*), count(*) FILTER (WHERE action <> 'none')"
				"  FROM upgrade_assist.sync_sequences_given($1::text[], $2::text[],"
				"       $3::bigint[], $4::boolean[], $5::bigint)",
				5, (const char *const *) vals);
	appendStringInfo(detail, "%s sequence(s) on the peer, %s moved forward",
					 PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	PQclear(res);
}

/*
 * How long the prepare step waits for the reverse apply worker to connect
 * before it goes on anyway (the blackout then includes the rest of its
 * start, as it did when everything was made inside).
 */
#define UA_REVERSE_START_MS 10000

/*
 * ua_reverse_wait_streaming
 *		Wait, by the attempt's deadline and at most UA_REVERSE_START_MS,
 *		until a walsender on the peer holds the reverse slot: the apply
 *		worker here has started, connected and asked to stream.  Only a
 *		matter of speed: the detail says when it did not happen in time.
 */
static void
ua_reverse_wait_streaming(UaRun *run, StringInfo detail)
{
	const char *vals[1] = {run->slot_name};
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz until = TimestampTzPlusMilliseconds(start, UA_REVERSE_START_MS);

	if (until > run->deadline)
		until = run->deadline;
	for (;;)
	{
		PGresult   *res = ua_cutover_remote(run,
											"SELECT 1 FROM pg_catalog.pg_replication_slots"
											" WHERE slot_name = $1 AND active",
											1, vals);
		bool		active = PQntuples(res) > 0;

		PQclear(res);
		if (active)
		{
			appendStringInfo(detail, ", streaming after %.1f ms", ua_ms_since(start));
			return;
		}
		if (GetCurrentTimestamp() >= until)
		{
			appendStringInfo(detail, ", not yet streaming after %.0f ms", ua_ms_since(start));
			return;
		}
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 10, UA_WE_PEER);
	}
}

/*
 * ua_reverse_prepare
 *		Everything of the reverse direction, made before the fence so that
 *		the blackout only switches it on (docs/blackout.md): publication
 *		upgrade_assist_cutover on the peer (the forward publications'
 *		tables, or all tables) created with publish = '' (it publishes no
 *		change yet), a leftover slot of the reverse slot's name dropped
 *		there, the reverse slot created there, and subscription
 *		upgrade_assist_cutover here on that slot, without copy and enabled,
 *		so that its apply worker starts and connects now; then a bounded
 *		wait until the peer's walsender holds the slot.  Until the blackout
 *		sets the publication's publish list, the apply worker receives no
 *		change (at most empty transactions from a publisher older than 15).
 *		The subscription's catalog rows (one per table) are written now.
 */
static void
ua_reverse_prepare(UaRun *run, StringInfo detail)
{
	const char *vals[1];
	char	   *pubdef;
	char	   *tables;
	char	   *conninfo;
	char	   *sql;
	PGresult   *res;
	int			nestlevel;

	ua_xact_begin(NULL);
	vals[0] = run->fwd_pubs;
	ua_spi_exec("SELECT coalesce(pg_catalog.bool_or(puballtables), false)"
		   "  FROM pg_catalog.pg_publication WHERE pubname = ANY ($1::text[])",
		   1, vals, true);
	if (strcmp(ua_spi_getvalue(0, 1, run->cxt), "t") == 0)
	{
		pubdef = "FOR ALL TABLES";
		tables = "all tables";
		ua_xact_end(run->cxt);
	}
	else
	{
		char	   *list;
		char	   *count;

		ua_spi_exec("SELECT pg_catalog.string_agg(pg_catalog.quote_ident(schemaname::text)"
			   "       || '.' || pg_catalog.quote_ident(tablename::text), ', '"
			   "       ORDER BY schemaname, tablename), count(*)"
			   "  FROM (SELECT DISTINCT schemaname, tablename"
			   "          FROM pg_catalog.pg_publication_tables"
			   "         WHERE pubname = ANY ($1::text[])) t",
			   1, vals, true);
		list = ua_spi_getvalue(0, 1, run->cxt);
		count = ua_spi_getvalue(0, 2, run->cxt);
		ua_xact_end(run->cxt);
		pubdef = psprintf("FOR TABLE %s", list);
		tables = psprintf("%s tables", count);
	}

	snprintf(run->slot_name, sizeof(run->slot_name), "ua_cutover_" UINT64_FORMAT "_%u",
			 (uint64) ua_origin(), MyDatabaseId);

	/* The publication: a leftover of an earlier direction is replaced. */
	ua_cutover_remote_exempt(run, run->deadline);
	if (run->leftover_reverse)
		ua_cutover_drop_leftover_reverse(run, detail);
	run->did_pub = true;
	PQclear(ua_cutover_remote(run, "DROP PUBLICATION IF EXISTS " UA_REVERSE_NAME, 0, NULL));
	sql = psprintf("CREATE PUBLICATION " UA_REVERSE_NAME " %s WITH (publish = '')", pubdef);
	PQclear(ua_cutover_remote(run, sql, 0, NULL));

	/* A slot of this name left by an abort that could not reach the peer. */
	vals[0] = run->slot_name;
	res = ua_cutover_remote(run, "SELECT active FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
				1, vals);
	if (PQntuples(res) == 1)
	{
		bool		active = PQgetvalue(res, 0, 0)[0] == 't';

		PQclear(res);
		if (active)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("replication slot \"%s\" on peer \"%s\" is in use",
							run->slot_name, run->peer)));
		PQclear(ua_cutover_remote(run, "SELECT pg_catalog.pg_drop_replication_slot($1)", 1, vals));
		appendStringInfoString(detail, "; dropped a slot left by an earlier attempt");
	}
	else
		PQclear(res);

	/*
	 * The slot, after the publication (a walsender decoding a transaction
	 * looks the publication up as of that transaction).  It starts at a
	 * consistent point now; what it decodes until the blackout changes the
	 * publish list is published as nothing.
	 */
	run->did_slot = true;
	res = ua_cutover_remote(run, "SELECT lsn::text FROM pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')",
							1, vals);
	appendStringInfo(detail, "; slot %s on the peer at %s", run->slot_name, PQgetvalue(res, 0, 0));
	PQclear(res);

	/*
	 * The subscription.  connect = true (the default) reads the publication's
	 * tables from the peer and records them as ready (copy_data = false);
	 * create_slot = false names the slot just made, and enabled starts the
	 * apply worker at commit.  Its statement holds the password: keep
	 * warnings (whose context would quote it) out of the log, and report
	 * only the message of an error (ua_cutover_run never shows its context).
	 */
	StartTransactionCommand();
	conninfo = MemoryContextStrdup(run->cxt, ua_peer_conninfo(run->peer));
	CommitTransactionCommand();
	MemoryContextSwitchTo(run->cxt);
	sql = psprintf("CREATE SUBSCRIPTION " UA_REVERSE_NAME " CONNECTION %s"
				   " PUBLICATION " UA_REVERSE_NAME
				   " WITH (create_slot = false, slot_name = %s, copy_data = false,"
				   " enabled = true)",
				   quote_literal_cstr(conninfo), quote_literal_cstr(run->slot_name));
	ua_xact_begin(NULL);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("log_min_messages", "error", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "creating the reverse subscription failed");
	AtEOXact_GUC(true, nestlevel);
	ua_xact_end(run->cxt);
	run->did_sub = true;
	memset(sql, 0, strlen(sql));
	memset(conninfo, 0, strlen(conninfo));
	appendStringInfo(detail, "; publication %s on the peer (%s, publishing nothing yet), subscription %s here (enabled, no copy)",
					 UA_REVERSE_NAME, tables, UA_REVERSE_NAME);
}

/*
 * ua_seq_plan_on_peer
 *		The peer's sequence plan, made in the worker's peer session
 *		(sequences_prepare()), mapped to this side's sequences by name.
 */
static void
ua_seq_plan_on_peer(UaRun *run)
{
	PGresult   *res;

	res = ua_cutover_remote(run,
				"SELECT token, schema_name, sequence_name FROM upgrade_assist.sequences_prepare()",
				0, NULL);
	run->seq_n = PQntuples(res);
	run->seq_token = run->seq_n > 0 ? strtoi64(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	ua_seq_map_local(run, res);
	PQclear(res);
}

/*
 * prepare, before the fence: with reverse, the reverse publication (not
 * publishing yet), slot and enabled subscription (ua_reverse_prepare),
 * first, so that the apply worker starts and connects while the rest runs;
 * then the peer's session plans its sequences (sequences_prepare()), which
 * are mapped to this side's by name and moved forward to this side's
 * current states (they move again, by little, inside the blackout); last a
 * bounded wait until the reverse apply worker streams.  Nothing here needs
 * the fence: the peer is fenced already, and every object is undone by the
 * abort.
 */
static void
ua_step_prepare(UaRun *run, StringInfo detail)
{
	StringInfoData rev;
	int			moved;
	int			mapped = 0;

	initStringInfo(&rev);
	if (run->reverse && !run->external)
		ua_reverse_prepare(run, &rev);

	/*
	 * The plan lives in the peer's session, made after the subscription: a
	 * cache reset here (much catalog churn, as creating a subscription of
	 * thousands of tables makes) closes the cached connection and the next
	 * statement opens a new session.  Should it happen after all, plan
	 * again, still before the fence.
	 */
	run->seq_peer_pid = ua_peer_session(run);
	ua_seq_plan_on_peer(run);
	run->seq_prepared = true;
	for (int i = 0; i < run->seq_n; i++)
		if (OidIsValid(run->seq_local[i]))
			mapped++;
	moved = ua_seq_push(run);
	appendStringInfo(detail, "%d sequence(s) planned on the peer (%d here too), %d moved forward ahead of the fence",
					 run->seq_n, mapped, moved);
	appendBinaryStringInfo(detail, rev.data, rev.len);
	if (run->reverse && !run->external)
		ua_reverse_wait_streaming(run, detail);
	if (ua_peer_session(run) != run->seq_peer_pid)
	{
		run->seq_peer_pid = ua_peer_session(run);
		ua_seq_plan_on_peer(run);
		appendStringInfoString(detail, "; planned again in a new peer session");
	}
	pfree(rev.data);
}

/*
 * sync sequences, inside the blackout: this side's final states read from
 * the pages, applied to the peer's prepared plan (index probes and setval()
 * there).  When the peer's session lost its plan (a new connection: 55000),
 * the unprepared way does the same in one statement.
 */
static void
ua_step_sequences(UaRun *run, StringInfo detail)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *volatile edata = NULL;
	volatile int moved = 0;

	/* A new peer session (see ua_step_prepare) has no plan: the other way. */
	if (!run->seq_prepared || ua_peer_session(run) != run->seq_peer_pid)
	{
		if (run->seq_prepared)
			appendStringInfoString(detail, "new peer session without the plan; ");
		ua_seq_sync_given(run, detail);
		return;
	}
	PG_TRY();
	{
		moved = ua_seq_push(run);
	}
	PG_CATCH();
	{
		edata = ua_recover_from_error(cxt);
		if (edata->sqlerrcode != ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
			ReThrowError(edata);
	}
	PG_END_TRY();
	if (edata != NULL)
	{
		appendStringInfo(detail, "prepared plan unusable (%s); ", edata->message);
		ua_seq_sync_given(run, detail);
		return;
	}
	appendStringInfo(detail, "%d sequence(s) on the peer, %d moved forward", run->seq_n, moved);
}

/*
 * reverse replication, inside the blackout: the prepared publication on
 * the peer starts publishing.  Its slot and the enabled subscription here
 * exist since prepare; the peer is fenced and has everything from here
 * (wait for marker), so every change committed there from this statement's
 * commit on is sent here, and none before it (docs/blackout.md).
 */
static void
ua_step_reverse(UaRun *run, StringInfo detail)
{
	if (run->external)
	{
		ua_external_reverse(run, detail);
		return;
	}
	ua_cutover_remote_exempt(run, run->deadline);
	PQclear(ua_cutover_remote(run,
							  "ALTER PUBLICATION " UA_REVERSE_NAME
							  " SET (publish = 'insert, update, delete, truncate')",
							  0, NULL));
	appendStringInfo(detail, "publication %s on the peer publishes from now on (slot %s there and subscription %s here made before the fence)",
					 UA_REVERSE_NAME, run->slot_name, UA_REVERSE_NAME);
}

/* reverse round trip: a marker written on the peer arrives here. */
static void
ua_step_reverse_rt(UaRun *run, StringInfo detail)
{
	char		note[128];
	const char *vals[2];
	char	   *origin;
	char	   *seq;
	PGresult   *res;
	TimestampTz start = GetCurrentTimestamp();

	if (run->external)
	{
		ua_external_reverse_rt(run, detail);
		return;
	}
	snprintf(note, sizeof(note), "cutover attempt " INT64_FORMAT ": reverse round trip",
			 run->attempt);
	vals[0] = note;
	res = ua_cutover_remote(run, "SELECT origin::text, seq::text FROM upgrade_assist.emit_marker('cutover', $1)",
				1, vals);
	origin = pstrdup(PQgetvalue(res, 0, 0));
	seq = pstrdup(PQgetvalue(res, 0, 1));
	PQclear(res);

	vals[0] = origin;
	vals[1] = seq;
	for (;;)
	{
		bool		found;

		ua_xact_begin(NULL);
		ua_spi_exec("SELECT 1 FROM upgrade_assist.marker"
			   " WHERE origin = $1::bigint AND seq = $2::bigint", 2, vals, true);
		found = SPI_processed > 0;
		ua_xact_end(run->cxt);
		if (found)
			break;
		if (GetCurrentTimestamp() >= run->deadline)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("the peer's marker %s did not arrive here within the timeout", seq),
					 errdetail("The reverse subscription %s does not deliver.", UA_REVERSE_NAME)));
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, UA_POLL_MS, UA_WE_MARKER);
	}
	appendStringInfo(detail, "peer's marker %s here after %.1f ms", seq, ua_ms_since(start));
}

/*
 * ua_takeover_committed
 *		After the takeover's result was lost: ask the peer's record of this
 *		attempt (cutover_attempt_outcome(), cutover_resolve.c) on fresh
 *		connections, with back-off, until the attempt's deadline.  The
 *		question waits for a takeover still in flight there and, when it
 *		finds none, leaves a tombstone that makes a late one refuse, so the
 *		answer cannot go stale.  Returns the last answer (UA_ANS_NONE when
 *		the peer never answered); detail gets how many questions it took.
 */
static UaAnswer
ua_takeover_committed(UaRun *run, StringInfo detail)
{
	long		backoff = 100;
	int			asked = 0;
	UaAttemptAnswer ans;

	memset(&ans, 0, sizeof(ans));
	for (;;)
	{
		int64		left = ua_ms_until(run->deadline);

		ans.cxt = run->cxt;
		ua_attempt_ask(run->peer, run->attempt,
					   Max((int64) 1000, Min(left, (int64) ua_connect_timeout * 1000)),
					   &ans);
		asked++;
		/* Final answers; an unfenced peer without takeover is final here too. */
		if (ans.answer != UA_ANS_NONE)
			break;
		if (GetCurrentTimestamp() >= run->deadline)
			break;
		/* Cancel is held off here: only a termination ends the wait early. */
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, Min(backoff, Max(1L, ua_ms_until(run->deadline))),
					   UA_WE_PEER);
		backoff = Min(backoff * 2, 2000L);
	}
	appendStringInfo(detail, "the answer was lost; asked the peer %d time(s): %s; ",
					 asked, ua_attempt_answer_text(&ans));
	if (ans.answer == UA_ANS_COMMITTED_FENCED)
		appendStringInfoString(detail, "its fence lifts at its restart; ");
	return ans.answer;
}

/*
 * unfence peer, the point of no return: one peer transaction records the
 * attempt as committed, disables the forward subscription and detaches it
 * from its slot, and lifts the peer's fence at its commit
 * (cutover_takeover()).  The drop of that subscription follows in the
 * cleanup, after the point of no return.
 *
 * Two pause points for tests and rehearsals (cutover_pause_before):
 * 'takeover' stops right before the takeover is sent, 'takeover answer'
 * right after it committed, and then drops the answer with the connection,
 * as a lost answer would.
 */
static void
ua_step_unfence_peer(UaRun *run, StringInfo detail)
{
	char		origin[32];
	char		attempt[32];
	const char *vals[3] = {run->fwd_sub, origin, attempt};
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *volatile edata = NULL;
	const char *volatile takeover = "SELECT upgrade_assist.cutover_takeover($1, $2::bigint, $3::bigint)";
	volatile int nvals = 3;

	snprintf(origin, sizeof(origin), INT64_FORMAT, ua_origin());
	snprintf(attempt, sizeof(attempt), INT64_FORMAT, run->attempt);
	if (run->external)
	{
		/* The forward pipeline stops first; no subscription to detach. */
		ua_external_stop_forward(run, detail);
		takeover = UA_EXTERNAL_TAKEOVER_SQL;
		nvals = 2;
	}

	/* Also proves the connection right before the one-shot statement. */
	ua_cutover_remote_exempt(run, run->deadline);

	/* From here a cancel must not interrupt: the outcome must be learnt. */
	HOLD_CANCEL_INTERRUPTS();
	UA_CUTOVER_SET(past_ponr, true);
	PG_TRY();
	{
		ua_cutover_pause_named(run, UA_PAUSE_TAKEOVER);
		PQclear(ua_cutover_remote_ext(run, takeover, nvals, run->external ? vals + 1 : vals,
									  run->deadline, false));
		if (ua_cutover_pause_named(run, UA_PAUSE_TAKEOVER_ANSWER))
		{
			/* The rehearsal of a lost answer: forget it with the connection. */
			StartTransactionCommand();
			ua_peer_forget(run->peer);
			CommitTransactionCommand();
			MemoryContextSwitchTo(run->cxt);
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("the answer of the takeover was dropped at pause point \"%s\"",
							UA_PAUSE_TAKEOVER_ANSWER)));
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(cxt);
	}
	PG_END_TRY();

	if (edata != NULL &&
		(edata->sqlerrcode == ERRCODE_CONNECTION_FAILURE ||
		 edata->sqlerrcode == ERRCODE_QUERY_CANCELED))
	{
		/* Sent (or maybe sent), but the answer was lost: did it commit? */
		switch (ua_takeover_committed(run, detail))
		{
			case UA_ANS_COMMITTED:
			case UA_ANS_COMMITTED_FENCED:
				edata = NULL;
				break;
			case UA_ANS_NOT_COMMITTED:
				/* The tombstone keeps a late takeover out: abort. */
				break;
			case UA_ANS_PEER_UNFENCED:
			case UA_ANS_NONE:
				run->ponr_unknown = true;
				break;
		}
	}
	if (edata != NULL)
	{
		if (!run->ponr_unknown)
			UA_CUTOVER_SET(past_ponr, false);
		QueryCancelPending = false;
		RESUME_CANCEL_INTERRUPTS();
		if (detail->len > 0)
			ereport(ERROR,
					(errcode(edata->sqlerrcode),
					 errmsg_internal("%s", edata->message),
					 errdetail_internal("%s", detail->data)));
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg_internal("%s", edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
	}
	UA_CUTOVER_SET(writable_at, GetCurrentTimestamp());
	/* A cancel that came meanwhile is moot: the work is done. */
	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
	if (run->external)
		appendStringInfoString(detail, "attempt recorded as committed on the peer, its fence lifted");
	else
		appendStringInfo(detail, "attempt recorded as committed on the peer, subscription %s disabled and detached there, its fence lifted",
						 run->fwd_sub);
}

const UaStepFn ua_cutover_step_fns[UA_NSTEPS] = {
	ua_step_checks, ua_step_lag, ua_step_prepare, ua_step_fence, ua_step_drain, ua_step_marker,
	ua_step_wait, ua_step_sequences, ua_step_reverse, ua_step_reverse_rt,
	ua_step_unfence_peer
};
