/*-------------------------------------------------------------------------
 *
 * stats_worker.c
 *	  The statistics rebuild's background workers (rebuild_stats() in
 *	  stats.c starts them): each takes batches of tables through a SKIP
 *	  LOCKED cursor, analyzes them stage by stage, and counts the stage in
 *	  the same transaction.  See stats.c for the run's tables and shared
 *	  state.
 *
 * IDENTIFICATION
 *	  src/stats_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/vacuum.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "compat.h"
#include "fence.h"
#include "stats.h"
#include "util.h"

/* What happened to one task. */
typedef enum UaStatsStep
{
	UA_STEP_WORKED,				/* did or skipped a task; look again at once */
	UA_STEP_WAIT,				/* nothing to take now; wait */
	UA_STEP_FINISHED			/* no work left, or cancelled */
} UaStatsStep;

/* The worker's own slot (worker processes only). */
static int	ua_stats_my_slot = -1;

/*
 * ua_stats_worker_detach
 *		before_shmem_exit callback: free the worker's slot, and the run's
 *		once the last worker is gone.
 */
static void
ua_stats_worker_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	LWLockAcquire(ua_stats->lock, LW_EXCLUSIVE);
	if (ua_stats_my_slot >= 0 &&
		ua_stats->workers[ua_stats_my_slot].proc == MyProc)
		memset(&ua_stats->workers[ua_stats_my_slot], 0, sizeof(UaStatsWorker));
	ua_stats_release_if_idle();
	LWLockRelease(ua_stats->lock);
}

/*
 * ua_stats_set_current
 *		Publish the relation this worker analyzes (InvalidOid: none).
 */
static void
ua_stats_set_current(Oid relid, int stage)
{
	LWLockAcquire(ua_stats->lock, LW_EXCLUSIVE);
	ua_stats->workers[ua_stats_my_slot].relid = relid;
	ua_stats->workers[ua_stats_my_slot].stage = stage;
	LWLockRelease(ua_stats->lock);
}

/*
 * ua_stats_wake_others
 *		Set the latch of every other worker, so that one waiting for work
 *		looks again.
 */
static void
ua_stats_wake_others(void)
{
	LWLockAcquire(ua_stats->lock, LW_SHARED);
	for (int i = 0; i < UA_STATS_MAX_JOBS; i++)
	{
		UaStatsWorker *w = &ua_stats->workers[i];

		if (i != ua_stats_my_slot && w->state == UA_SW_RUNNING && w->proc)
			SetLatch(&w->proc->procLatch);
	}
	LWLockRelease(ua_stats->lock);
}

/*
 * ua_stats_cancelled
 *		Whether cancel_stats_rebuild() asked this run to stop.
 */
static bool
ua_stats_cancelled(void)
{
	bool		cancel;

	LWLockAcquire(ua_stats->lock, LW_SHARED);
	cancel = ua_stats->cancel;
	LWLockRelease(ua_stats->lock);
	return cancel;
}

/*
 * ua_stats_analyze
 *		Run the ANALYZE statement sql as roleid in a subtransaction of the
 *		current transaction, with the given statistics target (-1: leave
 *		the default).  Returns 0 on success, else the SQLSTATE of the error,
 *		whose message is copied to *errmsg_out.  Never throws for an error
 *		of ANALYZE itself.
 */
/* What ua_stats_analyze runs in its subtransaction. */
typedef struct UaAnalyzeCall
{
	const char *sql;
	Oid			roleid;
	int			sec;
} UaAnalyzeCall;

static void
ua_stats_analyze_call(void *arg)
{
	UaAnalyzeCall *call = (UaAnalyzeCall *) arg;
	int			rc;

	SetUserIdAndSecContext(call->roleid, call->sec | SECURITY_LOCAL_USERID_CHANGE);
	rc = SPI_execute(call->sql, false, 0);
	if (rc != SPI_OK_UTILITY)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
}

static int
ua_stats_analyze(const char *sql, int target, Oid roleid, char **errmsg_out)
{
	Oid			save_userid;
	int			save_sec;
	int			sqlerrcode = 0;
	UaAnalyzeCall call;
	ErrorData  *edata;

	if (target > 0)
	{
		char		buf[16];

		snprintf(buf, sizeof(buf), "%d", target);
		(void) set_config_option("default_statistics_target", buf,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);
	}
	(void) set_config_option("lock_timeout", UA_STATS_LOCK_TIMEOUT,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
							 true, 0, false);

	/*
	 * ANALYZE itself runs fenced, like any statement (it works read-only);
	 * only the bookkeeping around it passes the fence.  This section is
	 * inside the one ua_stats_turn opened, and ua_try_subxact keeps every
	 * error of ANALYZE from leaving it.
	 */
	ua_fence_exempt_end();
	GetUserIdAndSecContext(&save_userid, &save_sec);
	call.sql = sql;
	call.roleid = roleid;
	call.sec = save_sec;
	edata = ua_try_subxact(ua_stats_analyze_call, &call);
	SetUserIdAndSecContext(save_userid, save_sec);
	if (edata != NULL)
	{
		sqlerrcode = edata->sqlerrcode;
		*errmsg_out = pstrdup(edata->message ? edata->message : "unknown error");
		FreeErrorData(edata);
	}
	ua_fence_exempt_begin();
	return sqlerrcode;
}

/*
 * ua_stats_task_update
 *		Apply one of the task updates below to (run, relid).
 */
static void
ua_stats_task_update(const char *sql, int64 run_id, Oid relid, const char *text)
{
	Oid			types[3] = {INT8OID, OIDOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";

	values[0] = Int64GetDatum(run_id);
	values[1] = ObjectIdGetDatum(relid);
	values[2] = text ? CStringGetTextDatum(text) : (Datum) 0;
	nulls[2] = text ? ' ' : 'n';
	ua_spi_exec_typed(sql, 3, types, values, nulls, SPI_OK_UPDATE);
}

#define UA_TASK_DONE \
	"UPDATE upgrade_assist.stats_task SET stage_done = stage_done + 1," \
	" analyzed_at = clock_timestamp(), note = NULL" \
	" WHERE run_id = $1 AND relid = ANY ($2)"
#define UA_TASK_RETRY \
	"UPDATE upgrade_assist.stats_task SET retries = retries + 1," \
	" retry_at = clock_timestamp() + least(" \
	"   interval '" CppAsString2(UA_STATS_RETRY_MIN_MS) " ms' * power(2, least(retries, 10))," \
	"   interval '" CppAsString2(UA_STATS_RETRY_MS) " ms')," \
	" note = $3 WHERE run_id = $1 AND relid = $2"
#define UA_TASK_SKIP \
	"UPDATE upgrade_assist.stats_task t SET note = $3," \
	" stage_done = (SELECT array_length(r.stages, 1) FROM upgrade_assist.stats_run r" \
	"               WHERE r.run_id = t.run_id)" \
	" WHERE run_id = $1 AND relid = $2"
/* Read through a cursor: only the rows fetched are locked. */
#define UA_TASK_CLAIM \
	"SELECT relid, stage_done, pages," \
	"       (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', '" \
	"                                     ORDER BY a.attnum)" \
	"          FROM pg_catalog.pg_attribute a" \
	"         WHERE a.attrelid = t.relid AND a.attnum = ANY (t.columns)" \
	"           AND NOT a.attisdropped)" \
	"  FROM upgrade_assist.stats_task t" \
	" WHERE run_id = $1 AND stage_done < $2" \
	"   AND retry_at <= clock_timestamp()" \
	" ORDER BY stage_done, pages DESC, relid" \
	" FOR UPDATE SKIP LOCKED"

/* Plans of the two statements run for every batch, kept for the worker's life. */
static SPIPlanPtr ua_stats_claim_plan = NULL;
static SPIPlanPtr ua_stats_done_plan = NULL;

/*
 * ua_stats_prepare_plans
 *		Prepare the claim cursor and the task-done update once per worker.
 *		Caller is connected to SPI.
 */
static void
ua_stats_prepare_plans(void)
{
	if (ua_stats_claim_plan == NULL)
	{
		Oid			types[2] = {INT8OID, INT4OID};
		SPIPlanPtr	plan = SPI_prepare_cursor(UA_TASK_CLAIM, 2, types, 0);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the task claim: %s",
				 SPI_result_code_string(SPI_result));
		ua_stats_claim_plan = plan;
	}
	if (ua_stats_done_plan == NULL)
	{
		Oid			types[2] = {INT8OID, OIDARRAYOID};
		SPIPlanPtr	plan = SPI_prepare(UA_TASK_DONE, 2, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the task update: %s",
				 SPI_result_code_string(SPI_result));
		ua_stats_done_plan = plan;
	}
}

/*
 * ua_stats_batch_cost
 *		What analyzing a table of the given size costs in a batch, in pages:
 *		ANALYZE reads at most 300 × target of them, plus a fixed overhead.
 */
static long
ua_stats_batch_cost(int64 pages, int target)
{
	int			t = target > 0 ? target : Max(default_statistics_target, 1);

	return (long) Min(pages, (int64) 300 * t) + UA_STATS_TABLE_COST;
}

/*
 * ua_stats_analyze_sql
 *		The ANALYZE statement for the given relations, which the caller has
 *		locked and checked to exist; cols[i], when not NULL, is the column
 *		list of relids[i] (names quoted, comma-separated).
 */
static char *
ua_stats_analyze_sql(const Oid *relids, char *const *cols, int n)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "ANALYZE ");
	for (int i = 0; i < n; i++)
		appendStringInfo(&sql, "%s%s%s%s%s%s", i > 0 ? ", " : "",
						 UA_ANALYZE_ONLY(get_rel_relkind(relids[i])),
						 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relids[i])),
													get_rel_name(relids[i])),
						 cols[i] ? " (" : "", cols[i] ? cols[i] : "",
						 cols[i] ? ")" : "");
	return sql.data;
}

/*
 * ua_stats_analyze_one
 *		Analyze one locked relation with the given target and record the
 *		outcome (cols: its column list, NULL for all columns): on success
 *		its relid is appended to done[*ndone]; a lock
 *		not granted or a cancel not meant for the run puts the task back for
 *		a retry; any other error is logged and the task skipped.  Returns
 *		false when the run was cancelled.
 */
static bool
ua_stats_analyze_one(int64 run_id, Oid relid, char *cols, int stage, int target,
					 Oid roleid, Oid *done, int *ndone)
{
	char	   *sql = ua_stats_analyze_sql(&relid, &cols, 1);
	char	   *err = NULL;
	int			code;

	ua_stats_set_current(relid, stage);
	pgstat_report_activity(STATE_RUNNING, sql);
	code = ua_stats_analyze(sql, target, roleid, &err);
	ua_stats_set_current(InvalidOid, 0);

	if (code == 0)
		done[(*ndone)++] = relid;
	else if (code == ERRCODE_QUERY_CANCELED && ua_stats_cancelled())
		return false;
	else if (code == ERRCODE_LOCK_NOT_AVAILABLE ||
			 code == ERRCODE_QUERY_CANCELED)
		ua_stats_task_update(UA_TASK_RETRY, run_id, relid, err);
	else
	{
		ereport(WARNING,
				(errmsg("statistics rebuild skips table \"%s.%s\": %s",
						get_namespace_name(get_rel_namespace(relid)),
						get_rel_name(relid), err)));
		ua_stats_task_update(UA_TASK_SKIP, run_id, relid, err);
	}
	return true;
}

/*
 * ua_stats_step
 *		Take a batch of tasks of the run, all at the lowest stage left, and
 *		analyze them in one transaction: the largest table left, and with it
 *		the next ones while they are small (at most UA_STATS_BATCH_TABLES,
 *		until their cost reaches UA_STATS_BATCH_PAGES), by one ANALYZE
 *		command; if that fails, table by table.  The tasks are claimed with
 *		FOR UPDATE SKIP LOCKED through a cursor, so a worker locks only the
 *		rows it takes, and their stage count is raised by one UPDATE in the
 *		same transaction.  Sets *wait_ms when returning UA_STEP_WAIT.
 */
static UaStatsStep
ua_stats_step(int64 run_id, int nstages, const int *targets, Oid roleid,
			  long *wait_ms)
{
	UaStatsStep result = UA_STEP_WORKED;
	bool		isnull;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(run_id), Int32GetDatum(nstages)};
	Oid			claimed[UA_STATS_BATCH_TABLES];
	char	   *claimed_cols[UA_STATS_BATCH_TABLES];
	Oid			ready[UA_STATS_BATCH_TABLES];
	char	   *ready_cols[UA_STATS_BATCH_TABLES];
	Oid			done[UA_STATS_BATCH_TABLES];
	int			nclaimed = 0;
	int			nready = 0;
	int			ndone = 0;
	int			stage_done = 0;
	long		cost = 0;
	Portal		portal;
	MemoryContext cxt = CurrentMemoryContext;

	ua_xact_begin("choosing tables");
	/* The run's bookkeeping passes the fence (an abort ends the section). */
	ua_fence_exempt_begin();
	ua_stats_prepare_plans();

	portal = SPI_cursor_open(NULL, ua_stats_claim_plan, values, NULL, false);
	while (nclaimed < UA_STATS_BATCH_TABLES && cost < UA_STATS_BATCH_PAGES)
	{
		HeapTuple	tup;
		TupleDesc	desc;
		int			stage;
		int64		pages;

		SPI_cursor_fetch(portal, true, 1);
		if (SPI_processed == 0)
			break;
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		stage = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		/* One batch, one stage; the row fetched stays locked till commit. */
		if (nclaimed > 0 && stage != stage_done)
			break;
		stage_done = stage;
		claimed_cols[nclaimed] = SPI_getvalue(tup, desc, 4);
		claimed[nclaimed++] = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		pages = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		cost += ua_stats_batch_cost(pages, targets[stage_done]);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);

	if (nclaimed == 0)
	{
		/* Nothing to take: the run is over, or the rest is busy or locked. */
		ua_spi_exec_typed("SELECT (extract(epoch FROM min(retry_at) - clock_timestamp()) * 1000)::float8"
						  "  FROM upgrade_assist.stats_task"
						  " WHERE run_id = $1 AND stage_done < $2",
						  2, types, values, NULL, SPI_OK_SELECT);
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull);

			if (isnull)
			{
				ua_stats_spi_exec_id("UPDATE upgrade_assist.stats_run"
									 "   SET state = 'done', ended_at = now()"
									 " WHERE run_id = $1 AND state = 'running'",
									 run_id, SPI_OK_UPDATE);
				result = UA_STEP_FINISHED;
			}
			else
			{
				double		ms = DatumGetFloat8(d);

				*wait_ms = (long) Max(10.0, Min(ms + 1, (double) UA_STATS_IDLE_MS));
				result = UA_STEP_WAIT;
			}
		}
	}
	else
	{
		int			target = targets[stage_done];

		/* Tables someone holds locked are put back; dropped ones skipped. */
		for (int i = 0; i < nclaimed; i++)
		{
			if (!ConditionalLockRelationOid(claimed[i], ShareUpdateExclusiveLock))
				ua_stats_task_update(UA_TASK_RETRY, run_id, claimed[i],
									 "locked by another session");
			else if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(claimed[i])))
				ua_stats_task_update(UA_TASK_SKIP, run_id, claimed[i], "dropped");
			else
			{
				ready_cols[nready] = claimed_cols[i];
				ready[nready++] = claimed[i];
			}
		}

		if (nready == 1)
		{
			if (!ua_stats_analyze_one(run_id, ready[0], ready_cols[0], stage_done + 1, target,
									  roleid, done, &ndone))
				result = UA_STEP_FINISHED;
		}
		else if (nready > 1)
		{
			char	   *sql = ua_stats_analyze_sql(ready, ready_cols, nready);
			char	   *err = NULL;
			int			code;

			ua_stats_set_current(ready[0], stage_done + 1);
			pgstat_report_activity(STATE_RUNNING, sql);
			code = ua_stats_analyze(sql, target, roleid, &err);
			ua_stats_set_current(InvalidOid, 0);

			if (code == 0)
			{
				memcpy(done, ready, sizeof(Oid) * nready);
				ndone = nready;
			}
			else if (code == ERRCODE_QUERY_CANCELED && ua_stats_cancelled())
				result = UA_STEP_FINISHED;
			else
			{
				/* Find the table that failed: one by one. */
				for (int i = 0; i < nready && result != UA_STEP_FINISHED; i++)
					if (!ua_stats_analyze_one(run_id, ready[i], ready_cols[i], stage_done + 1,
											  target, roleid, done, &ndone))
						result = UA_STEP_FINISHED;
			}
		}

		if (ndone > 0 && result != UA_STEP_FINISHED)
		{
			Datum		args[2];
			Datum	   *oids = palloc(sizeof(Datum) * ndone);
			int			rc;

			for (int i = 0; i < ndone; i++)
				oids[i] = ObjectIdGetDatum(done[i]);
			args[0] = Int64GetDatum(run_id);
			args[1] = PointerGetDatum(construct_array(oids, ndone, OIDOID,
													  sizeof(Oid), true,
													  TYPALIGN_INT));
			rc = SPI_execute_plan(ua_stats_done_plan, args, NULL, false, 0);
			if (rc != SPI_OK_UPDATE)
				elog(ERROR, "SPI_execute_plan failed: %s",
					 SPI_result_code_string(rc));
		}
	}

	ua_fence_exempt_end();
	ua_xact_end(cxt);
	if (result == UA_STEP_WORKED)
		ua_stats_wake_others();
	return result;
}

/*
 * ua_stats_worker_main
 *		Entry point of a statistics worker.  main_arg is its slot; bgw_extra
 *		holds the run id.  Exits when the run has no work left, when it is
 *		cancelled, or when it no longer exists (the launching transaction
 *		rolled back).
 */
void
ua_stats_worker_main(Datum main_arg)
{
	int64		run_id;
	Oid			dboid;
	Oid			roleid;
	TransactionId xid;
	int			nstages;
	int			targets[UA_STATS_MAX_STAGES];
	bool		exists;
	MemoryContext loopcxt;

	memcpy(&run_id, MyBgworkerEntry->bgw_extra, sizeof(run_id));
	ua_stats_my_slot = DatumGetInt32(main_arg);

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	if (ua_stats == NULL || ua_stats_my_slot < 0 ||
		ua_stats_my_slot >= UA_STATS_MAX_JOBS)
		proc_exit(0);

	LWLockAcquire(ua_stats->lock, LW_EXCLUSIVE);
	if (ua_stats->run_id != run_id ||
		ua_stats->workers[ua_stats_my_slot].state != UA_SW_REGISTERED)
	{
		LWLockRelease(ua_stats->lock);
		proc_exit(0);
	}
	ua_stats->workers[ua_stats_my_slot].state = UA_SW_RUNNING;
	ua_stats->workers[ua_stats_my_slot].pid = MyProcPid;
	ua_stats->workers[ua_stats_my_slot].proc = MyProc;
	dboid = ua_stats->dboid;
	roleid = ua_stats->roleid;
	xid = ua_stats->launcher_xid;
	nstages = ua_stats->nstages;
	memcpy(targets, ua_stats->targets, sizeof(int) * nstages);
	LWLockRelease(ua_stats->lock);
	before_shmem_exit(ua_stats_worker_detach, (Datum) 0);

	/* Bookkeeping runs as the bootstrap superuser, ANALYZE as roleid. */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	SetConfigOption("vacuum_cost_delay", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", "upgrade_assist stats",
					PGC_USERSET, PGC_S_OVERRIDE);

	/* Wait for the transaction that created the run, then look for it. */
	StartTransactionCommand();
	if (TransactionIdIsValid(xid))
		XactLockTableWait(xid, NULL, NULL, XLTW_None);
	exists = SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(roleid));
	CommitTransactionCommand();

	if (exists)
	{
		ua_xact_begin(NULL);
		exists = ua_stats_spi_exec_id("SELECT FROM upgrade_assist.stats_run"
									  " WHERE run_id = $1 AND state = 'running'",
									  run_id, SPI_OK_SELECT) == 1;
		ua_xact_end(TopMemoryContext);
	}
	if (!exists)
		proc_exit(0);

	loopcxt = AllocSetContextCreate(TopMemoryContext, "upgrade_assist stats",
									ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		UaStatsStep step;
		long		wait_ms = 0;
		MemoryContext oldcxt;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			SetConfigOption("vacuum_cost_delay", "0", PGC_SUSET, PGC_S_OVERRIDE);
		}
		if (ua_stats_cancelled())
			break;

		oldcxt = MemoryContextSwitchTo(loopcxt);
		step = ua_stats_step(run_id, nstages, targets, roleid, &wait_ms);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(loopcxt);

		if (step == UA_STEP_FINISHED)
			break;
		if (step == UA_STEP_WAIT)
		{
			(void) ua_wait(WL_LATCH_SET | WL_TIMEOUT, wait_ms, UA_WE_STATS);
		}
	}
	proc_exit(0);
}
