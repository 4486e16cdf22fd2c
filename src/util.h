/*-------------------------------------------------------------------------
 *
 * util.h
 *	  Helpers that every module of upgrade_assist uses (util.c): deadlines,
 *	  set-returning functions, worker transactions and SPI, durable files,
 *	  background-worker setup, the interruptible wait and wait events, and
 *	  error recovery in workers.  Nothing here knows about a feature.
 *
 * IDENTIFICATION
 *	  src/util.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_UTIL_H
#define UA_UTIL_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "postmaster/bgworker.h"
#include "utils/tuplestore.h"

#define UA_SCHEMA "upgrade_assist"
#define UA_LIBRARY "upgrade_assist"

/* What a process of ours waits for, as pg_stat_activity shows it (17+). */
typedef enum UaWaitEvent
{
	UA_WE_PEER,					/* a peer's answer or connection */
	UA_WE_MARKER,				/* a marker to show up, or its writer */
	UA_WE_WRITER_IDLE,			/* the marker writer, without work */
	UA_WE_HEARTBEAT,			/* the heartbeat launcher and workers */
	UA_WE_FENCE_DRAIN,			/* transactions the fence drains */
	UA_WE_CUTOVER,				/* the cutover worker and its caller */
	UA_WE_STATS,				/* the statistics rebuild */
	UA_NWAIT_EVENTS
} UaWaitEvent;

/* Deadlines and intervals */
extern int64 ua_interval_to_ms(Interval *iv, const char *argname);
extern long ua_ms_until(TimestampTz deadline);
extern double ua_ms_since(TimestampTz t);
extern long ua_poll_backoff_ms(int64 elapsed_ms);

/* Set-returning functions */
extern Tuplestorestate *ua_materialize_srf(FunctionCallInfo fcinfo, TupleDesc *tupdesc);

/* Transactions and SPI in background workers */
extern void ua_xact_begin(const char *activity);
extern void ua_xact_end(MemoryContext cxt);
extern uint64 ua_spi_exec(const char *sql, int nargs, const char *const *args,
						  bool read_only);
extern uint64 ua_spi_exec_typed(const char *sql, int nargs, Oid *types,
								Datum *values, const char *nulls, int expected);
extern char *ua_spi_getvalue(uint64 row, int col, MemoryContext cxt);
extern int64 ua_spi_getint8(uint64 row, int col, bool *isnull);
extern ErrorData *ua_recover_from_error(MemoryContext cxt);

/* Files of the data directory */
extern void ua_write_file_durably(const char *path, const char *tmppath,
								  const char *data, int len);
extern void ua_write_file_durably_mode(const char *path, const char *tmppath,
									   const char *data, int len, int mode);

/* Background workers and waiting */
extern void ua_bgworker_init(BackgroundWorker *bgw, const char *function,
							 const char *type, int restart_time, Datum main_arg);
extern uint32 ua_wait_event(UaWaitEvent which);
extern int	ua_wait(int events, long timeout_ms, UaWaitEvent which);

/* The library preloaded (state is a module's shared state, NULL if not) */
extern void ua_require_preloaded(const void *state);

/* A callback in an internal subtransaction: NULL, or the error it threw */
extern ErrorData *ua_try_subxact(void (*fn) (void *arg), void *arg);
extern List *ua_role_list_oids(const char *value);

#endif							/* UA_UTIL_H */
