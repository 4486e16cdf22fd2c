/*-------------------------------------------------------------------------
 *
 * verify.h
 *	  Verification of the peer's data: the SQL functions, the shared state,
 *	  the replica trigger and the range statements (verify.c), and the
 *	  worker that walks the tables (verify_worker.c).
 *
 * IDENTIFICATION
 *	  src/verify.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_VERIFY_H
#define UA_VERIFY_H

#include "postgres.h"

#include "executor/spi.h"
#include "storage/lwlock.h"
#include "storage/proc.h"

/* Runs (one worker each) that may be active in the cluster at a time. */
#define UA_VERIFY_MAX_RUNS 4
/* Limits of verify()'s chunk_rows. */
#define UA_VERIFY_MIN_CHUNK 1
#define UA_VERIFY_MAX_CHUNK 1000000
/* Ranges written between two looks at the peer's results. */
#define UA_VERIFY_BATCH 32
/* Ranges written and not yet compared, at most: then wait for the peer. */
#define UA_VERIFY_IN_FLIGHT 256
/* Fewest rows per range the adaptation to verify_max_lock_time goes down to. */
#define UA_VERIFY_MIN_ADAPT 100
/* A range's lock not granted: tries before the table is given up. */
#define UA_VERIFY_LOCK_TRIES 200

/* Kinds of range (the mode column of verify_range). */
#define UA_VERIFY_MODE_RANGE "range"	/* count and checksum of a key range */
#define UA_VERIFY_MODE_KEYS "keys"	/* the same, with every key's hash */
#define UA_VERIFY_MODE_WHOLE "whole"	/* a table without primary key */

typedef struct UaVerifySlot
{
	int64		run_id;			/* 0: free */
	Oid			dboid;
	Oid			roleid;			/* the caller of verify() */
	TransactionId launcher_xid; /* transaction that created the run */
	bool		attached;		/* the worker runs */
	bool		cancel;
	int			pid;
	PGPROC	   *proc;
	Oid			relid;			/* table being verified, or InvalidOid */
	int64		rows_done;		/* rows compared in the run so far */

	/*
	 * The run's snapshot helper (verify_worker.c).  Requests are numbered;
	 * each field is written by one side only: hreq, hrange, horigin, hgo,
	 * hgo_ok by the worker, the others by the helper.
	 */
	PGPROC	   *helper_proc;	/* NULL: no helper */
	int			helper_pid;
	uint64		hreq;			/* a snapshot asked for */
	int64		horigin;		/* ... for this verify_range row */
	int64		hrange;
	uint64		htaken;			/* the helper holds the snapshot of hreq */
	uint64		hgo;			/* the worker committed (hgo_ok) or gave up */
	bool		hgo_ok;
	uint64		hdone;			/* the helper's result of this request: */
	int64		hrows;
	int64		hsum;
	bool		herror;
	char		hmessage[256];
} UaVerifySlot;

typedef struct UaVerifyShared
{
	LWLock	   *lock;
	UaVerifySlot slots[UA_VERIFY_MAX_RUNS];
} UaVerifyShared;

/* What one side computed of a range. */
typedef struct UaVerifySums
{
	int64		rows;
	char	   *sum;			/* numeric, as text */
	char	   *keys;			/* text[] as text, keys mode only */
	char	   *hashes;			/* bigint[] as text, keys mode only */
	Datum		last_key;		/* text[]: the last key read, ordered only */
} UaVerifySums;

/* GUC variables (verify.c) */
extern double ua_verify_throttle;
extern int	ua_verify_lock_timeout;
extern int	ua_verify_max_lock_time;
extern bool ua_verify_helper;

/* verify.c */
extern UaVerifyShared *ua_verify;
extern void ua_verify_init(void);
extern void ua_verify_shmem_request(void);
extern void ua_verify_shmem_startup(void);
extern int	ua_verify_pin_settings(void);
extern char *ua_verify_bound_sql(Oid relid, Datum key_columns, bool has_from);
extern char *ua_verify_range_sql(Oid relid, const char *mode,
								 Datum key_columns, Datum columns,
								 bool has_from, bool has_to, bool limited,
								 bool ordered, int *lead);
extern SPIPlanPtr ua_verify_plan(const char *sql);
extern void ua_verify_compute(const char *sql, int lead, bool with_keys,
							  bool ordered, Datum key_from, Datum key_to,
							  int64 row_limit, UaVerifySums *out,
							  MemoryContext cxt);

/* verify_worker.c */
extern int	ua_verify_my_slot;
extern bool ua_verify_cancelled(void);
PGDLLEXPORT void ua_verify_worker_main(Datum main_arg);

/* verify_helper.c */
extern bool ua_verify_helper_start(int64 run_id);
extern bool ua_verify_helper_alive(void);
extern uint64 ua_verify_helper_ask(int64 origin, int64 range_no,
								   volatile uint64 *reqp);
extern void ua_verify_helper_go(uint64 req, bool ok);
extern void ua_verify_helper_result(uint64 req, int64 timeout_ms,
									UaVerifySums *out, MemoryContext cxt);
PGDLLEXPORT void ua_verify_helper_main(Datum main_arg);

#endif							/* UA_VERIFY_H */
