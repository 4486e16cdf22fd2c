/*-------------------------------------------------------------------------
 *
 * fence.h
 *	  The write fence (fence.c): what the rest of upgrade_assist calls.
 *
 * IDENTIFICATION
 *	  src/fence.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_FENCE_H
#define UA_FENCE_H

/* _PG_init: settings always, hooks only when preloaded. */
extern void ua_fence_define_gucs(void);
extern void ua_fence_install_hooks(void);

/* Shared memory, from upgrade_assist.c's request and startup hooks. */
extern void ua_fence_shmem_request(void);
extern void ua_fence_shmem_startup(void);

/*
 * A section whose writes pass the fence: the extension's own marker inserts.
 * Always pair them (PG_FINALLY); an aborted transaction resets the depth.
 */
extern void ua_fence_exempt_begin(void);
extern void ua_fence_exempt_end(void);

/* Is the cluster fenced now (lifting it first if its deadline passed)? */
extern bool ua_fence_is_up(void);

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
 */
extern void ua_fence_engage(const char *reason);
extern void ua_fence_drain(int64 drain_ms, int *finished, int *terminated);
extern bool ua_fence_release(const char *by);
extern void ua_fence_exempt_session(void);
extern void ua_fence_leave_drain(void);

#endif							/* UA_FENCE_H */
