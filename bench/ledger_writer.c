/*-------------------------------------------------------------------------
 *
 * ledger_writer.c
 *		One writer of bench/cutover_clients: commits one INSERT into
 *		public.ledger per transaction, as a pooled application connection
 *		does, and logs the outcome of each.
 *
 * It keeps its connection while it works and connects again after an
 * error (a pool's behaviour): a multi-host string with
 * target_session_attrs=read-write then finds the primary by itself, and a
 * connection to PgBouncer is simply made again.  With two connection
 * strings (the "driver" kind) it switches to the other one after each
 * error, as an application told nothing but "the other side" would.
 *
 * Usage: ledger_writer [-r RATE] [-s MAX_SECONDS] KIND TAG STOPFILE CONNINFO [CONNINFO2]
 *
 * One line per outcome on stdout, the time first (CLOCK_REALTIME, seconds
 * with microseconds, comparable with the servers' timestamps):
 *		EPOCH ack SIDE		the commit was acknowledged; SIDE is the port of
 *							the server that committed it
 *		EPOCH fail WHY		an error (connection, fence, drain), first line
 * It stops when STOPFILE exists, after MAX_SECONDS (default 900), or on
 * SIGTERM.  RATE (default 200) bounds its transactions per second, so that
 * the writers do not take the machine from the servers they measure; a gap
 * between commits is therefore known to 1/RATE s.  Every connection gets
 * connect_timeout=10 unless its string says otherwise; a failed connection
 * is retried after 5 ms.  Exit status 0, or 1 on bad usage.
 *
 * IDENTIFICATION
 *	  bench/ledger_writer.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

static volatile sig_atomic_t stop_requested = 0;

static void
on_term(int sig)
{
	(void) sig;
	stop_requested = 1;
}

static double
now_real(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
sleep_until(double mono)
{
	struct timespec ts;

	ts.tv_sec = (time_t) mono;
	ts.tv_nsec = (long) ((mono - ts.tv_sec) * 1e9);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR &&
		   !stop_requested)
		;
}

/* The first line of a libpq message, without its newline. */
static void
log_fail(const char *msg)
{
	size_t		len = strcspn(msg, "\n");

	if (len > 160)
		len = 160;
	printf("%.6f fail %.*s\n", now_real(), (int) len, msg);
}

int
main(int argc, char **argv)
{
	double		rate = 200;
	double		max_seconds = 900;
	const char *kind;
	const char *tag;
	const char *stopfile;
	const char *conninfo[2];
	int			nconn;
	int			which = 0;
	PGconn	   *conn = NULL;
	const char *params[2];
	char		tagbuf[256];
	long		n = 0;
	double		start,
				next;
	int			c;

	while ((c = getopt(argc, argv, "r:s:")) != -1)
	{
		if (c == 'r')
			rate = atof(optarg);
		else if (c == 's')
			max_seconds = atof(optarg);
		else
			return 1;
	}
	if (argc - optind < 4 || argc - optind > 5 || rate <= 0 || max_seconds <= 0)
	{
		fprintf(stderr, "usage: ledger_writer [-r RATE] [-s MAX_SECONDS] KIND TAG STOPFILE CONNINFO [CONNINFO2]\n");
		return 1;
	}
	kind = argv[optind];
	tag = argv[optind + 1];
	stopfile = argv[optind + 2];
	conninfo[0] = argv[optind + 3];
	conninfo[1] = argc - optind == 5 ? argv[optind + 4] : NULL;
	nconn = conninfo[1] ? 2 : 1;

	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	start = next = now_mono();
	params[0] = kind;
	params[1] = tagbuf;
	while (!stop_requested && now_mono() - start < max_seconds &&
		   access(stopfile, F_OK) != 0)
	{
		PGresult   *res;

		next += 1.0 / rate;
		if (conn == NULL)
		{
			char		full[2048];

			if (strstr(conninfo[which], "connect_timeout") == NULL)
				snprintf(full, sizeof(full), "%s connect_timeout=10", conninfo[which]);
			else
				snprintf(full, sizeof(full), "%s", conninfo[which]);
			conn = PQconnectdb(full);
			if (PQstatus(conn) != CONNECTION_OK)
			{
				log_fail(PQerrorMessage(conn));
				PQfinish(conn);
				conn = NULL;
				which = (which + 1) % nconn;
				next = now_mono() + 0.005;
				sleep_until(next);
				continue;
			}
		}
		snprintf(tagbuf, sizeof(tagbuf), "%s.%s.%ld", kind, tag, ++n);
		res = PQexecParams(conn,
						   "INSERT INTO public.ledger (kind, tag, side)"
						   " VALUES ($1, $2, current_setting('port')) RETURNING side",
						   2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
			printf("%.6f ack %s\n", now_real(), PQgetvalue(res, 0, 0));
		else
		{
			log_fail(PQerrorMessage(conn));
			PQfinish(conn);
			conn = NULL;
			which = (which + 1) % nconn;
		}
		PQclear(res);
		if (next < now_mono())
			next = now_mono();
		sleep_until(next);
	}
	if (conn)
		PQfinish(conn);
	return 0;
}
