/*-------------------------------------------------------------------------
 *
 * cutover_command.c
 *	  Moving the clients with the cutover: the switch command and the
 *	  disconnect after the point of no return.
 *
 * upgrade_assist.cutover_command is a shell command in the style of
 * archive_command that the cutover worker runs on this host at named
 * moments of an attempt ('before fence', 'peer writable', 'aborted',
 * 'done'; with replication => 'external' also 'start reverse' and 'stop
 * forward', cutover_external.c), so that a team plugs in its own switch: PgBouncer
 * (scripts/pgbouncer_switch), DNS, a service registry, a load balancer.
 * Placeholders are replaced by shell-quoted words: %m the moment, %a the
 * attempt, %p the peer (foreign server), %h %o %d the peer's host, port and
 * dbname (server options; empty when not set), %c this cluster
 * (cluster_name, else its port), %s this cluster's port, %% a percent sign.
 * No password is ever put into the command.  The command runs under
 * /bin/sh in a process group of its own, stdin from /dev/null; its stdout
 * and stderr go to the server log, line by line; after
 * upgrade_assist.cutover_command_timeout it is sent SIGTERM, a second later
 * SIGKILL, and counts as failed.  The wait watches the latch, so a cancel
 * or a termination of the worker kills the command too.
 *
 * The disconnect ends this cluster's client sessions after the point of no
 * return, so that pools reconnect and multi-host connection strings find
 * the new primary (fence_hooks.c makes this fenced cluster report
 * default_transaction_read_only = on to those reconnects).
 *
 * The heartbeat follows the cutover: after success, this database's
 * heartbeat toward the peer is started on the peer toward this cluster (as
 * the role that ran it here, every the same interval), through the peer's
 * foreign server that names this cluster, and stopped here.
 *
 * State: none shared; the settings only.
 *
 * IDENTIFICATION
 *	  src/cutover_command.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "cutover.h"
#include "cutover_command.h"
#include "fence.h"
#include "heartbeat.h"
#include "util.h"

/* GUCs */
static char *ua_cutover_command = NULL;
static int	ua_cutover_command_timeout_ms = 30000;
static char *ua_cutover_keep_roles = NULL;
static char *ua_cutover_heartbeat_server = NULL;

/* Longest output line logged as one message; longer ones are split. */
#define UA_CMD_LINE_MAX 1000

/* After SIGTERM on timeout, how long before SIGKILL. */
#define UA_CMD_KILL_GRACE_MS 1000

/* ---------------------------------------------------------------------------
 * Settings
 * ---------------------------------------------------------------------------
 */

/* Check hook of upgrade_assist.cutover_keep_roles: a list of role names. */
static bool
ua_check_keep_roles(char **newval, void **extra pg_attribute_unused(),
					GucSource source pg_attribute_unused())
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	bool		ok = SplitIdentifierString(raw, ',', &names);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(names);
	pfree(raw);
	return ok;
}

/*
 * ua_cutover_command_init
 *		Define the settings of the switch command and of the disconnect.
 */
void
ua_cutover_command_init(void)
{
	DefineCustomStringVariable("upgrade_assist.cutover_command",
							   "Shell command the cutover worker runs at the moments of an attempt.",
							   "Placeholders: %m moment, %a attempt, %p peer, %h %o %d the peer's host, port and dbname, "
							   "%c this cluster, %s its port, %% a percent sign.  Empty: none.",
							   &ua_cutover_command,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("upgrade_assist.cutover_command_timeout",
							"How long upgrade_assist.cutover_command may run before it is killed and counts as failed.",
							NULL,
							&ua_cutover_command_timeout_ms,
							30000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("upgrade_assist.cutover_keep_roles",
							   "Roles whose sessions cutover(disconnect => true) does not end.",
							   "Comma-separated role names; a session is kept when its session user is one of them "
							   "or a member of one (superuser status does not count).  "
							   "The roles of upgrade_assist.fence_exempt_roles are kept too.",
							   &ua_cutover_keep_roles,
							   "pg_monitor",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   ua_check_keep_roles, NULL, NULL);
	DefineCustomStringVariable("upgrade_assist.cutover_heartbeat_server",
							   "The peer's foreign server that names this cluster, for the heartbeat after a cutover.",
							   "Empty: the peer's upgrade_assist server whose port and dbname options are this cluster's port and database.",
							   &ua_cutover_heartbeat_server,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------------
 * The switch command
 * ---------------------------------------------------------------------------
 */

/* Append value to buf as one single-quoted shell word. */
static void
ua_append_shell_word(StringInfo buf, const char *value)
{
	appendStringInfoChar(buf, '\'');
	for (const char *c = value; *c; c++)
	{
		if (*c == '\'')
			appendStringInfoString(buf, "'\\''");
		else
			appendStringInfoChar(buf, *c);
	}
	appendStringInfoChar(buf, '\'');
}

/* The value of option name of the foreign server, "" when not set. */
static const char *
ua_server_option(ForeignServer *server, const char *name)
{
	ListCell   *lc;

	if (server == NULL)
		return "";
	foreach(lc, server->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, name) == 0)
			return defGetString(def);
	}
	return "";
}

/*
 * ua_command_expand
 *		The command with its placeholders replaced, palloc'd.  Reads the
 *		peer's foreign server (needs a transaction); an unknown peer gives
 *		empty %h %o %d.
 */
static char *
ua_command_expand(const char *command, const char *moment, int64 attempt,
				  const char *peer)
{
	StringInfoData buf;
	ForeignServer *server = GetForeignServerByName(peer, true);
	const char *cluster = GetConfigOption("cluster_name", false, false);
	const char *port = GetConfigOption("port", false, false);
	char		attempt_s[32];

	snprintf(attempt_s, sizeof(attempt_s), INT64_FORMAT, attempt);
	if (cluster == NULL || cluster[0] == '\0')
		cluster = port;
	initStringInfo(&buf);
	for (const char *c = command; *c; c++)
	{
		const char *value = NULL;

		if (*c != '%' || c[1] == '\0')
		{
			appendStringInfoChar(&buf, *c);
			continue;
		}
		c++;
		switch (*c)
		{
			case 'm':
				value = moment;
				break;
			case 'a':
				value = attempt_s;
				break;
			case 'p':
				value = peer;
				break;
			case 'h':
				value = ua_server_option(server, "host");
				break;
			case 'o':
				value = ua_server_option(server, "port");
				break;
			case 'd':
				value = ua_server_option(server, "dbname");
				break;
			case 'c':
				value = cluster;
				break;
			case 's':
				value = port;
				break;
			case '%':
				appendStringInfoChar(&buf, '%');
				break;
			default:
				/* Unknown: kept as written, like archive_command does. */
				appendStringInfoChar(&buf, '%');
				appendStringInfoChar(&buf, *c);
				break;
		}
		if (value != NULL)
			ua_append_shell_word(&buf, value);
	}
	return buf.data;
}

/*
 * ua_command_log_output
 *		Log the complete lines of out (and, when final, the rest), each
 *		as a LOG message naming the moment; consumes what it logged.
 */
static void
ua_command_log_output(StringInfo out, const char *moment, bool final)
{
	int			start = 0;

	for (int i = 0; i < out->len; i++)
	{
		if (out->data[i] != '\n' && i - start < UA_CMD_LINE_MAX)
			continue;
		ereport(LOG,
				(errmsg("upgrade_assist cutover_command (%s): %.*s", moment,
						i - start, out->data + start)));
		start = out->data[i] == '\n' ? i + 1 : i;
	}
	if (final && start < out->len)
	{
		ereport(LOG,
				(errmsg("upgrade_assist cutover_command (%s): %.*s", moment,
						out->len - start, out->data + start)));
		start = out->len;
	}
	if (start > 0)
	{
		memmove(out->data, out->data + start, out->len - start);
		out->len -= start;
		out->data[out->len] = '\0';
	}
}

/*
 * ua_command_kill
 *		SIGTERM the command's process group, SIGKILL after the grace, reap
 *		it.  Never throws; waits without serving interrupts (bounded).
 */
static int
ua_command_kill(pid_t pid)
{
	int			status = 0;
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													UA_CMD_KILL_GRACE_MS);

	(void) kill(-pid, SIGTERM);
	while (waitpid(pid, &status, WNOHANG) == 0)
	{
		if (GetCurrentTimestamp() >= until)
		{
			(void) kill(-pid, SIGKILL);
			(void) waitpid(pid, &status, 0);
			break;
		}
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10,
						 ua_wait_event(UA_WE_CUTOVER));
	}
	return status;
}

/*
 * ua_command_exec
 *		Run cmd under /bin/sh, its output to the log, for up to timeout_ms.
 *		Returns NULL on exit status 0, else why it failed (palloc'd).
 */
static char *
ua_command_exec(const char *cmd, const char *moment, int timeout_ms)
{
	int			pipefd[2];
	pid_t		pid;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	StringInfoData out;
	volatile bool eof = false;
	volatile bool exited = false;
	volatile bool timed_out = false;
	volatile int status = 0;
	MemoryContext cxt = CurrentMemoryContext;

	if (pipe(pipefd) != 0)
		return psprintf("could not create a pipe: %m");
	fflush(NULL);
	pid = fork();
	if (pid < 0)
	{
		close(pipefd[0]);
		close(pipefd[1]);
		return psprintf("could not fork: %m");
	}
	if (pid == 0)
	{
		/* The child: nothing of the server's state may be touched here. */
		int			devnull = open("/dev/null", O_RDONLY);

		(void) setsid();
		if (devnull >= 0)
			(void) dup2(devnull, STDIN_FILENO);
		(void) dup2(pipefd[1], STDOUT_FILENO);
		(void) dup2(pipefd[1], STDERR_FILENO);
		close(pipefd[0]);
		close(pipefd[1]);
		(void) signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", cmd, (char *) NULL);
		_exit(127);
	}
	close(pipefd[1]);
	(void) fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
	initStringInfo(&out);

	PG_TRY();
	{
		while (!exited)
		{
			long		left = ua_ms_until(deadline);
			int			rc;

			if (!eof)
			{
				char		buf[1024];
				ssize_t		n;

				while ((n = read(pipefd[0], buf, sizeof(buf))) > 0)
					appendBinaryStringInfo(&out, buf, (int) n);
				if (n == 0)
					eof = true;
				ua_command_log_output(&out, moment, false);
			}
			if (eof)
			{
				int			st;

				if (waitpid(pid, &st, WNOHANG) == pid)
				{
					status = st;
					exited = true;
					break;
				}
			}
			if (left <= 0)
			{
				timed_out = true;
				break;
			}
			rc = WaitLatchOrSocket(MyLatch,
								   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH |
								   (eof ? 0 : WL_SOCKET_READABLE),
								   eof ? -1 : pipefd[0],
								   eof ? Min(left, 10) : left,
								   ua_wait_event(UA_WE_CUTOVER));
			if (rc & WL_LATCH_SET)
				ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		/* Interrupted: the command must not outlive its wait. */
		if (!exited)
			(void) ua_command_kill(pid);
		close(pipefd[0]);
		PG_RE_THROW();
	}
	PG_END_TRY();

	MemoryContextSwitchTo(cxt);
	if (timed_out)
		status = ua_command_kill(pid);
	close(pipefd[0]);
	ua_command_log_output(&out, moment, true);
	pfree(out.data);

	if (timed_out)
		return psprintf("timed out after %d ms (upgrade_assist.cutover_command_timeout) and was killed",
						timeout_ms);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return NULL;
	if (WIFEXITED(status))
		return psprintf("exited with status %d", WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return psprintf("was terminated by signal %d", WTERMSIG(status));
	return psprintf("ended with status %d", status);
}

/*
 * ua_cutover_command_run
 *		See cutover_command.h.
 */
bool
ua_cutover_command_run(const char *moment, int64 attempt, const char *peer,
					   char **failure)
{
	bool		own = !IsTransactionState();
	MemoryContext cxt = CurrentMemoryContext;
	char	   *cmd;
	char	   *why;
	TimestampTz start;

	*failure = NULL;
	if (ua_cutover_command == NULL || ua_cutover_command[0] == '\0')
		return true;
	if (own)
		StartTransactionCommand();
	cmd = MemoryContextStrdup(cxt, ua_command_expand(ua_cutover_command, moment,
													 attempt, peer));
	if (own)
		CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);

	ereport(LOG,
			(errmsg("upgrade_assist running cutover_command for moment \"%s\" of attempt " INT64_FORMAT,
					moment, attempt)));
	start = GetCurrentTimestamp();
	why = ua_command_exec(cmd, moment, ua_cutover_command_timeout_ms);
	pfree(cmd);
	if (why == NULL)
	{
		ereport(LOG,
				(errmsg("upgrade_assist cutover_command for moment \"%s\" succeeded in %.0f ms",
						moment, ua_ms_since(start))));
		return true;
	}
	*failure = psprintf("cutover_command at moment \"%s\" %s", moment, why);
	ereport(LOG,
			(errmsg("upgrade_assist %s", *failure)));
	return false;
}

/*
 * ua_cutover_command_configured
 *		See cutover_command.h.
 */
bool
ua_cutover_command_configured(void)
{
	return ua_cutover_command != NULL && ua_cutover_command[0] != '\0';
}

/* ---------------------------------------------------------------------------
 * The disconnect
 * ---------------------------------------------------------------------------
 */

/* OIDs of the existing roles listed in upgrade_assist.cutover_keep_roles. */
static List *
ua_keep_role_oids(void)
{
	return ua_role_list_oids(ua_cutover_keep_roles);
}

/*
 * ua_role_kept
 *		Is role one of the keep roles or a member of one (directly or not;
 *		being a superuser does not make a role a member)?
 */
static bool
ua_role_kept(Oid role, List *keep)
{
	ListCell   *lc;

	foreach(lc, keep)
	{
		if (is_member_of_role_nosuper(role, lfirst_oid(lc)))
			return true;
	}
	return false;
}

/*
 * ua_cutover_disconnect_clients
 *		See cutover_command.h.
 */
int
ua_cutover_disconnect_clients(int keep_pid, StringInfo detail)
{
	List	   *exempt = ua_fence_exempt_role_oids();
	List	   *keep = ua_keep_role_oids();
	int			ended = 0;
	int			kept = 0;
	uint64		n;

	n = ua_spi_exec("SELECT pid::bigint, usesysid::bigint FROM pg_catalog.pg_stat_activity"
					" WHERE backend_type = 'client backend' AND usesysid IS NOT NULL",
					0, NULL, true);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		int			pid = (int) ua_spi_getint8(i, 1, &isnull);
		Oid			role = (Oid) ua_spi_getint8(i, 2, &isnull);

		if (pid == MyProcPid || pid == keep_pid)
			continue;
		if (list_member_oid(exempt, role) || ua_role_kept(role, keep))
		{
			kept++;
			continue;
		}
		/* Still a backend of this cluster (not a recycled pid)? */
		if (BackendPidGetProc(pid) == NULL)
			continue;
		if (kill(pid, SIGTERM) == 0)
			ended++;
		else if (errno != ESRCH)
			ereport(WARNING,
					(errmsg("could not send SIGTERM to process %d: %m", pid)));
	}
	appendStringInfo(detail, "ended %d client session(s), kept %d (fence_exempt_roles, cutover_keep_roles)",
					 ended, kept);
	return ended;
}

/* ---------------------------------------------------------------------------
 * The heartbeat follows the cutover
 * ---------------------------------------------------------------------------
 */

/*
 * ua_cutover_heartbeat_follow
 *		After a successful cutover toward run->peer: move this database's
 *		heartbeat toward that peer to the peer (see the file header), noting
 *		what happened, or why not, in notes.  The peer's server is
 *		upgrade_assist.cutover_heartbeat_server when set, else the one
 *		upgrade_assist server there whose port option is this cluster's port
 *		(5432 when the option is absent) and whose dbname option is this
 *		database (a server without dbname does not match); host is not
 *		compared, a cluster has many names.  Throws the peer's errors; the
 *		caller notes them.  Needs no transaction (opens its own ones).
 */
void
ua_cutover_heartbeat_follow(UaRun *run, StringInfo notes)
{
	bool		found = false;
	Oid			owner = InvalidOid;
	int64		every_ms = 0;
	char	   *owner_name;
	char	   *dbname;
	const char *port;
	const char *vals[3];
	char		every[32];
	char	   *server;
	PGresult   *res;

	LWLockAcquire(ua_hb_shared->lock, LW_SHARED);
	for (int i = 0; i < UA_HB_MAX_DATABASES; i++)
	{
		UaHeartbeat *slot = &ua_hb_shared->dbs[i];

		if (slot->dboid == MyDatabaseId && slot->configured && slot->enabled &&
			strcmp(slot->peer, run->peer) == 0)
		{
			found = true;
			owner = slot->owner;
			every_ms = slot->every_ms;
		}
	}
	LWLockRelease(ua_hb_shared->lock);
	if (!found)
		return;

	StartTransactionCommand();
	owner_name = MemoryContextStrdup(run->cxt, GetUserNameFromId(owner, false));
	dbname = MemoryContextStrdup(run->cxt, get_database_name(MyDatabaseId));
	port = MemoryContextStrdup(run->cxt, GetConfigOption("port", false, false));
	CommitTransactionCommand();
	MemoryContextSwitchTo(run->cxt);

	/* The peer's server that names this cluster. */
	vals[0] = port;
	vals[1] = dbname;
	vals[2] = ua_cutover_heartbeat_server ? ua_cutover_heartbeat_server : "";
	res = ua_cutover_remote(run,
							"SELECT s.srvname::text FROM pg_catalog.pg_foreign_server s"
							"  JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw"
							" WHERE w.fdwname = 'upgrade_assist'"
							"   AND CASE WHEN $3 <> '' THEN s.srvname = $3 ELSE"
							"       coalesce((SELECT option_value FROM pg_catalog.pg_options_to_table(s.srvoptions)"
							"                  WHERE option_name = 'port'), '5432') = $1"
							"   AND (SELECT option_value FROM pg_catalog.pg_options_to_table(s.srvoptions)"
							"         WHERE option_name = 'dbname') = $2 END"
							" ORDER BY 1",
							3, vals);
	if (PQntuples(res) != 1)
	{
		appendStringInfo(notes, "%sheartbeat NOT moved: %s", notes->len ? "; " : "",
						 vals[2][0] ?
						 psprintf("the peer has no upgrade_assist server \"%s\" (upgrade_assist.cutover_heartbeat_server)", vals[2]) :
						 psprintf("%d upgrade_assist servers on the peer name port %s and dbname %s, not one; "
								  "set upgrade_assist.cutover_heartbeat_server", PQntuples(res), port, dbname));
		PQclear(res);
		return;
	}
	server = pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);

	/* Started there as the role that ran it here, then stopped here. */
	snprintf(every, sizeof(every), INT64_FORMAT " ms", every_ms);
	vals[0] = server;
	vals[1] = every;
	PQclear(ua_cutover_remote(run, psprintf("SET ROLE %s", quote_identifier(owner_name)), 0, NULL));
	PG_TRY();
	{
		PQclear(ua_cutover_remote(run, "SELECT upgrade_assist.heartbeat_start($1, $2::interval)",
								  2, vals));
	}
	PG_FINALLY();
	{
		PQclear(ua_cutover_remote(run, "RESET ROLE", 0, NULL));
	}
	PG_END_TRY();
	ua_xact_begin(NULL);
	ua_spi_exec("SELECT upgrade_assist.heartbeat_stop()", 0, NULL, false);
	ua_xact_end(run->cxt);
	appendStringInfo(notes, "%sheartbeat moved to the peer (server %s there, every %s, as role %s), stopped here",
					 notes->len ? "; " : "", server, every, owner_name);
}
