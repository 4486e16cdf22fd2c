/*-------------------------------------------------------------------------
 *
 * upgrade_assist.c
 *	  Module entry point: each module's settings, and when the library is
 *	  preloaded its shared memory, hooks and startup workers.
 *
 * The library is meant for shared_preload_libraries.  Loaded any other way
 * (or under pg_upgrade, where IsBinaryUpgrade is set) it defines its GUCs and
 * nothing else: no shared memory, no workers.  Functions that need the shared
 * state say so with a clear error (ua_require_preloaded).
 *
 * Every module owns its shared state, its lock and its settings; this file
 * only calls them, in the order of src/: remote, marker, heartbeat, fence,
 * stats, cutover.
 *
 * IDENTIFICATION
 *	  src/upgrade_assist.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "compat.h"
#include "cutover.h"
#include "fence.h"
#include "heartbeat.h"
#include "marker.h"
#include "remote.h"
#include "stats.h"
#include "verify.h"

PG_MODULE_MAGIC;

#ifdef UA_HAVE_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

/*
 * ua_request_shmem
 *		Every module's shared memory and locks.
 */
static void
ua_request_shmem(void)
{
	ua_marker_shmem_request();
	ua_heartbeat_shmem_request();
	ua_fence_shmem_request();
	ua_stats_shmem_request();
	ua_cutover_shmem_request();
	ua_verify_shmem_request();
}

#ifdef UA_HAVE_SHMEM_REQUEST_HOOK
static void
ua_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	ua_request_shmem();
}
#endif

/*
 * ua_shmem_startup
 *		Attach to (or, in the postmaster, create) every module's shared
 *		state.
 */
static void
ua_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ua_marker_shmem_startup();
	ua_heartbeat_shmem_startup();
	ua_fence_shmem_startup();
	ua_stats_shmem_startup();
	ua_cutover_shmem_startup();
	ua_verify_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	ua_remote_init();
	ua_marker_init();
	ua_heartbeat_init();
	ua_fence_init();
	ua_cutover_init();
	ua_verify_init();
	MarkGUCPrefixReserved("upgrade_assist");

	/*
	 * Under pg_upgrade the library may be preloaded by the copied
	 * configuration; it must not start workers or take shared memory there.
	 */
	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;

#ifdef UA_HAVE_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ua_shmem_request;
#else
	ua_request_shmem();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ua_shmem_startup;

	ua_heartbeat_register_launcher();
	ua_cutover_register_resolver();
	ua_fence_install_hooks();
}
