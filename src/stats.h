/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  The statistics rebuild: the SQL functions and the shared state
 *	  (stats.c), and the workers that analyze (stats_worker.c).
 *
 * IDENTIFICATION
 *	  src/stats.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_STATS_H
#define UA_STATS_H

#include "postgres.h"

#include "storage/lwlock.h"
#include "utils/array.h"
#include "storage/proc.h"

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

/* Which tables a run takes (stats.c, ua_stats_create_run). */
typedef enum UaStatsSelect
{
	UA_STATS_ALL,				/* every table */
	UA_STATS_MISSING,			/* incomplete in stats_coverage (only_missing) */
	UA_STATS_EXT				/* extended statistics without data, on their
								 * columns only (import_stats' rebuild_jobs) */
} UaStatsSelect;

/* stats.c */
extern UaStatsShared *ua_stats;
extern void ua_stats_shmem_request(void);
extern void ua_stats_shmem_startup(void);
extern void ua_stats_release_if_idle(void);
extern uint64 ua_stats_spi_exec_id(const char *sql, int64 id, int expected);
extern int64 ua_stats_launch(ArrayType *stages, int nstages, const int *targets,
							 int jobs, UaStatsSelect sel, Oid roleid);

/* stats_worker.c */
PGDLLEXPORT void ua_stats_worker_main(Datum main_arg);

#endif							/* UA_STATS_H */
