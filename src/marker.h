/*-------------------------------------------------------------------------
 *
 * marker.h
 *	  Markers (marker.c) and the marker writer (marker_writer.c): a marker
 *	  row that shows up on a peer proves that every change committed before
 *	  it has arrived there too.
 *
 * IDENTIFICATION
 *	  src/marker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_MARKER_H
#define UA_MARKER_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "storage/lwlock.h"
#include "storage/proc.h"

/* Longest marker kind accepted (the table's CHECK constraint agrees). */
#define UA_KIND_MAX 63

/* Databases that can use markers at the same time (shared slots). */
#define UA_MARKER_MAX_DATABASES 64

/* A marker as written. */
typedef struct UaMarker
{
	int64		origin;
	int64		seq;
	TimestampTz written_at;
	XLogRecPtr	written_lsn;
} UaMarker;

/* Markers of one database. */
typedef struct UaMarkerDb
{
	Oid			dboid;			/* InvalidOid when the slot is free */
	bool		seq_known;		/* next_seq has been initialised */
	Oid			marker_relid;	/* the marker table next_seq was read from */
	int64		next_seq;		/* next marker seq of this origin */
	PGPROC	   *writer;			/* running marker writer, or NULL */
} UaMarkerDb;

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
 * RUNNING.  State changes happen under UaMarkerShared->lock.
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

/* The markers' shared state; every field under lock. */
typedef struct UaMarkerShared
{
	LWLock	   *lock;
	int			nrequests;
	UaMarkerDb	dbs[UA_MARKER_MAX_DATABASES];
	UaWriteRequest requests[FLEXIBLE_ARRAY_MEMBER];
} UaMarkerShared;

/* GUC (marker_writer.c) */
extern int	ua_writer_idle_timeout;

/* marker.c */
extern UaMarkerShared *ua_marker_shared;
extern void ua_marker_init(void);
extern void ua_marker_shmem_request(void);
extern void ua_marker_shmem_startup(void);
extern UaMarkerDb *ua_marker_db(void);
extern int64 ua_origin(void);
extern int64 ua_next_marker_seq(void);
extern void ua_insert_marker(const char *kind, const char *note, int64 seq,
							 UaMarker *out);
extern int64 ua_marker_wait(const char *peer, int64 seq, TimestampTz start,
							TimestampTz deadline, bool own_request);

/* marker_writer.c: round_trip's markers, committed apart from the caller */
extern int64 ua_marker_request_submit(const char *kind);
extern bool ua_marker_request_check(UaMarker *out);
extern void ua_marker_request_wait(TimestampTz deadline, UaMarker *out);
extern void ua_marker_request_end(void);
PGDLLEXPORT void ua_writer_main(Datum main_arg);

#endif							/* UA_MARKER_H */
