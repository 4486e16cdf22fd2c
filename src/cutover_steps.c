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
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "cutover.h"
#include "cutover_command.h"
#include "fence.h"
#include "marker.h"
#include "remote.h"
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

/* ---------------------------------------------------------------------------
 * The steps.  Each throws on failure; detail gets what the row shows.
 * ---------------------------------------------------------------------------
 */

/*
 * checks: this side is primary, the peer runs the extension and is fenced,
 * exactly one enabled subscription there consumes a slot of this database
 * with a running apply worker, the marker table is in its publications, no
 * leftover reverse subscription here.
 */
static void
ua_step_checks(UaRun *run, StringInfo detail)
{
	PGresult   *res;
	char	   *slots;
	const char *vals[2];
	bool		ok;

	if (ua_fence_is_up())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this cluster is fenced"),
				 errhint("cutover() runs on the cluster that is primary now; to go back, call it on the other cluster.")));

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
	ok = strtoi64(PQgetvalue(res, 0, 1), NULL, 10) != ua_origin();
	PQclear(res);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("peer \"%s\" is this cluster", run->peer)));

	res = ua_cutover_remote(run, "SELECT fenced FROM upgrade_assist.fence_status", 0, NULL);
	ok = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("peer \"%s\" is not fenced", run->peer),
				 errdetail("Writes on the peer before the cutover would never reach this cluster."),
				 errhint("Fence the new side until its cutover: SELECT upgrade_assist.fence('until cutover') there.")));

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
		if (ua_spi_exec("SELECT 1 FROM pg_catalog.pg_subscription"
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
	ua_xact_end(run->cxt);

	appendStringInfo(detail,
					 "peer on PostgreSQL %d.%d, fenced; forward subscription %s there (slot %s here, publications %s)",
					 run->peer_version / 10000, run->peer_version % 10000, run->fwd_sub, run->fwd_slot, run->fwd_pubs);
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
	ua_fence_engage(reason);
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

/* sync sequences: the peer's sequences past this side's values. */
static void
ua_step_sequences(UaRun *run, StringInfo detail)
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
	run->did_pub = true;
	PQclear(ua_cutover_remote(run, "DROP PUBLICATION IF EXISTS " UA_REVERSE_NAME, 0, NULL));
	sql = psprintf("CREATE PUBLICATION " UA_REVERSE_NAME " %s", pubdef);
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
		appendStringInfoString(detail, "dropped a slot left by an earlier attempt; ");
	}
	else
		PQclear(res);
	run->did_slot = true;
	res = ua_cutover_remote(run, "SELECT lsn::text FROM pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')",
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
		volatile bool failed = false;

		PG_TRY();
		{
			PGresult   *res;

			StartTransactionCommand();
			ua_peer_forget(run->peer);
			CommitTransactionCommand();
			MemoryContextSwitchTo(run->cxt);
			res = ua_cutover_remote_ext(run,
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
			failed = true;
		}
		PG_END_TRY();
		/* Cancel is held off here: only a termination can interrupt. */
		if (failed)
			(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 100, UA_WE_PEER);
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
	ua_cutover_remote_exempt(run, run->deadline);

	/* From here a cancel must not interrupt: the outcome must be learnt. */
	HOLD_CANCEL_INTERRUPTS();
	UA_CUTOVER_SET(past_ponr, true);
	PG_TRY();
	{
		PQclear(ua_cutover_remote_ext(run, "SELECT upgrade_assist.cutover_takeover($1)",
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
			UA_CUTOVER_SET(past_ponr, false);
		QueryCancelPending = false;
		RESUME_CANCEL_INTERRUPTS();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg_internal("%s", edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
	}
	UA_CUTOVER_SET(writable_at, GetCurrentTimestamp());
	/* A cancel that came meanwhile is moot: the work is done. */
	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
	appendStringInfo(detail, "subscription %s dropped on the peer and its fence lifted",
					 run->fwd_sub);
}

const UaStepFn ua_cutover_step_fns[UA_NSTEPS] = {
	ua_step_checks, ua_step_lag, ua_step_fence, ua_step_drain, ua_step_marker,
	ua_step_wait, ua_step_sequences, ua_step_reverse, ua_step_reverse_rt,
	ua_step_unfence_peer
};
