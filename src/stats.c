/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Statistics rebuild after pg_upgrade: rebuild_stats(),
 *	  cancel_stats_rebuild(), the stats_progress_rows() behind the
 *	  stats_progress view, and the shared state; the background workers
 *	  that do the work are in stats_worker.c.
 *
 * A run is stored in the tables stats_run and stats_task of the database it
 * rebuilds (see the install script): one task row per table, holding how
 * many stages are done for it.  Workers take their next tasks with
 * SELECT ... FOR UPDATE SKIP LOCKED through a cursor (lowest stage first,
 * then largest table): the largest table left, and with it, while they are
 * small, the next ones of the same stage, up to a batch that one ANALYZE
 * command analyzes.  They keep the rows locked while they analyze, and count
 * the stage in the same transaction; so two workers never take the same
 * table, and a crash loses at most the batches in flight.  A table that
 * someone else holds locked is put back with a retry time instead of being
 * waited for, so the run never queues behind a long lock.
 *
 * Shared memory (UaStatsShared, its own struct and LWLock tranche
 * "upgrade_assist stats") knows the one run that may be active in the
 * cluster: its id and database, the role it analyzes as, the launching
 * transaction, the statistics targets of its stages, a cancel flag, and one
 * slot per worker (pid and the relation it analyzes now).  Everything in it
 * is read and written under that lock.  After a restart it is empty, and a
 * run whose row still says 'running' shows as interrupted.
 *
 * IDENTIFICATION
 *	  src/stats.c
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

/* Shared state; NULL unless the library was preloaded. */
UaStatsShared *ua_stats = NULL;

PG_FUNCTION_INFO_V1(rebuild_stats);
PG_FUNCTION_INFO_V1(cancel_stats_rebuild);
PG_FUNCTION_INFO_V1(stats_progress_rows);

/*
 * ua_stats_shmem_request
 *		Ask for this file's shared memory and LWLock; called from the
 *		module's shmem request hook (or _PG_init before 15).
 */
void
ua_stats_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(UaStatsShared)));
	RequestNamedLWLockTranche("upgrade_assist stats", 1);
}

/*
 * ua_stats_shmem_startup
 *		Attach to (or create) the shared state.  The caller holds
 *		AddinShmemInitLock.
 */
void
ua_stats_shmem_startup(void)
{
	bool		found;

	ua_stats = ShmemInitStruct("upgrade_assist stats",
							   MAXALIGN(sizeof(UaStatsShared)), &found);
	if (!found)
	{
		memset(ua_stats, 0, sizeof(UaStatsShared));
		ua_stats->lock = &(GetNamedLWLockTranche("upgrade_assist stats"))->lock;
	}
}

/*
 * ua_stats_live_workers
 *		Worker slots in use.  Caller holds ua_stats->lock.
 */
static int
ua_stats_live_workers(void)
{
	int			n = 0;

	for (int i = 0; i < UA_STATS_MAX_JOBS; i++)
		if (ua_stats->workers[i].state != UA_SW_FREE)
			n++;
	return n;
}

/*
 * ua_stats_release_if_idle
 *		Forget the active run once no worker slot is in use.  Caller holds
 *		ua_stats->lock exclusively.
 */
void
ua_stats_release_if_idle(void)
{
	/* A backend that died while setting a run up leaves it at -1. */
	if (ua_stats->run_id == -1 && ua_stats->setup_pid != MyProcPid &&
		BackendPidGetProc(ua_stats->setup_pid) == NULL)
		ua_stats->run_id = 0;
	if (ua_stats->run_id > 0 && ua_stats_live_workers() == 0)
	{
		ua_stats->run_id = 0;
		ua_stats->dboid = InvalidOid;
		ua_stats->cancel = false;
	}
}

/*
 * ua_stats_spi_exec_id
 *		ua_spi_exec_typed for a statement whose only parameter $1 is an int8
 *		(a run id or the origin).
 */
uint64
ua_stats_spi_exec_id(const char *sql, int64 id, int expected)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};

	return ua_spi_exec_typed(sql, 1, types, values, NULL, expected);
}

/*
 * ua_stats_check_args
 *		Validate rebuild_stats' arguments; fill targets and return their
 *		count.  Throws 22004 for NULLs and 22023 for values out of range.
 */
static int
ua_stats_check_args(FunctionCallInfo fcinfo, int *targets, int *jobs)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null",
						PG_ARGISNULL(0) ? "stages" :
						PG_ARGISNULL(1) ? "jobs" : "only_missing")));

	arr = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stages must be a one-dimensional array")));
	deconstruct_array(arr, INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (n < 1 || n > UA_STATS_MAX_STAGES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stages must have between 1 and %d elements",
						UA_STATS_MAX_STAGES)));
	for (int i = 0; i < n; i++)
	{
		int			t;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("stages must not contain nulls")));
		t = DatumGetInt32(elems[i]);
		if (t != -1 && (t < 1 || t > 10000))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("statistics target %d is out of range", t),
					 errhint("A stage's target is -1 (the configured default) or between 1 and 10000.")));
		targets[i] = t;
	}

	*jobs = PG_GETARG_INT32(1);
	if (*jobs < 1 || *jobs > UA_STATS_MAX_JOBS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("jobs must be between 1 and %d", UA_STATS_MAX_JOBS)));
	return n;
}

/*
 * ua_stats_create_run
 *		Store a new run and its tasks (through SPI, in the caller's
 *		transaction) and return its id; *ntasks receives the number of
 *		tables to analyze.  Runs of this cluster left 'running' by a restart
 *		become 'interrupted'.  UA_STATS_EXT takes the tables whose extended
 *		statistics lack data, each with the columns of those objects (the
 *		rest of an import that runs beside it).  UA_STATS_MISSING (the
 *		only_missing of rebuild_stats) takes the tables
 *		whose statistics are incomplete (stats_coverage), and when the latest
 *		run ended unfinished with the same stages, also the tables it left
 *		between stages, which carry their stage count over (unless someone
 *		analyzed them since).  The caller holds the run slot, so no run is
 *		active while this runs.
 */
static int64
ua_stats_create_run(ArrayType *stages, int nstages, int jobs,
					UaStatsSelect sel, Oid roleid, uint64 *ntasks)
{
	bool		only_missing = (sel != UA_STATS_ALL);
	bool		ext_only = (sel == UA_STATS_EXT);
	int64		origin = (int64) GetSystemIdentifier();
	int64		run_id;
	Datum		prev = (Datum) 0;
	bool		prev_null = true;
	bool		isnull;

	/*
	 * Run ids come from the table, not from a sequence (the extension owns
	 * none): this lock serialises concurrent callers until they commit.
	 */
	ua_spi_exec_typed("LOCK TABLE upgrade_assist.stats_run"
					  " IN SHARE ROW EXCLUSIVE MODE",
					  0, NULL, NULL, NULL, SPI_OK_UTILITY);

	ua_stats_spi_exec_id("UPDATE upgrade_assist.stats_run"
						 "   SET state = 'interrupted',"
						 "       ended_at = coalesce(ended_at, now())"
						 " WHERE origin = $1 AND state = 'running'",
						 origin, SPI_OK_UPDATE);

	if (sel == UA_STATS_MISSING)
	{
		Oid			types[2] = {INT8OID, INT4ARRAYOID};
		Datum		values[2] = {Int64GetDatum(origin), PointerGetDatum(stages)};

		ua_spi_exec_typed("SELECT run_id FROM upgrade_assist.stats_run"
						  " WHERE origin = $1"
						  "   AND state IN ('interrupted', 'cancelled')"
						  "   AND stages = $2"
						  "   AND run_id = (SELECT max(run_id)"
						  "                   FROM upgrade_assist.stats_run"
						  "                  WHERE origin = $1)",
						  2, types, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			prev = SPI_getbinval(SPI_tuptable->vals[0],
								 SPI_tuptable->tupdesc, 1, &prev_null);
		}
	}

	{
		Oid			types[6] = {INT8OID, INT4ARRAYOID, INT4OID, BOOLOID,
		NAMEOID, INT8OID};
		Datum		values[6];
		char		nulls[6] = "     ";
		NameData	who;

		namestrcpy(&who, GetUserNameFromId(roleid, false));
		values[0] = Int64GetDatum(origin);
		values[1] = PointerGetDatum(stages);
		values[2] = Int32GetDatum(jobs);
		values[3] = BoolGetDatum(only_missing);
		values[4] = NameGetDatum(&who);
		values[5] = prev;
		nulls[5] = prev_null ? 'n' : ' ';
		ua_spi_exec_typed("INSERT INTO upgrade_assist.stats_run"
						  " (run_id, origin, stages, jobs, only_missing, started_by,"
						  "  started_at, resumed_from)"
						  " SELECT coalesce(max(run_id), 0) + 1,"
						  "        $1, $2, $3, $4, $5, now(), $6"
						  "   FROM upgrade_assist.stats_run"
						  " RETURNING run_id",
						  6, types, values, nulls, SPI_OK_INSERT_RETURNING);
		run_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1,
											 &isnull));
	}

	{
		Oid			types[5] = {INT8OID, INT8OID, BOOLOID, INT4OID, BOOLOID};
		Datum		values[5];
		char		nulls[5] = "     ";

		values[0] = Int64GetDatum(run_id);
		values[1] = prev;
		nulls[1] = prev_null ? 'n' : ' ';
		values[2] = BoolGetDatum(only_missing);
		values[3] = Int32GetDatum(nstages);
		values[4] = BoolGetDatum(ext_only);
		*ntasks = ua_spi_exec_typed(
									"INSERT INTO upgrade_assist.stats_task"
									" (run_id, relid, relname, pages, stage_done, columns)"
									" SELECT $1, c.relid::oid, format('%I.%I', c.schemaname, c.relname), c.pages,"
									"        coalesce(p.stage_done, 0),"
									/* only the extended statistics missing: their columns */
									"        CASE WHEN c.ext_stats > c.ext_stats_built"
									"                  AND ($5 OR ($3 AND c.columns = c.columns_with_stats"
									"                              AND (c.rows_estimate IS NOT NULL"
									"                                   OR c.kind = 'partitioned table')))"
									"             THEN (SELECT pg_catalog.array_agg(DISTINCT k.k ORDER BY k.k)"
									"                     FROM pg_catalog.pg_statistic_ext x,"
									"                          pg_catalog.unnest(x.stxkeys::pg_catalog.int2[]) k(k)"
									"                    WHERE x.stxrelid = c.relid::oid) END"
									"   FROM upgrade_assist.stats_coverage c"
									"   LEFT JOIN upgrade_assist.stats_task p"
									"     ON p.run_id = $2 AND p.relid = c.relid::oid"
									"  WHERE CASE WHEN $5 THEN c.ext_stats > c.ext_stats_built"
									"        ELSE NOT $3 OR NOT c.has_statistics"
									"             OR (p.stage_done BETWEEN 1 AND $4 - 1"
									"                 AND c.last_analyzed <= p.analyzed_at) END",
									5, types, values, nulls, SPI_OK_INSERT);
	}

	{
		ua_stats_spi_exec_id("UPDATE upgrade_assist.stats_run r"
						  "   SET work_at_start ="
						  "       (SELECT coalesce(sum((t.pages + 1) * t.stage_done), 0)"
						  "          FROM upgrade_assist.stats_task t"
						  "         WHERE t.run_id = r.run_id),"
						  "       state = CASE WHEN NOT EXISTS"
						  "         (SELECT FROM upgrade_assist.stats_task t"
						  "           WHERE t.run_id = r.run_id"
						  "             AND t.stage_done < array_length(r.stages, 1))"
						  "         THEN 'done' ELSE 'running' END,"
						  "       ended_at = CASE WHEN NOT EXISTS"
						  "         (SELECT FROM upgrade_assist.stats_task t"
						  "           WHERE t.run_id = r.run_id"
						  "             AND t.stage_done < array_length(r.stages, 1))"
						  "         THEN now() END"
						  " WHERE r.run_id = $1"
						  " RETURNING state = 'done'",
						  run_id, SPI_OK_UPDATE_RETURNING);
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull)))
			*ntasks = 0;
	}
	return run_id;
}

/*
 * ua_stats_start_workers
 *		Register up to n workers for the run held in shared memory, all at
 *		once, then wait until the postmaster has started them.  Returns how
 *		many started.
 */
static int
ua_stats_start_workers(int64 run_id, int n)
{
	BackgroundWorkerHandle *handles[UA_STATS_MAX_JOBS];
	int			slots[UA_STATS_MAX_JOBS];
	int			registered = 0;
	int			started = 0;

	for (int i = 0; i < n; i++)
	{
		BackgroundWorker bgw;
		int			slot = -1;

		LWLockAcquire(ua_stats->lock, LW_EXCLUSIVE);
		for (int j = 0; j < UA_STATS_MAX_JOBS; j++)
		{
			if (ua_stats->workers[j].state == UA_SW_FREE)
			{
				slot = j;
				memset(&ua_stats->workers[j], 0, sizeof(UaStatsWorker));
				ua_stats->workers[j].state = UA_SW_REGISTERED;
				break;
			}
		}
		LWLockRelease(ua_stats->lock);
		if (slot < 0)
			break;

		ua_bgworker_init(&bgw, "ua_stats_worker_main", "upgrade_assist stats",
						 BGW_NEVER_RESTART, Int32GetDatum(slot));
		snprintf(bgw.bgw_name, BGW_MAXLEN,
				 "upgrade_assist stats worker %d of run " INT64_FORMAT,
				 slot + 1, run_id);
		memcpy(bgw.bgw_extra, &run_id, sizeof(run_id));

		if (!RegisterDynamicBackgroundWorker(&bgw, &handles[registered]))
		{
			LWLockAcquire(ua_stats->lock, LW_EXCLUSIVE);
			ua_stats->workers[slot].state = UA_SW_FREE;
			LWLockRelease(ua_stats->lock);
			break;
		}
		slots[registered++] = slot;
	}

	for (int i = 0; i < registered; i++)
	{
		pid_t		pid;

		if (WaitForBackgroundWorkerStartup(handles[i], &pid) == BGWH_STARTED)
			started++;
		else
		{
			LWLockAcquire(ua_stats->lock, LW_EXCLUSIVE);
			if (ua_stats->workers[slots[i]].state == UA_SW_REGISTERED)
				ua_stats->workers[slots[i]].state = UA_SW_FREE;
			LWLockRelease(ua_stats->lock);
		}
	}
	return started;
}

/*
 * rebuild_stats(stages int[], jobs int, only_missing boolean) returns bigint
 *		Store a new run and start its workers; returns the run id without
 *		waiting for the work.  The workers start analyzing once the calling
 *		transaction commits (they exit if it rolls back).  One run may be
 *		active in the cluster at a time (55006 otherwise).  ANALYZE runs as
 *		the calling role.
 */
Datum
rebuild_stats(PG_FUNCTION_ARGS)
{
	int			targets[UA_STATS_MAX_STAGES];
	int			nstages;
	int			jobs;

	ua_require_preloaded(ua_stats);
	nstages = ua_stats_check_args(fcinfo, targets, &jobs);
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("statistics cannot be rebuilt during recovery")));
	PG_RETURN_INT64(ua_stats_launch(PG_GETARG_ARRAYTYPE_P(0), nstages, targets,
									jobs,
									PG_GETARG_BOOL(2) ? UA_STATS_MISSING : UA_STATS_ALL,
									GetOuterUserId()));
}

/*
 * ua_stats_launch
 *		Take the cluster's run slot (55006 when a run is active), store a
 *		run of the given stages (targets, nstages of them) over the tables
 *		sel selects, in the caller's transaction, and start up to jobs
 *		workers that analyze as roleid once that transaction commits.
 *		Returns the run id (a run with nothing to do is stored as done and
 *		starts no worker).
 */
int64
ua_stats_launch(ArrayType *stages, int nstages, const int *targets, int jobs,
				UaStatsSelect sel, Oid roleid)
{
	int64		run_id = 0;
	uint64		ntasks = 0;

	/* Take the run slot. */
	LWLockAcquire(ua_stats->lock, LW_EXCLUSIVE);
	ua_stats_release_if_idle();
	if (ua_stats->run_id != 0)
	{
		int64		other = ua_stats->run_id;
		Oid			otherdb = ua_stats->dboid;

		LWLockRelease(ua_stats->lock);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("a statistics rebuild is already running"),
				 other > 0 ?
				 errdetail("Run " INT64_FORMAT " is running in database \"%s\".",
						   other, get_database_name(otherdb) ? get_database_name(otherdb) : "?") : 0,
				 errhint("Wait for it to end or call upgrade_assist.cancel_stats_rebuild() in that database.")));
	}
	ua_stats->run_id = -1;
	ua_stats->setup_pid = MyProcPid;
	LWLockRelease(ua_stats->lock);

	PG_TRY();
	{
		int			started;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/* The run's bookkeeping passes the fence: a fenced new side prepares. */
		ua_fence_exempt_begin();
		run_id = ua_stats_create_run(stages, nstages, jobs, sel, roleid, &ntasks);
		ua_fence_exempt_end();
		SPI_finish();

		if (ntasks > 0)
		{
			LWLockAcquire(ua_stats->lock, LW_EXCLUSIVE);
			ua_stats->run_id = run_id;
			ua_stats->dboid = MyDatabaseId;
			ua_stats->roleid = roleid;
			ua_stats->launcher_xid = GetTopTransactionId();
			ua_stats->cancel = false;
			ua_stats->nstages = nstages;
			memcpy(ua_stats->targets, targets, sizeof(int) * nstages);
			LWLockRelease(ua_stats->lock);

			started = ua_stats_start_workers(run_id, (int) Min((uint64) jobs, ntasks));
			if (started == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
						 errmsg("could not start any statistics worker"),
						 errhint("Raise max_worker_processes.")));
			if (started < jobs && (uint64) started < ntasks)
				ereport(NOTICE,
						(errmsg("started %d of %d statistics workers", started, jobs),
						 errhint("Raise max_worker_processes.")));
		}
	}
	PG_CATCH();
	{
		/* An exception block may catch this: never leave the section open. */
		ua_fence_exempt_end_all();
		/* Workers already registered see the rollback and release the slot. */
		LWLockAcquire(ua_stats->lock, LW_EXCLUSIVE);
		if (ua_stats_live_workers() == 0)
		{
			ua_stats->run_id = 0;
			ua_stats->dboid = InvalidOid;
		}
		LWLockRelease(ua_stats->lock);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (ntasks == 0)
	{
		LWLockAcquire(ua_stats->lock, LW_EXCLUSIVE);
		ua_stats->run_id = 0;
		LWLockRelease(ua_stats->lock);
	}
	return run_id;
}

/*
 * cancel_stats_rebuild() returns boolean
 *		Stop the run active in this database: mark it cancelled (in the
 *		caller's transaction) and interrupt its workers, which exit within
 *		moments, also in the middle of an ANALYZE.  Returns whether a run
 *		was marked cancelled: false when no run is active here, or when it
 *		ended before the mark.
 */
Datum
cancel_stats_rebuild(PG_FUNCTION_ARGS)
{
	int64		run_id = 0;
	int			pids[UA_STATS_MAX_JOBS];
	int			npids = 0;
	volatile bool cancelled = false;

	ua_require_preloaded(ua_stats);

	LWLockAcquire(ua_stats->lock, LW_EXCLUSIVE);
	if (ua_stats->run_id > 0 && ua_stats->dboid == MyDatabaseId &&
		ua_stats_live_workers() > 0)
	{
		run_id = ua_stats->run_id;
		ua_stats->cancel = true;
		for (int i = 0; i < UA_STATS_MAX_JOBS; i++)
		{
			UaStatsWorker *w = &ua_stats->workers[i];

			if (w->state == UA_SW_RUNNING && w->proc != NULL)
			{
				pids[npids++] = w->pid;
				SetLatch(&w->proc->procLatch);
			}
		}
	}
	LWLockRelease(ua_stats->lock);

	if (run_id == 0)
		PG_RETURN_BOOL(false);

	/* SIGINT cancels an ANALYZE in progress; the worker then sees the flag. */
	for (int i = 0; i < npids; i++)
		kill(pids[i], SIGINT);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ua_fence_exempt_begin();
	PG_TRY();
	{
		/* A run that ended meanwhile stays as it ended: nothing cancelled. */
		cancelled = ua_stats_spi_exec_id("UPDATE upgrade_assist.stats_run"
										 "   SET state = 'cancelled', ended_at = now()"
										 " WHERE run_id = $1 AND state = 'running'",
										 run_id, SPI_OK_UPDATE) > 0;
	}
	PG_FINALLY();
	{
		ua_fence_exempt_end();
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_BOOL(cancelled);
}

/*
 * stats_progress_rows() returns setof (run_id, pid, relid, stage)
 *		One row per worker slot in use: registered workers not yet attached
 *		have a NULL pid.
 */
Datum
stats_progress_rows(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *store = ua_materialize_srf(fcinfo, &tupdesc);

	if (ua_stats == NULL)
		return (Datum) 0;

	LWLockAcquire(ua_stats->lock, LW_SHARED);
	for (int i = 0; i < UA_STATS_MAX_JOBS; i++)
	{
		UaStatsWorker *w = &ua_stats->workers[i];
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		if (w->state == UA_SW_FREE || ua_stats->run_id <= 0)
			continue;
		values[0] = Int64GetDatum(ua_stats->run_id);
		values[1] = Int32GetDatum(w->pid);
		nulls[1] = (w->state != UA_SW_RUNNING);
		values[2] = ObjectIdGetDatum(w->relid);
		nulls[2] = !OidIsValid(w->relid);
		values[3] = Int32GetDatum(w->stage);
		nulls[3] = !OidIsValid(w->relid);
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	LWLockRelease(ua_stats->lock);
	return (Datum) 0;
}

/* ------------------------------------------------------------------------
 * Workers
 * ------------------------------------------------------------------------
 */
