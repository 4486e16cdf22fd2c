/*-------------------------------------------------------------------------
 *
 * heartbeat.h
 *	  The heartbeat: configuration, launcher and sync_status (heartbeat.c),
 *	  and the per-database worker (heartbeat_worker.c).
 *
 * IDENTIFICATION
 *	  src/heartbeat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_HEARTBEAT_H
#define UA_HEARTBEAT_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/lwlock.h"
#include "storage/proc.h"

/* Databases that can have a heartbeat at the same time. */
#define UA_HB_MAX_DATABASES 64

/* Recent round-trip latencies kept by a heartbeat worker for p50/p99. */
#define UA_HB_WINDOW 600

/*
 * Heartbeat of one database: configuration (also kept in the file
 * UA_HB_FILE of the data directory, so that it survives restarts) and what
 * the worker publishes for the sync_status view.
 */
typedef struct UaHeartbeat
{
	Oid			dboid;			/* InvalidOid when the slot is free */

	/* configuration */
	bool		configured;		/* heartbeat_start was called */
	bool		enabled;		/* not stopped */
	Oid			owner;			/* role that started it; the worker runs as it */
	int64		every_ms;		/* pace */
	char		peer[NAMEDATALEN];
	uint32		generation;		/* bumped at each configuration change */

	/* worker bookkeeping, set by the launcher and the worker */
	PGPROC	   *worker;			/* running worker, or NULL */
	int			worker_pid;
	TimestampTz start_requested_at; /* launcher asked for a worker */
	int			quick_failures; /* worker exits without a beat, for backoff */

	/* published by the worker */
	int64		last_written_seq;
	TimestampTz last_written_at;
	int64		last_confirmed_seq;
	TimestampTz last_confirmed_at;
	TimestampTz oldest_unconfirmed_at;	/* 0 when everything is confirmed */
	int64		last_latency_us;
	int64		p50_us;
	int64		p99_us;
	int			samples;		/* latencies in the window */
	bool		connected;
	char		last_error[256];
	TimestampTz last_error_at;

	/* published by the schema check worker (heartbeat_worker.c) */
	char		schema[256];	/* "same", "drift: ...", "" not compared */
	TimestampTz schema_checked_at;
} UaHeartbeat;

/* The heartbeats' shared state; every field under lock. */
typedef struct UaHeartbeatShared
{
	LWLock	   *lock;
	PGPROC	   *launcher;		/* running heartbeat launcher, or NULL */
	UaHeartbeat dbs[UA_HB_MAX_DATABASES];
} UaHeartbeatShared;

/* GUC variables */
extern int	ua_lag_threshold_ms;
extern int	ua_heartbeat_retention_s;
extern int	ua_schema_check_interval_ms;

/* heartbeat.c */
extern UaHeartbeatShared *ua_hb_shared;
extern void ua_heartbeat_init(void);
extern void ua_heartbeat_shmem_request(void);
extern void ua_heartbeat_shmem_startup(void);
extern void ua_heartbeat_register_launcher(void);
extern void ua_hb_forget(Oid dboid);
PGDLLEXPORT void ua_heartbeat_launcher_main(Datum main_arg);

/* heartbeat_worker.c */
PGDLLEXPORT void ua_heartbeat_worker_main(Datum main_arg);
PGDLLEXPORT void ua_schema_check_main(Datum main_arg);

#endif							/* UA_HEARTBEAT_H */
