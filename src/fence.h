/*-------------------------------------------------------------------------
 *
 * fence.h
 *	  The write fence: its state, file, raising and lifting and SQL API
 *	  (fence.c), its enforcement hooks (fence_hooks.c) and its drain
 *	  (fence_drain.c).  What the rest of upgrade_assist calls is at the end.
 *
 * IDENTIFICATION
 *	  src/fence.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_FENCE_H
#define UA_FENCE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

/* Longest reason accepted, in bytes. */
#define UA_FENCE_REASON_MAX 512

typedef enum UaDrainState
{
	UA_DRAIN_NONE = 0,
	UA_DRAIN_RUNNING,
	UA_DRAIN_DONE
} UaDrainState;

/*
 * The fence's shared state.  fenced and auto_unfence_at are atomics read
 * without the lock by the hooks; every other field, and every change of
 * those two, is under lock.  armed[i] is written only by the backend with
 * proc number i (fence_hooks.c).
 */
typedef struct UaFenceShared
{
	LWLock	   *lock;
	pg_atomic_uint32 fenced;	/* 1 while fenced: the hooks' fast path */
	pg_atomic_uint64 auto_unfence_at;	/* TimestampTz; 0 for none */
	/* The rest under lock. */
	uint64		generation;		/* incremented by every fence() */
	TimestampTz since;
	char		reason[UA_FENCE_REASON_MAX + 1];
	char		fenced_by[NAMEDATALEN];
	int			fenced_by_pid;
	UaDrainState drain_state;
	int			drain_finished;
	int			drain_terminated;
	TimestampTz lifted_at;
	char		lifted_by[NAMEDATALEN + 32];
	/* The cutover attempt this fence belongs to (in the fence file; 0: none) */
	int64		co_attempt;
	Oid			co_dboid;
	Oid			co_userid;
	char		co_peer[NAMEDATALEN];
	/* A takeover of another cluster's attempt noted in flight here (file) */
	uint64		tk_origin;
	int64		tk_attempt;
	Oid			tk_dboid;
	/* Why the fence stays up and what it waits for (resolver; not in file) */
	char		waiting_for[UA_FENCE_REASON_MAX + 1];
	int			resolver_pid;	/* the cutover resolver running, or 0 */
	int			nprocs;
	pg_atomic_uint32 armed[FLEXIBLE_ARRAY_MEMBER];	/* pid, or 0 */
} UaFenceShared;

/* A backend the drain waited for (fence_drain.c). */
typedef struct UaDrainee
{
	int			pid;
	TransactionId xid;
	Oid			dbid;
	Oid			userid;
	char		appname[NAMEDATALEN];
	bool		busy;			/* busy at the latest look */
	bool		terminated;		/* the drain sent it SIGTERM */
	TimestampTz ended;			/* when its transaction (or it) was gone */
} UaDrainee;

/* fence.c: the state, within the module */
extern UaFenceShared *ua_fence;
extern bool ua_fence_lift(const char *by, int elevel, uint64 generation);

/* fence_hooks.c: who is fenced, within the module */
extern bool ua_fence_session_exempt(void);
extern List *ua_fence_exempt_role_oids(void);
extern void ua_fence_lift_at_commit(uint64 generation);

/* fence_drain.c */
extern char *ua_prepared_xacts(void);
extern List *ua_drain(pg_atomic_uint32 *armed, int nprocs, List *exempt_roles,
					  int64 drain_ms);

/* ---------------------------------------------------------------------------
 * For the rest of upgrade_assist
 * ---------------------------------------------------------------------------
 */

/* _PG_init: settings always; shared memory and hooks only when preloaded. */
extern void ua_fence_init(void);
extern void ua_fence_shmem_request(void);
extern void ua_fence_shmem_startup(void);
extern void ua_fence_install_hooks(void);

/*
 * ua_fence_is_up
 *		Is the cluster fenced now?  Lifts the fence first when its
 *		auto_unfence_after deadline has passed.  Cheap when not fenced: one
 *		read of shared memory.
 */
static inline bool
ua_fence_is_up(void)
{
	uint64		auto_at;

	if (ua_fence == NULL || pg_atomic_read_u32(&ua_fence->fenced) == 0)
		return false;
	auto_at = pg_atomic_read_u64(&ua_fence->auto_unfence_at);
	if (auto_at != 0 && (TimestampTz) auto_at <= GetCurrentTimestamp())
	{
		(void) ua_fence_lift("auto_unfence_after", LOG, 0);
		return pg_atomic_read_u32(&ua_fence->fenced) != 0;
	}
	return true;
}

/*
 * A section whose writes pass the fence: the extension's own marker inserts
 * and maintenance.  Always pair them (PG_FINALLY, or ua_fence_exempt_end_all
 * in a PG_CATCH); an aborted transaction resets the depth, an aborted
 * subtransaction does not.
 */
extern void ua_fence_exempt_begin(void);
extern void ua_fence_exempt_end(void);
extern void ua_fence_exempt_end_all(void);

/*
 * The cutover's steps, one piece each of what fence() and unfence() do.
 * All need a transaction and the library preloaded (else 55000).
 *
 * ua_fence_engage: raise the fence as fence() does before its drain, without
 * a deadline: 22023 for a reason that is empty or longer than 512 bytes,
 * 25001 when the caller's transaction has written (unless the session is
 * exempt), 55000 when fenced already or while prepared transactions exist;
 * the fence file is written durably before the fence goes up.  After any
 * error the fence is as it was.  It does not drain.
 *
 * ua_fence_drain: the drain fence() does after raising the fence; call it
 * right after ua_fence_engage.  Transactions that could write when the fence
 * went up may commit for drain_ms, then their backends are terminated.
 * Sets *finished and *terminated, and fence_status's drain columns.  Throws
 * 55000 when a transaction was prepared during the drain or a terminated
 * backend does not exit, 57014 on cancel.  Never lifts the fence: on error
 * the caller decides.  It does not notice an unfence() meanwhile: check
 * ua_fence_is_up() afterwards when it matters.
 *
 * ua_fence_release: lift the fence as unfence() does; by is shown as
 * fence_status.lifted_by.  False when there was no fence; throws (and the
 * fence stays up) when the fence file cannot be removed.
 *
 * ua_fence_exempt_session: this backend writes through the fence until it
 * exits.  Also lifts the read-only mode the fence forced on the current
 * transaction; the drain neither waits for nor terminates an exempt
 * session's transactions.  Never throws.
 *
 * ua_fence_leave_drain: the calling transaction will not write; the drain
 * does not wait for it.
 */
extern void ua_fence_engage(const char *reason);
extern void ua_fence_drain(int64 drain_ms, int *finished, int *terminated);
extern bool ua_fence_release(const char *by);
extern void ua_fence_exempt_session(void);
extern void ua_fence_leave_drain(void);

/*
 * The cutover's attempt in the fence (docs/recovery.md).  All need the
 * library preloaded.
 *
 * ua_fence_engage_cutover: ua_fence_engage, with the attempt, the database,
 * the role and the peer of the cutover kept in the fence file, so that a
 * restart knows whom to ask.
 *
 * ua_fence_cutover_attempt: the attempt the fence up now belongs to (false
 * when not fenced or fenced by fence()); any out argument may be NULL.
 *
 * ua_fence_forget_attempt: the attempt is settled and the fence stays (this
 * side is the standby now): drop the attempt from the fence file.  Nothing
 * happens unless the fence up belongs to that attempt.  Throws on I/O
 * errors (the file then still names the attempt).
 *
 * ua_fence_release_attempt: lift the fence if (and only if) it belongs to
 * that attempt; by as for ua_fence_release.  False when it does not.
 *
 * ua_fence_takeover_pending: on the cluster that took over: a takeover of
 * (origin, attempt) in database dboid was noted in the fence file by
 * cutover_takeover() and the fence is still up (it crashed between commit
 * and lift, or the takeover aborted).  ua_fence_forget_takeover drops the
 * note (the fence stays).
 *
 * ua_fence_set_waiting: what fence_status.waiting_for shows (NULL clears).
 *
 * ua_fence_file_has_cutover: in _PG_init of the postmaster, before shared
 * memory: the fence file names an attempt or a takeover (a resolver must
 * run at startup).
 */
extern void ua_fence_engage_cutover(const char *reason, int64 attempt, Oid dboid,
									Oid userid, const char *peer);
extern bool ua_fence_cutover_attempt(int64 *attempt, Oid *dboid, Oid *userid,
									 char *peer);
extern void ua_fence_forget_attempt(int64 attempt);
extern bool ua_fence_release_attempt(int64 attempt, const char *by);
extern bool ua_fence_takeover_pending(uint64 *origin, int64 *attempt, Oid *dboid);
extern void ua_fence_forget_takeover(void);
extern void ua_fence_set_waiting(const char *text);
extern bool ua_fence_file_has_cutover(void);

/* The one cutover resolver of the cluster: claim (false: one runs), release. */
extern bool ua_fence_claim_resolver(void);
extern void ua_fence_release_resolver(void);

#endif							/* UA_FENCE_H */
