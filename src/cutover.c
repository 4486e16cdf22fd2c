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
 * Steps (ua_step_names; their code is in cutover_steps.c): checks, lag
 * check, fence, drain, final marker, wait
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
#include "cutover.h"
#include "fence.h"
#include "upgrade_assist.h"

PG_FUNCTION_INFO_V1(cutover);
PG_FUNCTION_INFO_V1(cutover_resume);
PG_FUNCTION_INFO_V1(cutover_progress_rows);

const char *const ua_step_names[UA_NSTEPS] = {
	"checks", "lag check", "fence", "drain", "final marker",
	"wait for marker", "sync sequences", "reverse replication",
	"reverse round trip", "unfence peer"
};

/* GUCs */
static char *ua_cutover_pause_before = NULL;
int			ua_cutover_drain_ms = 5000;

UaCutoverShared *ua_cut = NULL;

/* The worker's memory for its whole run (values read must outlive SPI). */
MemoryContext ua_worker_cxt = NULL;

/* Why the caller is leaving, for the abort's reason. */
static const char *ua_caller_exit_cause = NULL;

/* The worker got SIGTERM: abort before the point of no return, then exit. */
volatile sig_atomic_t ua_worker_terminated = false;

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
			abort_requested = ua_cut->abort_requested || ua_worker_terminated;
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
			if (ua_worker_terminated && !run->ponr_unknown)
				reason = pstrdup("the cutover worker was terminated (pg_terminate_backend or server shutdown)");
			else if (ua_cut->abort_requested && !run->ponr_unknown)
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
 * ua_worker_finish
 *		Publish the end of the worker's run (failure: the error that ended
 *		it outside any step, else NULL), wake the caller, or free the slot
 *		when the caller is gone.
 */
static void
ua_worker_finish(const char *failure)
{
	LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE);
	if (failure)
	{
		strlcpy(ua_cut->outcome, "failed", sizeof(ua_cut->outcome));
		strlcpy(ua_cut->failure, failure, sizeof(ua_cut->failure));
	}
	ua_cut->worker_done = true;
	ua_cut->worker = NULL;
	ua_cut->running = -1;
	if (ua_cut->caller == NULL)
		ua_cut->active = false;
	else
		SetLatch(&ua_cut->caller->procLatch);
	LWLockRelease(ua_cut->lock);
}

/*
 * ua_cutover_sigterm
 *		SIGTERM (pg_terminate_backend, server shutdown) does not kill the
 *		worker mid-step: it cancels what runs, like SIGINT, so that the
 *		attempt aborts cleanly before the point of no return (or finishes
 *		after it), and the worker then exits.
 */
static void
ua_cutover_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	ua_worker_terminated = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
	errno = save_errno;
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

	pqsignal(SIGTERM, ua_cutover_sigterm);
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
		MemoryContextSwitchTo(cxt);
		ua_worker_finish(CopyErrorData()->message);
		PG_RE_THROW();
	}
	PG_END_TRY();
	ua_worker_finish(NULL);
}


/* An interval of us microseconds. */
static Datum
ua_interval_us(int64 us)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = us;
	return IntervalPGetDatum(iv);
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
	ua_cut->caller = NULL;
	ua_cut->active = false;
	LWLockRelease(ua_cut->lock);

	if (strcmp(result.outcome, "failed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("the cutover worker failed: %s", result.failure),
				 errhint("This cluster may be fenced: see upgrade_assist.fence_status and the server log.")));

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
		values[3] = ua_interval_us(st->duration_us);
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
	values[4] = ua_interval_us(now - s.started_at);
	if (s.fenced_at)
		values[5] = ua_interval_us((s.writable_at ? s.writable_at : now) - s.fenced_at);
	else
		nulls[5] = true;
	values[6] = BoolGetDatum(s.past_ponr);
	tuplestore_putvalues(store, tupdesc, values, nulls);
	return (Datum) 0;
}
