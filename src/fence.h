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

/* The cutover's steps (cutover.c): fence() in parts. */
extern void ua_fence_engage(const char *reason);
extern void ua_fence_drain(int64 drain_ms, int *finished, int *terminated);
extern bool ua_fence_release(const char *by);
extern void ua_fence_exempt_session(void);

#endif							/* UA_FENCE_H */
