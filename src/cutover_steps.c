/*-------------------------------------------------------------------------
 *
 * cutover_steps.c
 *	  The cutover worker's steps, its abort and its cleanup (the run itself,
 *	  the shared state and the SQL functions are in cutover.c).
 *
 * Every step runs in the cutover worker, throws on failure, and writes what
 * its row shows into detail.  Local work runs in short transactions of its
 * own (ua_cx_begin/ua_cx_end), remote work through remote.c within the
 * attempt's deadline; the worker's session on the peer writes through the
 * peer's fence (fence_exempt_session()).  What each step leaves behind is
 * recorded in UaRun, so that ua_abort undoes exactly that.
 *
 * Locking: the shared state (cutover.h) under its own LWLock, taken only
 * for short copies.
 *
 * IDENTIFICATION
 *	  src/cutover_steps.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "cutover.h"
#include "fence.h"
#include "upgrade_assist.h"

/* ---------------------------------------------------------------------------
 * Worker: local transactions, peer queries, progress
 * ---------------------------------------------------------------------------
 */

/* Start a local transaction with a snapshot and SPI. */
void
ua_cx_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/* Commit what ua_cx_begin started; back in the worker's memory. */
void
ua_cx_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(ua_worker_cxt);
}

/*
 * ua_spi
 *		Run sql through SPI with text parameters (NULL entries are SQL
 *		NULLs); returns the number of rows.  Throws on failure.
 */
uint64
ua_spi(const char *sql, int nargs, const char *const *args, bool read_only)
{
	Oid			types[8];
	Datum		values[8];
	char		nulls[8] = {0};
	int			rc;

	Assert(nargs <= 8);
	for (int i = 0; i < nargs; i++)
	{
		types[i] = TEXTOID;
		values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
		nulls[i] = args[i] ? ' ' : 'n';
	}
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * Column col (1-based) of row row of the last SPI result, or NULL; copied
 * into the worker's memory, so that it outlives the transaction.
 */
char *
ua_spi_value(uint64 row, int col)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(ua_worker_cxt, v) : NULL;
}

/*
 * ua_remote
 *		One statement on the peer (ua_peer_query_ext).  Looking the peer up
 *		reads catalogs, so a transaction is started when none is open.
 */
static PGresult *
ua_remote(UaRun *run, const char *sql, int nparams, const char *const *values,
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
		MemoryContextSwitchTo(ua_worker_cxt);
	}
	return res;
}

/* One remote statement within the attempt's deadline. */
static PGresult *
ua_rq(UaRun *run, const char *sql, int nparams, const char *const *values)
{
	return ua_remote(run, sql, nparams, values, run->deadline, true);
}

/* The same, with its own (abort-time) deadline, result discarded. */
static void
ua_rq_until(UaRun *run, const char *sql, int nparams, const char *const *values,
			TimestampTz deadline)
{
	PQclear(ua_remote(run, sql, nparams, values, deadline, true));
}

/*
 * ua_rq_exempt
 *		Make the worker's session on the peer write through the peer's fence
 *		(the peer is fenced until the point of no return).
 */
static void
ua_rq_exempt(UaRun *run, TimestampTz deadline)
{
	ua_rq_until(run, "SELECT upgrade_assist.fence_exempt_session()", 0, NULL,
				deadline);
}

/*
 * ua_step_finish
 *		Publish the end of step i (UA_EXTRA for the abort/cleanup row) and
 *		wake the caller, which reports it.
 */
void
ua_step_finish(int i, const char *status, TimestampTz started, const char *detail)
{
	UaStepState *st = &ua_cut->steps[i];

	LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE);
	strlcpy(st->status, status, sizeof(st->status));
	st->started_at = started;
	st->duration_us = started ? GetCurrentTimestamp() - started : 0;
	strlcpy(st->detail, detail ? detail : "", sizeof(st->detail));
	if (ua_cut->running == i)
		ua_cut->running = -1;
	if (ua_cut->caller)
		SetLatch(&ua_cut->caller->procLatch);
	LWLockRelease(ua_cut->lock);
}

/*
 * ua_pause_point
 *		Stop before step i while upgrade_assist.cutover_pause_before names
 *		it, until cutover_resume() or an abort request; the time paused does
 *		not count against the timeout.
 */
void
ua_pause_point(UaRun *run, int i)
{
	TimestampTz since;
	bool		go;

	if (strcmp(ua_cut->pause_before, ua_step_names[i]) != 0)
		return;
	since = GetCurrentTimestamp();
	LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE);
	ua_cut->paused = true;
	ua_cut->resume = false;
	LWLockRelease(ua_cut->lock);
	ereport(LOG,
			(errmsg("upgrade_assist cutover paused before step \"%s\"", ua_step_names[i])));
	for (;;)
	{
		LWLockAcquire(ua_cut->lock, LW_SHARED);
		go = ua_cut->resume || ua_cut->abort_requested || ua_worker_terminated;
		LWLockRelease(ua_cut->lock);
		if (go)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	UA_CUT_SET(paused, false);
	run->deadline += GetCurrentTimestamp() - since;
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
	MemoryContextSwitchTo(ua_worker_cxt);
	return waited;
}

/* Milliseconds since t, for details. */
static double
ua_ms_since(TimestampTz t)
{
	return (GetCurrentTimestamp() - t) / 1000.0;
}


/* ---------------------------------------------------------------------------
 * The steps.  Each throws on failure; detail gets what the row shows.
 * ---------------------------------------------------------------------------
 */

/*
 * checks: this side is primary, the peer runs the extension and is fenced,
 * exactly one enabled subscription there consumes a slot of this database
 * with a running apply worker, the marker table is in its publications, no
 * leftover reverse subscription here, no error from preflight().
 */
static void
ua_step_checks(UaRun *run, StringInfo detail)
{
	PGresult   *res;
	char	   *slots;
	char	   *pubs;
	const char *vals[2];
	bool		ok;

	if (ua_fence_is_up())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this cluster is fenced"),
				 errhint("cutover() runs on the cluster that is primary now; to go back, call it on the other cluster.")));

	res = ua_rq(run,
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
	ok = strtoi64(PQgetvalue(res, 0, 1), NULL, 10) != ua_origin();
	PQclear(res);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("peer \"%s\" is this cluster", run->peer)));

	res = ua_rq(run, "SELECT fenced FROM upgrade_assist.fence_status", 0, NULL);
	ok = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("peer \"%s\" is not fenced", run->peer),
				 errdetail("Writes on the peer before the cutover would never reach this cluster."),
				 errhint("Fence the new side until its cutover: SELECT upgrade_assist.fence('until cutover') there.")));

	/* The logical slots of this database: the forward one is among them. */
	ua_cx_begin();
	ua_spi("SELECT coalesce(pg_catalog.array_agg(slot_name::text), '{}')::text"
		   "  FROM pg_catalog.pg_replication_slots"
		   " WHERE slot_type = 'logical' AND database = pg_catalog.current_database()",
		   0, NULL, true);
	slots = ua_spi_value(0, 1);
	ua_cx_end();

	vals[0] = slots;
	res = ua_rq(run,
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

	ua_cx_begin();
	vals[0] = run->fwd_slot;
	if (ua_spi("SELECT 1 FROM pg_catalog.pg_replication_slots"
			   " WHERE slot_name = $1 AND active", 1, vals, true) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" of subscription \"%s\" is not in use here",
						run->fwd_slot, run->fwd_sub),
				 errdetail("Forward replication is not running.")));
	vals[0] = run->fwd_pubs;
	if (ua_spi("SELECT 1 FROM pg_catalog.pg_publication_tables"
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
		if (ua_spi("SELECT 1 FROM pg_catalog.pg_subscription"
				   " WHERE subname = $1"
				   "   AND subdbid = (SELECT oid FROM pg_catalog.pg_database"
				   "                   WHERE datname = pg_catalog.current_database())",
				   1, vals, true) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("subscription \"%s\" already exists in this database", UA_REVERSE_NAME),
					 errhint("It carries changes from another cluster into this one; drop it if it is left over.")));
#if PG_VERSION_NUM < 160000
		if (!superuser())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be superuser to create the reverse subscription"),
					 errhint("Call cutover() as a superuser, or with reverse => false.")));
#endif
	}
	/* preflight() blocks the cutover with findings of severity 'error'. */
	ua_spi("SELECT pg_catalog.to_regprocedure('upgrade_assist.preflight(text)') IS NOT NULL",
		   0, NULL, true);
	if (strcmp(ua_spi_value(0, 1), "t") == 0)
	{
		vals[0] = run->peer;
		ua_spi("SELECT count(*) FROM upgrade_assist.preflight($1) p"
			   " WHERE p.severity = 'error'", 1, vals, true);
		if (strcmp(ua_spi_value(0, 1), "0") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("preflight() reports %s error(s)", ua_spi_value(0, 1)),
					 errhint("SELECT * FROM upgrade_assist.preflight('%s') WHERE severity = 'error'.",
							 run->peer)));
		pubs = "preflight clean";
	}
	else
		pubs = "preflight() not installed";
	ua_cx_end();

	appendStringInfo(detail,
					 "peer on PostgreSQL %d.%d, fenced; forward subscription %s there (slot %s here, publications %s); %s",
					 run->peer_version / 10000, run->peer_version % 10000, run->fwd_sub, run->fwd_slot, run->fwd_pubs, pubs);
}

/* lag check: a probe marker reaches the peer within max_lag. */
static void
ua_step_lag(UaRun *run, StringInfo detail)
{
	UaMarker	m;
	int64		waited;
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, run->max_lag_ms);

	ua_cx_begin();
	ua_insert_marker("probe", "cutover lag check", 0, &m);
	ua_cx_end();
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

	snprintf(reason, sizeof(reason), "cutover to %s (attempt " INT64_FORMAT ")",
			 run->peer, run->attempt);
	ua_cx_begin();
	ua_fence_engage(reason);
	run->did_fence = true;
	UA_CUT_SET(fenced_at, GetCurrentTimestamp());
	ua_cx_end();
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

	ua_cx_begin();
	ua_fence_drain(drain_ms, &finished, &terminated);
	ua_cx_end();
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
	ua_cx_begin();
	ua_insert_marker("cutover", note, 0, &run->final_marker);
	ua_cx_end();
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

/* sync sequences: the peer's sequences past this side's values. */
static void
ua_step_sequences(UaRun *run, StringInfo detail)
{
	char	   *vals[5];
	char		margin[32];
	PGresult   *res;

	ua_cx_begin();
	ua_spi("SELECT coalesce(pg_catalog.array_agg(schema_name ORDER BY schema_name, sequence_name), '{}')::text,"
		   " coalesce(pg_catalog.array_agg(sequence_name ORDER BY schema_name, sequence_name), '{}')::text,"
		   " coalesce(pg_catalog.array_agg(last_value ORDER BY schema_name, sequence_name), '{}')::text,"
		   " coalesce(pg_catalog.array_agg(is_called ORDER BY schema_name, sequence_name), '{}')::text"
		   "  FROM upgrade_assist.sequence_states()",
		   0, NULL, true);
	for (int i = 0; i < 4; i++)
		vals[i] = ua_spi_value(0, i + 1);
	ua_cx_end();
	snprintf(margin, sizeof(margin), INT64_FORMAT, run->margin);
	vals[4] = margin;

	ua_rq_exempt(run, run->deadline);
	res = ua_rq(run,
				"SELECT count(*), count(*) FILTER (WHERE action <> 'none')"
				"  FROM upgrade_assist.sync_sequences_given($1::text[], $2::text[],"
				"       $3::bigint[], $4::boolean[], $5::bigint)",
				5, (const char *const *) vals);
	appendStringInfo(detail, "%s sequence(s) on the peer, %s moved forward",
					 PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	PQclear(res);
}

/*
 * reverse replication: publication on the peer with the forward
 * publications' tables, a slot there created now (the peer is fenced and
 * has everything from here), and a subscription here without copy.
 */
static void
ua_step_reverse(UaRun *run, StringInfo detail)
{
	const char *vals[1];
	char	   *pubdef;
	char	   *tables;
	char	   *conninfo;
	char	   *sql;
	PGresult   *res;
	int			nestlevel;

	ua_cx_begin();
	vals[0] = run->fwd_pubs;
	ua_spi("SELECT coalesce(pg_catalog.bool_or(puballtables), false)"
		   "  FROM pg_catalog.pg_publication WHERE pubname = ANY ($1::text[])",
		   1, vals, true);
	if (strcmp(ua_spi_value(0, 1), "t") == 0)
	{
		pubdef = "FOR ALL TABLES";
		tables = "all tables";
		ua_cx_end();
	}
	else
	{
		char	   *list;
		char	   *count;

		ua_spi("SELECT pg_catalog.string_agg(pg_catalog.quote_ident(schemaname::text)"
			   "       || '.' || pg_catalog.quote_ident(tablename::text), ', '"
			   "       ORDER BY schemaname, tablename), count(*)"
			   "  FROM (SELECT DISTINCT schemaname, tablename"
			   "          FROM pg_catalog.pg_publication_tables"
			   "         WHERE pubname = ANY ($1::text[])) t",
			   1, vals, true);
		list = ua_spi_value(0, 1);
		count = ua_spi_value(0, 2);
		ua_cx_end();
		pubdef = psprintf("FOR TABLE %s", list);
		tables = psprintf("%s tables", count);
	}

	snprintf(run->slot_name, sizeof(run->slot_name), "ua_cutover_" UINT64_FORMAT "_%u",
			 (uint64) ua_origin(), MyDatabaseId);

	/* The publication: a leftover of an earlier direction is replaced. */
	ua_rq_exempt(run, run->deadline);
	run->did_pub = true;
	PQclear(ua_rq(run, "DROP PUBLICATION IF EXISTS " UA_REVERSE_NAME, 0, NULL));
	sql = psprintf("CREATE PUBLICATION " UA_REVERSE_NAME " %s", pubdef);
	PQclear(ua_rq(run, sql, 0, NULL));

	/* A slot of this name left by an abort that could not reach the peer. */
	vals[0] = run->slot_name;
	res = ua_rq(run, "SELECT active FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
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
		PQclear(ua_rq(run, "SELECT pg_catalog.pg_drop_replication_slot($1)", 1, vals));
		appendStringInfoString(detail, "dropped a slot left by an earlier attempt; ");
	}
	else
		PQclear(res);
	run->did_slot = true;
	res = ua_rq(run, "SELECT lsn::text FROM pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')",
				1, vals);
	appendStringInfo(detail, "publication %s on the peer (%s), slot %s there at %s, ",
					 UA_REVERSE_NAME, tables, run->slot_name, PQgetvalue(res, 0, 0));
	PQclear(res);

	/*
	 * The subscription.  Its statement holds the password: keep warnings
	 * (whose context would quote it) out of the log, and report only the
	 * message of an error (ua_cutover_run never shows its context).
	 */
	StartTransactionCommand();
	conninfo = MemoryContextStrdup(ua_worker_cxt, ua_peer_conninfo(run->peer));
	CommitTransactionCommand();
	MemoryContextSwitchTo(ua_worker_cxt);
	sql = psprintf("CREATE SUBSCRIPTION " UA_REVERSE_NAME " CONNECTION %s"
				   " PUBLICATION " UA_REVERSE_NAME
				   " WITH (create_slot = false, slot_name = %s, copy_data = false,"
				   " enabled = true)",
				   quote_literal_cstr(conninfo), quote_literal_cstr(run->slot_name));
	ua_cx_begin();
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("log_min_messages", "error", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "creating the reverse subscription failed");
	AtEOXact_GUC(true, nestlevel);
	ua_cx_end();
	run->did_sub = true;
	memset(sql, 0, strlen(sql));
	memset(conninfo, 0, strlen(conninfo));
	appendStringInfo(detail, "subscription %s here without copy", UA_REVERSE_NAME);
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

	snprintf(note, sizeof(note), "cutover attempt " INT64_FORMAT ": reverse round trip",
			 run->attempt);
	vals[0] = note;
	res = ua_rq(run, "SELECT origin::text, seq::text FROM upgrade_assist.emit_marker('cutover', $1)",
				1, vals);
	origin = pstrdup(PQgetvalue(res, 0, 0));
	seq = pstrdup(PQgetvalue(res, 0, 1));
	PQclear(res);

	vals[0] = origin;
	vals[1] = seq;
	for (;;)
	{
		bool		found;

		ua_cx_begin();
		ua_spi("SELECT 1 FROM upgrade_assist.marker"
			   " WHERE origin = $1::bigint AND seq = $2::bigint", 2, vals, true);
		found = SPI_processed > 0;
		ua_cx_end();
		if (found)
			break;
		if (GetCurrentTimestamp() >= run->deadline)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("the peer's marker %s did not arrive here within the timeout", seq),
					 errdetail("The reverse subscription %s does not deliver.", UA_REVERSE_NAME)));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 UA_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	appendStringInfo(detail, "peer's marker %s here after %.1f ms", seq, ua_ms_since(start));
}

/*
 * ua_takeover_committed
 *		After the takeover's result was lost: ask the peer on a fresh
 *		connection whether the forward subscription still exists.  Returns
 *		1 when it is gone (the takeover committed), 0 when it is there, -1
 *		when the peer cannot tell us.
 */
static int
ua_takeover_committed(UaRun *run)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   Max(UA_ABORT_REMOTE_MS,
														   ua_connect_timeout * 1000));
	MemoryContext cxt = CurrentMemoryContext;
	const char *vals[1] = {run->fwd_sub};
	volatile int result = -1;

	while (result < 0 && GetCurrentTimestamp() < deadline)
	{
		PG_TRY();
		{
			PGresult   *res;

			StartTransactionCommand();
			ua_peer_forget(run->peer);
			CommitTransactionCommand();
			MemoryContextSwitchTo(ua_worker_cxt);
			res = ua_remote(run,
							"SELECT count(*) FROM pg_catalog.pg_subscription s"
							"  JOIN pg_catalog.pg_database d ON d.oid = s.subdbid"
							" WHERE d.datname = pg_catalog.current_database()"
							"   AND s.subname = $1",
							1, vals, deadline, true);
			result = strcmp(PQgetvalue(res, 0, 0), "0") == 0 ? 1 : 0;
			PQclear(res);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			AbortOutOfAnyTransaction();
			MemoryContextSwitchTo(cxt);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 100, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		PG_END_TRY();
	}
	return result;
}

/*
 * unfence peer, the point of no return: one peer transaction drops the
 * forward subscription and lifts the peer's fence at its commit.
 */
static void
ua_step_unfence_peer(UaRun *run, StringInfo detail)
{
	const char *vals[1] = {run->fwd_sub};
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *volatile edata = NULL;

	/* Also proves the connection right before the one-shot statement. */
	ua_rq_exempt(run, run->deadline);

	/* From here a cancel must not interrupt: the outcome must be learnt. */
	HOLD_CANCEL_INTERRUPTS();
	UA_CUT_SET(past_ponr, true);
	PG_TRY();
	{
		PQclear(ua_remote(run, "SELECT upgrade_assist.cutover_takeover($1)",
						  1, vals, run->deadline, false));
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
		/* Sent, but the answer was lost: did it commit? */
		int			committed = ua_takeover_committed(run);

		if (committed == 1)
		{
			appendStringInfoString(detail, "the answer was lost, the peer shows it committed; ");
			edata = NULL;
		}
		else if (committed < 0)
			run->ponr_unknown = true;
	}
	if (edata != NULL)
	{
		if (!run->ponr_unknown)
			UA_CUT_SET(past_ponr, false);
		QueryCancelPending = false;
		RESUME_CANCEL_INTERRUPTS();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg_internal("%s", edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
	}
	UA_CUT_SET(writable_at, GetCurrentTimestamp());
	/* A cancel that came meanwhile is moot: the work is done. */
	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
	appendStringInfo(detail, "subscription %s dropped on the peer and its fence lifted",
					 run->fwd_sub);
}

const UaStepFn ua_step_fns[UA_NSTEPS] = {
	ua_step_checks, ua_step_lag, ua_step_fence, ua_step_drain, ua_step_marker,
	ua_step_wait, ua_step_sequences, ua_step_reverse, ua_step_reverse_rt,
	ua_step_unfence_peer
};


/* ---------------------------------------------------------------------------
 * Abort and cleanup
 * ---------------------------------------------------------------------------
 */

/*
 * ua_drop_local_sub
 *		Drop the reverse subscription here without touching its slot (the
 *		slot is on the peer and dropped separately).
 */
static void
ua_drop_local_sub(void)
{
	const char *vals[1] = {UA_REVERSE_NAME};

	ua_cx_begin();
	if (ua_spi("SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = $1"
			   "   AND subdbid = (SELECT oid FROM pg_catalog.pg_database"
			   "                   WHERE datname = pg_catalog.current_database())",
			   1, vals, true) > 0)
	{
		ua_spi("ALTER SUBSCRIPTION " UA_REVERSE_NAME " DISABLE", 0, NULL, false);
		ua_spi("ALTER SUBSCRIPTION " UA_REVERSE_NAME " SET (slot_name = NONE)", 0, NULL, false);
		ua_spi("DROP SUBSCRIPTION " UA_REVERSE_NAME, 0, NULL, false);
	}
	ua_cx_end();
}

/*
 * ua_drop_peer_slot
 *		Drop the reverse slot on the peer, ending a walsender that still
 *		holds it; throws when the peer cannot be reached by deadline.
 */
static void
ua_drop_peer_slot(UaRun *run, TimestampTz deadline)
{
	const char *vals[1] = {run->slot_name};

	for (;;)
	{
		PGresult   *res;
		bool		gone;

		ua_rq_until(run,
					"SELECT pg_catalog.pg_terminate_backend(active_pid)"
					"  FROM pg_catalog.pg_replication_slots"
					" WHERE slot_name = $1 AND active_pid IS NOT NULL",
					1, vals, deadline);
		ua_rq_until(run,
					"SELECT count(pg_catalog.pg_drop_replication_slot(slot_name))"
					"  FROM pg_catalog.pg_replication_slots"
					" WHERE slot_name = $1 AND NOT active",
					1, vals, deadline);
		res = ua_remote(run,
						"SELECT count(*) FROM pg_catalog.pg_replication_slots"
						" WHERE slot_name = $1", 1, vals, deadline, true);
		gone = strcmp(PQgetvalue(res, 0, 0), "0") == 0;
		PQclear(res);
		if (gone)
			return;
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("replication slot \"%s\" on the peer stays in use", run->slot_name)));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 20, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * ua_undo
 *		Run one undo action, noting its outcome in notes; never throws.
 */
static void
ua_undo(UaRun *run, StringInfo notes, const char *what,
		void (*action) (UaRun *run))
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		action(run);
		appendStringInfo(notes, "%s%s", notes->len ? "; " : "", what);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);

		appendStringInfo(notes, "%sFAILED to %s: %s", notes->len ? "; " : "",
						 what, edata->message);
	}
	PG_END_TRY();
}

static void
ua_undo_fence(UaRun *run pg_attribute_unused())
{
	(void) ua_fence_release("cutover abort");
}

static void
ua_undo_sub(UaRun *run pg_attribute_unused())
{
	ua_drop_local_sub();
}

static void
ua_undo_slot(UaRun *run)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   UA_ABORT_REMOTE_MS);

	ua_drop_peer_slot(run, deadline);
}

static void
ua_undo_pub(UaRun *run)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   UA_ABORT_REMOTE_MS);

	ua_rq_exempt(run, deadline);
	ua_rq_until(run, "DROP PUBLICATION IF EXISTS " UA_REVERSE_NAME, 0, NULL, deadline);
}

/*
 * ua_abort
 *		Undo what this attempt did, this side first (so that it is writable
 *		again at once), then the peer.  Writes what it did to notes.
 */
void
ua_abort(UaRun *run, StringInfo notes)
{
	HOLD_CANCEL_INTERRUPTS();
	QueryCancelPending = false;
	UA_CUT_SET(aborting, true);

	if (run->did_fence)
		ua_undo(run, notes, "lift the fence here", ua_undo_fence);
	if (run->did_sub)
		ua_undo(run, notes, "drop subscription " UA_REVERSE_NAME " here", ua_undo_sub);
	if (run->did_slot)
		ua_undo(run, notes, psprintf("drop slot %s on the peer", run->slot_name),
				ua_undo_slot);
	if (run->did_pub)
		ua_undo(run, notes, "drop publication " UA_REVERSE_NAME " on the peer",
				ua_undo_pub);
	if (notes->len == 0)
		appendStringInfoString(notes, "nothing to undo");
	appendStringInfoString(notes, "; forward replication untouched");

	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
}

/*
 * ua_cleanup
 *		After the point of no return: drop the old forward slot here once
 *		its walsender is gone (the peer dropped the subscription).
 */
void
ua_cleanup(UaRun *run, StringInfo notes)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, UA_SLOT_DROP_MS);
	MemoryContext cxt = CurrentMemoryContext;
	const char *vals[1] = {run->fwd_slot};

	PG_TRY();
	{
		for (;;)
		{
			char	   *pid = NULL;
			bool		exists;

			ua_cx_begin();
			exists = ua_spi("SELECT active_pid FROM pg_catalog.pg_replication_slots"
							" WHERE slot_name = $1", 1, vals, true) > 0;
			if (exists)
				pid = ua_spi_value(0, 1);
			if (exists && pid == NULL)
				ua_spi("SELECT pg_catalog.pg_drop_replication_slot($1)", 1, vals, false);
			else if (exists && ua_ms_since(start) > 1000)
			{
				/* The walsender outlived its subscriber: end it. */
				vals[0] = pid;
				ua_spi("SELECT pg_catalog.pg_terminate_backend($1::int)", 1, vals, false);
				vals[0] = run->fwd_slot;
			}
			ua_cx_end();
			if (!exists || pid == NULL)
				break;
			if (GetCurrentTimestamp() >= deadline)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_IN_USE),
						 errmsg("replication slot \"%s\" stays in use", run->fwd_slot)));
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 10, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		appendStringInfo(notes, "dropped the old forward slot %s here", run->fwd_slot);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);

		appendStringInfo(notes, "could not drop the old forward slot %s here: %s; drop it with pg_drop_replication_slot()",
						 run->fwd_slot, edata->message);
	}
	PG_END_TRY();
}
