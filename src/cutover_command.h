/*-------------------------------------------------------------------------
 *
 * cutover_command.h
 *	  Moving the clients with the cutover (cutover_command.c): the switch
 *	  command upgrade_assist.cutover_command that the cutover worker runs
 *	  at named moments, and the disconnect of this cluster's client
 *	  sessions after the point of no return, and the heartbeat that follows
 *	  the cutover.
 *
 * IDENTIFICATION
 *	  src/cutover_command.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_CUTOVER_COMMAND_H
#define UA_CUTOVER_COMMAND_H

#include "postgres.h"

#include "lib/stringinfo.h"

/* The moments at which the command runs (%m). */
#define UA_MOMENT_BEFORE_FENCE "before fence"
#define UA_MOMENT_PEER_WRITABLE "peer writable"
#define UA_MOMENT_ABORTED "aborted"
#define UA_MOMENT_DONE "done"
/* replication => 'external' (cutover_external.c) */
#define UA_MOMENT_START_REVERSE "start reverse"
#define UA_MOMENT_STOP_FORWARD "stop forward"

/* Settings; called from ua_cutover_init. */
extern void ua_cutover_command_init(void);

/*
 * ua_cutover_command_run
 *		Run upgrade_assist.cutover_command for moment of attempt toward peer
 *		(a foreign server of this database), bounded by
 *		upgrade_assist.cutover_command_timeout, its output logged line by
 *		line.  True when no command is set or it exited with status 0; else
 *		false with *failure (palloc'd, never NULL then) saying why.  Throws
 *		only when interrupted (cancel, termination), after killing the
 *		command.  Starts a transaction of its own when none is open.
 */
extern bool ua_cutover_command_run(const char *moment, int64 attempt,
								   const char *peer, char **failure);

/* Is upgrade_assist.cutover_command set (not empty)? */
extern bool ua_cutover_command_configured(void);

/*
 * ua_cutover_disconnect_clients
 *		End (SIGTERM, as pg_terminate_backend) every client backend of this
 *		cluster but this process and keep_pid, whose session user is not
 *		listed in upgrade_assist.fence_exempt_roles, nor one of or a member
 *		of the roles of upgrade_assist.cutover_keep_roles.  Returns how many
 *		were sent the signal and writes a summary to detail.  Needs a
 *		transaction.
 */
extern int	ua_cutover_disconnect_clients(int keep_pid, StringInfo detail);

/*
 * ua_cutover_heartbeat_follow
 *		After a successful cutover: this database's heartbeat toward the peer
 *		moves to the peer, toward this cluster (cutover_command.c); what
 *		happened, or why not, goes to notes.  Throws the peer's errors.
 */
struct UaRun;
extern void ua_cutover_heartbeat_follow(struct UaRun *run, StringInfo notes);

#endif							/* UA_CUTOVER_COMMAND_H */
