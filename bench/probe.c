/*-------------------------------------------------------------------------
 *
 * probe.c
 *		Bare replication round trip, measured from a plain libpq client.
 *
 * This is the baseline bench/round_trip compares upgrade_assist.round_trip()
 * with: the fastest a client can learn that a commit on the old cluster has
 * arrived on the new one.  It keeps one connection to each cluster and, for
 * each sample, inserts a row into public.probe on the old side (autocommit,
 * so the INSERT returns once the commit is durable), then polls the new side
 * with a prepared "SELECT 1 FROM public.probe WHERE id = $1" in a tight loop
 * until the row is there.  The time from just before the INSERT to the poll
 * that sees the row (CLOCK_MONOTONIC) is printed in microseconds, one line
 * per sample, on stdout.  Diagnostics go to stderr.
 *
 * Usage: probe [-v] [-w warmup] [-t timeout_ms] OLD_CONNINFO NEW_CONNINFO COUNT
 *
 * public.probe (id bigint PRIMARY KEY) must exist on both sides and be
 * replicated from old to new.  Ids continue from the largest one on the old
 * side, so successive runs may share the table, but not run concurrently.
 * The first "warmup" samples (default 3) are taken but not printed.  Exit
 * status is 0 when every sample was seen, 1 on any error or timeout.  With
 * -v each line also gives the microseconds the INSERT took and the number of
 * polls, to tell commit time from replication time.
 *
 * IDENTIFICATION
 *	  bench/probe.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

static PGconn *old_conn;
static PGconn *new_conn;

/* Breakdown of the last sample, for -v. */
static int64_t last_insert_us;
static uint64_t last_polls;

/*
 * probe_fail: print a message and the libpq error of conn (may be NULL),
 * close both connections and exit with status 1.  Never returns.
 */
static void
probe_fail(PGconn *conn, const char *fmt, ...)
{
	va_list		ap;

	fputs("probe: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (conn != NULL)
		fprintf(stderr, ": %s", PQerrorMessage(conn));
	fputc('\n', stderr);
	if (old_conn)
		PQfinish(old_conn);
	if (new_conn)
		PQfinish(new_conn);
	exit(1);
}

/* probe_now_us: CLOCK_MONOTONIC in microseconds. */
static int64_t
probe_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * probe_connect: open a connection from a conninfo string, tagged with an
 * application_name, or exit.  The conninfo itself is never printed: it may
 * carry a password.
 */
static PGconn *
probe_connect(const char *conninfo, const char *side)
{
	const char *keys[] = {"dbname", "application_name", NULL};
	const char *values[] = {conninfo, "upgrade_assist_probe", NULL};
	PGconn	   *conn;

	/* expand_dbname = 1: the dbname value is parsed as a conninfo string */
	conn = PQconnectdbParams(keys, values, 1);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		probe_fail(conn, "could not connect to the %s cluster", side);
	return conn;
}

/*
 * probe_check: consume a result that must have the given status, or exit.
 */
static void
probe_check(PGconn *conn, PGresult *res, ExecStatusType want, const char *what)
{
	if (PQresultStatus(res) != want)
	{
		PQclear(res);
		probe_fail(conn, "%s failed", what);
	}
	PQclear(res);
}

/*
 * probe_once: one sample with row id "id".  Returns the microseconds from
 * just before the INSERT on the old side to the poll on the new side that
 * saw the row; exits on error or after timeout_ms without seeing it.
 */
static int64_t
probe_once(int64_t id, int64_t timeout_ms)
{
	char		idtext[32];
	const char *params[1] = {idtext};
	int64_t		start,
				now;
	uint64_t	polls = 0;

	snprintf(idtext, sizeof(idtext), "%" PRId64, id);

	start = probe_now_us();
	probe_check(old_conn, PQexecPrepared(old_conn, "ins", 1, params, NULL, NULL, 0),
				PGRES_COMMAND_OK, "INSERT on the old cluster");
	last_insert_us = probe_now_us() - start;

	for (;;)
	{
		PGresult   *res = PQexecPrepared(new_conn, "poll", 1, params, NULL, NULL, 0);
		int			found;

		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			PQclear(res);
			probe_fail(new_conn, "poll on the new cluster failed");
		}
		found = PQntuples(res) > 0;
		PQclear(res);
		now = probe_now_us();
		polls++;
		if (found)
		{
			last_polls = polls;
			return now - start;
		}
		if (now - start > timeout_ms * 1000)
			probe_fail(NULL, "row %" PRId64 " not on the new cluster after %" PRId64
					   " ms (%" PRIu64 " polls)", id, timeout_ms, polls);
	}
}

int
main(int argc, char **argv)
{
	int			verbose = 0;
	long		warmup = 3;
	long		timeout_ms = 30000;
	long		count;
	int64_t		next_id;
	PGresult   *res;
	int			c;

	while ((c = getopt(argc, argv, "vw:t:")) != -1)
	{
		switch (c)
		{
			case 'v':
				verbose = 1;
				break;
			case 'w':
				warmup = strtol(optarg, NULL, 10);
				break;
			case 't':
				timeout_ms = strtol(optarg, NULL, 10);
				break;
			default:
				goto usage;
		}
	}
	if (argc - optind != 3)
		goto usage;
	count = strtol(argv[optind + 2], NULL, 10);
	if (count <= 0 || warmup < 0 || timeout_ms <= 0)
		goto usage;

	old_conn = probe_connect(argv[optind], "old");
	new_conn = probe_connect(argv[optind + 1], "new");

	probe_check(old_conn, PQprepare(old_conn, "ins",
									"INSERT INTO public.probe (id) VALUES ($1::bigint)",
									1, NULL),
				PGRES_COMMAND_OK, "PREPARE on the old cluster");
	probe_check(new_conn, PQprepare(new_conn, "poll",
									"SELECT 1 FROM public.probe WHERE id = $1::bigint",
									1, NULL),
				PGRES_COMMAND_OK, "PREPARE on the new cluster");

	/* Continue after the rows of earlier runs. */
	res = PQexec(old_conn, "SELECT coalesce(max(id), 0) FROM public.probe");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		PQclear(res);
		probe_fail(old_conn, "reading the last probe id failed");
	}
	next_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10) + 1;
	PQclear(res);

	for (long i = 0; i < warmup + count; i++)
	{
		int64_t		us = probe_once(next_id++, timeout_ms);

		if (i < warmup)
			continue;
		if (verbose)
			printf("%" PRId64 " %" PRId64 " %" PRIu64 "\n", us, last_insert_us, last_polls);
		else
			printf("%" PRId64 "\n", us);
	}

	PQfinish(old_conn);
	PQfinish(new_conn);
	if (fflush(stdout) != 0)
	{
		fprintf(stderr, "probe: could not write the results: %s\n", strerror(errno));
		return 1;
	}
	return 0;

usage:
	fprintf(stderr,
			"usage: %s [-v] [-w warmup] [-t timeout_ms] OLD_CONNINFO NEW_CONNINFO COUNT\n",
			argv[0]);
	return 2;
}
