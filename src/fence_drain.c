/*-------------------------------------------------------------------------
 *
 * fence_drain.c
 *	  The fence's drain: after the write fence went up (fence.c), wait until
 *	  no transaction that could already write is left, terminating those that
 *	  do not end within the drain timeout.
 *
 * Which transactions.  fence.c keeps one slot per proc number (armed[]) in
 * which a backend publishes its pid while its transaction may write without
 * having seen the fence; see fence_hooks.c for the barriers that make the fence
 * and armed[] agree.  An armed backend is busy when it holds an xid, or runs
 * a statement (it may be about to write): the drain waits for busy backends
 * only.  Backends whose session user is an exempt role are skipped; the
 * other exempt sessions (fence_exempt_session(), logical replication and
 * parallel workers, marker inserts) never arm, so the drain does not see
 * them.
 *
 * Waiting.  For a backend with an xid, the drain waits on its transaction
 * lock (visible in pg_locks and pg_stat_activity), bounded by lock_timeout
 * in a subtransaction; for one without, it polls.  At the deadline the busy
 * ones get SIGTERM, as pg_terminate_backend sends, and the drain waits for
 * them to exit.
 *
 * Locking.  No shared state of its own: armed[] is read with atomic reads,
 * the proc array and backend status through PostgreSQL's own interfaces.
 *
 * IDENTIFICATION
 *	  src/fence_drain.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#if PG_VERSION_NUM >= 150000
#include "utils/backend_status.h"
#endif

#include "compat.h"
#include "fence.h"
#include "util.h"

/* How often the drain looks again at backends it cannot wait for on a lock. */
#define UA_DRAIN_POLL_MS 10

/* How long terminated backends get to exit before the drain gives up. */
#define UA_TERMINATE_WAIT_MS 30000


/*
 * ua_prepared_xacts
 *		Names of the prepared transactions of the cluster, as a detail text,
 *		or NULL when there are none.  Needs a transaction (uses SPI).
 */
char *
ua_prepared_xacts(void)
{
	StringInfoData buf;
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute("SELECT pg_catalog.quote_literal(gid) || ' in database ' ||"
					 " pg_catalog.quote_ident(database::text)"
					 " FROM pg_catalog.pg_prepared_xacts ORDER BY prepared",
					 true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading pg_prepared_xacts failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
	{
		SPI_finish();
		return NULL;
	}
	initStringInfo(&buf);
	for (uint64 i = 0; i < SPI_processed; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "",
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	SPI_finish();
	return buf.data;
}

/*
 * ua_drain_scan
 *		One look at the armed backends (armed[0 .. nprocs - 1]): adds the
 *		busy ones not seen before to *list and sets busy on every entry.
 *		Returns how many are busy.  exempt: role OIDs whose sessions are
 *		skipped.
 */
static int
ua_drain_scan(pg_atomic_uint32 *armed, int nprocs, List **list, List *exempt)
{
	int			nbusy = 0;
	int			nbe;
	ListCell   *lc;

	foreach(lc, *list)
		((UaDrainee *) lfirst(lc))->busy = false;

	/* Fresh copy of the backend status array. */
	pgstat_clear_snapshot();
	nbe = pgstat_fetch_stat_numbackends();

	for (int procno = 0; procno < nprocs; procno++)
	{
		int			pid = (int) pg_atomic_read_u32(&armed[procno]);
		PGPROC	   *proc;
		TransactionId xid;
		PgBackendStatus *be = NULL;
		bool		running;
		UaDrainee  *d = NULL;

		if (pid == 0 || pid == MyProcPid)
			continue;
		proc = &ProcGlobal->allProcs[procno];
		if (proc->pid != pid || BackendPidGetProc(pid) == NULL)
			continue;			/* left behind by a backend that is gone */
		xid = UA_PROC_XID(proc);

		for (int i = 1; i <= nbe; i++)
		{
			LocalPgBackendStatus *local = ua_local_beentry(i);

			if (local && local->backendStatus.st_procpid == pid)
			{
				be = &local->backendStatus;
				break;
			}
		}
		if (be && list_member_oid(exempt, be->st_userid))
			continue;

		/*
		 * Idle in a transaction without an xid: nothing written, and the next
		 * statement is fenced.  Without track_activities (state unknown) the
		 * backend counts as running.
		 */
		running = be == NULL ||
			(be->st_state != STATE_IDLE &&
			 be->st_state != STATE_IDLEINTRANSACTION &&
			 be->st_state != STATE_IDLEINTRANSACTION_ABORTED);
		if (!TransactionIdIsValid(xid) && !running)
			continue;

		foreach(lc, *list)
		{
			UaDrainee  *e = lfirst(lc);

			if (e->pid == pid)
				d = e;
		}
		if (d == NULL)
		{
			d = palloc0(sizeof(UaDrainee));
			d->pid = pid;
			if (be)
			{
				d->dbid = be->st_databaseid;
				d->userid = be->st_userid;
				strlcpy(d->appname, be->st_appname, sizeof(d->appname));
			}
			*list = lappend(*list, d);
		}
		d->xid = xid;
		d->busy = true;
		d->ended = 0;
		nbusy++;
	}
	return nbusy;
}

/*
 * ua_wait_for_xid
 *		Wait until transaction xid ends, at most timeout_ms, as a lock wait
 *		(visible in pg_locks).  Returns at the timeout or on a deadlock with
 *		the waiter; throws on cancel.
 */
typedef struct UaXidWait
{
	TransactionId xid;
	long		timeout_ms;
} UaXidWait;

static void
ua_wait_for_xid_fn(void *arg)
{
	UaXidWait  *w = (UaXidWait *) arg;
	char		buf[32];

	snprintf(buf, sizeof(buf), "%ld", Max(1, Min(w->timeout_ms, (long) INT_MAX)));
	(void) set_config_option("lock_timeout", buf, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, ERROR, false);
	XactLockTableWait(w->xid, NULL, NULL, XLTW_None);
}

static void
ua_wait_for_xid(TransactionId xid, long timeout_ms)
{
	UaXidWait	w = {xid, timeout_ms};
	ErrorData  *edata = ua_try_subxact(ua_wait_for_xid_fn, &w);

	if (edata == NULL)
		return;
	if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE &&
		edata->sqlerrcode != ERRCODE_T_R_DEADLOCK_DETECTED)
		ReThrowError(edata);
	FreeErrorData(edata);
}

/*
 * ua_drain
 *		Wait until no armed backend (armed[0 .. nprocs - 1], see fence.c)
 *		whose session user is not in exempt_roles is busy (holds an xid or
 *		runs a statement), at most drain_ms; then terminate the rest and
 *		wait until they are gone.  The caller's own backend is never waited
 *		for.  Returns the list of UaDrainee seen busy, palloc'd in the
 *		current memory context.  Needs a transaction.  Throws 57014 on
 *		cancel, and 55000 when a terminated backend does not exit within
 *		UA_TERMINATE_WAIT_MS.
 */
List *
ua_drain(pg_atomic_uint32 *armed, int nprocs, List *exempt_roles, int64 drain_ms)
{
	List	   *list = NIL;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), drain_ms);
	ListCell   *lc;

	for (;;)
	{
		int			nbusy = ua_drain_scan(armed, nprocs, &list, exempt_roles);
		TimestampTz now = GetCurrentTimestamp();
		UaDrainee  *wait_on = NULL;

		foreach(lc, list)
		{
			UaDrainee  *d = lfirst(lc);

			if (!d->busy && d->ended == 0)
				d->ended = now;
			if (d->busy && wait_on == NULL && TransactionIdIsValid(d->xid))
				wait_on = d;
		}
		if (nbusy == 0 || now >= deadline)
			break;

		if (wait_on)
		{
			ua_wait_for_xid(wait_on->xid, ua_ms_until(deadline));
			CHECK_FOR_INTERRUPTS();
		}
		else
			(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT,
						   Min(UA_DRAIN_POLL_MS, ua_ms_until(deadline)),
						   UA_WE_FENCE_DRAIN);
	}

	/* Out of time: terminate, as pg_terminate_backend does. */
	foreach(lc, list)
	{
		UaDrainee  *d = lfirst(lc);

		if (!d->busy)
			continue;
		if (kill(d->pid, SIGTERM) != 0 && errno != ESRCH)
			ereport(WARNING,
					(errmsg("could not send signal to process %d: %m", d->pid)));
		d->terminated = true;
	}

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), UA_TERMINATE_WAIT_MS);
	for (;;)
	{
		UaDrainee  *left = NULL;

		foreach(lc, list)
		{
			UaDrainee  *d = lfirst(lc);

			if (d->terminated && d->ended == 0)
			{
				if (BackendPidGetProc(d->pid) == NULL)
					d->ended = GetCurrentTimestamp();
				else if (left == NULL)
					left = d;
			}
		}
		if (left == NULL)
			break;
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("backend %d did not exit within %d s after it was terminated by the fence's drain",
							left->pid, UA_TERMINATE_WAIT_MS / 1000)));
		(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, UA_DRAIN_POLL_MS,
					   UA_WE_FENCE_DRAIN);
	}
	return list;
}
