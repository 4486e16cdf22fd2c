/*-------------------------------------------------------------------------
 *
 * fence_hooks.c
 *	  The write fence's enforcement: who is fenced, and the hooks that make
 *	  a fenced session's transactions read-only.
 *
 * The fence leans on PostgreSQL's own read-only transactions, which already
 * refuse every kind of write (DML, DDL, nextval/setval, SELECT FOR
 * UPDATE/SHARE, COPY FROM, large objects) with 25006.  While the fence is up
 * (fence.c), every statement of a session that is not exempt gets
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
 * Read-only reporting: a client session that starts while the fence is up
 * and is not exempt gets default_transaction_read_only = on (source
 * PGC_S_OVERRIDE, so its reset value is 'on' too) at the commit of its
 * startup transaction, after every setting of the database, the role and
 * the startup packet was applied and before the server reports the values
 * to the client; drivers that choose a read-write server from that report
 * (libpq 14+ with target_session_attrs=read-write) skip the cluster.  The
 * first hook of a later transaction that finds the fence lifted (or the
 * session exempt) puts the setting back to 'off' with the same source and
 * makes that very transaction writable, unless it asked to be read-only.
 * ClientAuthentication_hook only marks the session (client backends that
 * authenticated, not walsenders): the role and its settings are not known
 * there yet.
 *
 * Exempt: sessions whose session user is listed in
 * upgrade_assist.fence_exempt_roles, sessions that called
 * fence_exempt_session() (until they end), logical replication workers
 * (apply, table sync, parallel apply), parallel workers (their leader
 * decides), and the extension's own sections (ua_fence_exempt_begin/end).
 *
 * Arming, for the drain (fence_drain.c): each backend "arms" its
 * transaction the first time one of the hooks sees it while unfenced and
 * read-write, by publishing its pid in armed[its proc number], and disarms
 * at transaction end.  fence() raises the flag, then reads armed[]; the
 * backend publishes, then reads the flag; a full barrier on both sides means
 * that one of the two always sees the other.
 *
 * State: per backend only (the shared state is fence.c's); armed[i] is
 * written only by the backend with proc number i.
 *
 * IDENTIFICATION
 *	  src/fence_hooks.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/transam.h"
#include "access/xlog.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "replication/logicalworker.h"
#include "replication/walsender.h"
#include "storage/proc.h"
#include "tcop/cmdtag.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "compat.h"
#include "fence.h"
#include "util.h"

/*
 * ClientAuthentication_hook, declared as libpq/auth.h does: that header pulls
 * in libpq-be.h, which needs the GSSAPI headers where the server was built
 * with GSS (Debian's 15).  Port stays opaque here.
 */
typedef void (*ua_client_auth_hook_type) (struct Port *port, int status);
extern PGDLLIMPORT ua_client_auth_hook_type ClientAuthentication_hook;

/* GUC */
static char *ua_fence_exempt_roles = NULL;

/* Per-transaction state of this backend (reset at transaction end). */
static bool ua_arm_done = false;	/* arming decided for this transaction */
static bool ua_published = false;	/* our pid is in armed[] */
static bool ua_forced_ro = false;	/* we set XactReadOnly */
static int	ua_role_exempt = -1;	/* cached role exemption, -1 unknown */

/*
 * Read-only reporting: the session authenticated and its startup
 * transaction has not committed yet; default_transaction_read_only was set
 * 'on' by us at connection start and not put back yet; this transaction
 * was looked at since (reset at transaction end).
 */
static bool ua_startup_pending = false;
static bool ua_report_forced = false;
static bool ua_report_looked = false;

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
static ua_client_auth_hook_type prev_client_auth = NULL;

static bool ua_fence_session_exempt_for_good(void);
static void ua_report_look(void);

/* Called by every hook and exempt section before it decides. */
#define UA_REPORT_LOOK() \
	do { \
		if (unlikely(ua_report_forced) && !ua_report_looked && IsTransactionState()) \
			ua_report_look(); \
	} while (0)


/* Prefix of every fence error message; also how a rewritten one is known. */
#define UA_FENCE_MSG_PREFIX "write fence is up"

/* ---------------------------------------------------------------------------
 * Who is fenced
 * ---------------------------------------------------------------------------
 */

/*
 * ua_fence_exempt_role_oids
 *		OIDs of the roles in upgrade_assist.fence_exempt_roles that exist.
 *		Unknown names are skipped.  Needs a transaction.
 */
List *
ua_fence_exempt_role_oids(void)
{
	return ua_role_list_oids(ua_fence_exempt_roles);
}

/*
 * ua_fence_session_exempt
 *		Is this session exempt from the fence?  Exempt: the extension's own
 *		marker inserts, sessions that called ua_fence_exempt_session(),
 *		logical replication and parallel workers, and sessions whose session
 *		user is listed in upgrade_assist.fence_exempt_roles.  The role answer
 *		is cached until the end of the transaction.
 */
bool
ua_fence_session_exempt(void)
{
	if (ua_exempt_depth > 0 || IsLogicalWorker() || IsParallelWorker())
		return true;
	return ua_fence_session_exempt_for_good();
}

/*
 * ua_fence_session_exempt_for_good
 *		The part of ua_fence_session_exempt() that lasts beyond a section:
 *		fence_exempt_session() was called, or the session user is listed in
 *		upgrade_assist.fence_exempt_roles (cached until the end of the
 *		transaction; false outside a transaction when not cached).
 */
static bool
ua_fence_session_exempt_for_good(void)
{
	if (ua_exempt_session)
		return true;
	if (ua_role_exempt < 0)
	{
		if (!IsTransactionState())
			return false;
		ua_role_exempt = list_member_oid(ua_fence_exempt_role_oids(), GetSessionUserId()) ? 1 : 0;
	}
	return ua_role_exempt == 1;
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
	if (!ua_fence_is_up())
		return false;
	if (ua_fence_session_exempt())
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
	UA_REPORT_LOOK();
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
 * Read-only reporting
 * ---------------------------------------------------------------------------
 */

/*
 * ua_xact_read_only_asked
 *		Did the current transaction ask for its read-only mode (BEGIN READ
 *		ONLY, SET TRANSACTION, SET transaction_read_only)?  Those push a
 *		value on the setting's stack; the mode a transaction starts with
 *		from default_transaction_read_only does not.
 */
static bool
ua_xact_read_only_asked(void)
{
	struct config_generic *gen = ua_find_guc("transaction_read_only");

	return gen != NULL && gen->stack != NULL;
}

/*
 * ua_report_set
 *		Set default_transaction_read_only, current and reset value, with the
 *		source that a later SET of the session still overrides.  Throws only
 *		for memory.
 */
static void
ua_report_set(bool on)
{
	(void) set_config_option("default_transaction_read_only", on ? "on" : "off",
							 PGC_SUSET, PGC_S_OVERRIDE, GUC_ACTION_SET,
							 true, 0, false);
}

/*
 * ua_report_at_startup
 *		Pre-commit of a client session's startup transaction: every setting
 *		is applied and the role is known.  While the fence is up and the
 *		session is not exempt, report default_transaction_read_only = on
 *		(unless it is on already).  Needs the startup transaction.
 */
static void
ua_report_at_startup(void)
{
	ua_startup_pending = false;
	if (ua_fence == NULL || DefaultXactReadOnly || !ua_fence_is_up() ||
		ua_fence_session_exempt_for_good())
		return;
	ua_report_set(true);
	ua_report_forced = true;
	ua_report_looked = true;
}

/*
 * ua_report_undo
 *		Put default_transaction_read_only back to 'off' (its value before
 *		the fence forced it; RESET gives 'off' too, a SET of the session
 *		stays) and make the current transaction writable when its read-only
 *		mode came from that default.  Throws only for memory.
 */
static void
ua_report_undo(void)
{
	ua_report_forced = false;
	ua_report_set(false);
	if (IsTransactionState() && XactReadOnly && !DefaultXactReadOnly &&
		!ua_xact_read_only_asked() && !RecoveryInProgress())
		XactReadOnly = false;
}

/*
 * ua_report_look
 *		First look at a transaction of a session whose report we forced:
 *		while still fenced (and not exempt for good), the transaction's
 *		read-only mode is the fence's (the exempt sections lift it); once
 *		the fence is down, the setting is put back and the transaction
 *		writes.
 */
static void
ua_report_look(void)
{
	ua_report_looked = true;
	if (ua_fence_is_up() && !ua_fence_session_exempt_for_good())
	{
		if (XactReadOnly && !ua_xact_read_only_asked())
			ua_forced_ro = true;
		return;
	}
	ua_report_undo();
}

/*
 * ua_client_authentication
 *		ClientAuthentication_hook: mark a client session that authenticated
 *		(walsenders are never fenced), for ua_report_at_startup.
 */
static void
ua_client_authentication(struct Port *port, int status)
{
	if (prev_client_auth)
		prev_client_auth(port, status);
	if (status == STATUS_OK && !am_walsender)
		ua_startup_pending = true;
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
		case XACT_EVENT_PRE_COMMIT:
			if (unlikely(ua_startup_pending))
				ua_report_at_startup();
			break;
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
			ua_report_looked = false;
			ua_startup_pending = false;
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
 * ua_fence_init
 *		Define the fence's settings (always, also when not preloaded).
 */
void
ua_fence_init(void)
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
	prev_client_auth = ClientAuthentication_hook;
	ClientAuthentication_hook = ua_client_authentication;
}

/*
 * ua_fence_exempt_begin
 *		Start a section whose writes the fence lets through: the extension's
 *		own marker inserts and maintenance bookkeeping (the statistics
 *		rebuild).  Undoes a read-only mode the fence forced (not one the
 *		transaction asked for: BEGIN READ ONLY stays read-only).  Whatever
 *		else the fence ever does to make a session read-only must set
 *		ua_forced_ro too, so that these sections undo it.  Pair with ua_fence_exempt_end(), also
 *		on error (PG_FINALLY); an abort resets the depth as well.
 */
void
ua_fence_exempt_begin(void)
{
	UA_REPORT_LOOK();
	ua_exempt_depth++;
	if (ua_forced_ro)
		XactReadOnly = false;
}

/*
 * ua_fence_exempt_end_all
 *		Close every open exempt section: for a PG_CATCH that re-throws into
 *		code that may catch the error without aborting the transaction.
 */
void
ua_fence_exempt_end_all(void)
{
	ua_exempt_depth = 0;
	if (ua_forced_ro)
		XactReadOnly = true;
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
	if (ua_report_forced)
		ua_report_undo();
	if (ua_forced_ro)
	{
		XactReadOnly = false;
		ua_forced_ro = false;
	}
}


/*
 * ua_fence_lift_at_commit
 *		Lift the fence of the given generation when the calling transaction
 *		commits (see ua_fence_xact_callback); a request of an enclosing
 *		(sub)transaction already covers this one.  Never throws but for
 *		memory.
 */
void
ua_fence_lift_at_commit(uint64 generation)
{
	if (!ua_subxact_callback_registered)
	{
		RegisterSubXactCallback(ua_fence_subxact_callback, NULL);
		ua_subxact_callback_registered = true;
	}
	if (ua_unfence_subid == InvalidSubTransactionId)
	{
		ua_unfence_subid = GetCurrentSubTransactionId();
		ua_unfence_generation = generation;
		strlcpy(ua_unfence_by, GetUserNameFromId(GetUserId(), false),
				sizeof(ua_unfence_by));
	}
}
