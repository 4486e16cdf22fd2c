/*-------------------------------------------------------------------------
 *
 * upgrade_assist.c
 *	  Module entry point: GUCs, shared memory, and small helpers used by
 *	  every other file.
 *
 * The library is meant for shared_preload_libraries.  Loaded any other way
 * (or under pg_upgrade, where IsBinaryUpgrade is set) it defines its GUCs and
 * nothing else: no shared memory, no workers.  Functions that need the shared
 * state say so with a clear error.
 *
 * Shared state (UaShared) is protected by one LWLock of the tranche
 * "upgrade_assist"; see upgrade_assist.h for what each field means.
 *
 * IDENTIFICATION
 *	  src/upgrade_assist.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/tuplestore.h"
#include "funcapi.h"
#include "pgstat.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "fence.h"
#include "upgrade_assist.h"

PG_MODULE_MAGIC;

/* GUC variables */
int			ua_connect_timeout = 10;
int			ua_writer_idle_timeout = 300;

/* Shared state; NULL unless the library was preloaded. */
UaShared   *ua_shared = NULL;

#ifdef UA_HAVE_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

/*
 * ua_shmem_size
 *		Bytes of shared memory needed.  Valid once MaxBackends is known.
 */
static Size
ua_shmem_size(void)
{
	return add_size(offsetof(UaShared, requests),
					mul_size(UA_MAX_BACKENDS(), sizeof(UaWriteRequest)));
}

static void
ua_request_shmem(void)
{
	RequestAddinShmemSpace(ua_shmem_size());
	RequestNamedLWLockTranche("upgrade_assist", 1);
	ua_fence_shmem_request();
	ua_stats_shmem_request();
	ua_cutover_shmem_request();
}

#ifdef UA_HAVE_SHMEM_REQUEST_HOOK
static void
ua_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	ua_request_shmem();
}
#endif

/*
 * ua_shmem_startup
 *		Attach to (or, in the postmaster, create) the shared state.
 */
static void
ua_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ua_shared = ShmemInitStruct("upgrade_assist", ua_shmem_size(), &found);
	if (!found)
	{
		memset(ua_shared, 0, ua_shmem_size());
		ua_shared->lock = &(GetNamedLWLockTranche("upgrade_assist"))->lock;
		ua_shared->nrequests = UA_MAX_BACKENDS();
		ua_heartbeat_load(true);
	}
	ua_fence_shmem_startup();
	ua_stats_shmem_startup();
	ua_cutover_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	DefineCustomIntVariable("upgrade_assist.connect_timeout",
							"Seconds to wait for a connection to a peer.",
							"A foreign server's own connect_timeout option takes precedence.",
							&ua_connect_timeout,
							10, 1, 3600,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("upgrade_assist.marker_writer_idle_timeout",
							"Seconds a marker writer without work waits before it exits.",
							"The marker writer commits round_trip's markers; the first call after it exited starts it again.",
							&ua_writer_idle_timeout,
							300, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("upgrade_assist.lag_threshold",
							"Age of the oldest unconfirmed heartbeat from which sync_status says 'lagging'.",
							NULL,
							&ua_lag_threshold_ms,
							5000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("upgrade_assist.heartbeat_retention",
							"Heartbeat markers older than this are deleted by the heartbeat worker.",
							"Markers of other kinds are kept.",
							&ua_heartbeat_retention_s,
							3600, 60, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	ua_fence_define_gucs();
	ua_cutover_define_gucs();

	MarkGUCPrefixReserved("upgrade_assist");

	/*
	 * Under pg_upgrade the library may be preloaded by the copied
	 * configuration; it must not start workers or take shared memory there.
	 */
	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;

#ifdef UA_HAVE_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ua_shmem_request;
#else
	ua_request_shmem();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ua_shmem_startup;

	ua_heartbeat_register_launcher();
	ua_fence_install_hooks();
}

/*
 * ua_require_shared
 *		Throw unless the shared state exists (library preloaded).
 */
void
ua_require_shared(void)
{
	if (ua_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("upgrade_assist must be loaded via shared_preload_libraries"),
				 errhint("Add upgrade_assist to shared_preload_libraries and restart the server.")));
}

/*
 * ua_interval_to_ms
 *		Convert a timeout argument to milliseconds.
 *
 * Throws 22004 for NULL (the caller passes NULL as iv) and 22023 for a
 * negative or infinite interval.  Months count as 30 days.
 */
int64
ua_interval_to_ms(Interval *iv, const char *argname)
{
	int64		usecs;

	if (iv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
	if (UA_INTERVAL_NOT_FINITE(iv))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be finite", argname)));

	/* Reject absurd values before they can overflow (about 30 years). */
	if ((double) iv->time +
		((double) iv->month * DAYS_PER_MONTH + iv->day) * USECS_PER_DAY > 1e15)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too large", argname)));
	usecs = iv->time +
		((int64) iv->month * DAYS_PER_MONTH + iv->day) * USECS_PER_DAY;
	if (usecs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", argname)));
	return usecs / 1000;
}

/*
 * ua_ms_until
 *		Milliseconds from now until deadline, rounded up; 0 once it passed.
 */
long
ua_ms_until(TimestampTz deadline)
{
	TimestampTz now = GetCurrentTimestamp();

	if (deadline <= now)
		return 0;
	return (long) ((deadline - now + 999) / 1000);
}

/*
 * ua_recover_from_error
 *		For a background worker's PG_CATCH block: switch back to cxt (where
 *		the worker keeps its loop's memory), take the error out of the error
 *		state, abort whatever transaction was open, report the worker idle,
 *		and return the error for the caller to record.  The worker goes on.
 */
ErrorData *
ua_recover_from_error(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);
	return edata;
}

/*
 * ua_materialize_srf
 *		Set up fcinfo's ReturnSetInfo for a materialized result; returns the
 *		tuplestore and sets *tupdesc.
 */
Tuplestorestate *
ua_materialize_srf(FunctionCallInfo fcinfo, TupleDesc *tupdesc)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old;
	Tuplestorestate *store;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (get_call_result_type(fcinfo, NULL, tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	*tupdesc = CreateTupleDescCopy(*tupdesc);
	store = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(old);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = *tupdesc;
	return store;
}
