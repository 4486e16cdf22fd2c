/*-------------------------------------------------------------------------
 *
 * marker_writer.c
 *	  The marker writer: a background worker per database that commits
 *	  markers on behalf of backends that must not commit their own
 *	  transaction (round_trip works inside any transaction block).
 *
 * A backend puts a request in its own slot of UaMarkerShared->requests (indexed by
 * proc number), wakes the writer of its database, and waits on its latch.
 * The writer takes every pending request of its database, commits them all
 * in one transaction (one WAL flush however many callers), and wakes the
 * requesters.  It is started on first use and exits after
 * upgrade_assist.marker_writer_idle_timeout without work, so a database
 * where nobody calls round_trip has no such process.
 *
 * The requester allocates the marker's number itself (see
 * ua_marker_request_submit), so that it can look for the marker on the peer
 * while the writer commits: waking the requester is then off the critical
 * path.
 *
 * Locking: request states and UaMarkerDb.writer change only under
 * UaMarkerShared->lock (marker.h).  A requester that gives up (cancel, timeout) withdraws a
 * PENDING request, or marks a RUNNING one ABANDONED so that the writer frees
 * it; a marker committed for an abandoned request is harmless.
 *
 * IDENTIFICATION
 *	  src/marker_writer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "marker.h"
#include "util.h"

/* How often a waiting requester checks that a writer exists. */
#define UA_REQUEST_CHECK_MS 100

/* GUC variable (defined in ua_marker_init) */
int			ua_writer_idle_timeout = 300;

/*
 * ua_start_writer
 *		Start a marker writer for this database and wait until it runs.
 *		Throws 53000 when no background worker slot is free.
 */
static void
ua_start_writer(void)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	pid_t		pid;

	ua_bgworker_init(&bgw, "ua_writer_main", "upgrade_assist marker writer",
					 BGW_NEVER_RESTART, ObjectIdGetDatum(MyDatabaseId));
	snprintf(bgw.bgw_name, BGW_MAXLEN,
			 "upgrade_assist marker writer for database %u", MyDatabaseId);

	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the upgrade_assist marker writer"),
				 errhint("Increase max_worker_processes.")));
	status = WaitForBackgroundWorkerStartup(handle, &pid);
	if (status == BGWH_POSTMASTER_DIED)
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("postmaster exited while starting the marker writer")));
	/* BGWH_STOPPED: it exited at once, as a duplicate does; the caller rechecks. */
}

/* This backend's open request, between submit and end. */
static UaWriteRequest *ua_my_request = NULL;
static UaMarkerDb *ua_my_slot = NULL;
static TimestampTz ua_my_last_start = 0;

/*
 * ua_marker_request_submit
 *		Ask this database's marker writer to commit a marker of the given
 *		kind, independently of the caller's transaction.  The number is
 *		allocated here and returned at once, so that the caller can look for
 *		the marker on a peer while the writer commits it.
 *
 * Caller is in a transaction, and must call ua_marker_request_end() after,
 * also on error.  Throws 55006 while an abandoned request of this session is
 * still being committed.
 */
int64
ua_marker_request_submit(const char *kind)
{
	int			procno = UA_MY_PROCNO;
	UaWriteRequest *req;
	UaMarkerDb *slot;
	PGPROC	   *writer;
	int64		seq;

	ua_require_preloaded(ua_marker_shared);
	if (procno < 0 || procno >= ua_marker_shared->nrequests)
		elog(ERROR, "proc number %d out of range for marker requests", procno);
	req = &ua_marker_shared->requests[procno];

	LWLockAcquire(ua_marker_shared->lock, LW_SHARED);
	if (req->state == UA_REQ_RUNNING || req->state == UA_REQ_ABANDONED)
	{
		LWLockRelease(ua_marker_shared->lock);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("a previous marker request of this session is still being committed"),
				 errhint("Try again in a moment.")));
	}
	LWLockRelease(ua_marker_shared->lock);

	seq = ua_next_marker_seq();

	LWLockAcquire(ua_marker_shared->lock, LW_EXCLUSIVE);
	slot = ua_marker_db();
	req->dboid = MyDatabaseId;
	req->requester = MyProc;
	req->seq = seq;
	strlcpy(req->kind, kind, sizeof(req->kind));
	req->errmsg[0] = '\0';
	req->sqlerrcode = 0;
	req->state = UA_REQ_PENDING;
	writer = slot->writer;
	LWLockRelease(ua_marker_shared->lock);

	ua_my_request = req;
	ua_my_slot = slot;
	ua_my_last_start = 0;
	if (writer != NULL)
		SetLatch(&writer->procLatch);
	return seq;
}

/*
 * ua_marker_request_check
 *		Has the open request been committed?  Fills *out and returns true
 *		when it has.  Never waits, except to start a writer when the database
 *		has none (first use, idle exit or crash).  Throws the writer's error
 *		when it could not commit.
 */
bool
ua_marker_request_check(UaMarker *out)
{
	UaWriteRequest *req = ua_my_request;
	UaRequestState state;
	PGPROC	   *writer;

	Assert(req != NULL);
	LWLockAcquire(ua_marker_shared->lock, LW_SHARED);
	state = req->state;
	writer = ua_my_slot->writer;
	if (state == UA_REQ_DONE)
		*out = req->result;
	LWLockRelease(ua_marker_shared->lock);

	if (state == UA_REQ_DONE)
		return true;
	if (state == UA_REQ_FAILED)
		ereport(ERROR,
				(errcode(req->sqlerrcode ? req->sqlerrcode : ERRCODE_INTERNAL_ERROR),
				 errmsg("the marker writer could not commit a marker: %s",
						req->errmsg)));

	if (state == UA_REQ_PENDING && writer == NULL &&
		TimestampDifferenceExceeds(ua_my_last_start, GetCurrentTimestamp(), 1000))
	{
		ua_my_last_start = GetCurrentTimestamp();
		ua_start_writer();
		LWLockAcquire(ua_marker_shared->lock, LW_SHARED);
		writer = ua_my_slot->writer;
		LWLockRelease(ua_marker_shared->lock);
		if (writer != NULL)
			SetLatch(&writer->procLatch);
	}
	return false;
}

/*
 * ua_marker_request_wait
 *		Wait until the open request is committed and fill *out.  Throws 57014
 *		at the deadline, the writer's error, or on interrupt.
 */
void
ua_marker_request_wait(TimestampTz deadline, UaMarker *out)
{
	while (!ua_marker_request_check(out))
	{
		long		wait_ms = ua_ms_until(deadline);

		if (wait_ms <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("timed out waiting for the marker writer")));
		if (wait_ms > UA_REQUEST_CHECK_MS)
			wait_ms = UA_REQUEST_CHECK_MS;
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, wait_ms, UA_WE_MARKER);
	}
}

/*
 * ua_marker_request_end
 *		Give up this backend's request slot, whatever state it is in: a
 *		pending request is withdrawn, a running one is left to the writer,
 *		which frees it.  Safe to call without an open request.
 */
void
ua_marker_request_end(void)
{
	UaWriteRequest *req = ua_my_request;

	if (req == NULL)
		return;
	LWLockAcquire(ua_marker_shared->lock, LW_EXCLUSIVE);
	if (req->state == UA_REQ_RUNNING)
		req->state = UA_REQ_ABANDONED;
	else
		req->state = UA_REQ_FREE;
	LWLockRelease(ua_marker_shared->lock);
	ua_my_request = NULL;
	ua_my_slot = NULL;
}

/*
 * ua_writer_detach
 *		before_shmem_exit callback of the writer: leave the database slot and
 *		fail whatever it had taken but not finished, so nobody waits for it.
 */
static void
ua_writer_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	LWLockAcquire(ua_marker_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < UA_MARKER_MAX_DATABASES; i++)
		if (ua_marker_shared->dbs[i].writer == MyProc)
			ua_marker_shared->dbs[i].writer = NULL;
	for (int i = 0; i < ua_marker_shared->nrequests; i++)
	{
		UaWriteRequest *req = &ua_marker_shared->requests[i];

		if (req->dboid != MyDatabaseId)
			continue;
		if (req->state == UA_REQ_RUNNING)
		{
			req->state = UA_REQ_FAILED;
			req->sqlerrcode = ERRCODE_ADMIN_SHUTDOWN;
			strlcpy(req->errmsg, "the marker writer exited", sizeof(req->errmsg));
			SetLatch(&req->requester->procLatch);
		}
		else if (req->state == UA_REQ_ABANDONED)
			req->state = UA_REQ_FREE;
	}
	LWLockRelease(ua_marker_shared->lock);
}

/*
 * ua_writer_take
 *		Move every pending request of this database to RUNNING; returns their
 *		indexes (count in *n) and copies their kinds and numbers.
 */
static int *
ua_writer_take(int *n, char ***kinds, int64 **seqs)
{
	int		   *idx = palloc(sizeof(int) * ua_marker_shared->nrequests);

	*n = 0;
	*kinds = palloc(sizeof(char *) * ua_marker_shared->nrequests);
	*seqs = palloc(sizeof(int64) * ua_marker_shared->nrequests);
	LWLockAcquire(ua_marker_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ua_marker_shared->nrequests; i++)
	{
		UaWriteRequest *req = &ua_marker_shared->requests[i];

		if (req->state == UA_REQ_PENDING && req->dboid == MyDatabaseId)
		{
			req->state = UA_REQ_RUNNING;
			(*kinds)[*n] = pstrdup(req->kind);
			(*seqs)[*n] = req->seq;
			idx[(*n)++] = i;
		}
	}
	LWLockRelease(ua_marker_shared->lock);
	return idx;
}

/*
 * ua_writer_finish
 *		Publish the outcome of a batch and wake its requesters.  results is
 *		NULL on failure, with edata describing it.
 */
static void
ua_writer_finish(int *idx, int n, UaMarker *results, ErrorData *edata)
{
	LWLockAcquire(ua_marker_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		UaWriteRequest *req = &ua_marker_shared->requests[idx[i]];

		if (req->state == UA_REQ_ABANDONED)
		{
			req->state = UA_REQ_FREE;
			continue;
		}
		if (req->state != UA_REQ_RUNNING)
			continue;
		if (results)
		{
			req->result = results[i];
			req->state = UA_REQ_DONE;
		}
		else
		{
			req->sqlerrcode = edata->sqlerrcode;
			strlcpy(req->errmsg, edata->message ? edata->message : "unknown error",
					sizeof(req->errmsg));
			req->state = UA_REQ_FAILED;
		}
		SetLatch(&req->requester->procLatch);
	}
	LWLockRelease(ua_marker_shared->lock);
}

/*
 * ua_writer_commit
 *		Commit one marker per taken request, all in one transaction.
 */
static void
ua_writer_commit(int *idx, char **kinds, int64 *seqs, int n)
{
	MemoryContext cxt = CurrentMemoryContext;
	UaMarker   *results = palloc(sizeof(UaMarker) * n);

	PG_TRY();
	{
		ua_xact_begin("writing markers");
		for (int i = 0; i < n; i++)
			ua_insert_marker(kinds[i], NULL, seqs[i], &results[i]);
		ua_xact_end(cxt);
	}
	PG_CATCH();
	{
		ErrorData  *edata = ua_recover_from_error(cxt);

		ereport(LOG,
				(errmsg("upgrade_assist marker writer could not commit markers: %s",
						edata->message)));
		ua_writer_finish(idx, n, NULL, edata);
		return;
	}
	PG_END_TRY();

	ua_writer_finish(idx, n, results, NULL);
}

/*
 * ua_writer_main
 *		Entry point of the marker writer; main_arg is the database OID.
 */
void
ua_writer_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	MemoryContext loop_cxt;
	UaMarkerDb *slot;
	TimestampTz last_work;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("upgrade_assist marker writer");

	/* One writer per database: a late duplicate leaves at once. */
	LWLockAcquire(ua_marker_shared->lock, LW_EXCLUSIVE);
	slot = ua_marker_db();
	if (slot->writer != NULL)
	{
		LWLockRelease(ua_marker_shared->lock);
		proc_exit(0);
	}
	slot->writer = MyProc;
	LWLockRelease(ua_marker_shared->lock);
	before_shmem_exit(ua_writer_detach, (Datum) 0);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "upgrade_assist writer loop",
									 ALLOCSET_DEFAULT_SIZES);
	last_work = GetCurrentTimestamp();
	for (;;)
	{
		int		   *idx;
		char	  **kinds;
		int64	   *seqs;
		int			n;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		idx = ua_writer_take(&n, &kinds, &seqs);
		if (n > 0)
		{
			ua_writer_commit(idx, kinds, seqs, n);
			last_work = GetCurrentTimestamp();
			continue;
		}

		if (TimestampDifferenceExceeds(last_work, GetCurrentTimestamp(),
									   ua_writer_idle_timeout * 1000))
			break;
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, 1000L * ua_writer_idle_timeout,
					   UA_WE_WRITER_IDLE);
	}
	proc_exit(0);
}
