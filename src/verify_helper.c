/*-------------------------------------------------------------------------
 *
 * verify_helper.c
 *	  The snapshot helper of a verify() run: a second background worker
 *	  that takes a snapshot while the run's worker (verify_worker.c) holds
 *	  the range's table in SHARE mode, keeps it while the worker writes the
 *	  range's row and commits, then computes the range's count and checksum
 *	  from it.  The worker's side of the handoff is here too.
 *
 * IDENTIFICATION
 *	  src/verify_helper.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "util.h"
#include "verify.h"

/* ------------------------------------------------------------------------
 * The snapshot helper
 *
 * PostgreSQL has no lock on a key range, so a range's row must commit while
 * the table is held in SHARE mode; but the range's checksum need not be
 * computed under that lock, only from a snapshot taken while it is held
 * (no writer of the table can commit between that snapshot and the row's
 * commit, so the snapshot shows the table exactly as the stream has it at
 * the row).  A snapshot does not outlive its transaction, and the row's
 * commit ends the worker's: so a second process, the helper, takes the
 * snapshot in a REPEATABLE READ transaction of its own when the worker
 * asks (the worker holding the lock), keeps it while the worker inserts
 * the row and commits, then computes the range from it and hands back the
 * count and checksum.  The lock is held for the snapshot's handoff, one
 * insert and one commit, whatever the range's size.
 * ------------------------------------------------------------------------
 */

/*
 * ua_verify_helper_alive
 *		Whether this run's helper is attached (caller holds the lock).
 */
bool
ua_verify_helper_alive(void)
{
	return ua_verify->slots[ua_verify_my_slot].helper_proc != NULL;
}

/*
 * ua_verify_helper_start
 *		Start the run's helper and wait (10 s at most) until it is attached;
 *		without it (no worker slot free, the setting off), the worker
 *		computes every range itself, under the lock.
 */
bool
ua_verify_helper_start(int64 run_id)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	TimestampTz deadline;

	if (!ua_verify_helper)
		return false;
	ua_bgworker_init(&bgw, "ua_verify_helper_main", "upgrade_assist verify",
					 BGW_NEVER_RESTART, Int32GetDatum(ua_verify_my_slot));
	snprintf(bgw.bgw_name, BGW_MAXLEN,
			 "upgrade_assist verify helper of run " INT64_FORMAT, run_id);
	memcpy(bgw.bgw_extra, &run_id, sizeof(run_id));
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle) ||
		WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
	{
		ereport(LOG,
				(errmsg("upgrade_assist: verify run " INT64_FORMAT " computes under the lock: its helper could not start",
						run_id),
				 errhint("Raise max_worker_processes.")));
		return false;
	}
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 10000);
	for (;;)
	{
		bool		alive;

		LWLockAcquire(ua_verify->lock, LW_SHARED);
		alive = ua_verify_helper_alive();
		LWLockRelease(ua_verify->lock);
		if (alive)
			return true;
		if (ua_ms_until(deadline) <= 0 ||
			GetBackgroundWorkerPid(handle, &pid) != BGWH_STARTED)
			return false;
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 10, UA_WE_PEER);
	}
}

/*
 * ua_verify_helper_ask
 *		Ask the helper for a snapshot for range range_no and wait until it
 *		holds one, at most verify_max_lock_time (the caller holds the lock:
 *		writers queue meanwhile).  Returns the request's number.  Throws
 *		55P03 when the helper is too slow (the caller gives the lock up and
 *		tries again), 57P01 when it is gone; *reqp holds the request's
 *		number as soon as it is made, so that the caller can call it off.
 */
uint64
ua_verify_helper_ask(int64 origin, int64 range_no, volatile uint64 *reqp)
{
	TimestampTz start = GetCurrentTimestamp();
	long		limit = Max(ua_verify_max_lock_time, 10);
	UaVerifySlot *s = &ua_verify->slots[ua_verify_my_slot];
	uint64		req;
	PGPROC	   *helper;

	LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
	req = ++s->hreq;
	s->horigin = origin;
	s->hrange = range_no;
	helper = s->helper_proc;
	LWLockRelease(ua_verify->lock);
	*reqp = req;
	if (helper == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("the verification's snapshot helper has exited")));
	SetLatch(&helper->procLatch);
	for (;;)
	{
		bool		taken;
		bool		alive;

		LWLockAcquire(ua_verify->lock, LW_SHARED);
		taken = s->htaken == req;
		alive = ua_verify_helper_alive();
		LWLockRelease(ua_verify->lock);
		if (taken)
			return req;
		if (!alive)
			ereport(ERROR,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("the verification's snapshot helper has exited")));
		if (ua_ms_since(start) >= limit)
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("the snapshot helper did not take a snapshot within %ld ms", limit)));
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 1, UA_WE_PEER);
	}
}

/*
 * ua_verify_helper_go
 *		Tell the helper that the range's row of request req committed (ok)
 *		or will not (it drops the snapshot).
 */
void
ua_verify_helper_go(uint64 req, bool ok)
{
	UaVerifySlot *s = &ua_verify->slots[ua_verify_my_slot];
	PGPROC	   *helper;

	LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
	s->hgo = req;
	s->hgo_ok = ok;
	helper = s->helper_proc;
	LWLockRelease(ua_verify->lock);
	if (helper)
		SetLatch(&helper->procLatch);
}

/*
 * ua_verify_helper_result
 *		Wait for the helper's count and checksum of request req and store
 *		them in *out (in cxt).  Throws the helper's error, 57P01 when it is
 *		gone, 57014 after timeout_ms or on a cancel.
 */
void
ua_verify_helper_result(uint64 req, int64 timeout_ms, UaVerifySums *out,
						MemoryContext cxt)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	UaVerifySlot *s = &ua_verify->slots[ua_verify_my_slot];

	for (;;)
	{
		bool		done;
		bool		alive;
		bool		error = false;
		char		message[sizeof(s->hmessage)];

		LWLockAcquire(ua_verify->lock, LW_SHARED);
		done = s->hdone == req;
		alive = ua_verify_helper_alive();
		if (done)
		{
			out->rows = s->hrows;
			out->sum = MemoryContextStrdup(cxt, psprintf(INT64_FORMAT, s->hsum));
			error = s->herror;
			strlcpy(message, s->hmessage, sizeof(message));
		}
		LWLockRelease(ua_verify->lock);
		if (done && error)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("the snapshot helper failed: %s", message)));
		if (done)
			return;
		if (!alive)
			ereport(ERROR,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("the verification's snapshot helper has exited")));
		if (ua_ms_until(deadline) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("the snapshot helper did not compute a range within the timeout")));
		if (ua_verify_cancelled())
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("verification cancelled")));
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 100, UA_WE_PEER);
	}
}

/*
 * ua_verify_helper_detach
 *		before_shmem_exit callback of the helper: leave the slot.
 */
static int64 ua_verify_helper_run = 0;

static void
ua_verify_helper_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	UaVerifySlot *s;
	PGPROC	   *worker = NULL;

	LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
	s = &ua_verify->slots[ua_verify_my_slot];
	if (s->run_id == ua_verify_helper_run && s->helper_proc == MyProc)
	{
		s->helper_proc = NULL;
		s->helper_pid = 0;
		worker = s->proc;
	}
	LWLockRelease(ua_verify->lock);
	if (worker)
		SetLatch(&worker->procLatch);
}

/*
 * ua_verify_helper_wait
 *		Wait until what(arg) holds of the slot; false when the run's worker
 *		is gone (the helper then exits).
 */
static bool
ua_verify_helper_wait(bool (*what) (UaVerifySlot *s, uint64 req), uint64 req)
{
	for (;;)
	{
		UaVerifySlot *s = &ua_verify->slots[ua_verify_my_slot];
		bool		gone;
		bool		ok;

		LWLockAcquire(ua_verify->lock, LW_SHARED);
		gone = s->run_id != ua_verify_helper_run || s->proc == NULL || s->cancel;
		ok = !gone && what(s, req);
		LWLockRelease(ua_verify->lock);
		if (gone)
			return false;
		if (ok)
			return true;
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 1000, UA_WE_PEER);
	}
}

static bool
ua_verify_helper_asked(UaVerifySlot *s, uint64 req)
{
	return s->hreq > req;
}

static bool
ua_verify_helper_went(UaVerifySlot *s, uint64 req)
{
	return s->hgo >= req || s->hreq > req;
}

/*
 * ua_verify_helper_compute
 *		The helper's side of request req: read the range's committed row
 *		(with a fresh snapshot) and compute the range from the transaction
 *		snapshot taken while the worker held the lock.  Caller is in that
 *		transaction, connected to SPI, settings pinned.
 */
static void
ua_verify_helper_compute(int64 origin, int64 range_no, UaVerifySums *sums,
						 MemoryContext cxt)
{
	static SPIPlanPtr row_plan = NULL;
	Datum		values[3];
	bool		isnull;
	Datum		key_columns,
				columns,
				key_from,
				key_to;
	char	   *schemaname;
	char	   *relname;
	Oid			relid;
	int			lead;
	char	   *sql;
	HeapTuple	tup;
	TupleDesc	desc;

	if (row_plan == NULL)
	{
		Oid			types[3] = {INT8OID, INT8OID, INT8OID};
		SPIPlanPtr	p = SPI_prepare("SELECT schemaname, relname, key_columns, columns,"
									"       key_from, key_to"
									"  FROM upgrade_assist.verify_range"
									" WHERE origin = $1 AND run_id = $2 AND range_no = $3",
									3, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the range row's statement");
		row_plan = p;
	}
	values[0] = Int64GetDatum(origin);
	values[1] = Int64GetDatum(ua_verify_helper_run);
	values[2] = Int64GetDatum(range_no);
	if (SPI_execute_snapshot(row_plan, values, NULL, GetLatestSnapshot(),
							 InvalidSnapshot, true, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("range " INT64_FORMAT " has no row", range_no)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	schemaname = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
	relname = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
	key_columns = SPI_getbinval(tup, desc, 3, &isnull);
	columns = SPI_getbinval(tup, desc, 4, &isnull);
	key_from = SPI_getbinval(tup, desc, 5, &isnull);
	if (isnull)
		key_from = (Datum) 0;
	key_to = SPI_getbinval(tup, desc, 6, &isnull);
	if (isnull)
		key_to = (Datum) 0;
	relid = RangeVarGetRelid(makeRangeVar(schemaname, relname, -1),
							 AccessShareLock, false);
	sql = ua_verify_range_sql(relid, UA_VERIFY_MODE_RANGE, key_columns, columns,
							  key_from != (Datum) 0, key_to != (Datum) 0,
							  false, false, &lead);
	ua_verify_compute(sql, lead, false, false, key_from, key_to, 0, sums, cxt);
}

/*
 * ua_verify_helper_main
 *		Entry point of a run's snapshot helper.  main_arg is the run's slot;
 *		bgw_extra holds the run id.  Serves the worker's requests one after
 *		the other; exits when the worker is gone.
 */
void
ua_verify_helper_main(Datum main_arg)
{
	volatile uint64 handled = 0;
	Oid			dboid;
	MemoryContext cxt;

	memcpy(&ua_verify_helper_run, MyBgworkerEntry->bgw_extra, sizeof(int64));
	ua_verify_my_slot = DatumGetInt32(main_arg);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	if (ua_verify == NULL || ua_verify_my_slot < 0 ||
		ua_verify_my_slot >= UA_VERIFY_MAX_RUNS)
		proc_exit(0);

	LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
	{
		UaVerifySlot *s = &ua_verify->slots[ua_verify_my_slot];

		if (s->run_id != ua_verify_helper_run || s->proc == NULL ||
			s->helper_proc != NULL)
		{
			LWLockRelease(ua_verify->lock);
			proc_exit(0);
		}
		s->helper_proc = MyProc;
		s->helper_pid = MyProcPid;
		handled = s->hreq;
		dboid = s->dboid;
	}
	LWLockRelease(ua_verify->lock);
	before_shmem_exit(ua_verify_helper_detach, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	SetConfigOption("application_name", "upgrade_assist verify helper",
					PGC_USERSET, PGC_S_OVERRIDE);
	cxt = AllocSetContextCreate(TopMemoryContext, "upgrade_assist verify helper",
								ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);

	for (;;)
	{
		UaVerifySlot *s = &ua_verify->slots[ua_verify_my_slot];
		uint64		req;
		int64		origin;
		int64		range_no;
		bool		go_ok;
		PGPROC	   *worker;
		UaVerifySums sums = {0};
		char		message[sizeof(s->hmessage)] = "";
		bool		failed = false;

		MemoryContextReset(cxt);
		if (!ua_verify_helper_wait(ua_verify_helper_asked, handled))
			break;
		LWLockAcquire(ua_verify->lock, LW_SHARED);
		req = s->hreq;
		origin = s->horigin;
		range_no = s->hrange;
		LWLockRelease(ua_verify->lock);
		handled = req;

		/* The snapshot, while the worker holds the table's lock. */
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		XactIsoLevel = XACT_REPEATABLE_READ;
		PushActiveSnapshot(GetTransactionSnapshot());
		LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
		if (s->hreq == req)
			s->htaken = req;
		worker = s->proc;
		LWLockRelease(ua_verify->lock);
		if (worker)
			SetLatch(&worker->procLatch);

		if (!ua_verify_helper_wait(ua_verify_helper_went, req))
			break;
		LWLockAcquire(ua_verify->lock, LW_SHARED);
		go_ok = s->hgo == req && s->hgo_ok;
		LWLockRelease(ua_verify->lock);
		if (!go_ok)
		{
			PopActiveSnapshot();
			CommitTransactionCommand();
			continue;
		}

		pgstat_report_activity(STATE_RUNNING, "verify: computing a range");
		PG_TRY();
		{
			int			level;

			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			level = ua_verify_pin_settings();
			ua_verify_helper_compute(origin, range_no, &sums, cxt);
			AtEOXact_GUC(true, level);
			SPI_finish();
			PopActiveSnapshot();
			CommitTransactionCommand();
			pgstat_report_activity(STATE_IDLE, NULL);
		}
		PG_CATCH();
		{
			ErrorData  *edata = ua_recover_from_error(cxt);

			failed = true;
			strlcpy(message, edata->message ? edata->message : "unknown error",
					sizeof(message));
			FreeErrorData(edata);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);

		LWLockAcquire(ua_verify->lock, LW_EXCLUSIVE);
		s->hrows = sums.rows;
		s->hsum = (failed || sums.sum == NULL) ? 0 : strtoi64(sums.sum, NULL, 10);
		s->herror = failed;
		strlcpy(s->hmessage, message, sizeof(s->hmessage));
		s->hdone = req;
		worker = s->proc;
		LWLockRelease(ua_verify->lock);
		if (worker)
			SetLatch(&worker->procLatch);
	}
	if (IsTransactionState())
		AbortCurrentTransaction();
	proc_exit(0);
}
