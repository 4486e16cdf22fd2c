/*-------------------------------------------------------------------------
 *
 * upgrade_assist.h
 *	  Declarations shared between the files of upgrade_assist.
 *
 * IDENTIFICATION
 *	  src/upgrade_assist.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UPGRADE_ASSIST_H
#define UPGRADE_ASSIST_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "libpq-fe.h"
#include "access/tupdesc.h"
#include "utils/tuplestore.h"
#include "storage/lwlock.h"
#include "storage/proc.h"

#define UA_SCHEMA "upgrade_assist"
#define UA_FDW_NAME "upgrade_assist"

/* Longest marker kind accepted (the table's CHECK constraint agrees). */
#define UA_KIND_MAX 63

/* Databases that can use markers at the same time (shared slots). */
#define UA_MAX_DATABASES 64

/* A marker as written. */
typedef struct UaMarker
{
	int64		origin;
	int64		seq;
	TimestampTz written_at;
	XLogRecPtr	written_lsn;
} UaMarker;

/* Recent round-trip latencies kept by a heartbeat worker for p50/p99. */
#define UA_HB_WINDOW 600

/*
 * Heartbeat of one database: configuration (also kept in the file
 * UA_HB_FILE of the data directory, so that it survives restarts) and what
 * the worker publishes for the sync_status view.
 */
typedef struct UaHeartbeat
{
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
} UaHeartbeat;

/*
 * Per-database shared state.  Protected by UaShared->lock.
 */
typedef struct UaDatabaseSlot
{
	Oid			dboid;			/* InvalidOid when the slot is free */
	bool		seq_known;		/* next_seq has been initialised */
	Oid			marker_relid;	/* the marker table next_seq was read from */
	int64		next_seq;		/* next marker seq of this origin */
	PGPROC	   *writer;			/* running marker writer, or NULL */
	UaHeartbeat hb;
} UaDatabaseSlot;

/* States of a marker-write request. */
typedef enum UaRequestState
{
	UA_REQ_FREE = 0,
	UA_REQ_PENDING,				/* waiting for the writer */
	UA_REQ_RUNNING,				/* taken by the writer */
	UA_REQ_ABANDONED,			/* requester gave up while running */
	UA_REQ_DONE,				/* committed; result valid */
	UA_REQ_FAILED				/* error text in errmsg */
} UaRequestState;

/*
 * One marker-write request slot per backend, indexed by proc number.  The
 * requester owns a slot in FREE, DONE and FAILED; the writer owns it in
 * RUNNING.  State changes happen under UaShared->lock.
 */
typedef struct UaWriteRequest
{
	UaRequestState state;
	Oid			dboid;
	PGPROC	   *requester;
	int64		seq;			/* number allocated by the requester */
	char		kind[UA_KIND_MAX + 1];
	UaMarker	result;
	int			sqlerrcode;		/* of a failure */
	char		errmsg[256];
} UaWriteRequest;

typedef struct UaShared
{
	LWLock	   *lock;
	PGPROC	   *hb_launcher;	/* running heartbeat launcher, or NULL */
	int			nrequests;
	UaDatabaseSlot dbs[UA_MAX_DATABASES];
	UaWriteRequest requests[FLEXIBLE_ARRAY_MEMBER];
} UaShared;

/* heartbeat.c */
extern int	ua_lag_threshold_ms;
extern int	ua_heartbeat_retention_s;
extern bool ua_heartbeat_load(bool into_shmem);
extern void ua_hb_forget(Oid dboid);
extern void ua_heartbeat_register_launcher(void);
PGDLLEXPORT void ua_heartbeat_launcher_main(Datum main_arg);
PGDLLEXPORT void ua_heartbeat_worker_main(Datum main_arg);

/* cutover.c */
extern void ua_cutover_define_gucs(void);
extern void ua_cutover_shmem_request(void);
extern void ua_cutover_shmem_startup(void);

/* stats.c */
extern void ua_stats_shmem_request(void);
extern void ua_stats_shmem_startup(void);
PGDLLEXPORT void ua_stats_worker_main(Datum main_arg);

/* upgrade_assist.c */
extern UaShared *ua_shared;
extern int	ua_connect_timeout;
extern int	ua_writer_idle_timeout;
extern void ua_require_shared(void);
extern int64 ua_interval_to_ms(Interval *iv, const char *argname);
extern long ua_ms_until(TimestampTz deadline);
extern ErrorData *ua_recover_from_error(MemoryContext cxt);
extern Tuplestorestate *ua_materialize_srf(FunctionCallInfo fcinfo, TupleDesc *tupdesc);

/* remote.c */
extern void ua_peer_check(const char *peer);
extern PGconn *ua_peer_connect_start(const char *peer, TimestampTz *connect_deadline);
extern void ua_peer_connect_finish(PGconn *conn, const char *peer);
extern PGconn *ua_peer_connect(const char *peer, TimestampTz deadline);
extern PGresult *ua_peer_query(const char *peer, const char *sql,
							   int nparams, const char *const *values,
							   TimestampTz deadline);
extern PGresult *ua_peer_query_ext(const char *peer, const char *sql,
								   int nparams, const char *const *values,
								   TimestampTz deadline, bool may_retry);
extern void ua_peer_forget(const char *peer);
extern char *ua_peer_conninfo(const char *peer);

/* marker.c */
extern UaDatabaseSlot *ua_db_slot(void);
extern UaDatabaseSlot *ua_db_slot_for(Oid dboid);
extern int64 ua_origin(void);
extern int64 ua_next_marker_seq(void);
extern void ua_insert_marker(const char *kind, const char *note, int64 seq,
							 UaMarker *out);
extern int64 ua_marker_wait(const char *peer, int64 seq, TimestampTz start,
							TimestampTz deadline, bool own_request);

/* writer.c */
extern int64 ua_marker_request_submit(const char *kind);
extern bool ua_marker_request_check(UaMarker *out);
extern void ua_marker_request_wait(TimestampTz deadline, UaMarker *out);
extern void ua_marker_request_end(void);
PGDLLEXPORT void ua_writer_main(Datum main_arg);

#endif							/* UPGRADE_ASSIST_H */
