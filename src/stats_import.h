/*-------------------------------------------------------------------------
 *
 * stats_import.h
 *	  The statistics export and import: export_stats(), reading the
 *	  statistics and writing them into the catalogs (stats_import.c), and
 *	  import_stats() with its worker (stats_import_worker.c).
 *
 * IDENTIFICATION
 *	  src/stats_import.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UA_STATS_IMPORT_H
#define UA_STATS_IMPORT_H

#include "postgres.h"

#include "lib/stringinfo.h"

/* Longest the worker waits for a table's lock before it reports it failed. */
#define UA_STATS_IMPORT_LOCK_TIMEOUT "10s"
/* Largest batch (tables per transaction) import_stats() takes. */
#define UA_STATS_IMPORT_MAX_BATCH 10000
/* Most import workers one import_stats() call takes (jobs). */
#define UA_STATS_IMPORT_MAX_JOBS 8

/* Columns of the attribute rows, 0-based. */
enum
{
	UA_A_SCHEMA, UA_A_REL, UA_A_ATT, UA_A_INHERITED, UA_A_TYPE, UA_A_COLL,
	UA_A_TARGET, UA_A_NULLFRAC, UA_A_WIDTH, UA_A_NDISTINCT,
	UA_A_MCV, UA_A_MCF, UA_A_HIST, UA_A_CORR,
	UA_A_MCE, UA_A_MCEF, UA_A_DECHIST,
	UA_A_RLHIST, UA_A_REMPTY, UA_A_RBHIST,
	UA_A_NCOLS
};
/* Columns of the relation rows: schema, table, relpages, reltuples, relallvisible. */
#define UA_R_NCOLS 5

/* A result set in text form, from SPI or from a peer. */
typedef struct UaRows
{
	int			nrows;
	int			ncols;
	char	  **v;				/* nrows * ncols, NULL for SQL NULL */
} UaRows;

#define UA_CELL(rows, r, c) ((rows)->v[(r) * (rows)->ncols + (c)])

/* One table's outcome. */
typedef struct UaImportResult
{
	const char *status;
	int			imported;
	int			skipped;
	Oid			relid;			/* the table on this side, if found */
	StringInfoData detail;
} UaImportResult;

/* stats_import.c */
extern void ua_rows_from_spi(const char *sql, int nargs, Oid *types,
							 Datum *values, int ncols, UaRows *rows,
							 MemoryContext cxt);
extern void ua_import_read_source(const char *source, Oid roleid, UaRows *rel,
								  UaRows *att, MemoryContext cxt);
extern void ua_import_table(UaRows *rel, int rr, UaRows *att, int first,
							int last, UaImportResult *res);

/* stats_import_worker.c */
PGDLLEXPORT void ua_stats_import_main(Datum main_arg);

#endif							/* UA_STATS_IMPORT_H */
