/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Helpers shared by every module: deadlines and intervals, set-returning
 *	  function setup, transactions and SPI for background workers, durable
 *	  files in the data directory, background-worker setup, the
 *	  interruptible wait with our wait events, and error recovery.
 *
 * Nothing here keeps shared state; the wait-event numbers are cached per
 * process.
 *
 * IDENTIFICATION
 *	  src/util.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "common/file_perm.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "compat.h"
#include "util.h"

#ifdef UA_HAVE_CUSTOM_WAIT_EVENTS
#include "utils/wait_event.h"
#endif

/* Largest number of text parameters ua_spi_exec takes. */
#define UA_SPI_MAX_ARGS 8

/* ---------------------------------------------------------------------------
 * Deadlines and intervals
 * ---------------------------------------------------------------------------
 */

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
 * ua_ms_since
 *		Milliseconds since t, with fractions (for messages and details).
 */
double
ua_ms_since(TimestampTz t)
{
	return (GetCurrentTimestamp() - t) / 1000.0;
}

/*
 * ua_poll_backoff_ms
 *		How long to sleep between two looks for something another process
 *		or a peer will do, given how long the wait has lasted.  Back to back
 *		for the first 10 ms, where it usually happens (each look is itself a
 *		round trip), then about 5 % of the time waited, at least 1 ms and at
 *		most 50 ms: a measured latency stays within 5 % of the real one and a
 *		long wait costs little.
 */
long
ua_poll_backoff_ms(int64 elapsed_ms)
{
	if (elapsed_ms < 10)
		return 0;
	return (long) Max(1, Min(elapsed_ms / 20, 50));
}

/* ---------------------------------------------------------------------------
 * Set-returning functions
 * ---------------------------------------------------------------------------
 */

/*
 * ua_materialize_srf
 *		Set up fcinfo's ReturnSetInfo for a materialized result; returns the
 *		tuplestore and sets *tupdesc.  Throws 0A000 in a context that cannot
 *		take a set.
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

/* ---------------------------------------------------------------------------
 * Transactions and SPI in background workers
 * ---------------------------------------------------------------------------
 */

/*
 * ua_xact_begin
 *		Start a transaction with a snapshot and SPI, in a background worker
 *		that has none open; activity (or NULL) is shown in pg_stat_activity.
 *		Pair with ua_xact_end, or with ua_recover_from_error on error.
 */
void
ua_xact_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (activity)
		pgstat_report_activity(STATE_RUNNING, activity);
}

/*
 * ua_xact_end
 *		Commit what ua_xact_begin started, report the process idle, and
 *		switch to cxt (the worker's own memory: the transaction's is gone).
 */
void
ua_xact_end(MemoryContext cxt)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(cxt);
}

/*
 * ua_spi_exec
 *		Run sql through SPI with text parameters $1..$n (a NULL entry is an
 *		SQL NULL; cast in the statement where another type is meant).
 *		Returns the number of rows processed.  Caller is connected to SPI.
 *		Throws on failure.
 */
uint64
ua_spi_exec(const char *sql, int nargs, const char *const *args, bool read_only)
{
	Oid			types[UA_SPI_MAX_ARGS];
	Datum		values[UA_SPI_MAX_ARGS];
	char		nulls[UA_SPI_MAX_ARGS] = {0};
	int			rc;

	if (nargs > UA_SPI_MAX_ARGS)
		elog(ERROR, "too many SPI parameters: %d", nargs);
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
 * ua_spi_exec_typed
 *		Run a statement through SPI with parameters of the given types
 *		(nulls as SPI takes them, NULL for none); throws unless SPI answers
 *		expected (SPI_OK_SELECT, SPI_OK_UPDATE, ...).  Returns the number of
 *		rows processed.  Caller is connected to SPI.
 */
uint64
ua_spi_exec_typed(const char *sql, int nargs, Oid *types, Datum *values,
				  const char *nulls, int expected)
{
	int			rc;

	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	if (rc != expected)
		elog(ERROR, "SPI_execute_with_args failed: %s (%s)",
			 SPI_result_code_string(rc), sql);
	return SPI_processed;
}

/*
 * ua_spi_getint8
 *		Column col (1-based) of row row of the last SPI result as int64;
 *		*isnull says whether it is NULL (then 0).
 */
int64
ua_spi_getint8(uint64 row, int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  col, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
}

/*
 * ua_spi_getvalue
 *		Column col (1-based) of row row of the last SPI result as text, or
 *		NULL; copied into cxt, so that it outlives the transaction.
 */
char *
ua_spi_getvalue(uint64 row, int col, MemoryContext cxt)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(cxt, v) : NULL;
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
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	return edata;
}

/* ---------------------------------------------------------------------------
 * Files of the data directory
 * ---------------------------------------------------------------------------
 */

/*
 * ua_write_file_durably
 *		Replace the file path (relative to the data directory) with data:
 *		written to tmppath, fsynced, renamed over path, and the directory
 *		fsynced, so that after a crash the file is either the old one or the
 *		new one, whole.  Throws on I/O errors before the rename, leaving the
 *		old file as it was (a stale tmppath is harmless).
 */
void
ua_write_file_durably(const char *path, const char *tmppath,
					  const char *data, int len)
{
	ua_write_file_durably_mode(path, tmppath, data, len, pg_file_create_mode);
}

/* The same, the file created with the given mode (a password file: 0600). */
void
ua_write_file_durably_mode(const char *path, const char *tmppath,
						   const char *data, int len, int mode)
{
	int			fd;

	(void) unlink(tmppath);
	fd = OpenTransientFilePerm(tmppath, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY, mode);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmppath)));
	errno = 0;
	if (write(fd, data, len) != len)
	{
		if (errno == 0)
			errno = ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmppath)));
	}
	if (pg_fsync(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", tmppath)));
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmppath)));
	/* fsyncs the file again and the data directory after the rename */
	(void) durable_rename(tmppath, path, ERROR);
}

/* ---------------------------------------------------------------------------
 * Background workers and waiting
 * ---------------------------------------------------------------------------
 */

/*
 * ua_bgworker_init
 *		Describe a worker of this library connected to a database: entry
 *		point function, bgw_type type (also its name; the caller may write a
 *		longer bgw_name), restart_time (BGW_NEVER_RESTART or seconds), and
 *		main_arg.  Started after recovery; the caller's pid is notified
 *		(set bgw_notify_pid to 0 for a worker registered at startup).
 */
void
ua_bgworker_init(BackgroundWorker *bgw, const char *function, const char *type,
				 int restart_time, Datum main_arg)
{
	memset(bgw, 0, sizeof(*bgw));
	bgw->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw->bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw->bgw_restart_time = restart_time;
	strlcpy(bgw->bgw_library_name, UA_LIBRARY, BGW_MAXLEN);
	strlcpy(bgw->bgw_function_name, function, BGW_MAXLEN);
	strlcpy(bgw->bgw_name, type, BGW_MAXLEN);
	strlcpy(bgw->bgw_type, type, BGW_MAXLEN);
	bgw->bgw_main_arg = main_arg;
	bgw->bgw_notify_pid = MyProcPid;
}

/* Names of our wait events, as pg_stat_activity.wait_event shows them. */
static const char *const ua_wait_event_names[UA_NWAIT_EVENTS] = {
	"UpgradeAssistPeer",
	"UpgradeAssistMarker",
	"UpgradeAssistWriterIdle",
	"UpgradeAssistHeartbeat",
	"UpgradeAssistFenceDrain",
	"UpgradeAssistCutover",
	"UpgradeAssistStats"
};

/*
 * ua_wait_event
 *		The wait event to report while waiting for which: our own name from
 *		17 on (registered on first use in each process), PG_WAIT_EXTENSION
 *		before.
 */
uint32
ua_wait_event(UaWaitEvent which)
{
#ifdef UA_HAVE_CUSTOM_WAIT_EVENTS
	static uint32 ids[UA_NWAIT_EVENTS];

	Assert(which >= 0 && which < UA_NWAIT_EVENTS);
	if (ids[which] == 0)
		ids[which] = WaitEventExtensionNew(ua_wait_event_names[which]);
	return ids[which];
#else
	(void) ua_wait_event_names;
	(void) which;
	return PG_WAIT_EXTENSION;
#endif
}

/*
 * ua_wait
 *		Wait on this process's latch for events (WL_LATCH_SET, WL_TIMEOUT)
 *		up to timeout_ms, reporting which; the latch is reset when set, a
 *		postmaster death ends the process, and interrupts (cancel,
 *		terminate) are served before returning.  Returns WaitLatch's result.
 */
int
ua_wait(int events, long timeout_ms, UaWaitEvent which)
{
	int			rc;

	rc = WaitLatch(MyLatch, events | WL_EXIT_ON_PM_DEATH, timeout_ms,
				   ua_wait_event(which));
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	return rc;
}

/*
 * ua_require_preloaded
 *		Throw 55000 unless state (a module's shared state) exists, which it
 *		does only when the library was loaded by shared_preload_libraries.
 */
void
ua_require_preloaded(const void *state)
{
	if (state == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("upgrade_assist must be loaded via shared_preload_libraries"),
				 errhint("Add upgrade_assist to shared_preload_libraries and restart the server.")));
}

/* ---------------------------------------------------------------------------
 * Errors caught in an internal subtransaction
 * ---------------------------------------------------------------------------
 */

/*
 * ua_try_subxact
 *		Run fn(arg) in an internal subtransaction of the current transaction.
 *		Returns NULL when it returned (the subtransaction committed), else the
 *		error it threw, copied into the caller's memory context, with the
 *		subtransaction rolled back.  Either way the caller's memory context
 *		and resource owner are current again.  The caller decides what to do
 *		with the error: ReThrowError() for the SQLSTATEs it does not expect,
 *		FreeErrorData() otherwise.  Errors of fn are never left half-handled:
 *		query cancels and the like come back here too, so a caller must
 *		rethrow ERRCODE_QUERY_CANCELED unless it means to absorb it.
 */
ErrorData *
ua_try_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return edata;
}

/* ---------------------------------------------------------------------------
 * Role lists of settings
 * ---------------------------------------------------------------------------
 */

/*
 * ua_role_list_oids
 *		OIDs of the existing roles named in a comma-separated setting value
 *		(upgrade_assist.fence_exempt_roles, cutover_keep_roles); unknown
 *		names are skipped, and so is a value that does not parse (the
 *		settings' check hooks refuse those).  Needs a transaction.
 */
List *
ua_role_list_oids(const char *value)
{
	char	   *raw;
	List	   *names;
	List	   *oids = NIL;
	ListCell   *lc;

	if (value == NULL || value[0] == '\0')
		return NIL;
	raw = pstrdup(value);
	if (!SplitIdentifierString(raw, ',', &names))
		return NIL;
	foreach(lc, names)
	{
		Oid			roleid = get_role_oid((char *) lfirst(lc), true);

		if (OidIsValid(roleid))
			oids = lappend_oid(oids, roleid);
	}
	return oids;
}
