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
 * Steps (ua_cutover_step_names; the worker's run is in cutover_worker.c,
 * the steps in cutover_steps.c): checks, lag check, fence, drain, final
 * marker, wait for marker, sync sequences, reverse replication, reverse
 * round trip, unfence peer.  The last one is the point of no return: one transaction on
 * the peer that drops the forward subscription there and lifts the peer's
 * fence when it commits.  Any failure before it aborts: the fence here is
 * lifted, the reverse subscription here, its slot and the publication on the
 * peer are dropped, and the forward direction, which was never touched, goes
 * on as before.  A caller that leaves before the point of no return makes
 * the worker abort (SIGINT to the worker); after it, the worker finishes.
 *
 * Replication bookkeeping (docs/cutover.md, "How the direction changes"): the forward
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
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "cutover.h"
#include "cutover_command.h"
#include "fence.h"
#include "preflight.h"
#include "remote.h"
#include "util.h"

PG_FUNCTION_INFO_V1(cutover);
PG_FUNCTION_INFO_V1(cutover_resume);
PG_FUNCTION_INFO_V1(cutover_progress_rows);

const char *const ua_cutover_step_names[UA_NSTEPS] = {
	"checks", "lag check", "prepare", "fence", "drain", "final marker",
	"wait for marker", "sync sequences", "reverse replication",
	"reverse round trip", "unfence peer"
};

/* GUCs */
static char *ua_cutover_pause_before = NULL;
int			ua_cutover_drain_ms = 5000;

/* Shared state; NULL unless the library was preloaded. */
UaCutoverShared *ua_cutover_state = NULL;

/* Why the caller is leaving, for the abort's reason. */
static const char *ua_caller_exit_cause = NULL;

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

	ua_cutover_state = ShmemInitStruct("upgrade_assist cutover",
							 MAXALIGN(sizeof(UaCutoverShared)), &found);
	if (!found)
	{
		memset(ua_cutover_state, 0, sizeof(UaCutoverShared));
		ua_cutover_state->lock = &(GetNamedLWLockTranche("upgrade_assist cutover"))->lock;
		ua_cutover_state->running = -1;
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
	if (strcmp(*newval, UA_PAUSE_TAKEOVER) == 0 ||
		strcmp(*newval, UA_PAUSE_TAKEOVER_ANSWER) == 0)
		return true;
	for (int i = 0; i < UA_NSTEPS; i++)
		if (strcmp(*newval, ua_cutover_step_names[i]) == 0)
			return true;
	GUC_check_errdetail("Not a step of cutover(): \"%s\".", *newval);
	return false;
}

/*
 * ua_cutover_init
 *		The cutover's settings; called from _PG_init.
 */
void
ua_cutover_init(void)
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
	ua_cutover_command_init();
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
 * ua_cutover_read_accept
 *		cutover()'s accept argument (text[] of preflight check names, or
 *		'{*}' for every finding) into out (UA_ACCEPT_MAX bytes): the names,
 *		each once, comma-separated; "" for none.  Throws 22004 for a NULL
 *		array or element, 22023 for a name that is no check.
 */
static void
ua_cutover_read_accept(FunctionCallInfo fcinfo, int argno, char *out)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	StringInfoData buf;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("accept must not be null"),
				 errhint("Pass '{}' to accept no preflight finding.")));
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("accept must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
	{
		char	   *name;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("accept must not contain nulls")));
		name = TextDatumGetCString(elems[i]);
		if (strcmp(name, "*") != 0 && !ua_preflight_check_known(name))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" is not a preflight check", name),
					 errhint("accept takes the names in the check column of upgrade_assist.preflight(), or '*' for every finding.")));
		if (!ua_preflight_accepted(buf.data, name))
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? "," : "", name);
	}
	/* Each known name once: this always fits. */
	Assert(buf.len < UA_ACCEPT_MAX);
	strlcpy(out, buf.data, UA_ACCEPT_MAX);
}

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

	LWLockAcquire(ua_cutover_state->lock, LW_EXCLUSIVE);
	if (ua_cutover_state->active && ua_cutover_state->caller == MyProc)
	{
		ua_cutover_state->caller = NULL;
		if (ua_cutover_state->worker_done)
			ua_cutover_state->active = false;
		else if (!ua_cutover_state->past_ponr && !ua_cutover_state->abort_requested)
		{
			ua_cutover_state->abort_requested = true;
			strlcpy(ua_cutover_state->abort_cause,
					ua_caller_exit_cause ? ua_caller_exit_cause : "the caller stopped waiting",
					sizeof(ua_cutover_state->abort_cause));
			pid = ua_cutover_state->worker_pid;
		}
	}
	LWLockRelease(ua_cutover_state->lock);
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
	for (int i = 0; i <= UA_ST_END; i++)
	{
		UaStepState st;
		char		name[32];

		if (reported[i])
			continue;
		LWLockAcquire(ua_cutover_state->lock, LW_SHARED);
		st = ua_cutover_state->steps[i];
		strlcpy(name, i < UA_NSTEPS ? ua_cutover_step_names[i] : ua_cutover_state->extra_step, sizeof(name));
		LWLockRelease(ua_cutover_state->lock);
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
		LWLockAcquire(ua_cutover_state->lock, LW_SHARED);
		done = ua_cutover_state->worker_done;
		LWLockRelease(ua_cutover_state->lock);
		if (done)
			break;
		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
		{
			LWLockAcquire(ua_cutover_state->lock, LW_SHARED);
			done = ua_cutover_state->worker_done;
			LWLockRelease(ua_cutover_state->lock);
			if (done)
				break;
			/* Free the slot with the caller's exit (nobody else will). */
			UA_CUTOVER_SET(worker_done, true);
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
						 100, ua_wait_event(UA_WE_CUTOVER));
		ResetLatch(MyLatch);
		if (ProcDiePending)
			ua_caller_exit_cause = "the caller was terminated";
		else if (QueryCancelPending)
			ua_caller_exit_cause = "the caller was cancelled";
		CHECK_FOR_INTERRUPTS();
	}
	ua_report_steps(reported);
}

/* disconnect and replication are cutover()'s last arguments, read only here. */
#define UA_ARG_DISCONNECT(fcinfo) (PG_NARGS() - 2)
#define UA_ARG_REPLICATION(fcinfo) (PG_NARGS() - 1)

/*
 * cutover(peer, max_lag, timeout, sequence_margin, reverse, dry_run, accept,
 *		   on_abort, disconnect, replication)
 *		returns setof (step, status, started_at, duration, detail)
 *
 *		Start the cutover worker and report its steps.  An attempt that did
 *		not succeed is an error once its steps are reported (40000 aborted,
 *		40003 unknown), so that scripts stop; with on_abort 'warning' it is
 *		the step table with a WARNING instead.  Other errors: 22004/22023
 *		for bad arguments (accept: a name that is no preflight check;
 *		replication: neither 'native' nor 'external'), the
 *		peer lookup's errors, 25001 when the caller's
 *		transaction has written, 55006 when a cutover runs already, 53000
 *		when no worker can start.
 */
static bool ua_cutover_on_abort(text *arg);
static void ua_cutover_report_failure(const UaCutoverShared *result, const char *peer,
									  bool as_error);

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
	char		accept[UA_ACCEPT_MAX];
	UaCutoverShared result;
	bool		abort_is_error;
	bool		external;

	ua_require_preloaded(ua_cutover_state);
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
	abort_is_error = ua_cutover_on_abort(PG_ARGISNULL(7) ? NULL : PG_GETARG_TEXT_PP(7));
	if (PG_ARGISNULL(UA_ARG_DISCONNECT(fcinfo)))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("disconnect must not be null")));
	margin = PG_GETARG_INT64(3);
	if (margin < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sequence_margin must not be negative")));
	ua_cutover_read_accept(fcinfo, 6, accept);
	external = ua_external_read_replication(PG_ARGISNULL(UA_ARG_REPLICATION(fcinfo)) ? NULL :
											PG_GETARG_TEXT_PP(UA_ARG_REPLICATION(fcinfo)));
	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cutover() must be called in a transaction that has not written"),
				 errhint("The fence's drain would wait for this very transaction.")));
	ua_peer_check(peer);
	store = ua_materialize_srf(fcinfo, &tupdesc);
	/* The worker's drain must not wait for (or terminate) this caller. */
	ua_fence_leave_drain();

	LWLockAcquire(ua_cutover_state->lock, LW_EXCLUSIVE);
	if (ua_cutover_state->active)
	{
		int64		attempt = ua_cutover_state->attempt;
		char		other[NAMEDATALEN];

		strlcpy(other, ua_cutover_state->peer, sizeof(other));
		LWLockRelease(ua_cutover_state->lock);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("a cutover is running already"),
				 errdetail("Attempt " INT64_FORMAT " to peer \"%s\".", attempt, other)));
	}
	{
		LWLock	   *lock = ua_cutover_state->lock;

		memset(ua_cutover_state, 0, sizeof(UaCutoverShared));
		ua_cutover_state->lock = lock;
	}
	ua_cutover_state->active = true;
	ua_cutover_state->caller = MyProc;
	ua_cutover_state->running = -1;
	ua_cutover_state->dboid = MyDatabaseId;
	ua_cutover_state->userid = GetUserId();
	strlcpy(ua_cutover_state->peer, peer, sizeof(ua_cutover_state->peer));
	ua_cutover_state->max_lag_ms = max_lag_ms;
	ua_cutover_state->timeout_ms = timeout_ms;
	ua_cutover_state->margin = margin;
	ua_cutover_state->reverse = PG_GETARG_BOOL(4);
	ua_cutover_state->dry_run = PG_GETARG_BOOL(5);
	ua_cutover_state->disconnect = PG_GETARG_BOOL(UA_ARG_DISCONNECT(fcinfo));
	ua_cutover_state->external = external;
	strlcpy(ua_cutover_state->pause_before, ua_cutover_pause_before ? ua_cutover_pause_before : "",
			sizeof(ua_cutover_state->pause_before));
	strlcpy(ua_cutover_state->accept, accept, sizeof(ua_cutover_state->accept));
	ua_cutover_state->started_at = GetCurrentTimestamp();
	LWLockRelease(ua_cutover_state->lock);

	ua_bgworker_init(&bgw, "ua_cutover_worker_main", "upgrade_assist cutover",
					 BGW_NEVER_RESTART, (Datum) 0);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "upgrade_assist cutover to %s", peer);
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle) ||
		WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
	{
		UA_CUTOVER_SET(active, false);
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

	LWLockAcquire(ua_cutover_state->lock, LW_EXCLUSIVE);
	result = *ua_cutover_state;
	ua_cutover_state->caller = NULL;
	ua_cutover_state->active = false;
	LWLockRelease(ua_cutover_state->lock);

	if (strcmp(result.outcome, "failed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("the cutover worker failed: %s", result.failure),
				 errhint("This cluster may be fenced: see upgrade_assist.fence_status and the server log.")));

	for (int i = 0; i <= UA_ST_END; i++)
	{
		UaStepState *st = &result.steps[i];
		Datum		values[5];
		bool		nulls[5] = {false};

		if (st->status[0] == '\0')
			continue;
		values[0] = CStringGetTextDatum(i < UA_NSTEPS ? ua_cutover_step_names[i] : result.extra_step);
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
		ua_cutover_report_failure(&result, peer, abort_is_error);
	return (Datum) 0;
}

/*
 * The on_abort argument: 'error' (true) or 'warning' (false).
 */
static bool
ua_cutover_on_abort(text *arg)
{
	char	   *s;

	if (arg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("on_abort must not be null")));
	s = text_to_cstring(arg);
	if (strcmp(s, "error") == 0)
		return true;
	if (strcmp(s, "warning") == 0)
		return false;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("on_abort must be 'error' or 'warning', not \"%s\"", s)));
	pg_unreachable();
}

/*
 * An attempt that did not succeed: an ERROR naming the failed step and its
 * reason (40000 when it aborted: everything was undone; 40003 when its
 * outcome is unknown: this cluster stays fenced), or a WARNING when the
 * caller asked for the step table instead.  The steps were reported as
 * NOTICEs already, and cutover_history keeps the whole record either way.
 */
static void
ua_cutover_report_failure(const UaCutoverShared *result, const char *peer, bool as_error)
{
	bool		aborted = strcmp(result->outcome, "aborted") == 0;
	const char *step = NULL;
	const char *reason = "";

	for (int i = 0; i < UA_NSTEPS; i++)
	{
		if (strcmp(result->steps[i].status, "failed") == 0)
		{
			step = ua_cutover_step_names[i];
			reason = result->steps[i].detail;
			break;
		}
	}
	ereport(as_error ? ERROR : WARNING,
			(errcode(aborted ? ERRCODE_TRANSACTION_ROLLBACK : ERRCODE_T_R_STATEMENT_COMPLETION_UNKNOWN),
			 errmsg("cutover to \"%s\" %s", peer,
					aborted ? "was aborted" : "ended in an unknown state"),
			 step ? errdetail("Step \"%s\" failed: %s", step, reason) : 0,
			 result->attempt == 0 ?
			 errhint("A dry run changes nothing and is not recorded in upgrade_assist.cutover_history.") :
			 aborted ?
			 errhint("Nothing was lost and this cluster is writable again; attempt " INT64_FORMAT
					 " in upgrade_assist.cutover_history has every step.", result->attempt) :
			 errhint("This cluster stays fenced until the outcome is known: see attempt " INT64_FORMAT
					 " in upgrade_assist.cutover_history and docs/recovery.md.", result->attempt)));
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

	ua_require_preloaded(ua_cutover_state);
	LWLockAcquire(ua_cutover_state->lock, LW_EXCLUSIVE);
	if (ua_cutover_state->active && ua_cutover_state->paused && !ua_cutover_state->worker_done)
	{
		ua_cutover_state->resume = true;
		resumed = true;
		if (ua_cutover_state->worker)
			SetLatch(&ua_cutover_state->worker->procLatch);
	}
	LWLockRelease(ua_cutover_state->lock);
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

	ua_require_preloaded(ua_cutover_state);
	store = ua_materialize_srf(fcinfo, &tupdesc);
	LWLockAcquire(ua_cutover_state->lock, LW_SHARED);
	s = *ua_cutover_state;
	LWLockRelease(ua_cutover_state->lock);
	if (!s.active || s.worker_done)
		return (Datum) 0;

	if (s.aborting)
		phase = "aborting";
	else if (s.paused && s.paused_at[0] != '\0')
		phase = psprintf("paused at %s", s.paused_at);
	else if (s.paused && s.running >= 0)
		phase = psprintf("paused before %s", ua_cutover_step_names[s.running]);
	else if (s.running >= 0)
		phase = (char *) ua_cutover_step_names[s.running];
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
