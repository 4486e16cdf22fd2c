/*-------------------------------------------------------------------------
 *
 * preflight.h
 *	  Preflight checks (preflight.c): what would make a cutover lose or
 *	  break data, on this cluster and, through a peer, on the other.
 *
 * IDENTIFICATION
 *	  src/preflight.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_PREFLIGHT_H
#define UA_PREFLIGHT_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* One finding: severity is "error", "warning" or "info". */
typedef void (*UaFindingFn) (void *arg, const char *severity, const char *check,
							 const char *object, const char *detail,
							 const char *hint);

extern void ua_preflight_run(const char *peer, TimestampTz deadline,
							 UaFindingFn emit, void *arg);
extern bool ua_preflight_check_known(const char *check);

#endif							/* UA_PREFLIGHT_H */
