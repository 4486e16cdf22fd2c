/*-------------------------------------------------------------------------
 *
 * remote.c
 *	  Peers: the foreign-data wrapper's option validator and libpq
 *	  connections to the other cluster.
 *
 * A peer is a foreign server of the upgrade_assist wrapper; credentials come
 * from the caller's user mapping.  Connections are cached per backend, keyed
 * by (server, user), and thrown away when the server or a user mapping
 * changes, when they break, or when a wait on them is interrupted.
 *
 * Every wait (connecting and each query) goes through WaitLatchOrSocket, so
 * that pg_cancel_backend and pg_terminate_backend act at once even while the
 * peer hangs or is unreachable.  Errors carry libpq's message and never the
 * conninfo: the password cannot leak through them.
 *
 * The remote session is pinned on connect: search_path = pg_catalog,
 * DateStyle = ISO, IntervalStyle = postgres, TimeZone = UTC, and the client
 * encoding of the local database.
 *
 * IDENTIFICATION
 *	  src/remote.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/reloptions.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "remote.h"
#include "util.h"

/* libpq keywords a foreign server may set. */
static const char *const ua_server_options[] = {
	"host", "hostaddr", "port", "dbname", "connect_timeout",
	"application_name", "keepalives", "keepalives_idle",
	"keepalives_interval", "keepalives_count", "tcp_user_timeout",
	"sslmode", "sslcompression", "sslcert", "sslkey", "sslrootcert",
	"sslcrl", "sslcrldir", "sslsni", "ssl_min_protocol_version",
	"ssl_max_protocol_version", "gssencmode", "krbsrvname",
	"channel_binding", "require_auth", "target_session_attrs",
	"load_balance_hosts",
	NULL
};

/* libpq keywords a user mapping may set. */
static const char *const ua_mapping_options[] = {
	"user", "password", "sslpassword",
	NULL
};

/* One cached connection. */
typedef struct UaConnKey
{
	Oid			serverid;
	Oid			userid;
} UaConnKey;

typedef struct UaConnEntry
{
	UaConnKey	key;
	PGconn	   *conn;			/* NULL when not connected */
	bool		stale;			/* server or mapping changed since connect */
} UaConnEntry;

static HTAB *ua_conn_cache = NULL;

/* What a lookup of a peer by name resolved to. */
typedef struct UaPeer
{
	const char *name;
	ForeignServer *server;
	UserMapping *mapping;
} UaPeer;

/* GUC variable */
int			ua_connect_timeout = 10;

PG_FUNCTION_INFO_V1(upgrade_assist_fdw_validator);

/*
 * ua_remote_init
 *		The peers' settings; from _PG_init.
 */
void
ua_remote_init(void)
{
	DefineCustomIntVariable("upgrade_assist.connect_timeout",
							"Seconds to wait for a connection to a peer.",
							"A foreign server's own connect_timeout option takes precedence.",
							&ua_connect_timeout,
							10, 1, 3600,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * ua_option_known
 *		Is keyword in the NULL-terminated list, and known to this libpq?
 */
static bool
ua_option_known(const char *keyword, const char *const *list)
{
	PQconninfoOption *defs;
	PQconninfoOption *opt;
	bool		listed = false;
	bool		in_libpq = false;

	for (const char *const *k = list; *k; k++)
		if (strcmp(*k, keyword) == 0)
			listed = true;
	if (!listed)
		return false;

	defs = PQconndefaults();
	if (defs == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	for (opt = defs; opt->keyword; opt++)
		if (strcmp(opt->keyword, keyword) == 0)
			in_libpq = true;
	PQconninfoFree(defs);
	return in_libpq;
}

/*
 * ua_option_list
 *		The valid options of a list, comma separated, for an error hint.
 */
static char *
ua_option_list(const char *const *list)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *const *k = list; *k; k++)
		if (ua_option_known(*k, list))
			appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", *k);
	return buf.data;
}

/*
 * upgrade_assist_fdw_validator
 *		Validate the options of the wrapper, a server or a user mapping.
 *
 * The wrapper itself takes no options; servers take libpq connection
 * keywords except credentials; user mappings take credentials only.
 */
Datum
upgrade_assist_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	const char *const *valid;
	ListCell   *lc;

	if (catalog == ForeignServerRelationId)
		valid = ua_server_options;
	else if (catalog == UserMappingRelationId)
		valid = ua_mapping_options;
	else
		valid = NULL;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (valid == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\"", def->defname),
					 errhint("The foreign-data wrapper upgrade_assist takes no options; set them on the server or the user mapping.")));
		if (!ua_option_known(def->defname, valid))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\"", def->defname),
					 errhint("Valid options in this context are: %s.",
							 ua_option_list(valid))));
		if (strcmp(def->defname, "connect_timeout") == 0)
		{
			char	   *val = defGetString(def);
			char	   *end;
			long		secs = strtol(val, &end, 10);

			if (*val == '\0' || *end != '\0' || secs < 1 || secs > 3600)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("invalid value for option \"connect_timeout\": \"%s\"", val),
						 errhint("Give a whole number of seconds between 1 and 3600.")));
		}
	}
	PG_RETURN_VOID();
}

/*
 * ua_conn_invalidate
 *		Syscache callback: a server or user mapping changed, so every cached
 *		connection is stale and is replaced at its next use.
 */
static void
ua_conn_invalidate(Datum arg pg_attribute_unused(), int cacheid pg_attribute_unused(),
				   uint32 hashvalue pg_attribute_unused())
{
	HASH_SEQ_STATUS status;
	UaConnEntry *entry;

	if (ua_conn_cache == NULL)
		return;
	hash_seq_init(&status, ua_conn_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->stale = true;
}

static void
ua_conn_cache_init(void)
{
	HASHCTL		ctl;

	if (ua_conn_cache != NULL)
		return;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(UaConnKey);
	ctl.entrysize = sizeof(UaConnEntry);
	ua_conn_cache = hash_create("upgrade_assist peer connections", 8, &ctl,
								HASH_ELEM | HASH_BLOBS);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, ua_conn_invalidate, (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, ua_conn_invalidate, (Datum) 0);
}

/*
 * ua_peer_lookup
 *		Resolve a peer name to its server and the caller's user mapping.
 *
 * Throws 22004 for NULL, 42704 for an unknown server or missing mapping,
 * 42809 for a server of another wrapper, 42501 without USAGE on the server,
 * and 2F003 when a non-superuser's mapping carries no password.
 */
static UaPeer
ua_peer_lookup(const char *name)
{
	UaPeer		peer;
	ForeignDataWrapper *fdw;
	AclResult	aclresult;
	ListCell   *lc;
	bool		has_password = false;

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("peer must not be null")));

	peer.name = name;
	peer.server = GetForeignServerByName(name, false);
	fdw = GetForeignDataWrapper(peer.server->fdwid);
	if (strcmp(fdw->fdwname, UA_FDW_NAME) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" is not a peer", name),
				 errdetail("It uses the foreign-data wrapper \"%s\", not \"%s\".",
						   fdw->fdwname, UA_FDW_NAME)));

	aclresult = ua_foreign_server_aclcheck(peer.server->serverid, GetUserId(), ACL_USAGE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FOREIGN_SERVER, name);

	peer.mapping = GetUserMapping(GetUserId(), peer.server->serverid);

	/* The rule of dblink and postgres_fdw: non-superusers bring a password. */
	foreach(lc, peer.mapping->options)
		if (strcmp(((DefElem *) lfirst(lc))->defname, "password") == 0)
			has_password = true;
	if (!superuser() && !has_password)
		ereport(ERROR,
				(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
				 errmsg("password is required"),
				 errdetail("Non-superusers must provide a password in the user mapping of peer \"%s\".",
						   name)));
	return peer;
}

/*
 * ua_wait_socket
 *		Wait until the socket is ready for io (WL_SOCKET_READABLE or
 *		WL_SOCKET_WRITEABLE), the deadline passes, or an interrupt arrives.
 *
 * Returns true when the socket is ready, false at the deadline.  Interrupts
 * are serviced here and may throw; the caller must then drop the connection.
 */
static bool
ua_wait_socket(pgsocket sock, int io, TimestampTz deadline)
{
	for (;;)
	{
		long		timeout = ua_ms_until(deadline);
		int			rc;

		if (timeout <= 0)
			return false;
		/* Wake up now and then; the kernel's timeout is an int. */
		if (timeout > 60000)
			timeout = 60000;
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | io,
							   sock, timeout, ua_wait_event(UA_WE_PEER));
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (rc & io)
			return true;
	}
}

/*
 * ua_connect_start
 *		Begin a non-blocking connection to the peer; sets *connect_deadline
 *		to the earlier of deadline (0 = none) and the connect timeout.
 */
static PGconn *
ua_connect_start(const UaPeer *peer, TimestampTz deadline,
				 TimestampTz *connect_deadline)
{
	/* Every option of the server and the mapping, and our own five. */
	int			max = list_length(peer->server->options) +
		list_length(peer->mapping->options) + 6;
	const char **keywords = palloc(sizeof(char *) * max);
	const char **values = palloc(sizeof(char *) * max);
	int			n = 0;
	int			connect_timeout = ua_connect_timeout;
	bool		has_appname = false;
	ListCell   *lc;
	PGconn	   *conn;

	foreach(lc, peer->server->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "connect_timeout") == 0)
			connect_timeout = atoi(defGetString(def));
		if (strcmp(def->defname, "application_name") == 0)
			has_appname = true;
		keywords[n] = def->defname;
		values[n++] = defGetString(def);
	}
	foreach(lc, peer->mapping->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		keywords[n] = def->defname;
		values[n++] = defGetString(def);
	}
	if (!has_appname)
	{
		keywords[n] = "application_name";
		values[n++] = "upgrade_assist";
	}
	keywords[n] = "client_encoding";
	values[n++] = GetDatabaseEncodingName();
	keywords[n] = "options";
	values[n++] = "-c search_path=pg_catalog -c datestyle=ISO "
		"-c intervalstyle=postgres -c timezone=UTC -c extra_float_digits=3";
	/* Never read a password file of the server's OS user. */
	keywords[n] = "passfile";
	values[n++] = "/dev/null";
	keywords[n] = NULL;
	values[n] = NULL;

	*connect_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													connect_timeout * 1000);
	if (deadline > 0 && deadline < *connect_deadline)
		*connect_deadline = deadline;

	conn = PQconnectStartParams(keywords, values, false);
	pfree(keywords);
	pfree(values);
	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while connecting to peer \"%s\"", peer->name)));
	return conn;
}

/*
 * ua_connect
 *		Open a new connection to the peer, waiting at most until deadline or
 *		the connect timeout, whichever comes first.
 *
 * Returns a connection in CONNECTION_OK state (malloc'd by libpq: the caller
 * owns it).  Throws 08001 on failure and 2F003 when a non-superuser
 * connected without using a password.
 */
static PGconn *
ua_connect_wait(PGconn *conn, const UaPeer *peer, TimestampTz started,
				TimestampTz connect_deadline)
{
	PG_TRY();
	{
		PostgresPollingStatusType st = PGRES_POLLING_WRITING;

		while (PQstatus(conn) != CONNECTION_BAD &&
			   st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED)
		{
			int			io = (st == PGRES_POLLING_READING) ?
				WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;

			if (!ua_wait_socket(PQsocket(conn), io, connect_deadline))
				ereport(ERROR,
						(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
						 errmsg("could not connect to peer \"%s\"", peer->name),
						 errdetail("Timed out after %ld ms.",
								   (long) ((GetCurrentTimestamp() - started) / 1000))));
			st = PQconnectPoll(conn);
		}
		ua_peer_connect_finish(conn, peer->name);
	}
	PG_CATCH();
	{
		PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();

	return conn;
}

/*
 * ua_peer_connect_finish
 *		Check a connection whose polling ended: throws 08001 with libpq's
 *		message unless it is established, and 2F003 when a non-superuser got
 *		in without the peer asking for the password.  Does not close conn.
 */
void
ua_peer_connect_finish(PGconn *conn, const char *peer)
{
	if (PQstatus(conn) != CONNECTION_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to peer \"%s\"", peer),
				 errdetail_internal("%s", pchomp(PQerrorMessage(conn)))));
	if (!superuser() && !PQconnectionUsedPassword(conn))
		ereport(ERROR,
				(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
				 errmsg("password is required"),
				 errdetail("Peer \"%s\" did not ask for the password of the user mapping.",
						   peer),
				 errhint("A non-superuser may only connect to a peer that authenticates it by password.")));
}

/*
 * ua_peer_check
 *		Throw what connecting to the named peer would throw before any
 *		network traffic: unknown or foreign server, no mapping, no USAGE,
 *		no password for a non-superuser.
 */
void
ua_peer_check(const char *name)
{
	(void) ua_peer_lookup(name);
}

/*
 * ua_peer_connect_start
 *		Resolve the peer and begin a non-blocking connection to it, for a
 *		caller that runs its own event loop (the heartbeat worker): poll it
 *		with PQconnectPoll, give up at *connect_deadline, then call
 *		ua_peer_connect_finish.  The caller owns the connection.  Throws the
 *		errors of a peer lookup.
 */
PGconn *
ua_peer_connect_start(const char *name, TimestampTz *connect_deadline)
{
	UaPeer		peer = ua_peer_lookup(name);

	return ua_connect_start(&peer, 0, connect_deadline);
}

static PGconn *
ua_connect(const UaPeer *peer, TimestampTz deadline)
{
	TimestampTz started = GetCurrentTimestamp();
	TimestampTz connect_deadline;
	PGconn	   *conn = ua_connect_start(peer, deadline, &connect_deadline);

	return ua_connect_wait(conn, peer, started, connect_deadline);
}

/*
 * ua_conn_entry
 *		The cache entry of the caller's connection to a peer, created empty
 *		when missing.  Stale or broken connections are closed here.
 */
static UaConnEntry *
ua_conn_entry(const UaPeer *peer)
{
	UaConnKey	key;
	UaConnEntry *entry;
	bool		found;

	ua_conn_cache_init();
	memset(&key, 0, sizeof(key));
	key.serverid = peer->server->serverid;
	key.userid = GetUserId();
	entry = hash_search(ua_conn_cache, &key, HASH_ENTER, &found);
	if (!found)
	{
		entry->conn = NULL;
		entry->stale = false;
	}
	if (entry->conn != NULL &&
		(entry->stale || PQstatus(entry->conn) != CONNECTION_OK ||
		 PQtransactionStatus(entry->conn) != PQTRANS_IDLE))
	{
		PQfinish(entry->conn);
		entry->conn = NULL;
	}
	return entry;
}

/*
 * ua_peer_connect
 *		The caller's open connection to the named peer, connecting if needed.
 *
 * deadline (0 = none besides the connect timeout) bounds the connect.  The
 * connection stays owned by the cache: do not PQfinish it.
 */
PGconn *
ua_peer_connect(const char *name, TimestampTz deadline)
{
	UaPeer		peer = ua_peer_lookup(name);
	UaConnEntry *entry = ua_conn_entry(&peer);

	if (entry->conn == NULL)
	{
		entry->conn = ua_connect(&peer, deadline);
		entry->stale = false;
	}
	return entry->conn;
}

/*
 * ua_exec
 *		Run one parameterised statement on conn and wait for its result.
 *
 * Returns the result (caller PQclears it) whatever its status; NULL when the
 * connection failed.  Throws on deadline (57014) or interrupt; the caller
 * must then drop the connection.
 */
static PGresult *
ua_exec(PGconn *conn, const char *peername, const char *sql,
		int nparams, const char *const *values, TimestampTz deadline)
{
	PGresult   *res = NULL;
	PGresult   *next;

	if (!PQsendQueryParams(conn, sql, nparams, NULL, values, NULL, NULL, 0))
		return NULL;
	while (PQisBusy(conn))
	{
		if (deadline > 0 &&
			!ua_wait_socket(PQsocket(conn), WL_SOCKET_READABLE, deadline))
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("peer \"%s\" did not answer in time", peername)));
		else if (deadline == 0)
			(void) ua_wait_socket(PQsocket(conn), WL_SOCKET_READABLE,
								  DT_NOEND);
		if (!PQconsumeInput(conn))
			return NULL;
	}
	/* Collect the one result and drain the end of the command. */
	while ((next = PQgetResult(conn)) != NULL)
	{
		if (res == NULL)
			res = next;
		else
			PQclear(next);
	}
	return res;
}

/*
 * ua_peer_query
 *		Run one read-only statement on the named peer; returns its result,
 *		which the caller must PQclear.
 *
 * A cached connection found broken is replaced once (the statement must be
 * safe to repeat).  Throws 08006 when the connection fails, the peer's own
 * SQLSTATE when the statement fails there, 57014 at the deadline.
 */
PGresult *
ua_peer_query(const char *name, const char *sql,
			  int nparams, const char *const *values, TimestampTz deadline)
{
	return ua_peer_query_ext(name, sql, nparams, values, deadline, true);
}

/*
 * ua_peer_query_ext
 *		ua_peer_query, with the retry on a broken cached connection only when
 *		may_retry.  Without it, a statement that must not run twice (one
 *		whose effect cannot be checked from its result alone) is sent at
 *		most once: a connection lost after sending throws 08006, and the
 *		caller cannot tell whether the peer committed it.
 */
PGresult *
ua_peer_query_ext(const char *name, const char *sql,
				  int nparams, const char *const *values, TimestampTz deadline,
				  bool may_retry)
{
	UaPeer		peer = ua_peer_lookup(name);
	UaConnEntry *entry = ua_conn_entry(&peer);
	PGresult   *volatile res = NULL;

	for (int attempt = 0; attempt < (may_retry ? 2 : 1); attempt++)
	{
		bool		fresh = (entry->conn == NULL);

		if (fresh)
		{
			entry->conn = ua_connect(&peer, deadline);
			entry->stale = false;
		}

		PG_TRY();
		{
			res = ua_exec(entry->conn, name, sql, nparams, values, deadline);
		}
		PG_CATCH();
		{
			/* Interrupted mid-statement: the connection is unusable. */
			PQfinish(entry->conn);
			entry->conn = NULL;
			PG_RE_THROW();
		}
		PG_END_TRY();

		if (res != NULL && PQstatus(entry->conn) == CONNECTION_OK)
			break;

		/* The connection broke.  Retry once if it was an old one. */
		if (!fresh && may_retry)
		{
			if (res)
				PQclear(res);
			res = NULL;
			PQfinish(entry->conn);
			entry->conn = NULL;
			continue;
		}
		{
			char	   *msg = pchomp(PQerrorMessage(entry->conn));

			if (res)
				PQclear(res);
			PQfinish(entry->conn);
			entry->conn = NULL;
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("lost connection to peer \"%s\"", name),
					 errdetail_internal("%s", msg)));
		}
	}

	if (PQresultStatus(res) != PGRES_TUPLES_OK &&
		PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		char	   *msg = pchomp(PQresultErrorMessage(res));
		int			code = ERRCODE_CONNECTION_EXCEPTION;

		if (sqlstate && strlen(sqlstate) == 5)
			code = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
								 sqlstate[3], sqlstate[4]);
		PQclear(res);
		ereport(ERROR,
				(errcode(code),
				 errmsg("query on peer \"%s\" failed", name),
				 errdetail_internal("%s", msg)));
	}
	return res;
}

/*
 * ua_peer_forget
 *		Close the caller's cached connection to the named peer, if any, so
 *		that the next query opens a fresh one.
 */
void
ua_peer_forget(const char *name)
{
	UaPeer		peer = ua_peer_lookup(name);
	UaConnEntry *entry = ua_conn_entry(&peer);

	if (entry->conn != NULL)
	{
		PQfinish(entry->conn);
		entry->conn = NULL;
	}
}

/*
 * ua_conninfo_append
 *		Append keyword = 'value' to buf, quoted as libpq's conninfo parser
 *		expects (backslash before every quote and backslash).
 */
static void
ua_conninfo_append(StringInfo buf, const char *keyword, const char *value)
{
	if (buf->len > 0)
		appendStringInfoChar(buf, ' ');
	appendStringInfo(buf, "%s='", keyword);
	for (const char *c = value; *c; c++)
	{
		if (*c == '\\' || *c == '\'')
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, *c);
	}
	appendStringInfoChar(buf, '\'');
}

#if PG_VERSION_NUM < 160000
/*
 * ua_peer_passfile
 *		Write password into this database's password file for peer server
 *		serverid (in the data directory, mode 0600, one line matching any
 *		host, port, database and user, since only one connection string
 *		names the file) and return the file's absolute path.
 */
static char *
ua_peer_passfile(Oid serverid, const char *password)
{
	char		name[MAXPGPATH];
	char		tmp[MAXPGPATH];
	StringInfoData line;

	snprintf(name, sizeof(name), "upgrade_assist.%u.%u.pgpass", MyDatabaseId, serverid);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	initStringInfo(&line);
	appendStringInfoString(&line, "*:*:*:*:");
	for (const char *c = password; *c; c++)
	{
		if (*c == ':' || *c == '\\')
			appendStringInfoChar(&line, '\\');
		appendStringInfoChar(&line, *c);
	}
	appendStringInfoChar(&line, '\n');
	ua_write_file_durably_mode(name, tmp, line.data, line.len, S_IRUSR | S_IWUSR);
	memset(line.data, 0, line.len);
	pfree(line.data);
	return psprintf("%s/%s", DataDir, name);
}
#endif

/*
 * ua_peer_conninfo
 *		A libpq connection string for the named peer built from its server
 *		options and the caller's user mapping, for CREATE SUBSCRIPTION.
 *		Throws the errors of a peer lookup.
 *
 *		Before 16 the subscriber's apply worker logs its whole connection
 *		string at DEBUG1 ("connecting to publisher using connection
 *		string"), so there the mapping's password goes into a password file
 *		(ua_peer_passfile) that the string names with passfile=; a
 *		subscription before 16 is a superuser's, which may use one.  From 16
 *		on a non-superuser's subscription must carry its password in the
 *		string itself (password_required), so it stays there: never log or
 *		show the result.
 */
char *
ua_peer_conninfo(const char *name)
{
	UaPeer		peer = ua_peer_lookup(name);
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, peer.server->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		ua_conninfo_append(&buf, def->defname, defGetString(def));
	}
	foreach(lc, peer.mapping->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

#if PG_VERSION_NUM < 160000
		if (strcmp(def->defname, "password") == 0)
		{
			ua_conninfo_append(&buf, "passfile",
							   ua_peer_passfile(peer.server->serverid, defGetString(def)));
			continue;
		}
#endif
		ua_conninfo_append(&buf, def->defname, defGetString(def));
	}
	return buf.data;
}
