/*-------------------------------------------------------------------------
 *
 * cutover.h
 *	  The cutover: the caller side, SQL functions, shared state and settings
 *	  (cutover.c), the worker's run, history, abort and cleanup
 *	  (cutover_worker.c), and the steps (cutover_steps.c).
 *
 * IDENTIFICATION
 *	  src/cutover.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_CUTOVER_H
#define UA_CUTOVER_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "storage/lwlock.h"
#include "storage/proc.h"

#include "marker.h"

/* The steps, in order. */
typedef enum UaStep
{
	UA_ST_CHECKS,
	UA_ST_LAG,
	UA_ST_PREPARE,				/* before the fence: sequences, reverse objects */
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

extern const char *const ua_cutover_step_names[UA_NSTEPS];

/*
 * Pause points inside "unfence peer" (cutover_pause_before, for tests and
 * rehearsals): right before the takeover is sent, and right after it
 * committed (the answer is then dropped, as if lost).
 */
#define UA_PAUSE_TAKEOVER "takeover"
#define UA_PAUSE_TAKEOVER_ANSWER "takeover answer"

/* The row after the steps: "abort" or "cleanup". */
#define UA_ST_END UA_NSTEPS

#define UA_DETAIL_MAX 512

/* cutover(accept => ...): the preflight checks accepted, comma-separated. */
#define UA_ACCEPT_MAX 1024

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
	bool		disconnect;		/* end client sessions after the point of no return */
	char		pause_before[32];
	char		accept[UA_ACCEPT_MAX];	/* preflight checks accepted ("*": all) */

	/* progress */
	bool		paused;
	bool		resume;
	char		paused_at[32];	/* a pause point inside a step, or "" */
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
	bool		external;		/* replication => 'external' (cutover_external.c) */
} UaCutoverShared;

/* What the worker knows about its attempt. */
typedef struct UaRun
{
	MemoryContext cxt;			/* the worker's memory for the whole run */
	char		peer[NAMEDATALEN];
	TimestampTz deadline;
	int64		max_lag_ms;
	int64		margin;
	bool		reverse;
	bool		dry_run;
	bool		disconnect;
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
	bool		leftover_reverse;	/* checks: the reverse direction of an
									 * attempt interrupted before its fence
									 * is here, to be dropped by prepare */
	bool		ponr_unknown;	/* the takeover's outcome could not be learnt */

	/* what the prepare step left for the blackout (cutover_steps.c) */
	bool		seq_prepared;	/* the peer's session holds a sequence plan */
	int64		seq_token;		/* its token (sequences_prepare()) */
	int			seq_peer_pid;	/* the peer backend holding it */
	int			seq_n;			/* its sequences */
	Oid		   *seq_local;		/* per plan sequence: the one here, or invalid */

	bool		external;		/* replication => 'external' (cutover_external.c) */
} UaRun;

typedef void (*UaStepFn) (UaRun *run, StringInfo detail);

/* Update one field of the shared state under its lock. */
#define UA_CUTOVER_SET(field, value) \
	do { \
		LWLockAcquire(ua_cutover_state->lock, LW_EXCLUSIVE); \
		ua_cutover_state->field = (value); \
		LWLockRelease(ua_cutover_state->lock); \
	} while (0)

/* cutover.c */
extern UaCutoverShared *ua_cutover_state;
extern int	ua_cutover_drain_ms;
extern void ua_cutover_init(void);
extern void ua_cutover_shmem_request(void);
extern void ua_cutover_shmem_startup(void);

/* cutover_worker.c */
PGDLLEXPORT void ua_cutover_worker_main(Datum main_arg);
extern bool ua_cutover_pause_named(UaRun *run, const char *name);
extern void ua_cutover_drop_leftover_reverse(UaRun *run, StringInfo detail);

/* cutover_steps.c: the steps, and statements on the peer for the worker */
extern const UaStepFn ua_cutover_step_fns[UA_NSTEPS];
extern PGresult *ua_cutover_remote_ext(UaRun *run, const char *sql, int nparams,
									   const char *const *values,
									   TimestampTz deadline, bool may_retry);
extern PGresult *ua_cutover_remote(UaRun *run, const char *sql, int nparams,
								   const char *const *values);
extern void ua_cutover_remote_until(UaRun *run, const char *sql, int nparams,
									const char *const *values, TimestampTz deadline);
extern void ua_cutover_remote_exempt(UaRun *run, TimestampTz deadline);
extern void ua_cutover_check_basics(UaRun *run);

/* cutover_resolve.c: settling an attempt whose outcome is not known here */
typedef enum UaAnswer
{
	UA_ANS_NONE,				/* no answer: peer unreachable, or an error */
	UA_ANS_COMMITTED,			/* the takeover committed, the peer is unfenced */
	UA_ANS_COMMITTED_FENCED,	/* committed, the peer still fenced (crashed
								 * between commit and lift) */
	UA_ANS_NOT_COMMITTED,		/* tombstone written, the peer is fenced */
	UA_ANS_PEER_UNFENCED		/* tombstone, yet the peer is unfenced: alarm */
} UaAnswer;

typedef struct UaAttemptAnswer
{
	MemoryContext cxt;			/* where the strings go (NULL: current) */
	UaAnswer	answer;
	char	   *fwd_sub;		/* committed: the forward subscription it detached */
	char	   *fwd_slot;		/* and that subscription's slot, here */
	char	   *error;			/* UA_ANS_NONE: why */
} UaAttemptAnswer;

extern void ua_attempt_ask(const char *peer, int64 attempt, int64 timeout_ms,
						   UaAttemptAnswer *out);
extern const char *ua_attempt_answer_text(const UaAttemptAnswer *ans);
extern const char *ua_attempt_settle(const char *peer, int64 attempt,
									 const UaAttemptAnswer *ans,
									 const char *resolution, StringInfo notes);
extern void ua_cutover_attempt_finished(int64 attempt, const char *outcome,
										const char *resolution, const char *peer);
extern void ua_cutover_register_resolver(void);
extern bool ua_cutover_start_resolver(void);
PGDLLEXPORT void ua_cutover_resolver_main(Datum main_arg);

/*
 * cutover_external.c: replication => 'external', the cutover over another
 * pipeline (markers only; the switch command moves the pipeline).
 */
#define UA_EXTERNAL_TAKEOVER_SQL \
	"SELECT upgrade_assist.cutover_takeover_external($1::bigint, $2::bigint)"
extern bool ua_external_read_replication(text *arg);
extern void ua_external_checks(UaRun *run, StringInfo detail);
extern void ua_external_reverse(UaRun *run, StringInfo detail);
extern void ua_external_reverse_rt(UaRun *run, StringInfo detail);
extern void ua_external_stop_forward(UaRun *run, StringInfo detail);
extern const char *ua_external_would_do(UaRun *run, int step);
extern void ua_external_cleanup(UaRun *run, StringInfo notes);

/* cutover_multidb.c: the other databases of this cluster */
extern void ua_multidb_refuse_uncovered(UaRun *run);

#endif							/* UA_CUTOVER_H */
