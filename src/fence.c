/*-------------------------------------------------------------------------
 *
 * fence.c
 *	  The write fence: a cluster-wide switch that makes every write of every
 *	  session fail with SQLSTATE 25006 while reads go on, drains the write
 *	  transactions in flight, and survives restarts and crashes.
 *
 * Enforcement (fence_hooks.c): while the fence is up, every statement of a
 * session that is not exempt runs in a read-only transaction, which
 * PostgreSQL's own checks then keep from writing.  The drain (fence_drain.c):
 * a transaction that could already write when the fence went up may go on
 * writing and commit for drain_timeout, then its backend is terminated.
 *
 * For the cutover, fence() and unfence() are also a C API (fence.h):
 * ua_fence_engage, ua_fence_drain, ua_fence_release; and
 * unfence_at_commit() lifts the fence from the transaction callback when the
 * calling transaction commits.
 *
 * Persistence.  The state lives in shared memory and, while fenced, in the
 * file upgrade_assist.fence in the data directory, written durably (temp
 * file, fsync, rename, fsync of the directory) before the flag goes up and
 * removed before it comes down.  The postmaster reads it when it creates
 * shared memory, at start and after a crash.
 *
 * auto_unfence_after.  The deadline is checked lazily by whoever looks at
 * the fence: every fenced statement, fence_status, fence() and startup.
 * The first to see it passed lifts the fence.  No process needs to run for
 * it, and nobody can observe the fence after its deadline.
 *
 * Locking.  UaFenceShared.fenced and .auto_unfence_at are atomics read
 * without a lock by the hooks; every other field, and every change of those
 * two, is under UaFenceShared.lock.  armed[i] is written only by the backend
 * with proc number i.
 *
 * IDENTIFICATION
 *	  src/fence.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "fence.h"
#include "util.h"

/* The fence file, relative to the data directory. */
#define UA_FENCE_FILE "upgrade_assist.fence"
#define UA_FENCE_TMP_FILE "upgrade_assist.fence.tmp"

/* Shared state; NULL unless preloaded. */
UaFenceShared *ua_fence = NULL;

PG_FUNCTION_INFO_V1(fence);
PG_FUNCTION_INFO_V1(unfence);
PG_FUNCTION_INFO_V1(fence_status_rows);
PG_FUNCTION_INFO_V1(fence_exempt_session);
PG_FUNCTION_INFO_V1(unfence_at_commit);
PG_FUNCTION_INFO_V1(fence_note_takeover);

/* ---------------------------------------------------------------------------
 * Shared memory and the fence file
 * ---------------------------------------------------------------------------
 */

/*
 * ua_fence_shmem_size
 *		Bytes of shared memory for the fence.  Valid once MaxBackends is known.
 */
static Size
ua_fence_shmem_size(void)
{
	return add_size(offsetof(UaFenceShared, armed),
					mul_size(UA_MAX_BACKENDS(), sizeof(pg_atomic_uint32)));
}

/*
 * ua_fence_shmem_request
 *		Request the fence's shared memory and lock; called where
 *		upgrade_assist.c requests its own.
 */
void
ua_fence_shmem_request(void)
{
	RequestAddinShmemSpace(ua_fence_shmem_size());
	RequestNamedLWLockTranche("upgrade_assist fence", 1);
}

/*
 * ua_fence_file_write
 *		Write the fence file durably from the shared state.  Caller holds the
 *		lock exclusively.  Throws on I/O errors, leaving no file behind that
 *		was not there before (a stale temp file is harmless).
 */
static void
ua_fence_file_write(void)
{
	char	   *text;
	int			len;
	char	   *attempt = "";
	char	   *takeover = "";

	/* Lines of the cutover; "reason" stays last (it runs to the end). */
	if (ua_fence->co_attempt != 0)
		attempt = psprintf("cutover_attempt " INT64_FORMAT "\n"
						   "cutover_database %u\n"
						   "cutover_role %u\n"
						   "cutover_peer %s\n",
						   ua_fence->co_attempt, ua_fence->co_dboid,
						   ua_fence->co_userid, ua_fence->co_peer);
	if (ua_fence->tk_attempt != 0)
		takeover = psprintf("takeover " UINT64_FORMAT " " INT64_FORMAT " %u\n",
							ua_fence->tk_origin, ua_fence->tk_attempt,
							ua_fence->tk_dboid);
	text = psprintf("upgrade_assist fence 1\n"
					"generation " UINT64_FORMAT "\n"
					"since " INT64_FORMAT "\n"
					"auto_unfence_at " INT64_FORMAT "\n"
					"fenced_by %s\n"
					"%s%s"
					"reason %s",
					ua_fence->generation,
					(int64) ua_fence->since,
					(int64) pg_atomic_read_u64(&ua_fence->auto_unfence_at),
					ua_fence->fenced_by,
					attempt, takeover,
					ua_fence->reason);
	len = strlen(text);

	ua_write_file_durably(UA_FENCE_FILE, UA_FENCE_TMP_FILE, text, len);
	pfree(text);
}

/*
 * ua_fence_file_load
 *		In the postmaster (or a single-user backend), when shared memory is
 *		created: raise the fence again if the file says so.  Never throws: a
 *		file that cannot be parsed fences the cluster (a fenced cluster must
 *		never come back writable by accident), with a WARNING.
 */
static void
ua_fence_file_load(void)
{
	FILE	   *f;
	char		line[UA_FENCE_REASON_MAX + 64];
	bool		header = false;
	int64		auto_at = 0;

	(void) unlink(UA_FENCE_TMP_FILE);
	f = AllocateFile(UA_FENCE_FILE, "r");
	if (f == NULL)
	{
		if (errno != ENOENT)
		{
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m; the cluster stays fenced",
							UA_FENCE_FILE)));
			strlcpy(ua_fence->reason, "fence file unreadable", sizeof(ua_fence->reason));
			ua_fence->since = GetCurrentTimestamp();
			pg_atomic_write_u32(&ua_fence->fenced, 1);
		}
		return;
	}

	while (fgets(line, sizeof(line), f) != NULL)
	{
		char	   *nl;

		if (strncmp(line, "reason ", 7) == 0)
		{
			/* The reason runs to the end of the file. */
			size_t		used = strlcpy(ua_fence->reason, line + 7, sizeof(ua_fence->reason));

			if (used < sizeof(ua_fence->reason) - 1)
			{
				size_t		more = fread(ua_fence->reason + used, 1,
										 sizeof(ua_fence->reason) - 1 - used, f);

				ua_fence->reason[used + more] = '\0';
			}
			break;
		}
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (strcmp(line, "upgrade_assist fence 1") == 0)
			header = true;
		else if (strncmp(line, "generation ", 11) == 0)
			ua_fence->generation = (uint64) strtoull(line + 11, NULL, 10);
		else if (strncmp(line, "since ", 6) == 0)
			ua_fence->since = (TimestampTz) strtoll(line + 6, NULL, 10);
		else if (strncmp(line, "auto_unfence_at ", 16) == 0)
			auto_at = (int64) strtoll(line + 16, NULL, 10);
		else if (strncmp(line, "fenced_by ", 10) == 0)
			strlcpy(ua_fence->fenced_by, line + 10, sizeof(ua_fence->fenced_by));
		else if (strncmp(line, "cutover_attempt ", 16) == 0)
			ua_fence->co_attempt = (int64) strtoll(line + 16, NULL, 10);
		else if (strncmp(line, "cutover_database ", 17) == 0)
			ua_fence->co_dboid = (Oid) strtoul(line + 17, NULL, 10);
		else if (strncmp(line, "cutover_role ", 13) == 0)
			ua_fence->co_userid = (Oid) strtoul(line + 13, NULL, 10);
		else if (strncmp(line, "cutover_peer ", 13) == 0)
			strlcpy(ua_fence->co_peer, line + 13, sizeof(ua_fence->co_peer));
		else if (strncmp(line, "takeover ", 9) == 0)
		{
			unsigned long long origin;
			long long	attempt;
			unsigned int dboid;

			if (sscanf(line + 9, "%llu %lld %u", &origin, &attempt, &dboid) == 3)
			{
				ua_fence->tk_origin = (uint64) origin;
				ua_fence->tk_attempt = (int64) attempt;
				ua_fence->tk_dboid = (Oid) dboid;
			}
		}
	}
	FreeFile(f);

	/* An attempt needs all of its lines; a takeover note its database. */
	if (ua_fence->co_attempt != 0 &&
		(!OidIsValid(ua_fence->co_dboid) || !OidIsValid(ua_fence->co_userid) ||
		 ua_fence->co_peer[0] == '\0'))
		ua_fence->co_attempt = 0;
	if (ua_fence->tk_attempt != 0 && !OidIsValid(ua_fence->tk_dboid))
		ua_fence->tk_attempt = 0;

	if (!header)
	{
		ereport(WARNING,
				(errmsg("file \"%s\" is not an upgrade_assist fence file; the cluster stays fenced",
						UA_FENCE_FILE),
				 errhint("Call upgrade_assist.unfence() to lift the fence.")));
		strlcpy(ua_fence->reason, "fence file unreadable", sizeof(ua_fence->reason));
		ua_fence->since = GetCurrentTimestamp();
		auto_at = 0;
	}

	if (auto_at != 0 && auto_at <= GetCurrentTimestamp())
	{
		ereport(LOG,
				(errmsg("upgrade_assist write fence lifted at startup: auto_unfence_after passed")));
		ua_fence->lifted_at = GetCurrentTimestamp();
		strlcpy(ua_fence->lifted_by, "auto_unfence_after", sizeof(ua_fence->lifted_by));
		(void) durable_unlink(UA_FENCE_FILE, LOG);
		return;
	}

	ua_fence->drain_state = UA_DRAIN_DONE;
	pg_atomic_write_u64(&ua_fence->auto_unfence_at, (uint64) auto_at);
	pg_atomic_write_u32(&ua_fence->fenced, 1);
	if (ua_fence->co_attempt != 0)
		snprintf(ua_fence->waiting_for, sizeof(ua_fence->waiting_for),
				 "restart during cutover attempt " INT64_FORMAT ": the resolver asks peer \"%s\" whether it took over",
				 ua_fence->co_attempt, ua_fence->co_peer);
	else if (ua_fence->tk_attempt != 0)
		snprintf(ua_fence->waiting_for, sizeof(ua_fence->waiting_for),
				 "restart during a takeover (attempt " INT64_FORMAT " of cluster " UINT64_FORMAT "): the resolver checks whether it committed",
				 ua_fence->tk_attempt, ua_fence->tk_origin);
	ereport(LOG,
			(errmsg("upgrade_assist write fence is up (from file \"%s\"): %s",
					UA_FENCE_FILE, ua_fence->reason)));
}

/*
 * ua_fence_file_has_cutover
 *		From _PG_init in the postmaster (the data directory is the working
 *		directory; shared memory does not exist yet): does the fence file
 *		name a cutover attempt or a takeover?  Never throws.
 */
bool
ua_fence_file_has_cutover(void)
{
	FILE	   *f = fopen(UA_FENCE_FILE, "r");
	char		line[UA_FENCE_REASON_MAX + 64];
	bool		found = false;

	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f) != NULL)
	{
		if (strncmp(line, "reason ", 7) == 0)
			break;
		found = strncmp(line, "cutover_attempt ", 16) == 0 ||
			strncmp(line, "takeover ", 9) == 0;
	}
	fclose(f);
	return found;
}

/*
 * ua_fence_shmem_startup
 *		Attach to (or create, and then load the fence file into) the fence's
 *		shared state.  Caller holds AddinShmemInitLock.
 */
void
ua_fence_shmem_startup(void)
{
	bool		found;

	ua_fence = ShmemInitStruct("upgrade_assist fence", ua_fence_shmem_size(), &found);
	if (found)
		return;

	memset(ua_fence, 0, offsetof(UaFenceShared, armed));
	ua_fence->lock = &(GetNamedLWLockTranche("upgrade_assist fence"))->lock;
	pg_atomic_init_u32(&ua_fence->fenced, 0);
	pg_atomic_init_u64(&ua_fence->auto_unfence_at, 0);
	ua_fence->nprocs = UA_MAX_BACKENDS();
	for (int i = 0; i < ua_fence->nprocs; i++)
		pg_atomic_init_u32(&ua_fence->armed[i], 0);
	ua_fence_file_load();
}

/* ---------------------------------------------------------------------------
 * Raising and lifting
 * ---------------------------------------------------------------------------
 */

/*
 * ua_fence_raise
 *		Raise the fence: write the file, then set the flag.  Throws 55000
 *		when the cluster is fenced already, or on I/O errors (then nothing
 *		changed).
 */
static void
ua_fence_raise(const char *reason, TimestampTz auto_at, int64 attempt, Oid dboid,
			   Oid userid, const char *peer)
{
	const char *me = GetUserNameFromId(GetUserId(), false);

	LWLockAcquire(ua_fence->lock, LW_EXCLUSIVE);
	if (pg_atomic_read_u32(&ua_fence->fenced) != 0)
	{
		char	   *since = pstrdup(timestamptz_to_str(ua_fence->since));
		char	   *old = pstrdup(ua_fence->reason);

		LWLockRelease(ua_fence->lock);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the cluster is already fenced"),
				 errdetail("Fenced since %s, reason: %s.", since, old)));
	}
	ua_fence->generation++;
	ua_fence->since = GetCurrentTimestamp();
	strlcpy(ua_fence->reason, reason, sizeof(ua_fence->reason));
	strlcpy(ua_fence->fenced_by, me, sizeof(ua_fence->fenced_by));
	ua_fence->fenced_by_pid = MyProcPid;
	pg_atomic_write_u64(&ua_fence->auto_unfence_at, (uint64) auto_at);
	ua_fence->co_attempt = attempt;
	ua_fence->co_dboid = dboid;
	ua_fence->co_userid = userid;
	strlcpy(ua_fence->co_peer, peer ? peer : "", sizeof(ua_fence->co_peer));
	ua_fence->tk_attempt = 0;
	ua_fence->tk_origin = 0;
	ua_fence->tk_dboid = InvalidOid;
	ua_fence->waiting_for[0] = '\0';
	PG_TRY();
	{
		ua_fence_file_write();	/* on error the flag stays down */
	}
	PG_CATCH();
	{
		ua_fence->co_attempt = 0;
		PG_RE_THROW();
	}
	PG_END_TRY();

	ua_fence->drain_state = UA_DRAIN_RUNNING;
	ua_fence->drain_finished = 0;
	ua_fence->drain_terminated = 0;
	ua_fence->lifted_at = 0;
	ua_fence->lifted_by[0] = '\0';
	pg_atomic_write_u32(&ua_fence->fenced, 1);
	LWLockRelease(ua_fence->lock);

	/* Pairs with the barrier in ua_arm(). */
	pg_memory_barrier();
	ereport(LOG,
			(errmsg("upgrade_assist write fence raised by role \"%s\": %s", me, reason)));
}

/*
 * ua_fence_lift
 *		Lift the fence: remove the file, then clear the flag.  by says who
 *		(a role name, or "auto_unfence_after").  generation, when not 0, is
 *		the fence to lift: a later one (lifted and raised again meanwhile)
 *		stays up, with a LOG.  Returns false when there was no fence (or not
 *		that one).  With elevel ERROR, a file that cannot be removed keeps
 *		the fence up and throws; with LOG, the fence is lifted anyway (used
 *		where the deadline has passed, which a restart also honours, and
 *		after commit, where nothing may throw).
 */
bool
ua_fence_lift(const char *by, int elevel, uint64 generation)
{
	LWLockAcquire(ua_fence->lock, LW_EXCLUSIVE);
	if (pg_atomic_read_u32(&ua_fence->fenced) == 0)
	{
		LWLockRelease(ua_fence->lock);
		return false;
	}
	if (generation != 0 && ua_fence->generation != generation)
	{
		LWLockRelease(ua_fence->lock);
		ereport(LOG,
				(errmsg("upgrade_assist write fence not lifted by %s: it was raised again since", by)));
		return false;
	}
	if (unlink(UA_FENCE_FILE) != 0 && errno != ENOENT)
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", UA_FENCE_FILE)));
	else
		fsync_fname(".", true);
	pg_atomic_write_u32(&ua_fence->fenced, 0);
	pg_atomic_write_u64(&ua_fence->auto_unfence_at, 0);
	ua_fence->co_attempt = 0;
	ua_fence->tk_attempt = 0;
	ua_fence->waiting_for[0] = '\0';
	ua_fence->lifted_at = GetCurrentTimestamp();
	strlcpy(ua_fence->lifted_by, by, sizeof(ua_fence->lifted_by));
	if (ua_fence->drain_state == UA_DRAIN_RUNNING)
		ua_fence->drain_state = UA_DRAIN_NONE;
	LWLockRelease(ua_fence->lock);
	ereport(LOG,
			(errmsg("upgrade_assist write fence lifted by %s", by)));
	return true;
}

/*
 * ua_fence_check_reason
 *		Throw 22023 unless reason is 1 to UA_FENCE_REASON_MAX bytes long.
 */
static void
ua_fence_check_reason(const char *reason)
{
	if (reason == NULL || reason[0] == '\0' || strlen(reason) > UA_FENCE_REASON_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("reason must be 1 to %d bytes long", UA_FENCE_REASON_MAX)));
}

/*
 * ua_fence_engage_until
 *		Everything fence() does before its drain, for a valid reason and an
 *		auto_unfence_after deadline auto_at (0 for none): refuses a caller
 *		whose transaction has written (25001, unless the session is exempt),
 *		lifts an earlier fence whose deadline passed, refuses while prepared
 *		transactions exist (55000), then raises the fence (55000 when fenced
 *		already; I/O errors leave it down).
 */
static void
ua_fence_engage_until(const char *reason, TimestampTz auto_at, int64 attempt,
					  Oid dboid, Oid userid, const char *peer)
{
	char	   *prepared;

	if (TransactionIdIsValid(GetTopTransactionIdIfAny()) && !ua_fence_session_exempt())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot raise the write fence in a transaction that has written"),
				 errhint("Call fence() in its own transaction.")));

	/* The deadline of an earlier fence may have passed. */
	(void) ua_fence_is_up();

	prepared = ua_prepared_xacts();
	if (prepared)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot fence while prepared transactions exist"),
				 errdetail("Prepared transactions: %s.", prepared),
				 errhint("COMMIT PREPARED or ROLLBACK PREPARED them first.")));

	ua_fence_raise(reason, auto_at, attempt, dboid, userid, peer);
}

/*
 * ua_fence_engage
 *		Raise the fence as fence() does before its drain, without a deadline
 *		and without draining (contract in fence.h).  The caller owns the
 *		fence from here on: an error after this returns does not lift it.
 */
void
ua_fence_engage(const char *reason)
{
	ua_require_preloaded(ua_fence);
	ua_fence_check_reason(reason);
	ua_fence_engage_until(reason, 0, 0, InvalidOid, InvalidOid, NULL);
}

/*
 * ua_fence_engage_cutover
 *		ua_fence_engage for a cutover attempt, which the fence file keeps
 *		with the database, role and peer to ask after a restart.
 */
void
ua_fence_engage_cutover(const char *reason, int64 attempt, Oid dboid, Oid userid,
						const char *peer)
{
	ua_require_preloaded(ua_fence);
	ua_fence_check_reason(reason);
	Assert(attempt > 0 && OidIsValid(dboid) && OidIsValid(userid));
	ua_fence_engage_until(reason, 0, attempt, dboid, userid, peer);
}

/*
 * ua_fence_drain_list
 *		The drain of ua_fence_drain(), returning the UaDrainee list that
 *		fence() turns into rows.
 */
static List *
ua_fence_drain_list(int64 drain_ms, int *finished, int *terminated)
{
	List	   *drained;
	char	   *prepared;
	ListCell   *lc;
	int			nfinished = 0;
	int			nterminated = 0;

	drained = ua_drain(ua_fence->armed, ua_fence->nprocs,
					   ua_fence_exempt_role_oids(), drain_ms);

	/* A drained transaction may have prepared itself instead of ending. */
	prepared = ua_prepared_xacts();
	if (prepared)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot fence while prepared transactions exist"),
				 errdetail("Prepared during the drain: %s.", prepared),
				 errhint("COMMIT PREPARED or ROLLBACK PREPARED them, then fence again.")));

	foreach(lc, drained)
	{
		if (((UaDrainee *) lfirst(lc))->terminated)
			nterminated++;
		else
			nfinished++;
	}

	LWLockAcquire(ua_fence->lock, LW_EXCLUSIVE);
	if (ua_fence->drain_state == UA_DRAIN_RUNNING)
	{
		ua_fence->drain_state = UA_DRAIN_DONE;
		ua_fence->drain_finished = nfinished;
		ua_fence->drain_terminated = nterminated;
	}
	LWLockRelease(ua_fence->lock);

	*finished = nfinished;
	*terminated = nterminated;
	return drained;
}

/*
 * ua_fence_drain
 *		The drain fence() does after raising the fence (contract in
 *		fence.h).  When it returns, no transaction of a session that is not
 *		exempt can still commit a write while the fence stays up.  It never
 *		lifts the fence: on error the caller decides.
 */
void
ua_fence_drain(int64 drain_ms, int *finished, int *terminated)
{
	ua_require_preloaded(ua_fence);
	list_free_deep(ua_fence_drain_list(drain_ms, finished, terminated));
}

/*
 * ua_fence_release
 *		Lift the fence as unfence() does; by is shown as lifted_by.  False
 *		when there was no fence; throws (the fence stays up) when the fence
 *		file cannot be removed.
 */
bool
ua_fence_release(const char *by)
{
	ua_require_preloaded(ua_fence);
	return ua_fence_lift(by, ERROR, 0);
}


/* ---------------------------------------------------------------------------
 * SQL functions
 * ---------------------------------------------------------------------------
 */

/*
 * fence(reason text, drain_timeout interval, auto_unfence_after interval)
 *		returns setof (pid, database, role, application_name, outcome, waited)
 *
 *		Raise the fence (ua_fence_engage's part) and drain (ua_fence_drain's
 *		part).  Throws 55000 when fenced already or when prepared
 *		transactions exist (then the fence is lifted again), 25001 when the
 *		caller's own transaction has written, 22004/22023 on bad arguments.
 *		Any failure after the fence went up lifts it again.
 */
Datum
fence(PG_FUNCTION_ARGS)
{
	char	   *reason;
	int64		drain_ms;
	TimestampTz auto_at = 0;
	TimestampTz started;
	List	   *volatile drained = NIL;
	int			nfinished;
	int			nterminated;
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	ListCell   *lc;

	ua_require_preloaded(ua_fence);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("reason must not be null")));
	reason = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ua_fence_check_reason(reason);
	drain_ms = ua_interval_to_ms(PG_ARGISNULL(1) ? NULL : PG_GETARG_INTERVAL_P(1),
								 "drain_timeout");
	if (!PG_ARGISNULL(2))
	{
		int64		auto_ms = ua_interval_to_ms(PG_GETARG_INTERVAL_P(2), "auto_unfence_after");

		if (auto_ms <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("auto_unfence_after must be positive")));
		auto_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), auto_ms);
	}

	store = ua_materialize_srf(fcinfo, &tupdesc);

	ua_fence_engage_until(reason, auto_at, 0, InvalidOid, InvalidOid, NULL);
	started = GetCurrentTimestamp();

	PG_TRY();
	{
		drained = ua_fence_drain_list(drain_ms, &nfinished, &nterminated);
	}
	PG_CATCH();
	{
		/* fence() failed: it must not leave the fence behind. */
		(void) ua_fence_lift("failed fence()", LOG, 0);
		PG_RE_THROW();
	}
	PG_END_TRY();

	foreach(lc, drained)
	{
		UaDrainee  *d = lfirst(lc);
		Datum		values[6];
		bool		nulls[6] = {false};
		char	   *dbname = OidIsValid(d->dbid) ? get_database_name(d->dbid) : NULL;
		char	   *rolname = OidIsValid(d->userid) ? GetUserNameFromId(d->userid, true) : NULL;

		values[0] = Int32GetDatum(d->pid);
		if (dbname)
			values[1] = CStringGetTextDatum(dbname);
		else
			nulls[1] = true;
		if (rolname)
			values[2] = CStringGetTextDatum(rolname);
		else
			nulls[2] = true;
		values[3] = CStringGetTextDatum(d->appname);
		values[4] = CStringGetTextDatum(d->terminated ? "terminated" : "finished");
		values[5] = DirectFunctionCall2(timestamp_mi,
										TimestampTzGetDatum(d->ended),
										TimestampTzGetDatum(started));
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}

	return (Datum) 0;
}

/*
 * unfence() returns boolean
 *		Lift the fence; false when there was none.  Throws when the fence
 *		file cannot be removed (the fence then stays up).
 */
Datum
unfence(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ua_fence_release(GetUserNameFromId(GetUserId(), false)));
}

/*
 * fence_exempt_session() returns void
 *		This session writes through the fence until it ends (see
 *		ua_fence_exempt_session).  For the cutover's own session on a fenced
 *		peer.
 */
Datum
fence_exempt_session(PG_FUNCTION_ARGS)
{
	ua_require_preloaded(ua_fence);
	ua_fence_exempt_session();
	PG_RETURN_VOID();
}

/*
 * unfence_at_commit() returns void
 *		Lift the fence when the calling transaction commits; nothing happens
 *		when it (or the subtransaction that called this) aborts.  Only the
 *		fence that is up now is lifted, not one raised after it.  Throws
 *		55000 when the cluster is not fenced.  The lift itself happens after
 *		the commit and cannot fail the transaction (see
 *		ua_fence_xact_callback).
 */
Datum
unfence_at_commit(PG_FUNCTION_ARGS)
{
	uint64		generation;

	ua_require_preloaded(ua_fence);
	if (!ua_fence_is_up())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the cluster is not fenced")));
	LWLockAcquire(ua_fence->lock, LW_SHARED);
	generation = ua_fence->generation;
	LWLockRelease(ua_fence->lock);

	ua_fence_lift_at_commit(generation);
	PG_RETURN_VOID();
}

/*
 * fence_status_rows() returns one row describing the fence; the view
 * upgrade_assist.fence_status selects from it.
 */
Datum
fence_status_rows(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	Datum		values[14];
	bool		nulls[14] = {false};
	bool		fenced;
	TimestampTz auto_at;

	ua_require_preloaded(ua_fence);
	store = ua_materialize_srf(fcinfo, &tupdesc);
	(void) ua_fence_is_up();		/* lifts it when its deadline passed */

	LWLockAcquire(ua_fence->lock, LW_SHARED);
	fenced = pg_atomic_read_u32(&ua_fence->fenced) != 0;
	auto_at = (TimestampTz) pg_atomic_read_u64(&ua_fence->auto_unfence_at);
	values[0] = BoolGetDatum(fenced);
	nulls[1] = ua_fence->since == 0;
	values[1] = TimestampTzGetDatum(ua_fence->since);
	nulls[2] = ua_fence->since == 0;
	values[2] = CStringGetTextDatum(ua_fence->reason);
	nulls[3] = ua_fence->fenced_by[0] == '\0';
	values[3] = CStringGetTextDatum(ua_fence->fenced_by);
	nulls[4] = ua_fence->fenced_by_pid == 0;
	values[4] = Int32GetDatum(ua_fence->fenced_by_pid);
	nulls[5] = !fenced || auto_at == 0;
	values[5] = TimestampTzGetDatum(auto_at);
	switch (ua_fence->drain_state)
	{
		case UA_DRAIN_RUNNING:
			values[6] = CStringGetTextDatum("draining");
			break;
		case UA_DRAIN_DONE:
			values[6] = CStringGetTextDatum("done");
			break;
		default:
			nulls[6] = true;
	}
	nulls[7] = nulls[8] = ua_fence->drain_state != UA_DRAIN_DONE;
	values[7] = Int32GetDatum(ua_fence->drain_finished);
	values[8] = Int32GetDatum(ua_fence->drain_terminated);
	nulls[9] = ua_fence->lifted_at == 0;
	values[9] = TimestampTzGetDatum(ua_fence->lifted_at);
	nulls[10] = ua_fence->lifted_by[0] == '\0';
	values[10] = CStringGetTextDatum(ua_fence->lifted_by);
	values[11] = Int64GetDatum((int64) ua_fence->generation);
	nulls[12] = !fenced || ua_fence->co_attempt == 0;
	values[12] = Int64GetDatum(ua_fence->co_attempt);
	nulls[13] = !fenced || ua_fence->waiting_for[0] == '\0';
	values[13] = CStringGetTextDatum(ua_fence->waiting_for);
	LWLockRelease(ua_fence->lock);

	tuplestore_putvalues(store, tupdesc, values, nulls);
	return (Datum) 0;
}


/* ---------------------------------------------------------------------------
 * The cutover's attempt in the fence (contracts in fence.h)
 * ---------------------------------------------------------------------------
 */

bool
ua_fence_cutover_attempt(int64 *attempt, Oid *dboid, Oid *userid, char *peer)
{
	bool		found;

	ua_require_preloaded(ua_fence);
	(void) ua_fence_is_up();
	LWLockAcquire(ua_fence->lock, LW_SHARED);
	found = pg_atomic_read_u32(&ua_fence->fenced) != 0 && ua_fence->co_attempt != 0;
	if (found)
	{
		if (attempt)
			*attempt = ua_fence->co_attempt;
		if (dboid)
			*dboid = ua_fence->co_dboid;
		if (userid)
			*userid = ua_fence->co_userid;
		if (peer)
			strlcpy(peer, ua_fence->co_peer, NAMEDATALEN);
	}
	LWLockRelease(ua_fence->lock);
	return found;
}

void
ua_fence_forget_attempt(int64 attempt)
{
	ua_require_preloaded(ua_fence);
	LWLockAcquire(ua_fence->lock, LW_EXCLUSIVE);
	if (pg_atomic_read_u32(&ua_fence->fenced) != 0 && ua_fence->co_attempt == attempt)
	{
		ua_fence->co_attempt = 0;
		PG_TRY();
		{
			ua_fence_file_write();
		}
		PG_CATCH();
		{
			ua_fence->co_attempt = attempt;
			LWLockRelease(ua_fence->lock);
			PG_RE_THROW();
		}
		PG_END_TRY();
		ua_fence->waiting_for[0] = '\0';
	}
	LWLockRelease(ua_fence->lock);
}

bool
ua_fence_release_attempt(int64 attempt, const char *by)
{
	uint64		generation = 0;

	ua_require_preloaded(ua_fence);
	LWLockAcquire(ua_fence->lock, LW_SHARED);
	if (pg_atomic_read_u32(&ua_fence->fenced) != 0 && ua_fence->co_attempt == attempt)
		generation = ua_fence->generation;
	LWLockRelease(ua_fence->lock);
	if (generation == 0)
		return false;
	return ua_fence_lift(by, ERROR, generation);
}

bool
ua_fence_takeover_pending(uint64 *origin, int64 *attempt, Oid *dboid)
{
	bool		found;

	ua_require_preloaded(ua_fence);
	LWLockAcquire(ua_fence->lock, LW_SHARED);
	found = pg_atomic_read_u32(&ua_fence->fenced) != 0 && ua_fence->tk_attempt != 0;
	if (found)
	{
		*origin = ua_fence->tk_origin;
		*attempt = ua_fence->tk_attempt;
		*dboid = ua_fence->tk_dboid;
	}
	LWLockRelease(ua_fence->lock);
	return found;
}

void
ua_fence_forget_takeover(void)
{
	ua_require_preloaded(ua_fence);
	LWLockAcquire(ua_fence->lock, LW_EXCLUSIVE);
	if (pg_atomic_read_u32(&ua_fence->fenced) != 0 && ua_fence->tk_attempt != 0)
	{
		int64		attempt = ua_fence->tk_attempt;

		ua_fence->tk_attempt = 0;
		PG_TRY();
		{
			ua_fence_file_write();
		}
		PG_CATCH();
		{
			ua_fence->tk_attempt = attempt;
			LWLockRelease(ua_fence->lock);
			PG_RE_THROW();
		}
		PG_END_TRY();
		ua_fence->waiting_for[0] = '\0';
	}
	LWLockRelease(ua_fence->lock);
}

void
ua_fence_set_waiting(const char *text)
{
	ua_require_preloaded(ua_fence);
	LWLockAcquire(ua_fence->lock, LW_EXCLUSIVE);
	strlcpy(ua_fence->waiting_for, text ? text : "", sizeof(ua_fence->waiting_for));
	LWLockRelease(ua_fence->lock);
}

/*
 * fence_note_takeover(origin bigint, attempt bigint) returns void
 *		Called by cutover_takeover() inside the takeover transaction, before
 *		its commit: note the takeover of (origin, attempt) in this database
 *		in the fence file, durably.  When the cluster crashes after the
 *		commit but before the fence lift, the resolver at restart finds the
 *		note, sees the committed record and lifts the fence; when the
 *		takeover aborted, it finds no record and drops the note.  55000 when
 *		the cluster is not fenced; the shared state is not changed (a
 *		takeover that aborts leaves nothing to undo but the note in the
 *		file, which only a restart reads).
 */
Datum
fence_note_takeover(PG_FUNCTION_ARGS)
{
	int64		origin = PG_GETARG_INT64(0);
	int64		attempt = PG_GETARG_INT64(1);

	ua_require_preloaded(ua_fence);
	if (attempt <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attempt must be positive")));
	LWLockAcquire(ua_fence->lock, LW_EXCLUSIVE);
	if (pg_atomic_read_u32(&ua_fence->fenced) == 0)
	{
		LWLockRelease(ua_fence->lock);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the cluster is not fenced")));
	}
	ua_fence->tk_origin = (uint64) origin;
	ua_fence->tk_attempt = attempt;
	ua_fence->tk_dboid = MyDatabaseId;
	PG_TRY();
	{
		ua_fence_file_write();
	}
	PG_FINALLY();
	{
		/* The note lives in the file only: see above. */
		ua_fence->tk_attempt = 0;
		ua_fence->tk_origin = 0;
		ua_fence->tk_dboid = InvalidOid;
	}
	PG_END_TRY();
	LWLockRelease(ua_fence->lock);
	PG_RETURN_VOID();
}

bool
ua_fence_claim_resolver(void)
{
	bool		claimed;

	ua_require_preloaded(ua_fence);
	LWLockAcquire(ua_fence->lock, LW_EXCLUSIVE);
	claimed = ua_fence->resolver_pid == 0 || ua_fence->resolver_pid == MyProcPid ||
		kill(ua_fence->resolver_pid, 0) != 0;
	if (claimed)
		ua_fence->resolver_pid = MyProcPid;
	LWLockRelease(ua_fence->lock);
	return claimed;
}

void
ua_fence_release_resolver(void)
{
	LWLockAcquire(ua_fence->lock, LW_EXCLUSIVE);
	if (ua_fence->resolver_pid == MyProcPid)
		ua_fence->resolver_pid = 0;
	LWLockRelease(ua_fence->lock);
}
