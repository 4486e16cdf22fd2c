/*-------------------------------------------------------------------------
 *
 * fence.c
 *	  The write fence: a cluster-wide switch that makes every write of every
 *	  session fail with SQLSTATE 25006 while reads go on, drains the write
 *	  transactions in flight, and survives restarts and crashes.
 *
 * Enforcement.  The fence leans on PostgreSQL's own read-only transactions,
 * which already refuse every kind of write (DML, DDL, nextval/setval,
 * SELECT FOR UPDATE/SHARE, COPY FROM, large objects) with 25006.  While the
 * fence is up, every statement of a session that is not exempt gets
 * XactReadOnly forced on before it runs: the executor hooks (start, run,
 * finish), the utility hook, and object_access_hook's function-execute event,
 * which also catches fast-path function calls and PL/pgSQL simple
 * expressions in a transaction that no hook has seen yet (after COMMIT in a
 * procedure).  The check hooks of transaction_read_only and
 * default_transaction_read_only refuse 'off' from SET, BEGIN READ WRITE,
 * SET SESSION CHARACTERISTICS and set_config() with the same SQLSTATE.
 * Errors PostgreSQL raises for a forced read-only transaction are rewritten
 * to name the fence and its reason.
 *
 * Exempt: sessions whose session user is listed in
 * upgrade_assist.fence_exempt_roles, sessions that called
 * fence_exempt_session() (until they end), logical replication workers
 * (apply, table sync, parallel apply), parallel workers (their leader
 * decides), and the extension's own marker inserts
 * (ua_fence_exempt_begin/end).
 *
 * Drain.  A transaction that could already write when the fence went up
 * must end before fence() returns.  Each backend "arms" its transaction the
 * first time one of the hooks sees it while unfenced and read-write, by
 * publishing its pid in armed[its proc number], and disarms at transaction
 * end.  fence() raises the flag, then reads armed[]; the backend publishes,
 * then reads the flag; a full barrier on both sides means that one of the two
 * always sees the other.  An armed transaction that holds an xid, or is
 * running a statement, is drained: it may go on writing and commit for
 * drain_timeout, then its backend is terminated.  An armed transaction that
 * is idle without an xid has written nothing; its next statement is fenced.
 * The waiting itself is in drain.c.
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

#include <unistd.h>

#include "access/parallel.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "replication/logicalworker.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/cmdtag.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/varlena.h"

#include "compat.h"
#include "drain.h"
#include "fence.h"
#include "upgrade_assist.h"

/* The fence file, relative to the data directory. */
#define UA_FENCE_FILE "upgrade_assist.fence"
#define UA_FENCE_TMP_FILE "upgrade_assist.fence.tmp"

/* Longest reason accepted, in bytes. */
#define UA_FENCE_REASON_MAX 512

typedef enum UaDrainState
{
	UA_DRAIN_NONE = 0,
	UA_DRAIN_RUNNING,
	UA_DRAIN_DONE
} UaDrainState;

typedef struct UaFenceShared
{
	LWLock	   *lock;
	pg_atomic_uint32 fenced;	/* 1 while fenced: the hooks' fast path */
	pg_atomic_uint64 auto_unfence_at;	/* TimestampTz; 0 for none */
	/* The rest under lock. */
	uint64		generation;		/* incremented by every fence() */
	TimestampTz since;
	char		reason[UA_FENCE_REASON_MAX + 1];
	char		fenced_by[NAMEDATALEN];
	int			fenced_by_pid;
	UaDrainState drain_state;
	int			drain_finished;
	int			drain_terminated;
	TimestampTz lifted_at;
	char		lifted_by[NAMEDATALEN + 32];
	int			nprocs;
	pg_atomic_uint32 armed[FLEXIBLE_ARRAY_MEMBER];	/* pid, or 0 */
} UaFenceShared;

/* GUC */
static char *ua_fence_exempt_roles = NULL;

/* Shared state; NULL unless preloaded. */
static UaFenceShared *ua_fence = NULL;

/* Per-transaction state of this backend (reset at transaction end). */
static bool ua_arm_done = false;	/* arming decided for this transaction */
static bool ua_published = false;	/* our pid is in armed[] */
static bool ua_forced_ro = false;	/* we set XactReadOnly */
static int	ua_role_exempt = -1;	/* cached role exemption, -1 unknown */

/* Depth of ua_fence_exempt_begin() sections. */
static int	ua_exempt_depth = 0;

/* ua_fence_exempt_session() was called: exempt until the backend exits. */
static bool ua_exempt_session = false;

/*
 * unfence_at_commit(): the subtransaction that asked (moved to its parent
 * when it commits, forgotten when it aborts), InvalidSubTransactionId when
 * nothing is pending; the fence generation to lift and who asked.
 */
static SubTransactionId ua_unfence_subid = InvalidSubTransactionId;
static uint64 ua_unfence_generation = 0;
static char ua_unfence_by[NAMEDATALEN];
static bool ua_subxact_callback_registered = false;

/* Previous hooks */
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static object_access_hook_type prev_object_access = NULL;
static GucBoolCheckHook prev_check_xact_ro = NULL;
static GucBoolCheckHook prev_check_default_ro = NULL;

PG_FUNCTION_INFO_V1(fence);
PG_FUNCTION_INFO_V1(unfence);
PG_FUNCTION_INFO_V1(fence_status);
PG_FUNCTION_INFO_V1(fence_exempt_session);
PG_FUNCTION_INFO_V1(unfence_at_commit);

/* Prefix of every fence error message; also how a rewritten one is known. */
#define UA_FENCE_MSG_PREFIX "write fence is up"

static bool ua_fence_lift(const char *by, int elevel, uint64 generation);


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
	int			fd;
	int			len;

	text = psprintf("upgrade_assist fence 1\n"
					"generation " UINT64_FORMAT "\n"
					"since " INT64_FORMAT "\n"
					"auto_unfence_at " INT64_FORMAT "\n"
					"fenced_by %s\n"
					"reason %s",
					ua_fence->generation,
					(int64) ua_fence->since,
					(int64) pg_atomic_read_u64(&ua_fence->auto_unfence_at),
					ua_fence->fenced_by,
					ua_fence->reason);
	len = strlen(text);

	fd = OpenTransientFile(UA_FENCE_TMP_FILE, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", UA_FENCE_TMP_FILE)));
	errno = 0;
	if (write(fd, text, len) != len)
	{
		if (errno == 0)
			errno = ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", UA_FENCE_TMP_FILE)));
	}
	if (pg_fsync(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", UA_FENCE_TMP_FILE)));
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", UA_FENCE_TMP_FILE)));
	/* fsyncs the file again and the data directory after the rename */
	(void) durable_rename(UA_FENCE_TMP_FILE, UA_FENCE_FILE, ERROR);
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
	}
	FreeFile(f);

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
	ereport(LOG,
			(errmsg("upgrade_assist write fence is up (from file \"%s\"): %s",
					UA_FENCE_FILE, ua_fence->reason)));
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
 * Who is fenced
 * ---------------------------------------------------------------------------
 */

/*
 * ua_exempt_role_oids
 *		OIDs of the roles in upgrade_assist.fence_exempt_roles that exist.
 *		Unknown names are skipped.  Needs a transaction.
 */
static List *
ua_exempt_role_oids(void)
{
	char	   *raw;
	List	   *names;
	List	   *oids = NIL;
	ListCell   *lc;

	if (ua_fence_exempt_roles == NULL || ua_fence_exempt_roles[0] == '\0')
		return NIL;
	raw = pstrdup(ua_fence_exempt_roles);
	if (!SplitIdentifierString(raw, ',', &names))
		return NIL;				/* the check hook refuses such values */
	foreach(lc, names)
	{
		Oid			roleid = get_role_oid((char *) lfirst(lc), true);

		if (OidIsValid(roleid))
			oids = lappend_oid(oids, roleid);
	}
	return oids;
}

/*
 * ua_session_exempt
 *		Is this session exempt from the fence?  Exempt: the extension's own
 *		marker inserts, sessions that called ua_fence_exempt_session(),
 *		logical replication and parallel workers, and sessions whose session
 *		user is listed in upgrade_assist.fence_exempt_roles.  The role answer
 *		is cached until the end of the transaction.
 */
static bool
ua_session_exempt(void)
{
	if (ua_exempt_depth > 0 || ua_exempt_session ||
		IsLogicalWorker() || IsParallelWorker())
		return true;
	if (ua_role_exempt < 0)
	{
		if (!IsTransactionState())
			return false;
		ua_role_exempt = list_member_oid(ua_exempt_role_oids(), GetSessionUserId()) ? 1 : 0;
	}
	return ua_role_exempt == 1;
}

/*
 * ua_fence_up
 *		Is the fence up?  Lifts it first when its auto_unfence_after deadline
 *		has passed.  Cheap when not fenced: one read of shared memory.
 */
static inline bool
ua_fence_up(void)
{
	uint64		auto_at;

	if (ua_fence == NULL || pg_atomic_read_u32(&ua_fence->fenced) == 0)
		return false;
	auto_at = pg_atomic_read_u64(&ua_fence->auto_unfence_at);
	if (auto_at != 0 && (TimestampTz) auto_at <= GetCurrentTimestamp())
	{
		(void) ua_fence_lift("auto_unfence_after", LOG, 0);
		return pg_atomic_read_u32(&ua_fence->fenced) != 0;
	}
	return true;
}

/*
 * ua_session_fenced
 *		Must this session's current transaction be read-only now?  True when
 *		the fence is up, the session is not exempt, and the transaction is not
 *		one the drain lets finish (it was armed before the fence and has
 *		written).
 */
static bool
ua_session_fenced(void)
{
	if (!ua_fence_up())
		return false;
	if (ua_session_exempt())
		return false;
	if (ua_published && TransactionIdIsValid(GetTopTransactionIdIfAny()))
		return false;
	return true;
}

/*
 * ua_arm
 *		Publish that this transaction may write without seeing the fence
 *		again, then make the store visible before the caller reads the flag.
 *		Sessions that the fence never stops (exempt for the rest of the
 *		session, logical replication and parallel workers) do not publish:
 *		the drain has nothing to wait for in them.
 */
static void
ua_arm(void)
{
	int			procno = UA_MY_PROCNO;

	ua_arm_done = true;
	if (ua_exempt_session || IsLogicalWorker() || IsParallelWorker() ||
		procno < 0 || procno >= ua_fence->nprocs)
		return;
	pg_atomic_write_u32(&ua_fence->armed[procno], (uint32) MyProcPid);
	ua_published = true;
	pg_memory_barrier();
}

/*
 * ua_disarm
 *		Withdraw this backend's entry in armed[].
 */
static void
ua_disarm(void)
{
	if (ua_published)
	{
		pg_write_barrier();
		pg_atomic_write_u32(&ua_fence->armed[UA_MY_PROCNO], 0);
		ua_published = false;
	}
}

/*
 * ua_fence_check
 *		The hooks' entry point, before any statement runs.  Arms a read-write
 *		transaction (when may_arm); when this session is fenced, forces the
 *		transaction read-only and returns true.
 */
static bool
ua_fence_check(bool may_arm)
{
	if (ua_fence == NULL)
		return false;
	if (may_arm && !ua_arm_done && !XactReadOnly && ua_exempt_depth == 0)
		ua_arm();
	if (likely(pg_atomic_read_u32(&ua_fence->fenced) == 0))
		return false;
	if (!ua_session_fenced())
		return false;

	/* Fenced: this transaction cannot write any more. */
	ua_disarm();
	if (!XactReadOnly)
	{
		XactReadOnly = true;
		ua_forced_ro = true;
	}
	return true;
}

/*
 * ua_fence_detail
 *		Detail text of fence errors, palloc'd: since when, by whom, why.
 */
static char *
ua_fence_detail(void)
{
	char	   *detail;

	LWLockAcquire(ua_fence->lock, LW_SHARED);
	detail = psprintf("upgrade_assist fenced this cluster at %s (role \"%s\", reason: %s); only reads run until upgrade_assist.unfence().",
					  timestamptz_to_str(ua_fence->since), ua_fence->fenced_by,
					  ua_fence->reason);
	LWLockRelease(ua_fence->lock);
	return detail;
}

#define UA_FENCE_HINT "Writes resume here after upgrade_assist.unfence()."

/*
 * ua_fence_reason_copy
 *		The reason of the current fence, palloc'd.
 */
static char *
ua_fence_reason_copy(void)
{
	char	   *reason;

	LWLockAcquire(ua_fence->lock, LW_SHARED);
	reason = pstrdup(ua_fence->reason);
	LWLockRelease(ua_fence->lock);
	return reason;
}

/*
 * ua_rethrow_fenced
 *		In PG_CATCH of a fenced call: a 25006 error that does not name the
 *		fence yet is thrown again with the fence's name, reason and detail;
 *		anything else is re-thrown unchanged.  cxt is the memory context of
 *		the caller.  Does not return.
 */
static UA_NORETURN void
ua_rethrow_fenced(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	if (edata->sqlerrcode != ERRCODE_READ_ONLY_SQL_TRANSACTION ||
		edata->message == NULL ||
		strncmp(edata->message, UA_FENCE_MSG_PREFIX, strlen(UA_FENCE_MSG_PREFIX)) == 0)
		PG_RE_THROW();
	FlushErrorState();

	edata->message = psprintf(UA_FENCE_MSG_PREFIX " (%s): %s",
							  ua_fence_reason_copy(), edata->message);
	edata->detail = ua_fence_detail();
	edata->hint = pstrdup(UA_FENCE_HINT);
	ReThrowError(edata);
}

/* Run call; if this session is fenced, with fence errors rewritten. */
#define UA_FENCED_CALL(fenced, call) \
	do { \
		if (!(fenced)) \
		{ \
			call; \
		} \
		else \
		{ \
			MemoryContext ua_cxt_ = CurrentMemoryContext; \
			PG_TRY(); \
			{ \
				call; \
			} \
			PG_CATCH(); \
			{ \
				ua_rethrow_fenced(ua_cxt_); \
			} \
			PG_END_TRY(); \
		} \
	} while (0)

/*
 * ua_plan_writes
 *		Does the plan write (or lock rows of) a relation that is not
 *		temporary?  Used where PostgreSQL's own read-only check has already
 *		run: a portal started before the fence and run after it.
 */
static bool
ua_plan_writes(PlannedStmt *pstmt)
{
	ListCell   *lc;

	if (pstmt == NULL)
		return false;
	foreach(lc, pstmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION && rte->rellockmode > AccessShareLock &&
			get_rel_persistence(rte->relid) != RELPERSISTENCE_TEMP)
			return true;
	}
	return false;
}

/*
 * ua_refuse_plan
 *		Throw the fence's error for a planned statement that writes.
 */
static void
ua_refuse_plan(QueryDesc *queryDesc)
{
	if (!ua_plan_writes(queryDesc->plannedstmt))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg(UA_FENCE_MSG_PREFIX " (%s): cannot execute %s in a read-only transaction",
					ua_fence_reason_copy(),
					GetCommandTagName(CreateCommandTag((Node *) queryDesc->plannedstmt))),
			 errdetail_internal("%s", ua_fence_detail()),
			 errhint(UA_FENCE_HINT)));
}


/* ---------------------------------------------------------------------------
 * Hooks
 * ---------------------------------------------------------------------------
 */

static void
ua_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	bool		fenced = ua_fence_check(true);

	if (fenced)
		ua_refuse_plan(queryDesc);
	UA_FENCED_CALL(fenced,
				   if (prev_ExecutorStart)
				   prev_ExecutorStart(queryDesc, eflags);
				   else
				   standard_ExecutorStart(queryDesc, eflags));
}

static void
ua_ExecutorRun(UA_EXECUTOR_RUN_ARGS_DECL)
{
	bool		fenced = ua_fence_check(true);

	/* A portal started before the fence went up. */
	if (fenced)
		ua_refuse_plan(queryDesc);
	UA_FENCED_CALL(fenced,
				   if (prev_ExecutorRun)
				   prev_ExecutorRun(UA_EXECUTOR_RUN_ARGS);
				   else
				   standard_ExecutorRun(UA_EXECUTOR_RUN_ARGS));
}

static void
ua_ExecutorFinish(QueryDesc *queryDesc)
{
	bool		fenced = ua_fence_check(true);

	if (fenced)
		ua_refuse_plan(queryDesc);
	UA_FENCED_CALL(fenced,
				   if (prev_ExecutorFinish)
				   prev_ExecutorFinish(queryDesc);
				   else
				   standard_ExecutorFinish(queryDesc));
}

static void
ua_ProcessUtility(UA_PROCESS_UTILITY_ARGS_DECL)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		fenced;

	/*
	 * Transaction control and SET cannot write, and must not arm: BEGIN
	 * READ ONLY and SET TRANSACTION READ ONLY come before the transaction's
	 * read-only mode is known.
	 */
	fenced = ua_fence_check(!IsA(stmt, TransactionStmt) &&
							!IsA(stmt, VariableSetStmt) &&
							!IsA(stmt, VariableShowStmt));
	UA_FENCED_CALL(fenced,
				   if (prev_ProcessUtility)
				   prev_ProcessUtility(UA_PROCESS_UTILITY_ARGS);
				   else
				   standard_ProcessUtility(UA_PROCESS_UTILITY_ARGS));
}

/*
 * ua_refuse_large_object_write
 *		Before PostgreSQL 16 the large-object functions wrote in read-only
 *		transactions; refuse them by name while fenced.
 */
#if !UA_LO_CHECKS_READ_ONLY
static void
ua_refuse_large_object_write(Oid funcid)
{
	static const char *const writers[] = {
		"lo_creat", "lo_create", "lo_import", "lo_unlink", "lowrite", "lo_put",
		"lo_from_bytea", "lo_truncate", "lo_truncate64"
	};
	char	   *name;

	if (get_func_namespace(funcid) != PG_CATALOG_NAMESPACE)
		return;
	name = get_func_name(funcid);
	for (int i = 0; name && i < (int) lengthof(writers); i++)
		if (strcmp(name, writers[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
					 errmsg(UA_FENCE_MSG_PREFIX " (%s): cannot execute %s() in a read-only transaction",
							ua_fence_reason_copy(), name),
					 errdetail_internal("%s", ua_fence_detail()),
					 errhint(UA_FENCE_HINT)));
}
#endif

/*
 * ua_object_access
 *		Function-execute events reach fast-path calls and expressions that
 *		are compiled outside the executor hooks.
 */
static void
ua_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				 int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	if (access == OAT_FUNCTION_EXECUTE && ua_fence_check(true))
	{
#if !UA_LO_CHECKS_READ_ONLY
		ua_refuse_large_object_write(objectId);
#endif
	}
}

/*
 * ua_check_read_only_off
 *		Shared part of the two check hooks: refuse turning read-only off in a
 *		fenced session.  Only values set from SQL (source PGC_S_SESSION: SET,
 *		SET LOCAL, BEGIN READ WRITE, SET SESSION CHARACTERISTICS, set_config)
 *		are refused; settings from files, roles or the connection are left
 *		alone (new connections must keep working) and are overridden per
 *		transaction by the hooks anyway.
 */
static bool
ua_check_read_only_off(bool newval, const char *name)
{
	if (newval || ua_fence == NULL || InitializingParallelWorker ||
		!IsTransactionState() || !ua_session_fenced())
		return true;
	GUC_check_errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION);
	GUC_check_errmsg(UA_FENCE_MSG_PREFIX " (%s): cannot set \"%s\" to off",
					 ua_fence_reason_copy(), name);
	GUC_check_errdetail("%s", ua_fence_detail());
	GUC_check_errhint(UA_FENCE_HINT);
	return false;
}

static bool
ua_check_transaction_read_only(bool *newval, void **extra, GucSource source)
{
	if (source == PGC_S_SESSION &&
		!ua_check_read_only_off(*newval, "transaction_read_only"))
		return false;
	return prev_check_xact_ro ? prev_check_xact_ro(newval, extra, source) : true;
}

static bool
ua_check_default_transaction_read_only(bool *newval, void **extra, GucSource source)
{
	if (source == PGC_S_SESSION &&
		!ua_check_read_only_off(*newval, "default_transaction_read_only"))
		return false;
	return prev_check_default_ro ? prev_check_default_ro(newval, extra, source) : true;
}

/*
 * ua_fence_xact_callback
 *		At transaction end: disarm and forget the per-transaction state.
 *		Runs after the transaction left the proc array, so the drain never
 *		sees an ended transaction as disarmed-but-running.
 *
 *		At commit, lifts the fence that unfence_at_commit() asked for.  The
 *		transaction has committed by then, so nothing here may throw: the
 *		lift runs with elevel LOG (a fence file that cannot be removed is
 *		logged, and the fence comes back at the next restart).  A
 *		transaction that asked for it cannot be prepared: nobody would lift
 *		the fence at COMMIT PREPARED.
 */
static void
ua_fence_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (ua_unfence_subid != InvalidSubTransactionId)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that called upgrade_assist.unfence_at_commit()")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			ua_disarm();
			ua_arm_done = false;
			ua_forced_ro = false;
			ua_role_exempt = -1;
			if (event == XACT_EVENT_ABORT)
				ua_exempt_depth = 0;
			if (ua_unfence_subid != InvalidSubTransactionId)
			{
				ua_unfence_subid = InvalidSubTransactionId;
				if (event == XACT_EVENT_COMMIT)
					(void) ua_fence_lift(ua_unfence_by, LOG, ua_unfence_generation);
			}
			break;
		default:
			break;
	}
}

/*
 * ua_fence_subxact_callback
 *		Registered by the first unfence_at_commit() of the backend: a request
 *		made in a subtransaction moves to its parent when the subtransaction
 *		commits and is forgotten when it aborts (ROLLBACK TO SAVEPOINT, an
 *		exception block).
 */
static void
ua_fence_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid,
						  void *arg pg_attribute_unused())
{
	if (ua_unfence_subid == InvalidSubTransactionId || ua_unfence_subid != mySubid)
		return;
	if (event == SUBXACT_EVENT_COMMIT_SUB)
		ua_unfence_subid = parentSubid;
	else if (event == SUBXACT_EVENT_ABORT_SUB)
		ua_unfence_subid = InvalidSubTransactionId;
}

/*
 * ua_check_exempt_roles
 *		Check hook of upgrade_assist.fence_exempt_roles: a list of role names.
 */
static bool
ua_check_exempt_roles(char **newval, void **extra pg_attribute_unused(),
					  GucSource source pg_attribute_unused())
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	bool		ok = SplitIdentifierString(raw, ',', &names);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(names);
	pfree(raw);
	return ok;
}

/*
 * ua_fence_assign_exempt_roles
 *		Forget the cached role exemption when the list changes.
 */
static void
ua_assign_exempt_roles(const char *newval pg_attribute_unused(), void *extra pg_attribute_unused())
{
	ua_role_exempt = -1;
}

/*
 * ua_fence_define_gucs
 *		Define the fence's settings (always, also when not preloaded).
 */
void
ua_fence_define_gucs(void)
{
	DefineCustomStringVariable("upgrade_assist.fence_exempt_roles",
							   "Roles whose sessions may write while the cluster is fenced.",
							   "Comma-separated role names; a session is exempt when its session user is listed.",
							   &ua_fence_exempt_roles,
							   "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   ua_check_exempt_roles, ua_assign_exempt_roles, NULL);
}

/*
 * ua_wrap_check_hook
 *		Put hook in front of the check hook of a built-in boolean setting,
 *		returning the one it replaces.
 */
static GucBoolCheckHook
ua_wrap_check_hook(const char *name, GucBoolCheckHook hook)
{
	struct config_generic *gen = ua_find_guc(name);
	struct config_bool *conf;
	GucBoolCheckHook prev;

	if (gen == NULL || gen->vartype != PGC_BOOL)
		elog(ERROR, "upgrade_assist: setting \"%s\" not found", name);
	conf = (struct config_bool *) gen;
	prev = conf->check_hook;
	conf->check_hook = hook;
	return prev;
}

/*
 * ua_fence_install_hooks
 *		Install the enforcement hooks; _PG_init, preloaded only.
 */
void
ua_fence_install_hooks(void)
{
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = ua_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = ua_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = ua_ExecutorFinish;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = ua_ProcessUtility;
	prev_object_access = object_access_hook;
	object_access_hook = ua_object_access;

	prev_check_xact_ro = ua_wrap_check_hook("transaction_read_only",
											ua_check_transaction_read_only);
	prev_check_default_ro = ua_wrap_check_hook("default_transaction_read_only",
											   ua_check_default_transaction_read_only);
	RegisterXactCallback(ua_fence_xact_callback, NULL);
}

/*
 * ua_fence_exempt_begin
 *		Start a section whose writes the fence lets through: the extension's
 *		own marker inserts.  Undoes a read-only mode the fence forced (not
 *		one the transaction asked for).  Pair with ua_fence_exempt_end(), also
 *		on error (PG_FINALLY); an abort resets the depth as well.
 */
void
ua_fence_exempt_begin(void)
{
	ua_exempt_depth++;
	if (ua_forced_ro)
		XactReadOnly = false;
}

/*
 * ua_fence_exempt_end
 *		End a section started by ua_fence_exempt_begin().
 */
void
ua_fence_exempt_end(void)
{
	if (ua_exempt_depth > 0)
		ua_exempt_depth--;
	if (ua_exempt_depth == 0 && ua_forced_ro)
		XactReadOnly = true;
}

/*
 * ua_fence_leave_drain
 *		The calling transaction will not write: make it read-only and take
 *		it out of what the drain waits for.  For cutover(), whose caller
 *		waits in a statement while its own worker fences and drains.
 */
void
ua_fence_leave_drain(void)
{
	XactReadOnly = true;
	ua_arm_done = true;
	ua_disarm();
}

/*
 * ua_fence_is_up
 *		Is the cluster fenced now?  For other files (the cutover).
 */
bool
ua_fence_is_up(void)
{
	return ua_fence_up();
}

/*
 * ua_fence_exempt_session
 *		From now until the backend exits, this session writes through the
 *		fence.  Also lifts a read-only mode the fence forced on the current
 *		transaction, and withdraws the transaction from armed[], so that a
 *		drain running now or later neither waits for nor terminates it (its
 *		writes are not stopped by the fence, waiting for them is pointless).
 *		Never throws.
 */
void
ua_fence_exempt_session(void)
{
	ua_exempt_session = true;
	ua_disarm();
	if (ua_forced_ro)
	{
		XactReadOnly = false;
		ua_forced_ro = false;
	}
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
ua_fence_raise(const char *reason, TimestampTz auto_at)
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
	ua_fence_file_write();		/* on error the flag stays down */

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
static bool
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
ua_fence_engage_until(const char *reason, TimestampTz auto_at)
{
	char	   *prepared;

	if (TransactionIdIsValid(GetTopTransactionIdIfAny()) && !ua_session_exempt())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot raise the write fence in a transaction that has written"),
				 errhint("Call fence() in its own transaction.")));

	/* The deadline of an earlier fence may have passed. */
	(void) ua_fence_up();

	prepared = ua_prepared_xacts();
	if (prepared)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot fence while prepared transactions exist"),
				 errdetail("Prepared transactions: %s.", prepared),
				 errhint("COMMIT PREPARED or ROLLBACK PREPARED them first.")));

	ua_fence_raise(reason, auto_at);
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
	ua_require_shared();
	ua_fence_check_reason(reason);
	ua_fence_engage_until(reason, 0);
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
					   ua_exempt_role_oids(), drain_ms);

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
	ua_require_shared();
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
	ua_require_shared();
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

	ua_require_shared();
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

	ua_fence_engage_until(reason, auto_at);
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
	ua_require_shared();
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

	ua_require_shared();
	if (!ua_fence_up())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the cluster is not fenced")));
	LWLockAcquire(ua_fence->lock, LW_SHARED);
	generation = ua_fence->generation;
	LWLockRelease(ua_fence->lock);

	if (!ua_subxact_callback_registered)
	{
		RegisterSubXactCallback(ua_fence_subxact_callback, NULL);
		ua_subxact_callback_registered = true;
	}
	/* A request of an enclosing (sub)transaction already covers this one. */
	if (ua_unfence_subid == InvalidSubTransactionId)
	{
		ua_unfence_subid = GetCurrentSubTransactionId();
		ua_unfence_generation = generation;
		strlcpy(ua_unfence_by, GetUserNameFromId(GetUserId(), false),
				sizeof(ua_unfence_by));
	}
	PG_RETURN_VOID();
}

/*
 * fence_status() returns one row describing the fence; the view
 * upgrade_assist.fence_status selects from it.
 */
Datum
fence_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	Datum		values[12];
	bool		nulls[12] = {false};
	bool		fenced;
	TimestampTz auto_at;

	ua_require_shared();
	store = ua_materialize_srf(fcinfo, &tupdesc);
	(void) ua_fence_up();		/* lifts it when its deadline passed */

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
	LWLockRelease(ua_fence->lock);

	tuplestore_putvalues(store, tupdesc, values, nulls);
	return (Datum) 0;
}
