/*-------------------------------------------------------------------------
 *
 * drain.h
 *	  The fence's drain (drain.c): waiting for, and if need be terminating,
 *	  the write transactions that were in flight when the fence went up.
 *
 * IDENTIFICATION
 *	  src/drain.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_DRAIN_H
#define UA_DRAIN_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "port/atomics.h"

/* A backend the drain waited for. */
typedef struct UaDrainee
{
	int			pid;
	int			procno;
	TransactionId xid;
	Oid			dbid;
	Oid			userid;
	char		appname[NAMEDATALEN];
	bool		busy;			/* busy at the latest look */
	bool		terminated;		/* the drain sent it SIGTERM */
	TimestampTz ended;			/* when its transaction (or it) was gone */
} UaDrainee;

extern char *ua_prepared_xacts(void);
extern List *ua_drain(pg_atomic_uint32 *armed, int nprocs, List *exempt_roles,
					  int64 drain_ms);

#endif							/* UA_DRAIN_H */
