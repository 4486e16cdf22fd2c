/*-------------------------------------------------------------------------
 *
 * cutover.h
 *	  What the two halves of the cutover share: cutover.c (shared state, the
 *	  SQL functions, the caller, the worker's run and history) and
 *	  cutover_steps.c (the steps, the abort and the cleanup).
 *
 * IDENTIFICATION
 *	  src/cutover.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_CUTOVER_H
#define UA_CUTOVER_H

#include <signal.h>

#include "lib/stringinfo.h"
#include "storage/lwlock.h"
#include "storage/proc.h"

#include "upgrade_assist.h"

/* The steps, in order. */
typedef enum UaStep
{
	UA_ST_CHECKS,
	UA_ST_LAG,
	UA_ST_FENCE,
	UA_ST_DRAIN,
	UA_ST_MARKER,
	UA_ST_WAIT,
	UA_ST_SEQUENCES,
	UA_ST_REVERSE,
	UA_ST_REVERSE_RT,
	UA_ST_UNFENCE_PEER,
	UA_NSTEPS
} UaStep;

extern const char *const ua_step_names[UA_NSTEPS];

/* The row after the steps: "abort" or "cleanup". */
#define UA_EXTRA UA_NSTEPS

#define UA_DETAIL_MAX 512

/* Names of the objects a cutover creates (slot names add both ids). */
#define UA_REVERSE_NAME "upgrade_assist_cutover"

/* Bound of each remote action of an abort, and of the post-commit checks. */
#define UA_ABORT_REMOTE_MS 5000
#define UA_SLOT_DROP_MS 10000

/* Pause between two looks for a marker; the blackout waits on these. */
#define UA_POLL_MS 1

typedef struct UaStepState
{
	char		status[12];		/* "" not reached, running, done, failed,
								 * skipped, would do */
	TimestampTz started_at;
	int64		duration_us;
	char		detail[UA_DETAIL_MAX];
} UaStepState;

typedef struct UaCutoverShared
{
	LWLock	   *lock;
	bool		active;			/* slot taken (an attempt runs or ends) */
	bool		worker_done;	/* the worker wrote its outcome */
	PGPROC	   *caller;			/* the caller waiting for it, or NULL */
	PGPROC	   *worker;
	int			worker_pid;

	/* the request */
	Oid			dboid;
	Oid			userid;
	char		peer[NAMEDATALEN];
	int64		max_lag_ms;
	int64		timeout_ms;
	int64		margin;
	bool		reverse;
	bool		dry_run;
	char		pause_before[32];

	/* progress */
	bool		paused;
	bool		resume;
	int64		attempt;		/* cutover_history.attempt; 0 for a dry run */
	TimestampTz started_at;
	TimestampTz fenced_at;
	TimestampTz writable_at;
	int			running;		/* step running, -1 none */
	bool		aborting;
	bool		past_ponr;		/* the peer may be writable now */
	bool		abort_requested;
	char		abort_cause[128];
	char		extra_step[16];
	UaStepState steps[UA_NSTEPS + 1];
	char		outcome[16];
	char		failure[UA_DETAIL_MAX];	/* outcome "failed": the error */
} UaCutoverShared;

/* What the worker knows about its attempt. */
typedef struct UaRun
{
	char		peer[NAMEDATALEN];
	TimestampTz deadline;
	int64		max_lag_ms;
	int64		margin;
	bool		reverse;
	bool		dry_run;
	int64		attempt;

	int			peer_version;
	char	   *fwd_sub;		/* forward subscription, on the peer */
	char	   *fwd_slot;		/* its slot, here */
	char	   *fwd_pubs;		/* its publications (text[] literal), here */
	char		slot_name[NAMEDATALEN]; /* reverse slot, on the peer */
	UaMarker	final_marker;

	/* what an abort must undo */
	bool		did_fence;
	bool		did_pub;
	bool		did_slot;
	bool		did_sub;
	bool		ponr_unknown;	/* the takeover's outcome could not be learnt */
} UaRun;

typedef void (*UaStepFn) (UaRun *run, StringInfo detail);

/* Update one field of the shared state under its lock. */
#define UA_CUT_SET(field, value) \
	do { \
		LWLockAcquire(ua_cut->lock, LW_EXCLUSIVE); \
		ua_cut->field = (value); \
		LWLockRelease(ua_cut->lock); \
	} while (0)

/* cutover.c */
extern UaCutoverShared *ua_cut;
extern MemoryContext ua_worker_cxt;
extern int	ua_cutover_drain_ms;
extern volatile sig_atomic_t ua_worker_terminated;

/* cutover_steps.c */
extern const UaStepFn ua_step_fns[UA_NSTEPS];
extern void ua_cx_begin(void);
extern void ua_cx_end(void);
extern uint64 ua_spi(const char *sql, int nargs, const char *const *args, bool read_only);
extern char *ua_spi_value(uint64 row, int col);
extern void ua_step_finish(int i, const char *status, TimestampTz started, const char *detail);
extern void ua_pause_point(UaRun *run, int i);
extern void ua_abort(UaRun *run, StringInfo notes);
extern void ua_cleanup(UaRun *run, StringInfo notes);

#endif							/* UA_CUTOVER_H */
