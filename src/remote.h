/*-------------------------------------------------------------------------
 *
 * remote.h
 *	  Peers (remote.c): the foreign-data wrapper's validator and
 *	  interruptible libpq connections to the other cluster.
 *
 * IDENTIFICATION
 *	  src/remote.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_REMOTE_H
#define UA_REMOTE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "libpq-fe.h"

#define UA_FDW_NAME "upgrade_assist"

/* GUC variable */
extern int	ua_connect_timeout;

extern void ua_remote_init(void);
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

#endif							/* UA_REMOTE_H */
