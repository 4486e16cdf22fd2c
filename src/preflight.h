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
#include "lib/stringinfo.h"

/* One finding: severity is "error", "warning" or "info". */
typedef void (*UaFindingFn) (void *arg, const char *severity, const char *check,
							 const char *object, const char *detail,
							 const char *hint);

extern void ua_preflight_run(const char *peer, TimestampTz deadline,
							 UaFindingFn emit, void *arg);
extern bool ua_preflight_check_known(const char *check);
extern bool ua_preflight_accepted(const char *accept, const char *check);

/*
 * What the cutover's checks step learns from the preflight: counts, and
 * "check object" lists of the errors that block it, the errors accepted
 * and the warnings (each list cut at a readable length, "and N more").
 * The lists live in cxt.
 */
typedef struct UaPreflightSummary
{
	MemoryContext cxt;
	const char *accept;			/* comma-separated check names, "*": all */
	int			blocking;
	int			accepted;
	int			warnings;
	int			infos;
	StringInfoData blocking_list;
	StringInfoData accepted_list;
	StringInfoData warning_list;
	int			shown[3];		/* entries in each list */
} UaPreflightSummary;

extern void ua_preflight_summarize(const char *peer, TimestampTz deadline,
								   const char *accept, MemoryContext cxt,
								   UaPreflightSummary *sum);

/* Schema drift (the heartbeat's schema check) */
extern char *ua_preflight_schema_diff(const char *peer, TimestampTz deadline);

#endif							/* UA_PREFLIGHT_H */
