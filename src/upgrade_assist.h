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
#include "libpq-fe.h"
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
	int			nrequests;
	UaDatabaseSlot dbs[UA_MAX_DATABASES];
	UaWriteRequest requests[FLEXIBLE_ARRAY_MEMBER];
} UaShared;

/* upgrade_assist.c */
extern UaShared *ua_shared;
extern int	ua_connect_timeout;
extern int	ua_writer_idle_timeout;
extern void ua_require_shared(void);
extern int64 ua_interval_to_ms(Interval *iv, const char *argname);
extern long ua_ms_until(TimestampTz deadline);

/* remote.c */
extern PGconn *ua_peer_connect(const char *peer, TimestampTz deadline);
extern PGresult *ua_peer_query(const char *peer, const char *sql,
							   int nparams, const char *const *values,
							   TimestampTz deadline);

/* marker.c */
extern UaDatabaseSlot *ua_db_slot(void);
extern int64 ua_next_marker_seq(void);
extern void ua_insert_marker(const char *kind, const char *note, int64 seq,
							 UaMarker *out);

/* writer.c */
extern int64 ua_marker_request_submit(const char *kind);
extern bool ua_marker_request_check(UaMarker *out);
extern void ua_marker_request_wait(TimestampTz deadline, UaMarker *out);
extern void ua_marker_request_end(void);
PGDLLEXPORT void ua_writer_main(Datum main_arg);

#endif							/* UPGRADE_ASSIST_H */
