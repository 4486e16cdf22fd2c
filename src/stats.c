/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Statistics rebuild after pg_upgrade: rebuild_stats(),
 *	  cancel_stats_rebuild(), the stats_workers() rows behind the
 *	  stats_progress view, and the background workers that do the work.
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
#include "upgrade_assist.h"

/* Limits of rebuild_stats' arguments. */
#define UA_STATS_MAX_JOBS 32
#define UA_STATS_MAX_STAGES 10

/*
 * A table found locked is tried again after UA_STATS_RETRY_MIN_MS, then after
 * twice as long each time, up to UA_STATS_RETRY_MS: a lock that one of the
 * run's own workers holds for a moment (before 18, ANALYZE of a partitioned
 * table also analyzes, and locks, its partitions) costs little, and a long
 * lock of someone else one look per second.
 */
#define UA_STATS_RETRY_MIN_MS 50
#define UA_STATS_RETRY_MS 1000
/* lock_timeout for what ANALYZE locks beyond the table (partitions). */
#define UA_STATS_LOCK_TIMEOUT "1s"
/* Longest a worker without work waits before it looks again. */
#define UA_STATS_IDLE_MS 1000
/*
 * A worker analyzes small tables in batches, by one ANALYZE in one
 * transaction: at most this many tables, and no more once the pages ANALYZE
 * reads for them (counting each table as UA_STATS_TABLE_COST more) reach
 * UA_STATS_BATCH_PAGES.  A large table makes a batch of its own.
 */
#define UA_STATS_BATCH_TABLES 32
#define UA_STATS_BATCH_PAGES 1000
#define UA_STATS_TABLE_COST 8

typedef enum UaStatsWorkerState
{
	UA_SW_FREE = 0,
	UA_SW_REGISTERED,			/* asked for; not attached yet */
	UA_SW_RUNNING				/* attached */
} UaStatsWorkerState;

typedef struct UaStatsWorker
{
	UaStatsWorkerState state;
	int			pid;
	PGPROC	   *proc;
	Oid			relid;			/* being analyzed now, or InvalidOid */
	int			stage;			/* its stage, 1-based */
} UaStatsWorker;

typedef struct UaStatsShared
{
	LWLock	   *lock;
	int64		run_id;			/* active run; 0 none, -1 being set up */
	int			setup_pid;		/* backend setting it up (run_id -1) */
	Oid			dboid;
	Oid			roleid;			/* ANALYZE runs as this role */
	TransactionId launcher_xid; /* transaction that created the run */
	bool		cancel;
	int			nstages;
	int			targets[UA_STATS_MAX_STAGES];
	UaStatsWorker workers[UA_STATS_MAX_JOBS];
} UaStatsShared;

/* Shared state; NULL unless the library was preloaded. */
static UaStatsShared *ua_stats = NULL;

/* The worker's own slot (worker processes only). */
static int	ua_stats_my_slot = -1;

/* What happened to one task. */
typedef enum UaStatsStep
{
	UA_STEP_WORKED,				/* did or skipped a task; look again at once */
	UA_STEP_WAIT,				/* nothing to take now; wait */
	UA_STEP_FINISHED			/* no work left, or cancelled */
} UaStatsStep;

PG_FUNCTION_INFO_V1(rebuild_stats);
PG_FUNCTION_INFO_V1(cancel_stats_rebuild);
PG_FUNCTION_INFO_V1(stats_workers);

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
 * ua_stats_require_shared
 *		Throw unless the shared state exists (library preloaded).
 */
static void
ua_stats_require_shared(void)
{
	ua_require_shared();
	if (ua_stats == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("upgrade_assist must be loaded via shared_preload_libraries")));
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
static void
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
 * ua_stats_spi_exec
 *		Run a statement through SPI with int8/int4/... parameters; throws on
 *		failure.  Returns SPI_processed.
 */
static uint64
ua_stats_spi_exec(const char *sql, int nargs, Oid *types, Datum *values,
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
 * ua_stats_spi_exec_id
 *		ua_stats_spi_exec for a statement whose only parameter $1 is an int8
 *		(a run id or the origin).
 */
static uint64
ua_stats_spi_exec_id(const char *sql, int64 id, int expected)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};

	return ua_stats_spi_exec(sql, 1, types, values, NULL, expected);
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
 *		become 'interrupted'.  With only_missing, the run takes the tables
 *		whose statistics are incomplete (stats_coverage), and when the latest
 *		run ended unfinished with the same stages, also the tables it left
 *		between stages, which carry their stage count over (unless someone
 *		analyzed them since).  The caller holds the run slot, so no run is
 *		active while this runs.
 */
static int64
ua_stats_create_run(ArrayType *stages, int nstages, int jobs,
					bool only_missing, Oid roleid, uint64 *ntasks)
{
	int64		origin = (int64) GetSystemIdentifier();
	int64		run_id;
	Datum		prev = (Datum) 0;
	bool		prev_null = true;
	bool		isnull;

	/*
	 * Run ids come from the table, not from a sequence (the extension owns
	 * none): this lock serialises concurrent callers until they commit.
	 */
	ua_stats_spi_exec("LOCK TABLE upgrade_assist.stats_run"
					  " IN SHARE ROW EXCLUSIVE MODE",
					  0, NULL, NULL, NULL, SPI_OK_UTILITY);

	ua_stats_spi_exec_id("UPDATE upgrade_assist.stats_run"
						 "   SET state = 'interrupted',"
						 "       ended_at = coalesce(ended_at, now())"
						 " WHERE origin = $1 AND state = 'running'",
						 origin, SPI_OK_UPDATE);

	if (only_missing)
	{
		Oid			types[2] = {INT8OID, INT4ARRAYOID};
		Datum		values[2] = {Int64GetDatum(origin), PointerGetDatum(stages)};

		ua_stats_spi_exec("SELECT run_id FROM upgrade_assist.stats_run"
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
		ua_stats_spi_exec("INSERT INTO upgrade_assist.stats_run"
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
		Oid			types[4] = {INT8OID, INT8OID, BOOLOID, INT4OID};
		Datum		values[4];
		char		nulls[4] = "    ";

		values[0] = Int64GetDatum(run_id);
		values[1] = prev;
		nulls[1] = prev_null ? 'n' : ' ';
		values[2] = BoolGetDatum(only_missing);
		values[3] = Int32GetDatum(nstages);
		*ntasks = ua_stats_spi_exec(
									"INSERT INTO upgrade_assist.stats_task"
									" (run_id, relid, relname, pages, stage_done)"
									" SELECT $1, c.relid::oid, format('%I.%I', c.schemaname, c.relname), c.pages,"
									"        coalesce(p.stage_done, 0)"
									"   FROM upgrade_assist.stats_coverage c"
									"   LEFT JOIN upgrade_assist.stats_task p"
									"     ON p.run_id = $2 AND p.relid = c.relid::oid"
									"  WHERE NOT $3 OR NOT c.has_statistics"
									"     OR (p.stage_done BETWEEN 1 AND $4 - 1"
									"         AND c.last_analyzed <= p.analyzed_at)",
									4, types, values, nulls, SPI_OK_INSERT);
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

		memset(&bgw, 0, sizeof(bgw));
		bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
		bgw.bgw_restart_time = BGW_NEVER_RESTART;
		snprintf(bgw.bgw_library_name, BGW_MAXLEN, "upgrade_assist");
		snprintf(bgw.bgw_function_name, BGW_MAXLEN, "ua_stats_worker_main");
		snprintf(bgw.bgw_name, BGW_MAXLEN,
				 "upgrade_assist stats worker %d of run " INT64_FORMAT,
				 slot + 1, run_id);
		snprintf(bgw.bgw_type, BGW_MAXLEN, "upgrade_assist stats");
		bgw.bgw_main_arg = Int32GetDatum(slot);
		memcpy(bgw.bgw_extra, &run_id, sizeof(run_id));
		bgw.bgw_notify_pid = MyProcPid;

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
	bool		only_missing;
	Oid			roleid = GetOuterUserId();
	int64		run_id = 0;
	uint64		ntasks = 0;

	ua_stats_require_shared();
	nstages = ua_stats_check_args(fcinfo, targets, &jobs);
	only_missing = PG_GETARG_BOOL(2);
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("statistics cannot be rebuilt during recovery")));

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
		run_id = ua_stats_create_run(PG_GETARG_ARRAYTYPE_P(0), nstages, jobs,
									 only_missing, roleid, &ntasks);
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
	PG_RETURN_INT64(run_id);
}

/*
 * cancel_stats_rebuild() returns boolean
 *		Stop the run active in this database: mark it cancelled (in the
 *		caller's transaction) and interrupt its workers, which exit within
 *		moments, also in the middle of an ANALYZE.  Returns false when no run
 *		is active here.
 */
Datum
cancel_stats_rebuild(PG_FUNCTION_ARGS)
{
	int64		run_id = 0;
	int			pids[UA_STATS_MAX_JOBS];
	int			npids = 0;

	ua_stats_require_shared();

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
	ua_stats_spi_exec_id("UPDATE upgrade_assist.stats_run"
						 "   SET state = 'cancelled', ended_at = now()"
						 " WHERE run_id = $1 AND state = 'running'",
						 run_id, SPI_OK_UPDATE);
	SPI_finish();
	PG_RETURN_BOOL(true);
}

/*
 * stats_workers() returns setof (run_id, pid, relid, stage)
 *		One row per worker slot in use: registered workers not yet attached
 *		have a NULL pid.
 */
Datum
stats_workers(PG_FUNCTION_ARGS)
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
static int
ua_stats_analyze(const char *sql, int target, Oid roleid, char **errmsg_out)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	Oid			save_userid;
	int			save_sec;
	volatile int sqlerrcode = 0;

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

	GetUserIdAndSecContext(&save_userid, &save_sec);
	BeginInternalSubTransaction(NULL);
	SetUserIdAndSecContext(roleid, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		int			rc = SPI_execute(sql, false, 0);

		if (rc != SPI_OK_UTILITY)
			elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
		SetUserIdAndSecContext(save_userid, save_sec);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		SetUserIdAndSecContext(save_userid, save_sec);
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		sqlerrcode = edata->sqlerrcode;
		*errmsg_out = pstrdup(edata->message ? edata->message : "unknown error");
		FreeErrorData(edata);
	}
	PG_END_TRY();
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
	ua_stats_spi_exec(sql, 3, types, values, nulls, SPI_OK_UPDATE);
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
	"SELECT relid, stage_done, pages FROM upgrade_assist.stats_task" \
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
 *		locked and checked to exist.
 */
static char *
ua_stats_analyze_sql(const Oid *relids, int n)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "ANALYZE ");
	for (int i = 0; i < n; i++)
		appendStringInfo(&sql, "%s%s%s", i > 0 ? ", " : "",
						 UA_ANALYZE_ONLY(get_rel_relkind(relids[i])),
						 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relids[i])),
													get_rel_name(relids[i])));
	return sql.data;
}

/*
 * ua_stats_analyze_one
 *		Analyze one locked relation with the given target and record the
 *		outcome: on success its relid is appended to done[*ndone]; a lock
 *		not granted or a cancel not meant for the run puts the task back for
 *		a retry; any other error is logged and the task skipped.  Returns
 *		false when the run was cancelled.
 */
static bool
ua_stats_analyze_one(int64 run_id, Oid relid, int stage, int target,
					 Oid roleid, Oid *done, int *ndone)
{
	char	   *sql = ua_stats_analyze_sql(&relid, 1);
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
	Oid			ready[UA_STATS_BATCH_TABLES];
	Oid			done[UA_STATS_BATCH_TABLES];
	int			nclaimed = 0;
	int			nready = 0;
	int			ndone = 0;
	int			stage_done = 0;
	long		cost = 0;
	Portal		portal;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "choosing tables");
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
		claimed[nclaimed++] = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		pages = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		cost += ua_stats_batch_cost(pages, targets[stage_done]);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);

	if (nclaimed == 0)
	{
		/* Nothing to take: the run is over, or the rest is busy or locked. */
		ua_stats_spi_exec("SELECT (extract(epoch FROM min(retry_at) - clock_timestamp()) * 1000)::float8"
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
				ready[nready++] = claimed[i];
		}

		if (nready == 1)
		{
			if (!ua_stats_analyze_one(run_id, ready[0], stage_done + 1, target,
									  roleid, done, &ndone))
				result = UA_STEP_FINISHED;
		}
		else if (nready > 1)
		{
			char	   *sql = ua_stats_analyze_sql(ready, nready);
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
					if (!ua_stats_analyze_one(run_id, ready[i], stage_done + 1,
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

	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
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
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		exists = ua_stats_spi_exec_id("SELECT FROM upgrade_assist.stats_run"
									  " WHERE run_id = $1 AND state = 'running'",
									  run_id, SPI_OK_SELECT) == 1;
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
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
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	proc_exit(0);
}
