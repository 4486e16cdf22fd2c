/*-------------------------------------------------------------------------
 *
 * cutover.c
 *	  cutover(): move the primary role to the peer, with the way back proven
 *	  before writes open there.
 *
 * The SQL function runs in the caller's backend and only watches: the work
 * is done by a background worker, so that a caller who is cancelled or whose
 * connection drops cannot leave it half done.  The caller reports each step
 * as a NOTICE when the worker finishes it and returns the step table.
 *
 * Steps (ua_step_names): checks, lag check, fence, drain, final marker, wait
 * for marker, sync sequences, reverse replication, reverse round trip,
 * unfence peer.  The last one is the point of no return: one transaction on
 * the peer that drops the forward subscription there and lifts the peer's
 * fence when it commits.  Any failure before it aborts: the fence here is
 * lifted, the reverse subscription here, its slot and the publication on the
 * peer are dropped, and the forward direction, which was never touched, goes
 * on as before.  A caller that leaves before the point of no return makes
 * the worker abort (SIGINT to the worker); after it, the worker finishes.
 *
 * Replication bookkeeping (README, "How the direction changes"): the forward
 * subscription is never paused or rewound.  The reverse direction gets a new
 * slot on the peer, created while the peer is fenced and after the final
 * marker arrived there, so it starts exactly after the last change that came
 * from here: nothing is skipped and nothing applied from here is sent back.
 * While both directions exist (reverse round trip until the point of no
 * return) the only rows that can travel back are markers, and the marker
 * table's replica trigger drops markers that come home.  The forward
 * subscription is dropped at the point of no return and its slot here right
 * after, so no slot is left that nobody consumes.
 *
 * Shared state: one UaCutoverShared per cluster (the fence is cluster-wide,
 * so one cutover runs at a time), under its own LWLock.  The caller and the
 * worker both write it; whoever ends last frees it.
 *
 * IDENTIFICATION
 *	  src/cutover.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "fence.h"
#include "upgrade_assist.h"

PG_FUNCTION_INFO_V1(cutover);
PG_FUNCTION_INFO_V1(cutover_resume);
PG_FUNCTION_INFO_V1(cutover_progress_rows);

/* The steps, in order. */
typedef enum UaStep
{
	UA_ST_CHECKS,
	UA_ST_LAG,
	UA_ST_FENCE,
	UA_ST_DRAIN,
	UA_ST_MARKER,
	UA_ST_WAIT,
	UA_ST_SEQUENCES,
	UA_ST_REVERSE,
	UA_ST_REVERSE_RT,
	UA_ST_UNFENCE_PEER,
	UA_NSTEPS
} UaStep;

static const char *const ua_step_names[UA_NSTEPS] = {
	"checks", "lag check", "fence", "drain", "final marker",
	"wait for marker", "sync sequences", "reverse replication",
	"reverse round trip", "unfence peer"
};

/* The row after the steps: "abort" or "cleanup". */
#define UA_EXTRA UA_NSTEPS

#define UA_DETAIL_MAX 512

/* Names of the objects a cutover creates (slot names add both ids). */
#define UA_REVERSE_NAME "upgrade_assist_cutover"

/* Bound of each remote action of an abort, and of the post-commit checks. */
#define UA_ABORT_REMOTE_MS 5000
#define UA_SLOT_DROP_MS 10000

/* Pause between two looks for a marker; the blackout waits on these. */
#define UA_POLL_MS 1

typedef struct UaStepState
{
	char		status[12];		/* "" not reached, running, done, failed,
								 * skipped, would do */
	TimestampTz started_at;
	int64		duration_us;
	char		detail[UA_DETAIL_MAX];
} UaStepState;

typedef struct UaCutoverShared
{
	LWLock	   *lock;
	bool		active;			/* slot taken (an attempt runs or ends) */
	bool		worker_done;	/* the worker wrote its outcome */
	bool		caller_attached;	/* the caller still waits for it */
	PGPROC	   *caller;
	PGPROC	   *worker;
	int			worker_pid;

	/* the request */
	Oid			dboid;
	Oid			userid;
	char		peer[NAMEDATALEN];
	int64		max_lag_ms;
	int64		timeout_ms;
	int64		margin;
	bool		reverse;
	bool		dry_run;
	char		pause_before[32];

	/* progress */
	bool		paused;
	bool		resume;
	int64		attempt;		/* cutover_history.attempt; 0 for a dry run */
	TimestampTz started_at;
	TimestampTz fenced_at;
	TimestampTz writable_at;
	int			running;		/* step running, -1 none */
	bool		aborting;
	bool		past_ponr;		/* the peer may be writable now */
	bool		abort_requested;
	char		abort_cause[128];
	char		extra_step[16];
	UaStepState steps[UA_NSTEPS + 1];
	char		outcome[16];
} UaCutoverShared;

/* What the worker knows about its attempt. */
typedef struct UaRun
{
	char		peer[NAMEDATALEN];
	TimestampTz deadline;
	int64		max_lag_ms;
	int64		margin;
	bool		reverse;
	bool		dry_run;
	int64		attempt;

	int			peer_version;
	char	   *fwd_sub;		/* forward subscription, on the peer */
	char	   *fwd_slot;		/* its slot, here */
	char	   *fwd_pubs;		/* its publications (text[] literal), here */
	char		slot_name[NAMEDATALEN]; /* reverse slot, on the peer */
	UaMarker	final_marker;

	/* what an abort must undo */
	bool		did_fence;
	bool		did_pub;
	bool		did_slot;
	bool		did_sub;
	bool		ponr_unknown;	/* the takeover's outcome could not be learnt */
} UaRun;

/* GUCs */
static char *ua_cutover_pause_before = NULL;
static int	ua_cutover_drain_ms = 5000;

static UaCutoverShared *ua_cut = NULL;

/* The worker's memory for its whole run (values read must outlive SPI). */
static MemoryContext ua_worker_cxt = NULL;

/* Why the caller is leaving, for the abort's reason. */
static const char *ua_caller_exit_cause = NULL;

typedef void (*UaStepFn) (UaRun *run, StringInfo detail);

PGDLLEXPORT void ua_cutover_worker_main(Datum main_arg);


/* ---------------------------------------------------------------------------
 * Shared memory and settings
 * ---------------------------------------------------------------------------
 */

/*
 * ua_cutover_shmem_request
 *		Ask for the shared state and its LWLock (shmem request hook).
 */
void
ua_cutover_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(UaCutoverShared)));
	RequestNamedLWLockTranche("upgrade_assist cutover", 1);
}

/*
 * ua_cutover_shmem_startup
 *		Attach to or create the shared state; caller holds AddinShmemInitLock.
 */
void
ua_cutover_shmem_startup(void)
{
	bool		found;

	ua_cut = ShmemInitStruct("upgrade_assist cutover",
							 MAXALIGN(sizeof(UaCutoverShared)), &found);
	if (!found)
	{
		memset(ua_cut, 0, sizeof(UaCutoverShared));
		ua_cut->lock = &(GetNamedLWLockTranche("upgrade_assist cutover"))->lock;
		ua_cut->running = -1;
	}
}

/*
 * ua_check_pause_before
 *		Check hook of upgrade_assist.cutover_pause_before: empty or a step.
 */
static bool
ua_check_pause_before(char **newval, void **extra pg_attribute_unused(),
					  GucSource source pg_attribute_unused())
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	for (int i = 0; i < UA_NSTEPS; i++)
		if (strcmp(*newval, ua_step_names[i]) == 0)
			return true;
	GUC_check_errdetail("Not a step of cutover(): \"%s\".", *newval);
	return false;
}

/*
 * ua_cutover_define_gucs
 *		The cutover's settings; called from _PG_init.
 */
void
ua_cutover_define_gucs(void)
{
	DefineCustomIntVariable("upgrade_assist.cutover_drain_timeout",
							"How long cutover() lets write transactions in flight finish after fencing.",
							"Then they are terminated, as fence() does; the timeout of the call bounds it too.",
							&ua_cutover_drain_ms,
							5000, 0, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("upgrade_assist.cutover_pause_before",
							   "Make cutover() stop before this step until cutover_resume() is called.",
							   "For rehearsals and tests: set it in the calling session.",
							   &ua_cutover_pause_before,
							   "",
							   PGC_SUSET, 0,
							   ua_check_pause_before, NULL, NULL);
}

static void
ua_cutover_require(void)
{
	ua_require_shared();
	if (ua_cut == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("upgrade_assist must be loaded via shared_preload_libraries")));
}


/* ---------------------------------------------------------------------------
 * Worker: local transactions, peer queries, progress
 * ---------------------------------------------------------------------------
 */

/* Start a local transaction with a snapshot and SPI. */
static void
ua_cx_begin(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/* Commit what ua_cx_begin started; back in the worker's memory. */
static void
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
static uint64
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
static char *
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

/* Update the shared progress under the lock. */
#define UA_CUT_SET(field, value) \
	do { \
		LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE); \
		ua_cut->field = (value); \
		LWLockRelease(ua_cut->lock); \
	} while (0)

/*
 * ua_step_finish
 *		Publish the end of step i (UA_EXTRA for the abort/cleanup row) and
 *		wake the caller, which reports it.
 */
static void
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
static void
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
		go = ua_cut->resume || ua_cut->abort_requested;
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
 *		Poll the peer until the marker (origin, seq) is there; false when the
 *		deadline passes first.
 */
static bool
ua_marker_on_peer(UaRun *run, int64 origin, int64 seq, TimestampTz deadline)
{
	char		o[32];
	char		s[32];
	const char *vals[2] = {o, s};

	snprintf(o, sizeof(o), INT64_FORMAT, origin);
	snprintf(s, sizeof(s), INT64_FORMAT, seq);
	for (;;)
	{
		PGresult   *res;
		bool		found;

		if (GetCurrentTimestamp() >= deadline)
			return false;
		res = ua_remote(run,
						"SELECT EXISTS (SELECT 1 FROM upgrade_assist.marker"
						" WHERE origin = $1 AND seq = $2)",
						2, vals, deadline, true);
		found = PQgetvalue(res, 0, 0)[0] == 't';
		PQclear(res);
		if (found)
			return true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 UA_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* An interval of us microseconds. */
static Datum
ua_interval_us(int64 us)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = us;
	return IntervalPGetDatum(iv);
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
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = TimestampTzPlusMilliseconds(start, run->max_lag_ms);

	ua_cx_begin();
	ua_insert_marker("probe", "cutover lag check", 0, &m);
	ua_cx_end();
	if (deadline > run->deadline)
		deadline = run->deadline;
	if (!ua_marker_on_peer(run, m.origin, m.seq, deadline))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication lag exceeds max_lag"),
				 errdetail("Probe marker " INT64_FORMAT " was not on the peer after %.0f ms (max_lag %lld ms).",
						   m.seq, ua_ms_since(start), (long long) run->max_lag_ms),
				 errhint("Wait until sync_status says 'in sync', or raise max_lag.")));
	appendStringInfo(detail, "probe marker " INT64_FORMAT " on the peer after %.1f ms",
					 m.seq, ua_ms_since(start));
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
	TimestampTz start = GetCurrentTimestamp();

	if (!ua_marker_on_peer(run, run->final_marker.origin, run->final_marker.seq,
						   run->deadline))
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("the final marker did not reach peer \"%s\" within the timeout",
						run->peer)));
	appendStringInfo(detail, "marker " INT64_FORMAT " on the peer after %.1f ms",
					 run->final_marker.seq, ua_ms_since(start));
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

static const UaStepFn ua_step_fns[UA_NSTEPS] = {
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
static void
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
static void
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


/* ---------------------------------------------------------------------------
 * History
 * ---------------------------------------------------------------------------
 */

/* Insert this attempt's row ('running'); returns its attempt number. */
static int64
ua_history_begin(UaRun *run, TimestampTz started)
{
	const char *vals[2];
	int64		attempt;

	vals[0] = run->peer;
	vals[1] = timestamptz_to_str(started);
	ua_cx_begin();
	/* Only one cutover runs in the cluster: any other 'running' row is dead. */
	ua_spi("UPDATE upgrade_assist.cutover_history"
		   "   SET outcome = 'interrupted', finished_at = pg_catalog.now(),"
		   "       reason = 'the worker ended before finishing (server restart or crash)'"
		   " WHERE outcome = 'running'", 0, NULL, false);
	/* No sequence: sync_sequences would move it, and one runs at a time. */
	ua_spi("INSERT INTO upgrade_assist.cutover_history (attempt, peer, started_at, outcome)"
		   " SELECT coalesce(max(attempt), 0) + 1, $1, $2::timestamptz, 'running'"
		   "   FROM upgrade_assist.cutover_history RETURNING attempt::text",
		   2, vals, false);
	attempt = strtoi64(ua_spi_value(0, 1), NULL, 10);
	ua_cx_end();
	return attempt;
}

/* The steps as a jsonb array literal. */
static char *
ua_steps_json(void)
{
	StringInfoData buf;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i <= UA_EXTRA; i++)
	{
		UaStepState *st = &ua_cut->steps[i];

		if (st->status[0] == '\0')
			continue;
		if (!first)
			appendStringInfoString(&buf, ", ");
		first = false;
		appendStringInfoString(&buf, "{\"step\": ");
		escape_json(&buf, i < UA_NSTEPS ? ua_step_names[i] : ua_cut->extra_step);
		appendStringInfoString(&buf, ", \"status\": ");
		escape_json(&buf, st->status);
		appendStringInfoString(&buf, ", \"started_at\": ");
		if (st->started_at)
			escape_json(&buf, timestamptz_to_str(st->started_at));
		else
			appendStringInfoString(&buf, "null");
		appendStringInfo(&buf, ", \"duration_ms\": %.3f, \"detail\": ",
						 st->duration_us / 1000.0);
		escape_json(&buf, st->detail);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/* Write the attempt's outcome. */
static void
ua_history_end(UaRun *run, const char *outcome, const char *failed_step,
			   const char *reason)
{
	const char *vals[8];
	char		attempt[32];

	snprintf(attempt, sizeof(attempt), INT64_FORMAT, run->attempt);
	vals[0] = attempt;
	vals[1] = outcome;
	vals[2] = failed_step;
	vals[3] = reason;
	vals[4] = ua_cut->fenced_at ? pstrdup(timestamptz_to_str(ua_cut->fenced_at)) : NULL;
	vals[5] = ua_cut->writable_at ? pstrdup(timestamptz_to_str(ua_cut->writable_at)) : NULL;
	vals[6] = ua_steps_json();
	ua_cx_begin();
	ua_spi("UPDATE upgrade_assist.cutover_history"
		   "   SET finished_at = pg_catalog.clock_timestamp(), outcome = $2,"
		   "       failed_step = $3, reason = $4,"
		   "       fenced_at = $5::timestamptz, peer_writable_at = $6::timestamptz,"
		   "       blackout = $6::timestamptz - $5::timestamptz, steps = $7::jsonb"
		   " WHERE attempt = $1::bigint",
		   7, vals, false);
	ua_cx_end();
}


/* ---------------------------------------------------------------------------
 * The worker
 * ---------------------------------------------------------------------------
 */

/* What a dry run says each later step would do. */
static const char *
ua_would_do(UaRun *run, int i)
{
	switch (i)
	{
		case UA_ST_FENCE:
			return "fence this cluster";
		case UA_ST_DRAIN:
			return psprintf("let write transactions finish for up to %d ms, then terminate them",
							ua_cutover_drain_ms);
		case UA_ST_MARKER:
			return "write a 'cutover' marker";
		case UA_ST_WAIT:
			return psprintf("wait until it is on the peer through subscription %s", run->fwd_sub);
		case UA_ST_SEQUENCES:
			return psprintf("move the peer's sequences past this side's values (margin " INT64_FORMAT ")",
							run->margin);
		case UA_ST_REVERSE:
			return run->reverse ?
				"create publication " UA_REVERSE_NAME " and a slot on the peer, subscription " UA_REVERSE_NAME " here without copy" :
				"nothing (reverse => false)";
		case UA_ST_REVERSE_RT:
			return run->reverse ? "write a marker on the peer and wait for it here" :
				"nothing (reverse => false)";
		case UA_ST_UNFENCE_PEER:
			return psprintf("drop subscription %s on the peer and lift its fence (point of no return)",
							run->fwd_sub);
	}
	return "";
}

/*
 * ua_cutover_run
 *		All steps, then the abort or the cleanup, then the history row.
 */
static void
ua_cutover_run(UaRun *run)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int failed = -1;
	char	   *volatile reason = NULL;
	const char *outcome;
	StringInfoData extra;

	if (!run->dry_run)
	{
		run->attempt = ua_history_begin(run, ua_cut->started_at);
		UA_CUT_SET(attempt, run->attempt);
	}

	for (int i = 0; i < UA_NSTEPS; i++)
	{
		StringInfoData detail;
		TimestampTz started;

		if (failed >= 0)
		{
			ua_step_finish(i, "skipped", 0, NULL);
			continue;
		}
		if (run->dry_run && i > UA_ST_LAG)
		{
			ua_step_finish(i, "would do", 0, ua_would_do(run, i));
			continue;
		}
		if (!run->reverse && (i == UA_ST_REVERSE || i == UA_ST_REVERSE_RT))
		{
			ua_step_finish(i, "skipped", 0, "reverse => false");
			continue;
		}

		initStringInfo(&detail);
		started = GetCurrentTimestamp();
		UA_CUT_SET(running, i);
		PG_TRY();
		{
			bool		abort_requested;

			ua_pause_point(run, i);
			LWLockAcquire(ua_cut->lock, LW_SHARED);
			abort_requested = ua_cut->abort_requested;
			LWLockRelease(ua_cut->lock);
			if (abort_requested)
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("canceling cutover")));
			ua_step_fns[i] (run, &detail);
		}
		PG_CATCH();
		{
			ErrorData  *edata = ua_recover_from_error(cxt);

			LWLockAcquire(ua_cut->lock, LW_SHARED);
			if (ua_cut->abort_requested && !run->ponr_unknown)
				reason = psprintf("%s", ua_cut->abort_cause);
			LWLockRelease(ua_cut->lock);
			if (reason == NULL)
				reason = edata->detail ?
					psprintf("%s: %s", edata->message, edata->detail) :
					pstrdup(edata->message);
			failed = i;
		}
		PG_END_TRY();
		ua_step_finish(i, failed == i ? "failed" : "done", started,
					   failed == i ? reason : detail.data);
	}

	initStringInfo(&extra);
	if (failed >= 0 && run->ponr_unknown)
	{
		outcome = "unknown";
		strlcpy(ua_cut->extra_step, "abort", sizeof(ua_cut->extra_step));
		appendStringInfoString(&extra,
							   "not aborted: the peer may have taken over; this cluster stays fenced; "
							   "check fence_status and the subscriptions on the peer");
		ua_step_finish(UA_EXTRA, "skipped", 0, extra.data);
	}
	else if (failed >= 0)
	{
		TimestampTz started = GetCurrentTimestamp();

		outcome = "aborted";
		strlcpy(ua_cut->extra_step, "abort", sizeof(ua_cut->extra_step));
		ua_abort(run, &extra);
		ua_step_finish(UA_EXTRA, "done", started, extra.data);
	}
	else if (!run->dry_run)
	{
		TimestampTz started = GetCurrentTimestamp();

		outcome = "succeeded";
		strlcpy(ua_cut->extra_step, "cleanup", sizeof(ua_cut->extra_step));
		ua_cleanup(run, &extra);
		ua_step_finish(UA_EXTRA, "done", started, extra.data);
	}
	else
		outcome = "dry run";

	if (!run->dry_run)
		ua_history_end(run, outcome, failed >= 0 ? ua_step_names[failed] : NULL, reason);

	LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE);
	strlcpy(ua_cut->outcome, outcome, sizeof(ua_cut->outcome));
	LWLockRelease(ua_cut->lock);
}

/*
 * ua_cutover_worker_main
 *		Entry point of the cutover worker.  Runs as the caller's role in the
 *		caller's database, writing through the fence.
 */
void
ua_cutover_worker_main(Datum main_arg pg_attribute_unused())
{
	UaRun		run;
	Oid			dboid;
	Oid			userid;
	MemoryContext cxt;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	memset(&run, 0, sizeof(run));
	LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE);
	ua_cut->worker = MyProc;
	ua_cut->worker_pid = MyProcPid;
	dboid = ua_cut->dboid;
	userid = ua_cut->userid;
	strlcpy(run.peer, ua_cut->peer, sizeof(run.peer));
	run.max_lag_ms = ua_cut->max_lag_ms;
	run.margin = ua_cut->margin;
	run.reverse = ua_cut->reverse;
	run.dry_run = ua_cut->dry_run;
	run.deadline = TimestampTzPlusMilliseconds(ua_cut->started_at, ua_cut->timeout_ms);
	LWLockRelease(ua_cut->lock);

	BackgroundWorkerInitializeConnectionByOid(dboid, userid, 0);
	pgstat_report_appname("upgrade_assist cutover");
	ua_fence_exempt_session();

	cxt = AllocSetContextCreate(TopMemoryContext, "upgrade_assist cutover",
								ALLOCSET_DEFAULT_SIZES);
	ua_worker_cxt = cxt;
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		ua_cutover_run(&run);
	}
	PG_CATCH();
	{
		/* Outside any step (the history table): say so, then exit. */
		LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE);
		strlcpy(ua_cut->outcome, "failed", sizeof(ua_cut->outcome));
		ua_cut->worker_done = true;
		ua_cut->worker = NULL;
		if (!ua_cut->caller_attached)
			ua_cut->active = false;
		else if (ua_cut->caller)
			SetLatch(&ua_cut->caller->procLatch);
		LWLockRelease(ua_cut->lock);
		PG_RE_THROW();
	}
	PG_END_TRY();

	LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE);
	ua_cut->worker_done = true;
	ua_cut->worker = NULL;
	ua_cut->running = -1;
	if (!ua_cut->caller_attached)
		ua_cut->active = false;
	else if (ua_cut->caller)
		SetLatch(&ua_cut->caller->procLatch);
	LWLockRelease(ua_cut->lock);
}


/* ---------------------------------------------------------------------------
 * The caller
 * ---------------------------------------------------------------------------
 */

/*
 * ua_cutover_caller_exit
 *		The caller stops waiting (error, cancel, termination, lost client):
 *		before the point of no return the worker is told to abort.  Runs
 *		from PG_ENSURE_ERROR_CLEANUP; never throws.
 */
static void
ua_cutover_caller_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	int			pid = 0;

	LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE);
	if (ua_cut->active && ua_cut->caller == MyProc)
	{
		ua_cut->caller_attached = false;
		ua_cut->caller = NULL;
		if (ua_cut->worker_done)
			ua_cut->active = false;
		else if (!ua_cut->past_ponr && !ua_cut->abort_requested)
		{
			ua_cut->abort_requested = true;
			strlcpy(ua_cut->abort_cause,
					ua_caller_exit_cause ? ua_caller_exit_cause : "the caller stopped waiting",
					sizeof(ua_cut->abort_cause));
			pid = ua_cut->worker_pid;
		}
	}
	LWLockRelease(ua_cut->lock);
	if (pid > 0)
		(void) kill(pid, SIGINT);
}

/*
 * ua_report_steps
 *		NOTICE for each step the worker finished since the last call.
 */
static void
ua_report_steps(bool *reported)
{
	for (int i = 0; i <= UA_EXTRA; i++)
	{
		UaStepState st;
		char		name[32];

		if (reported[i])
			continue;
		LWLockAcquire(ua_cut->lock, LW_SHARED);
		st = ua_cut->steps[i];
		strlcpy(name, i < UA_NSTEPS ? ua_step_names[i] : ua_cut->extra_step, sizeof(name));
		LWLockRelease(ua_cut->lock);
		if (st.status[0] == '\0')
			continue;
		reported[i] = true;
		if (strcmp(st.status, "skipped") == 0 && i < UA_NSTEPS)
			continue;
		ereport(NOTICE,
				(st.started_at ?
				 errmsg("cutover step \"%s\": %s (%.1f ms)", name, st.status,
						st.duration_us / 1000.0) :
				 errmsg("cutover step \"%s\": %s", name, st.status),
				 st.detail[0] ? errdetail_internal("%s", st.detail) : 0));
	}
}

/*
 * ua_cutover_wait
 *		Wait for the worker, reporting steps; notices a lost client.
 */
static void
ua_cutover_wait(BackgroundWorkerHandle *handle, bool *reported)
{
	for (;;)
	{
		bool		done;
		pid_t		pid;

		ua_report_steps(reported);
		LWLockAcquire(ua_cut->lock, LW_SHARED);
		done = ua_cut->worker_done;
		LWLockRelease(ua_cut->lock);
		if (done)
			break;
		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
		{
			LWLockAcquire(ua_cut->lock, LW_SHARED);
			done = ua_cut->worker_done;
			LWLockRelease(ua_cut->lock);
			if (done)
				break;
			/* Free the slot with the caller's exit (nobody else will). */
			UA_CUT_SET(worker_done, true);
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("the cutover worker exited before it finished"),
					 errhint("This cluster may still be fenced: see upgrade_assist.fence_status, upgrade_assist.cutover_history and the server log.")));
		}
		if (ua_client_connection_lost())
		{
			ua_caller_exit_cause = "the caller's connection was lost";
			ereport(FATAL,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("connection to client lost during cutover")));
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (ProcDiePending)
			ua_caller_exit_cause = "the caller was terminated";
		else if (QueryCancelPending)
			ua_caller_exit_cause = "the caller was cancelled";
		CHECK_FOR_INTERRUPTS();
	}
	ua_report_steps(reported);
}

/*
 * cutover(peer, max_lag, timeout, sequence_margin, reverse, dry_run)
 *		returns setof (step, status, started_at, duration, detail)
 *
 *		Start the cutover worker and report its steps.  A failed step is a
 *		row, not an error (with a WARNING); errors: 22004/22023 for bad
 *		arguments, the peer lookup's errors, 25001 when the caller's
 *		transaction has written, 55006 when a cutover runs already, 53000
 *		when no worker can start.
 */
Datum
cutover(PG_FUNCTION_ARGS)
{
	char	   *peer;
	int64		max_lag_ms;
	int64		timeout_ms;
	int64		margin;
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	bool		reported[UA_NSTEPS + 1] = {false};
	UaCutoverShared result;

	ua_cutover_require();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("peer must not be null")));
	peer = text_to_cstring(PG_GETARG_TEXT_PP(0));
	max_lag_ms = ua_interval_to_ms(PG_ARGISNULL(1) ? NULL : PG_GETARG_INTERVAL_P(1), "max_lag");
	timeout_ms = ua_interval_to_ms(PG_ARGISNULL(2) ? NULL : PG_GETARG_INTERVAL_P(2), "timeout");
	if (max_lag_ms <= 0 || timeout_ms <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_lag and timeout must be positive")));
	if (PG_ARGISNULL(3) || PG_ARGISNULL(4) || PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sequence_margin, reverse and dry_run must not be null")));
	margin = PG_GETARG_INT64(3);
	if (margin < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sequence_margin must not be negative")));
	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cutover() must be called in a transaction that has not written"),
				 errhint("The fence's drain would wait for this very transaction.")));
	ua_peer_check(peer);
	store = ua_materialize_srf(fcinfo, &tupdesc);
	/* The worker's drain must not wait for (or terminate) this caller. */
	ua_fence_leave_drain();

	LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE);
	if (ua_cut->active)
	{
		int64		attempt = ua_cut->attempt;
		char		other[NAMEDATALEN];

		strlcpy(other, ua_cut->peer, sizeof(other));
		LWLockRelease(ua_cut->lock);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("a cutover is running already"),
				 errdetail("Attempt " INT64_FORMAT " to peer \"%s\".", attempt, other)));
	}
	{
		LWLock	   *lock = ua_cut->lock;

		memset(ua_cut, 0, sizeof(UaCutoverShared));
		ua_cut->lock = lock;
	}
	ua_cut->active = true;
	ua_cut->caller_attached = true;
	ua_cut->caller = MyProc;
	ua_cut->running = -1;
	ua_cut->dboid = MyDatabaseId;
	ua_cut->userid = GetUserId();
	strlcpy(ua_cut->peer, peer, sizeof(ua_cut->peer));
	ua_cut->max_lag_ms = max_lag_ms;
	ua_cut->timeout_ms = timeout_ms;
	ua_cut->margin = margin;
	ua_cut->reverse = PG_GETARG_BOOL(4);
	ua_cut->dry_run = PG_GETARG_BOOL(5);
	strlcpy(ua_cut->pause_before, ua_cutover_pause_before ? ua_cutover_pause_before : "",
			sizeof(ua_cut->pause_before));
	ua_cut->started_at = GetCurrentTimestamp();
	LWLockRelease(ua_cut->lock);

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "upgrade_assist");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "ua_cutover_worker_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "upgrade_assist cutover to %s", peer);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "upgrade_assist cutover");
	bgw.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle) ||
		WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
	{
		UA_CUT_SET(active, false);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the cutover worker"),
				 errhint("Raise max_worker_processes.")));
	}

	ua_caller_exit_cause = NULL;
	PG_ENSURE_ERROR_CLEANUP(ua_cutover_caller_exit, (Datum) 0);
	{
		ua_cutover_wait(handle, reported);
	}
	PG_END_ENSURE_ERROR_CLEANUP(ua_cutover_caller_exit, (Datum) 0);

	LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE);
	result = *ua_cut;
	ua_cut->caller_attached = false;
	ua_cut->caller = NULL;
	ua_cut->active = false;
	LWLockRelease(ua_cut->lock);

	for (int i = 0; i <= UA_EXTRA; i++)
	{
		UaStepState *st = &result.steps[i];
		Datum		values[5];
		bool		nulls[5] = {false};

		if (st->status[0] == '\0')
			continue;
		values[0] = CStringGetTextDatum(i < UA_NSTEPS ? ua_step_names[i] : result.extra_step);
		values[1] = CStringGetTextDatum(st->status);
		values[2] = TimestampTzGetDatum(st->started_at);
		nulls[2] = st->started_at == 0;
		values[3] = ua_interval_us((st->duration_us));
		nulls[3] = st->started_at == 0;
		values[4] = CStringGetTextDatum(st->detail);
		nulls[4] = st->detail[0] == '\0';
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	if (strcmp(result.outcome, "succeeded") != 0 && strcmp(result.outcome, "dry run") != 0)
		ereport(WARNING,
				(errmsg("cutover to \"%s\" %s", peer,
						strcmp(result.outcome, "aborted") == 0 ? "was aborted" :
						"ended in an unknown state"),
				 errhint("The step table says which step failed and why.")));
	return (Datum) 0;
}

/*
 * cutover_resume() returns boolean
 *		Let a cutover paused by upgrade_assist.cutover_pause_before go on;
 *		false when none is paused.
 */
Datum
cutover_resume(PG_FUNCTION_ARGS pg_attribute_unused())
{
	bool		resumed = false;

	ua_cutover_require();
	LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE);
	if (ua_cut->active && ua_cut->paused && !ua_cut->worker_done)
	{
		ua_cut->resume = true;
		resumed = true;
		if (ua_cut->worker)
			SetLatch(&ua_cut->worker->procLatch);
	}
	LWLockRelease(ua_cut->lock);
	PG_RETURN_BOOL(resumed);
}

/*
 * cutover_progress_rows() returns setof (attempt, peer, phase, started_at,
 *		elapsed, blackout, past_point_of_no_return): one row while a cutover
 *		runs; the view cutover_progress selects from it.
 */
Datum
cutover_progress_rows(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	UaCutoverShared s;
	TimestampTz now = GetCurrentTimestamp();
	Datum		values[7];
	bool		nulls[7] = {false};
	char	   *phase;

	ua_cutover_require();
	store = ua_materialize_srf(fcinfo, &tupdesc);
	LWLockAcquire(ua_cut->lock, LW_SHARED);
	s = *ua_cut;
	LWLockRelease(ua_cut->lock);
	if (!s.active || s.worker_done)
		return (Datum) 0;

	if (s.aborting)
		phase = "aborting";
	else if (s.paused && s.running >= 0)
		phase = psprintf("paused before %s", ua_step_names[s.running]);
	else if (s.running >= 0)
		phase = (char *) ua_step_names[s.running];
	else
		phase = "starting";

	values[0] = Int64GetDatum(s.attempt);
	nulls[0] = s.attempt == 0;
	values[1] = CStringGetTextDatum(s.peer);
	values[2] = CStringGetTextDatum(phase);
	values[3] = TimestampTzGetDatum(s.started_at);
	values[4] = ua_interval_us((now - s.started_at));
	if (s.fenced_at)
		values[5] = ua_interval_us(((s.writable_at ? s.writable_at : now) - s.fenced_at));
	else
		nulls[5] = true;
	values[6] = BoolGetDatum(s.past_ponr);
	tuplestore_putvalues(store, tupdesc, values, nulls);
	return (Datum) 0;
}
