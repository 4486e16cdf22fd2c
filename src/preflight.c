/*-------------------------------------------------------------------------
 *
 * preflight.c
 *	  preflight(): what would make a cutover lose or break data.  Run on the
 *	  primary; with a peer (the subscriber), both sides are compared.
 *
 * The checks are catalog queries that return finding rows (severity,
 * check, object, detail, hint) themselves.  With a peer, this side first
 * sends it, in one statement, every table here with a fingerprint of its
 * columns and CHECK constraints; the peer answers with one JSON document:
 * its forward subscription and its health, the checks of its own side
 * (after the cutover it publishes in the reverse direction), its
 * extensions, and, of the tables asked, those it lacks and those whose
 * fingerprint differs, with their columns.  One statement here then makes
 * every check and comparison.  The work grows with the number of tables,
 * the data sent with the number that differ.  Nothing is written anywhere.
 *
 * No shared state.
 *
 * IDENTIFICATION
 *	  src/preflight.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "cutover.h"
#include "preflight.h"
#include "remote.h"
#include "util.h"

PG_FUNCTION_INFO_V1(preflight);

/* Every check name, as README documents them. */
static const char *const ua_pf_checks[] = {
	"unlogged_table", "no_primary_key", "replica_identity_full", "apply_trigger",
	"setting", "not_published", "marker_not_published", "publish_actions",
	"row_filter", "column_list", "partition_layout", "large_objects",
	"materialized_view", "long_transaction", "forward_subscription",
	"subscription_state", "apply_errors", "missing_table", "missing_column",
	"extra_column", "column_type", "generated_column", "peer_constraint",
	"missing_sequence", "missing_extension", "extension_version", NULL
};

/* Schemas and relations the checks look at: users', not the system's or ours. */
#define UA_PF_USER_REL(c, n) \
	" " n ".nspname NOT IN ('pg_catalog', 'information_schema', 'upgrade_assist')" \
	" AND " n ".nspname !~ '^pg_(toast|temp_|toast_temp_)'" \
	" AND " c ".relpersistence <> 't'" \
	" AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e" \
	"   WHERE e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass" \
	"     AND e.objid = " c ".oid AND e.deptype = 'e')"

/*
 * Checks of one side, run here and on the peer (13 and later), as one
 * statement that returns finding rows: side is an SQL expression of type
 * text naming the side in the details ('here', 'on peer "name"'), role
 * one that is 'publisher' here and 'subscriber' on the peer.
 */
#define UA_PF_SIDE_SQL(side, role) \
	"WITH t AS (" \
	" SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence, c.relreplident" \
	"   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace" \
	"  WHERE c.relkind IN ('r', 'p') AND" UA_PF_USER_REL("c", "n") ")" \
	" SELECT 'error', 'unlogged_table', pg_catalog.format('%I.%I', nspname, relname)," \
	"  pg_catalog.format('unlogged table %s: logical replication does not carry it', " side ")," \
	"  'Make it logged (ALTER TABLE ... SET LOGGED), or copy it by hand after the cutover.'" \
	"  FROM t WHERE relpersistence = 'u'" \
	" UNION ALL" \
	" SELECT 'warning', 'no_primary_key', pg_catalog.format('%I.%I', nspname, relname)," \
	"  pg_catalog.format('no primary key and replica identity %s %s: while published, its UPDATE and DELETE fail on the publisher (inserts still replicate)'," \
	"   CASE relreplident WHEN 'n' THEN 'NOTHING' ELSE 'DEFAULT' END, " side ")," \
	"  'Add a primary key, or ALTER TABLE ... REPLICA IDENTITY USING INDEX (a unique index on NOT NULL columns) or FULL.'" \
	"  FROM t WHERE relkind = 'r' AND relpersistence = 'p'" \
	"   AND (relreplident = 'n' OR (relreplident = 'd' AND NOT EXISTS" \
	"    (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = t.oid AND i.indisprimary)))" \
	" UNION ALL" \
	" SELECT 'warning', 'apply_trigger'," \
	"  pg_catalog.format('%I ON %I.%I', tg.tgname, t.nspname, t.relname)," \
	"  pg_catalog.format('trigger fires on apply (ENABLE %s) %s', CASE tg.tgenabled WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END, " side ")," \
	"  'Whether it changes replicated rows cannot be known: read it, and disable it or make it an ordinary trigger if it must not fire on apply.'" \
	"  FROM pg_catalog.pg_trigger tg JOIN t ON t.oid = tg.tgrelid" \
	" WHERE NOT tg.tgisinternal AND tg.tgenabled IN ('A', 'R')" \
	" UNION ALL" \
	" SELECT 'error', 'setting', 'wal_level'," \
	"  pg_catalog.format('wal_level is %s %s: logical replication needs logical', pg_catalog.current_setting('wal_level'), " side ")," \
	"  'Set wal_level = logical and restart: the cutover''s reverse direction publishes from the new side.'" \
	" WHERE pg_catalog.current_setting('wal_level') <> 'logical'" \
	" UNION ALL" \
	" SELECT 'error', 'setting', 'shared_preload_libraries'," \
	"  pg_catalog.format('upgrade_assist is not preloaded %s', " side ")," \
	"  'Add upgrade_assist to shared_preload_libraries and restart.'" \
	" WHERE NOT ('upgrade_assist' = ANY (pg_catalog.string_to_array(pg_catalog.translate(" \
	"   pg_catalog.current_setting('shared_preload_libraries'), ' \"', ''), ',')))" \
	" UNION ALL" \
	" SELECT 'error', 'setting', 'max_replication_slots'," \
	"  pg_catalog.format('no replication slot free %s (max_replication_slots %s, %s in use): the reverse direction needs one'," \
	"   " side ", pg_catalog.current_setting('max_replication_slots'), s.n)," \
	"  'Raise max_replication_slots (restart).'" \
	"  FROM (SELECT pg_catalog.count(*) AS n FROM pg_catalog.pg_replication_slots) s" \
	" WHERE " role " = 'subscriber' AND s.n >= pg_catalog.current_setting('max_replication_slots')::int" \
	" UNION ALL" \
	" SELECT 'error', 'setting', 'max_wal_senders'," \
	"  pg_catalog.format('no WAL sender free %s (max_wal_senders %s, %s in use): the reverse direction needs one'," \
	"   " side ", pg_catalog.current_setting('max_wal_senders'), s.n)," \
	"  'Raise max_wal_senders (restart).'" \
	"  FROM (SELECT pg_catalog.count(*) AS n FROM pg_catalog.pg_stat_replication) s" \
	" WHERE " role " = 'subscriber' AND s.n >= pg_catalog.current_setting('max_wal_senders')::int" \
	" UNION ALL" \
	" SELECT 'error', 'setting', 'max_logical_replication_workers'," \
	"  pg_catalog.format('max_logical_replication_workers is %s %s, with %s enabled subscriptions: the reverse subscription needs one more'," \
	"   pg_catalog.current_setting('max_logical_replication_workers'), " side ", s.n)," \
	"  'Raise max_logical_replication_workers (restart).'" \
	"  FROM (SELECT pg_catalog.count(*) AS n FROM pg_catalog.pg_subscription WHERE subenabled) s" \
	" WHERE " role " = 'publisher' AND s.n >= pg_catalog.current_setting('max_logical_replication_workers')::int" \
	" UNION ALL" \
	" SELECT 'error', 'setting', 'max_worker_processes'," \
	"  pg_catalog.format('max_worker_processes is %s %s, with %s background workers running: the cutover needs two more'," \
	"   pg_catalog.current_setting('max_worker_processes'), " side ", s.n)," \
	"  'Raise max_worker_processes (restart).'" \
	"  FROM (SELECT pg_catalog.count(*) AS n FROM pg_catalog.pg_stat_activity" \
	"         WHERE backend_type NOT IN ('client backend', 'autovacuum launcher', 'autovacuum worker'," \
	"          'walsender', 'checkpointer', 'background writer', 'walwriter', 'startup', 'archiver'," \
	"          'logger', 'stats collector', 'walsummarizer', 'io worker', 'slotsync worker'," \
	"          'walreceiver', 'standalone backend')) s" \
	" WHERE " role " = 'publisher' AND s.n + 2 > pg_catalog.current_setting('max_worker_processes')::int"

/* Is sequence c (a pg_class row) used by a column: owned, identity, or in a default? */
#define UA_PF_SEQ_USED(c) \
	" (EXISTS (SELECT 1 FROM pg_catalog.pg_depend d" \
	"    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = " c ".oid" \
	"      AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i'))" \
	"  OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d" \
	"    WHERE d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.refobjid = " c ".oid" \
	"      AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass))"

/*
 * A table's fingerprint (oid: an SQL expression, the table's pg_class oid):
 * the md5 of its columns in name order, each with everything the column
 * checks compare (type as format_type prints it, type category, generated,
 * NOT NULL, has a default), and of its CHECK constraints' definitions in
 * order.  JSON keeps the encoding unambiguous.  Computed the same way on
 * both sides (13 and later), so that equal fingerprints mean that no column
 * or CHECK finding can arise: only the tables whose fingerprints differ are
 * compared column by column.
 */
#define UA_PF_TABLE_HASH(oid) \
	"pg_catalog.md5(coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_array(a.attname," \
	"     pg_catalog.format_type(a.atttypid, a.atttypmod), ty.typcategory, a.attgenerated," \
	"     a.attnotnull, a.atthasdef) ORDER BY a.attname)::text" \
	"   FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid" \
	"  WHERE a.attrelid = " oid " AND a.attnum > 0 AND NOT a.attisdropped), '')" \
	" || '|' || coalesce((SELECT pg_catalog.json_agg(x.d ORDER BY x.d COLLATE pg_catalog.\"C\")::text" \
	"   FROM (SELECT pg_catalog.pg_get_constraintdef(co.oid) AS d FROM pg_catalog.pg_constraint co" \
	"          WHERE co.conrelid = " oid " AND co.contype = 'c') x), ''))"

/*
 * What the peer is asked about (with the logical slots of this database),
 * as one JSON document: 't', every table that a publication here can
 * carry (ordinary and partitioned, permanent, user OIDs, not the
 * extension's) as [schema, name, fingerprint, replica identity FULL], and
 * 's', the sequences used by columns here as [schema, name].
 * 16384 is FirstNormalObjectId: publications never carry a table below it.
 */
static const char ua_pf_request_sql[] =
	"SELECT pg_catalog.json_build_object("
	"  't', coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_array(n.nspname, c.relname,"
	"     " UA_PF_TABLE_HASH("c.oid") ", c.relreplident = 'f'))"
	"    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"   WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND c.oid >= 16384"
	"     AND n.nspname <> 'upgrade_assist'), '[]'),"
	"  's', coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_array(n.nspname, c.relname))"
	"    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"   WHERE c.relkind = 'S' AND" UA_PF_USER_REL("c", "n") " AND" UA_PF_SEQ_USED("c") "), '[]'))::text,"
	" (SELECT coalesce(pg_catalog.array_agg(slot_name::text), '{}')::text"
	"    FROM pg_catalog.pg_replication_slots"
	"   WHERE slot_type = 'logical' AND database = pg_catalog.current_database())";

/*
 * The peer's answer, as one JSON document, in one statement (13 and later):
 * $1 the logical slots of this database (the forward subscription is the
 * one that uses one of them), $2 the request (ua_pf_request_sql), $3 the
 * side's name for the details.  Between the head and the tail goes the
 * apply error count (UA_PF_PEER_SUB_ERRORS).  It holds the forward
 * subscription, its tables not ready, the peer's own side checks ('side':
 * finding rows), and about the tables asked: those it does not have
 * ('absent'), those with a usable btree index among the FULL ones ('ix'),
 * those whose fingerprint differs ('diff', with their columns and CHECK
 * constraints), and the sequences asked that it does not have; then, as
 * two more columns, the number of tables that differ and of tables asked.
 */
static const char ua_pf_peer_sql_head[] =
	"WITH fwd AS ("
	" SELECT s.oid, s.subname, s.subpublications FROM pg_catalog.pg_subscription s"
	"  JOIN pg_catalog.pg_database d ON d.oid = s.subdbid"
	" WHERE d.datname = pg_catalog.current_database() AND s.subenabled"
	"   AND s.subslotname::text = ANY ($1::text[])),"
	" r AS ("
	" SELECT c.oid, n.nspname::text AS n, c.relname::text AS r, c.relkind AS k"
	"   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"  WHERE c.relkind IN ('r', 'p', 'S') AND" UA_PF_USER_REL("c", "n") "),"
	" q AS (SELECT x->>0 AS n, x->>1 AS r, x->>2 AS h, (x->>3)::bool AS f"
	"  FROM pg_catalog.jsonb_array_elements($2::pg_catalog.jsonb -> 't') x),"
	" qr AS (SELECT q.n, q.r, q.h, q.f, r.oid, r.k FROM q LEFT JOIN r ON r.n = q.n AND r.r = q.r),"
	" d AS (SELECT qr.n, qr.r, qr.oid, qr.k FROM qr"
	"  WHERE qr.oid IS NOT NULL AND (qr.k = 'S' OR " UA_PF_TABLE_HASH("qr.oid") " <> qr.h))"
	" SELECT pg_catalog.json_build_object("
	"  'v', pg_catalog.current_setting('server_version_num')::int,"
	"  'subs', (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('name', subname, 'pubs', subpublications)) FROM fwd),"
	"  'notready', (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('n', n.nspname, 'r', c.relname, 's', sr.srsubstate))"
	"    FROM pg_catalog.pg_subscription_rel sr JOIN pg_catalog.pg_class c ON c.oid = sr.srrelid"
	"    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"   WHERE sr.srsubid IN (SELECT oid FROM fwd) AND sr.srsubstate NOT IN ('r', 's')),"
	"  'errors', ";

static const char ua_pf_peer_sql_tail[] =
	","
	"  'side', (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(s.sev, s.chk, s.obj, s.det, s.hint))"
	"    FROM (" UA_PF_SIDE_SQL("$3::text", "'subscriber'::text") ") s(sev, chk, obj, det, hint)),"
	"  'absent', (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(qr.n, qr.r)) FROM qr WHERE qr.oid IS NULL),"
	"  'ix', (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(qr.n, qr.r)) FROM qr"
	"   WHERE qr.f AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid"
	"      JOIN pg_catalog.pg_am am ON am.oid = ic.relam"
	"     WHERE i.indrelid = qr.oid AND am.amname = 'btree' AND i.indpred IS NULL AND i.indexprs IS NULL)),"
	"  'diff', (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(d.n, d.r)) FROM d),"
	"  'cols', (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('n', d.n, 'r', d.r, 'a', a.attname,"
	"    't', pg_catalog.format_type(a.atttypid, a.atttypmod), 'c', ty.typcategory, 'g', a.attgenerated,"
	"    'nn', a.attnotnull, 'd', a.atthasdef))"
	"    FROM d JOIN pg_catalog.pg_attribute a ON a.attrelid = d.oid"
	"    JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid"
	"   WHERE d.k <> 'S' AND a.attnum > 0 AND NOT a.attisdropped),"
	"  'checks', (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('n', d.n, 'r', d.r, 'name', co.conname,"
	"    'd', pg_catalog.pg_get_constraintdef(co.oid)))"
	"    FROM d JOIN pg_catalog.pg_constraint co ON co.conrelid = d.oid WHERE co.contype = 'c'),"
	"  'seqabsent', (SELECT pg_catalog.json_agg(x) FROM pg_catalog.jsonb_array_elements($2::pg_catalog.jsonb -> 's') x"
	"   WHERE NOT EXISTS (SELECT 1 FROM r WHERE r.k = 'S' AND r.n = x->>0 AND r.r = x->>1)),"
	"  'exts', (SELECT pg_catalog.json_agg(pg_catalog.json_build_object('e', extname, 'v', extversion))"
	"    FROM pg_catalog.pg_extension))::text,"
	" (SELECT pg_catalog.count(*) FROM d), (SELECT pg_catalog.count(*) FROM q)";

/* The [schema, name] pairs of the peer's answer under key, as rows (n, r). */
#define UA_PF_PAIRS(key) \
	"SELECT x->>0 AS n, x->>1 AS r FROM peer, pg_catalog.jsonb_array_elements(" \
	" CASE WHEN pg_catalog.jsonb_typeof(j->'" key "') = 'array' THEN j->'" key "' END) x"

/*
 * Every check here, in one statement: the peer's side checks (from its
 * answer), this side's (UA_PF_SIDE_SQL), this side's as the publisher, and
 * the comparison with the peer: $1 the peer's answer (ua_pf_peer_sql_head;
 * NULL: single side, every publication here counts), $2 the cutover's
 * drain timeout in ms.  The tables of a FOR ALL TABLES publication are
 * read from pg_class as PostgreSQL chooses them (13 to 18: ordinary and,
 * with publish_via_partition_root, partitioned tables, permanent, user
 * OIDs; with it, no partitions; without it, no partitioned tables):
 * pg_get_publication_tables() opens every table it returns (16 and
 * later, and 15.x), which with 10,000 tables took longer than all the
 * rest.  For the other publications, whose tables are listed (or their
 * schemas, 15+), that function itself (one OUT column relid on 13, more
 * from 15 on), not the view, which adds a column list and a row filter
 * per row.
 */
static const char ua_pf_local_sql[] =
	"WITH peer AS (SELECT $1::pg_catalog.jsonb AS j),"
	" fwd AS (SELECT s FROM peer, pg_catalog.jsonb_array_elements(j->'subs') s"
	"  WHERE pg_catalog.jsonb_typeof(j->'subs') = 'array' AND pg_catalog.jsonb_array_length(j->'subs') = 1),"
	" pubs AS (SELECT p.* FROM pg_catalog.pg_publication p"
	"  WHERE NOT EXISTS (SELECT 1 FROM fwd)"
	"     OR p.pubname IN (SELECT pg_catalog.jsonb_array_elements_text(s->'pubs') FROM fwd)),"
	" pt AS (SELECT DISTINCT c.oid, c.relkind, c.relispartition, c.relreplident,"
	"   ns.nspname::text AS n, c.relname::text AS r"
	"  FROM (SELECT c.oid AS relid FROM pubs, pg_catalog.pg_class c"
	"         WHERE pubs.puballtables AND c.oid >= 16384 AND c.relpersistence = 'p'"
	"           AND ((c.relkind = 'r' AND NOT (c.relispartition AND pubs.pubviaroot))"
	"             OR (c.relkind = 'p' AND pubs.pubviaroot AND NOT c.relispartition))"
	"        UNION ALL"
	"        SELECT g.relid FROM pubs CROSS JOIN LATERAL pg_catalog.pg_get_publication_tables(pubs.pubname::text) g"
	"         WHERE NOT pubs.puballtables) g"
	"  JOIN pg_catalog.pg_class c ON c.oid = g.relid"
	"  JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace),"
	" t AS ("
	" SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence, c.relreplident"
	"   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"  WHERE c.relkind IN ('r', 'p', 'm', 'S') AND" UA_PF_USER_REL("c", "n") "),"
	" absent AS (" UA_PF_PAIRS("absent") "),"
	" pix AS (" UA_PF_PAIRS("ix") "),"
	" diff AS (" UA_PF_PAIRS("diff") "),"
	" seqabsent AS (" UA_PF_PAIRS("seqabsent") "),"
	" pcols AS (SELECT x.* FROM peer, pg_catalog.jsonb_to_recordset(j->'cols')"
	"   AS x(n text, r text, a text, t text, c text, g text, nn bool, d bool)"
	"  WHERE pg_catalog.jsonb_typeof(j->'cols') = 'array'),"
	" lcols AS (SELECT pt.n, pt.r, a.attname::text AS a, pg_catalog.format_type(a.atttypid, a.atttypmod) AS t,"
	"   ty.typcategory::text AS c, a.attgenerated::text AS g, a.attnotnull AS nn"
	"  FROM pt JOIN pg_catalog.pg_attribute a ON a.attrelid = pt.oid"
	"  JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid"
	"  WHERE a.attnum > 0 AND NOT a.attisdropped AND pt.relkind IN ('r', 'p') AND pt.n <> 'upgrade_assist'"
	"    AND (pt.n, pt.r) IN (SELECT n, r FROM diff))"
	/* the checks of each side */
	" SELECT x->>0, x->>1, x->>2, x->>3, x->>4"
	"  FROM peer, pg_catalog.jsonb_array_elements("
	"   CASE WHEN pg_catalog.jsonb_typeof(j->'side') = 'array' THEN j->'side' END) x"
	" UNION ALL"
	" SELECT * FROM (" UA_PF_SIDE_SQL("'here'::text", "'publisher'::text") ") side"
	/* forward subscription and its health */
	" UNION ALL"
	" SELECT 'error', 'forward_subscription', '',"
	"  CASE WHEN j->'subs' IS NULL OR pg_catalog.jsonb_typeof(j->'subs') <> 'array'"
	"   THEN 'no enabled subscription on the peer replicates from this database'"
	"   ELSE pg_catalog.format('%s enabled subscriptions on the peer replicate from this database', pg_catalog.jsonb_array_length(j->'subs')) END,"
	"  'Subscribe the peer to a publication of this database (one subscription), and enable it.'"
	"  FROM peer WHERE j IS NOT NULL AND NOT EXISTS (SELECT 1 FROM fwd)"
	" UNION ALL"
	" SELECT 'error', 'subscription_state', pg_catalog.format('%I.%I', x.n, x.r),"
	"  pg_catalog.format('table is in state %s on the peer, not r (ready) or s (copied): its initial copy is not done', x.s),"
	"  'Wait until every table of the subscription is ready (pg_subscription_rel.srsubstate = ''r'' on the peer).'"
	"  FROM peer, pg_catalog.jsonb_to_recordset(j->'notready') AS x(n text, r text, s text)"
	" WHERE pg_catalog.jsonb_typeof(j->'notready') = 'array'"
	" UNION ALL"
	" SELECT 'warning', 'apply_errors', (SELECT s->>'name' FROM fwd),"
	"  pg_catalog.format('the forward subscription has counted %s apply or sync errors on the peer', j->>'errors'),"
	"  'Read the peer''s server log; pg_stat_reset_subscription_stats() there once the cause is gone.'"
	"  FROM peer WHERE (j->>'errors')::numeric > 0"
	/* what replication does not carry, or not entirely */
	" UNION ALL"
	" SELECT 'error', 'not_published', pg_catalog.format('%I.%I', t.nspname, t.relname),"
	"  CASE WHEN j IS NULL THEN 'table is in no publication here' ELSE 'table is in no publication of the forward subscription' END,"
	"  'Add it to the publication (ALTER PUBLICATION ... ADD TABLE), or publish FOR ALL TABLES.'"
	"  FROM t, peer WHERE t.relkind = 'r' AND t.relpersistence = 'p'"
	"   AND t.oid NOT IN (SELECT oid FROM pt)"
	"   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_partition_ancestors(t.oid) an"
	"                    WHERE an.relid IN (SELECT oid FROM pt))"
	" UNION ALL"
	" SELECT 'error', 'marker_not_published', 'upgrade_assist.marker',"
	"  'table upgrade_assist.marker is in no publication' || CASE WHEN j IS NULL THEN ' here' ELSE ' of the forward subscription' END,"
	"  'Add upgrade_assist.marker to the publication: round trips and the cutover prove replication with markers.'"
	"  FROM peer WHERE NOT EXISTS (SELECT 1 FROM pt WHERE pt.oid = 'upgrade_assist.marker'::pg_catalog.regclass)"
	" UNION ALL"
	" SELECT 'error', 'publish_actions', pg_catalog.quote_ident(p.pubname),"
	"  pg_catalog.format('publication does not publish %s', pg_catalog.concat_ws(', ',"
	"   CASE WHEN NOT p.pubinsert THEN 'insert' END, CASE WHEN NOT p.pubupdate THEN 'update' END,"
	"   CASE WHEN NOT p.pubdelete THEN 'delete' END, CASE WHEN NOT p.pubtruncate THEN 'truncate' END)),"
	"  'ALTER PUBLICATION ... SET (publish = ''insert, update, delete, truncate'').'"
	"  FROM pubs p WHERE NOT (p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate)"
	UA_PF_PUBREL_FILTERS
	" UNION ALL"
	" SELECT 'error', 'large_objects', 'pg_largeobject',"
	"  pg_catalog.format('%s large objects (%s in pg_largeobject): logical replication does not carry them',"
	"   pg_catalog.count(*), pg_catalog.pg_size_pretty(pg_catalog.pg_relation_size('pg_catalog.pg_largeobject'))),"
	"  'Copy them by hand (pg_dump --large-objects ... | pg_restore) after the fence and before writes move, or store them in bytea columns.'"
	"  FROM pg_catalog.pg_largeobject_metadata HAVING pg_catalog.count(*) > 0"
	" UNION ALL"
	" SELECT 'warning', 'materialized_view', pg_catalog.format('%I.%I', t.nspname, t.relname),"
	"  'materialized view: logical replication does not carry its contents',"
	"  'REFRESH MATERIALIZED VIEW on the new side after the cutover.'"
	"  FROM t WHERE t.relkind = 'm'"
	" UNION ALL"
	" SELECT 'warning', 'long_transaction', pg_catalog.format('pid %s', a.pid),"
	"  pg_catalog.format('write transaction open since %s (%s), longer than the drain timeout: the cutover''s drain would terminate it',"
	"   a.xact_start, pg_catalog.now() - a.xact_start),"
	"  'Let it finish before the cutover, or raise upgrade_assist.cutover_drain_timeout.'"
	"  FROM pg_catalog.pg_stat_activity a"
	" WHERE a.datname = pg_catalog.current_database() AND a.pid <> pg_catalog.pg_backend_pid()"
	"   AND a.backend_xid IS NOT NULL"
	"   AND a.xact_start < pg_catalog.now() - pg_catalog.make_interval(secs => $2::float8 / 1000)"
	" UNION ALL"
	" SELECT CASE WHEN j IS NULL OR (j->>'v')::int < 160000 OR NOT coalesce(pr.ix, false) THEN 'warning' ELSE 'info' END,"
	"  'replica_identity_full', pg_catalog.format('%I.%I', pt.n, pt.r),"
	"  pg_catalog.format('replica identity FULL (%s): %s', pg_catalog.pg_size_pretty(pg_catalog.pg_total_relation_size(pt.oid)),"
	"   CASE WHEN j IS NULL THEN 'on a subscriber before 16 or without a usable index, every UPDATE and DELETE is a full scan there'"
	"    WHEN (j->>'v')::int < 160000 THEN 'the peer is before 16: every UPDATE and DELETE is a full scan there'"
	"    WHEN NOT coalesce(pr.ix, false) THEN 'the peer has no btree index for it: every UPDATE and DELETE is a full scan there'"
	"    ELSE 'the peer (16+) can use a btree index for it' END),"
	"  'Add a primary key (or a unique index and REPLICA IDENTITY USING INDEX).'"
	"  FROM pt CROSS JOIN peer LEFT JOIN (SELECT n, r, true AS ix FROM pix) pr ON pr.n = pt.n AND pr.r = pt.r"
	" WHERE pt.relreplident = 'f' AND pt.n <> 'upgrade_assist'"
	/* the peer's tables */
	" UNION ALL"
	" SELECT 'error', CASE WHEN pt.relispartition OR pt.relkind = 'p' THEN 'partition_layout' ELSE 'missing_table' END,"
	"  pg_catalog.format('%I.%I', pt.n, pt.r),"
	"  CASE WHEN pt.relispartition OR pt.relkind = 'p'"
	"   THEN pg_catalog.format('changes are published as %s (publish_via_partition_root is %s) and the peer has no such table',"
	"    pg_catalog.format('%I.%I', pt.n, pt.r),"
	"    CASE WHEN EXISTS (SELECT 1 FROM pubs WHERE pubviaroot) THEN 'on' ELSE 'off' END)"
	"   ELSE 'published table is missing on the peer' END,"
	"  'Create it on the peer (the schema first: pg_dump --schema-only), or make both sides'' partition layouts agree with publish_via_partition_root.'"
	"  FROM pt, peer WHERE j IS NOT NULL AND pt.relkind IN ('r', 'p')"
	"   AND EXISTS (SELECT 1 FROM absent pr WHERE pr.n = pt.n AND pr.r = pt.r)"
	"   AND pt.n <> 'upgrade_assist'"
	" UNION ALL"
	" SELECT CASE WHEN l.g <> '' THEN 'info' ELSE 'error' END, 'missing_column', pg_catalog.format('%I.%I.%I', l.n, l.r, l.a),"
	"  'column is missing on the peer', 'ALTER TABLE ... ADD COLUMN on the peer: apply fails on a column it does not have.'"
	"  FROM lcols l WHERE l.g = '' AND NOT EXISTS (SELECT 1 FROM pcols p WHERE p.n = l.n AND p.r = l.r AND p.a = l.a)"
	" UNION ALL"
	" SELECT CASE WHEN p.nn AND NOT p.d AND p.g = '' THEN 'error' ELSE 'warning' END, 'extra_column',"
	"  pg_catalog.format('%I.%I.%I', p.n, p.r, p.a),"
	"  CASE WHEN p.nn AND NOT p.d AND p.g = '' THEN 'the peer has this column NOT NULL without a default and this side has no such column: every insert fails there'"
	"   ELSE 'the peer has this column and this side does not: it gets its default there' END,"
	"  'Make both sides'' columns the same.'"
	"  FROM pcols p WHERE (p.n, p.r) IN (SELECT n, r FROM lcols)"
	"   AND NOT EXISTS (SELECT 1 FROM lcols l WHERE p.n = l.n AND p.r = l.r AND p.a = l.a)"
	" UNION ALL"
	" SELECT CASE WHEN (l.c = 'S' AND p.c = 'S')"
	"   OR pg_catalog.regexp_replace(l.t, '\\(.*\\)', '') = pg_catalog.regexp_replace(p.t, '\\(.*\\)', '')"
	"   THEN 'warning' ELSE 'error' END, 'column_type', pg_catalog.format('%I.%I.%I', l.n, l.r, l.a),"
	"  pg_catalog.format('type is %s here and %s on the peer', l.t, p.t),"
	"  'Give the column the same type on both sides (values that do not fit stop the apply or are changed by it).'"
	"  FROM lcols l JOIN pcols p ON p.n = l.n AND p.r = l.r AND p.a = l.a WHERE l.t <> p.t"
	" UNION ALL"
	" SELECT CASE WHEN l.g <> '' THEN 'error' ELSE 'warning' END, 'generated_column', pg_catalog.format('%I.%I.%I', l.n, l.r, l.a),"
	"  CASE WHEN l.g <> '' THEN 'column is generated here and not on the peer: its values are not replicated, the peer''s stay empty'"
	"   ELSE 'column is generated on the peer and not here: the peer computes its own values' END,"
	"  'Make the column generated (or not) on both sides.'"
	"  FROM lcols l JOIN pcols p ON p.n = l.n AND p.r = l.r AND p.a = l.a WHERE (l.g <> '') <> (p.g <> '')"
	" UNION ALL"
	" SELECT 'warning', 'peer_constraint', pg_catalog.format('%I.%I.%I', l.n, l.r, l.a),"
	"  'column is NOT NULL on the peer and nullable here: a row with NULL stops the apply',"
	"  'Check that no row has NULL here (and add the NOT NULL here too), or drop it on the peer.'"
	"  FROM lcols l JOIN pcols p ON p.n = l.n AND p.r = l.r AND p.a = l.a"
	" WHERE p.nn AND NOT l.nn AND l.g = '' AND p.g = ''"
	" UNION ALL"
	" SELECT 'warning', 'peer_constraint', pg_catalog.format('%I ON %I.%I', x.name, x.n, x.r),"
	"  pg_catalog.format('the peer has %s and this side does not: a row that violates it stops the apply', x.d),"
	"  'Check the data here against it (and add it here too), or drop it on the peer.'"
	"  FROM peer, pg_catalog.jsonb_to_recordset(j->'checks') AS x(n text, r text, name text, d text)"
	" WHERE pg_catalog.jsonb_typeof(j->'checks') = 'array' AND (x.n, x.r) IN (SELECT n, r FROM lcols)"
	"   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co JOIN pt ON pt.oid = co.conrelid"
	"    WHERE pt.n = x.n AND pt.r = x.r AND co.contype = 'c' AND pg_catalog.pg_get_constraintdef(co.oid) = x.d)"
	/* what logical replication never carries */
	" UNION ALL"
	" SELECT 'error', 'missing_sequence', pg_catalog.format('%I.%I', t.nspname, t.relname),"
	"  'sequence used by a column here is missing on the peer: the cutover cannot move it forward there',"
	"  'Create it on the peer (the schema first: pg_dump --schema-only).'"
	"  FROM t, peer WHERE j IS NOT NULL AND t.relkind = 'S'"
	"   AND EXISTS (SELECT 1 FROM seqabsent sa WHERE sa.n = t.nspname::text AND sa.r = t.relname::text)"
	" UNION ALL"
	" SELECT CASE WHEN x.e IS NULL THEN 'error' ELSE 'warning' END,"
	"  CASE WHEN x.e IS NULL THEN 'missing_extension' ELSE 'extension_version' END,"
	"  pg_catalog.quote_ident(e.extname),"
	"  CASE WHEN x.e IS NULL THEN pg_catalog.format('extension %s is installed here and not on the peer', e.extversion)"
	"   ELSE pg_catalog.format('extension is version %s here and %s on the peer', e.extversion, x.v) END,"
	"  CASE WHEN x.e IS NULL THEN 'CREATE EXTENSION on the peer.' ELSE 'ALTER EXTENSION ... UPDATE on the peer.' END"
	"  FROM pg_catalog.pg_extension e CROSS JOIN peer"
	"  LEFT JOIN pg_catalog.jsonb_to_recordset(CASE WHEN pg_catalog.jsonb_typeof(j->'exts') = 'array' THEN j->'exts' END)"
	"   AS x(e text, v text) ON x.e = e.extname"
	" WHERE j IS NOT NULL AND (x.e IS NULL OR (x.v <> e.extversion"
	"   AND (x.v !~ '^[0-9]+(\\.[0-9]+)*$' OR e.extversion !~ '^[0-9]+(\\.[0-9]+)*$'"
	"        OR pg_catalog.string_to_array(x.v, '.')::int[] < pg_catalog.string_to_array(e.extversion, '.')::int[])))";

/*
 * ua_preflight_check_known
 *		Is check the name of a preflight check?
 */
bool
ua_preflight_check_known(const char *check)
{
	for (int i = 0; ua_pf_checks[i] != NULL; i++)
		if (strcmp(ua_pf_checks[i], check) == 0)
			return true;
	return false;
}

/* Set a planner setting until AtEOXact_GUC at the caller's level. */
static void
ua_pf_set(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * ua_pf_planner_begin
 *		Planner settings for the statements run here, until
 *		AtEOXact_GUC(true, level) with the level returned (or the end of the
 *		transaction): no JIT.  The statements are large and their plans run
 *		in milliseconds; on 15 built with LLVM, compiling the checks
 *		statement with inlining and optimization took seconds (the cost
 *		that enable_nestloop = off puts on the joins that must stay nested
 *		loops, below, is far above every jit_*_above_cost).
 */
static int
ua_pf_planner_begin(void)
{
	int			level = NewGUCNestLevel();

	ua_pf_set("jit", "off");
	return level;
}

/*
 * ua_pf_planner_sets
 *		For the checks statement (ua_pf_local_sql) only: the rows of the
 *		peer's answer and of the CTEs over it are estimated at a handful
 *		whatever their number, so the planner would join them in nested
 *		loops: quadratic with 10,000 tables.  Hash and merge joins do it in
 *		one pass; their hash tables get room.  Not for the request, whose
 *		correlated subqueries must stay index lookups.
 */
static void
ua_pf_planner_sets(void)
{
	ua_pf_set("enable_nestloop", "off");
	ua_pf_set("work_mem", "65536");
}

/* Hand the rows of the SPI result (five text columns) to emit. */
static void
ua_pf_emit_spi(UaFindingFn emit, void *arg)
{
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *v[5];

		for (int c = 0; c < 5; c++)
		{
			v[c] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, c + 1);
			if (v[c] == NULL)
				v[c] = "";
		}
		emit(arg, v[0], v[1], v[2], v[3], v[4]);
	}
}

/*
 * ua_preflight_run
 *		Run every check and hand each finding to emit.  With peer (not NULL)
 *		the peer's side is read and compared; deadline bounds the statement
 *		on the peer (0: none besides the connect timeout).
 *
 *		Three statements with a peer, whatever the number of tables: here,
 *		the request (every table's fingerprint); on the peer, its answer
 *		(one round trip, after one that turns JIT off there); here, every
 *		check.  Without a peer, the last one.
 *
 *		The caller is in a transaction and connected to SPI.  Throws the
 *		peer lookup's errors (42704 for an unknown peer), the connection's
 *		(08xxx) and the peer's own.
 */
void
ua_preflight_run(const char *peer, TimestampTz deadline, UaFindingFn emit, void *arg)
{
	char	   *answer = NULL;
	char		drain[32];
	const char *args[3];
	int			level;

	if (peer != NULL)
		ua_peer_check(peer);
	level = ua_pf_planner_begin();

	if (peer != NULL)
	{
		PGconn	   *conn;
		PGresult   *res;
		StringInfoData sql;

		ua_spi_exec(ua_pf_request_sql, 0, NULL, true);
		args[1] = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		args[0] = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		args[2] = psprintf("on peer \"%s\"", peer);

		conn = ua_peer_connect(peer, deadline);

		/*
		 * No JIT for the answer on the peer either (see ua_pf_planner_begin):
		 * the peer session is the extension's own, used for catalog reads
		 * and small writes, so the setting stays for the session.
		 */
		PQclear(ua_peer_query(peer, "SELECT pg_catalog.set_config('jit', 'off', false)",
							  0, NULL, deadline));
		initStringInfo(&sql);
		appendStringInfoString(&sql, ua_pf_peer_sql_head);
		appendStringInfoString(&sql, UA_PF_PEER_SUB_ERRORS(PQserverVersion(conn)));
		appendStringInfoString(&sql, ua_pf_peer_sql_tail);
		res = ua_peer_query(peer, sql.data, 3, args, deadline);
		answer = pstrdup(PQgetvalue(res, 0, 0));
		elog(DEBUG1, "preflight: peer \"%s\" has %s of the %s tables asked with another fingerprint",
			 peer, PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
		PQclear(res);
		pfree(sql.data);
	}

	snprintf(drain, sizeof(drain), "%d", ua_cutover_drain_ms);
	ua_pf_planner_sets();
	args[0] = answer;
	args[1] = drain;
	ua_spi_exec(ua_pf_local_sql, 2, args, true);
	ua_pf_emit_spi(emit, arg);
	AtEOXact_GUC(true, level);
}

/*
 * ua_preflight_accepted
 *		Is check in accept (comma-separated check names, as cutover() keeps
 *		its accept argument; "*" accepts every check)?
 */
bool
ua_preflight_accepted(const char *accept, const char *check)
{
	size_t		len = strlen(check);
	const char *p = accept;

	while (*p)
	{
		const char *end = strchr(p, ',');
		size_t		n = end ? (size_t) (end - p) : strlen(p);

		if ((n == 1 && p[0] == '*') || (n == len && strncmp(p, check, n) == 0))
			return true;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return false;
}

/* Entries of a summary list past this length are only counted. */
#define UA_PF_LIST_CHARS 200

/* Add "check object" to one list of the summary. */
static void
ua_pf_list_add(UaPreflightSummary *sum, int which, StringInfo list,
			   const char *check, const char *object)
{
	if (list->len >= UA_PF_LIST_CHARS)
		return;
	appendStringInfo(list, "%s%s%s%s", list->len > 0 ? "; " : "", check,
					 object[0] ? " " : "", object);
	sum->shown[which]++;
}

/* Finding into a UaPreflightSummary. */
static void
ua_pf_tally(void *arg, const char *severity, const char *check, const char *object,
			const char *detail pg_attribute_unused(), const char *hint pg_attribute_unused())
{
	UaPreflightSummary *sum = (UaPreflightSummary *) arg;
	MemoryContext old = MemoryContextSwitchTo(sum->cxt);

	if (strcmp(severity, "error") == 0)
	{
		if (ua_preflight_accepted(sum->accept, check))
		{
			sum->accepted++;
			ua_pf_list_add(sum, 1, &sum->accepted_list, check, object);
		}
		else
		{
			sum->blocking++;
			ua_pf_list_add(sum, 0, &sum->blocking_list, check, object);
		}
	}
	else if (strcmp(severity, "warning") == 0)
	{
		sum->warnings++;
		ua_pf_list_add(sum, 2, &sum->warning_list, check, object);
	}
	else
		sum->infos++;
	MemoryContextSwitchTo(old);
}

/*
 * ua_preflight_summarize
 *		Run the preflight with peer (ua_preflight_run) and count its
 *		findings into sum, errors whose check is in accept counting as
 *		accepted; each list ends with "and N more" when it was cut.  The
 *		caller is in a transaction, connected to SPI; sum's lists are
 *		allocated in cxt.  Throws what ua_preflight_run throws.
 */
void
ua_preflight_summarize(const char *peer, TimestampTz deadline, const char *accept,
					   MemoryContext cxt, UaPreflightSummary *sum)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	StringInfo	lists[3];
	int			totals[3];

	memset(sum, 0, sizeof(*sum));
	sum->cxt = cxt;
	sum->accept = accept;
	initStringInfo(&sum->blocking_list);
	initStringInfo(&sum->accepted_list);
	initStringInfo(&sum->warning_list);
	MemoryContextSwitchTo(old);

	ua_preflight_run(peer, deadline, ua_pf_tally, sum);

	old = MemoryContextSwitchTo(cxt);
	lists[0] = &sum->blocking_list;
	lists[1] = &sum->accepted_list;
	lists[2] = &sum->warning_list;
	totals[0] = sum->blocking;
	totals[1] = sum->accepted;
	totals[2] = sum->warnings;
	for (int i = 0; i < 3; i++)
		if (totals[i] > sum->shown[i])
			appendStringInfo(lists[i], "; and %d more", totals[i] - sum->shown[i]);
	MemoryContextSwitchTo(old);
}

/* ---------------------------------------------------------------------------
 * Schema drift: the heartbeat's schema check (heartbeat_worker.c)
 * ---------------------------------------------------------------------------
 */

/* A column's fingerprint: its type, NOT NULL and generated. */
#define UA_PF_FP_COL(a) \
	"pg_catalog.format_type(" a ".atttypid, " a ".atttypmod)" \
	" || CASE WHEN " a ".attnotnull THEN ' not null' ELSE '' END" \
	" || CASE WHEN " a ".attgenerated <> '' THEN ' generated' ELSE '' END"

/* A table's key: its primary key's columns in order ('' for none). */
#define UA_PF_FP_KEY(oid) \
	"coalesce((SELECT pg_catalog.string_agg(pg_catalog.quote_ident(ka.attname), ', '" \
	"   ORDER BY pg_catalog.array_position(i.indkey::pg_catalog.int2[], ka.attnum))" \
	"  FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute ka" \
	"    ON ka.attrelid = i.indrelid AND ka.attnum = ANY (i.indkey::pg_catalog.int2[])" \
	" WHERE i.indrelid = " oid " AND i.indisprimary), '')"

/*
 * The peer's tables (13 and later), as one JSON array of {t: quoted name,
 * k: key, c: {column: fingerprint}}.
 */
static const char ua_pf_fp_peer_sql[] =
	"WITH r AS ("
	" SELECT c.oid, pg_catalog.format('%I.%I', n.nspname, c.relname) AS t"
	"   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"  WHERE c.relkind IN ('r', 'p') AND" UA_PF_USER_REL("c", "n") ")"
	" SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object('t', r.t, 'k', " UA_PF_FP_KEY("r.oid") ","
	"   'c', (SELECT pg_catalog.json_object_agg(a.attname, " UA_PF_FP_COL("a") ")"
	"          FROM pg_catalog.pg_attribute a"
	"         WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped))), '[]')::text"
	"  FROM r";

/*
 * The first difference between the tables published here and the peer's
 * document ($1), in the order of table and column names; no row when
 * there is none.
 */
static const char ua_pf_fp_local_sql[] =
	"WITH lt AS ("
	" SELECT c.oid, pg_catalog.format('%I.%I', n.nspname, c.relname) AS t"
	"   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"  WHERE c.relkind IN ('r', 'p') AND" UA_PF_USER_REL("c", "n")
	"    AND (n.nspname, c.relname) IN (SELECT schemaname, tablename FROM pg_catalog.pg_publication_tables)),"
	" lc AS (SELECT lt.t, pg_catalog.quote_ident(a.attname) AS a, " UA_PF_FP_COL("a") " AS d"
	"   FROM lt JOIN pg_catalog.pg_attribute a ON a.attrelid = lt.oid"
	"  WHERE a.attnum > 0 AND NOT a.attisdropped),"
	" lk AS (SELECT lt.t, " UA_PF_FP_KEY("lt.oid") " AS k FROM lt),"
	" p AS (SELECT x.t, x.k, x.c FROM pg_catalog.jsonb_to_recordset($1::pg_catalog.jsonb) AS x(t text, k text, c jsonb)"
	"  WHERE x.t IN (SELECT t FROM lt)),"
	" pc AS (SELECT p.t, pg_catalog.quote_ident(e.key) AS a, e.value AS d"
	"   FROM p, pg_catalog.jsonb_each_text(CASE WHEN pg_catalog.jsonb_typeof(p.c) = 'object' THEN p.c END) e),"
	" d AS ("
	" SELECT lt.t, '' AS a, pg_catalog.format('table %s is missing on the peer', lt.t) AS what"
	"   FROM lt WHERE lt.t NOT IN (SELECT t FROM p)"
	" UNION ALL"
	" SELECT coalesce(lc.t, pc.t), coalesce(lc.a, pc.a),"
	"  CASE WHEN pc.a IS NULL THEN pg_catalog.format('column %s.%s is missing on the peer', lc.t, lc.a)"
	"   WHEN lc.a IS NULL THEN pg_catalog.format('column %s.%s exists on the peer only', pc.t, pc.a)"
	"   ELSE pg_catalog.format('column %s.%s is %s here and %s on the peer', lc.t, lc.a, lc.d, pc.d) END"
	"  FROM lc FULL JOIN pc ON pc.t = lc.t AND pc.a = lc.a"
	" WHERE lc.d IS DISTINCT FROM pc.d AND coalesce(lc.t, pc.t) IN (SELECT t FROM p)"
	" UNION ALL"
	" SELECT lk.t, '~', pg_catalog.format('table %s has %s here and %s on the peer', lk.t,"
	"   CASE WHEN lk.k = '' THEN 'no primary key' ELSE 'primary key (' || lk.k || ')' END,"
	"   CASE WHEN p.k = '' THEN 'no primary key' ELSE 'primary key (' || p.k || ')' END)"
	"  FROM lk JOIN p ON p.t = lk.t WHERE lk.k IS DISTINCT FROM p.k)"
	" SELECT what FROM d ORDER BY t COLLATE pg_catalog.\"C\", a COLLATE pg_catalog.\"C\" LIMIT 1";

/*
 * ua_preflight_schema_diff
 *		Compare the columns (name, type, NOT NULL, generated) and primary
 *		keys of the tables published here with the same tables on peer:
 *		"same", or "drift: " and the first difference.  Two statements:
 *		one on the peer (bounded by deadline), one here.  The caller is in a
 *		transaction, connected to SPI.  Throws the peer's and the
 *		connection's errors.
 */
char *
ua_preflight_schema_diff(const char *peer, TimestampTz deadline)
{
	PGresult   *res;
	char	   *doc;
	char	   *result;
	const char *args[1];
	int			level;

	res = ua_peer_query(peer, ua_pf_fp_peer_sql, 0, NULL, deadline);
	doc = pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);

	args[0] = doc;
	level = ua_pf_planner_begin();
	ua_pf_planner_sets();
	if (ua_spi_exec(ua_pf_fp_local_sql, 1, args, true) == 0)
		result = pstrdup("same");
	else
		result = psprintf("drift: %s",
						  SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	AtEOXact_GUC(true, level);
	return result;
}

/* Finding into the tuplestore of preflight(). */
typedef struct UaPfStore
{
	Tuplestorestate *store;
	TupleDesc	tupdesc;
} UaPfStore;

static void
ua_pf_store(void *arg, const char *severity, const char *check, const char *object,
			const char *detail, const char *hint)
{
	UaPfStore  *s = (UaPfStore *) arg;
	Datum		values[5];
	bool		nulls[5] = {false};

	values[0] = CStringGetTextDatum(severity);
	values[1] = CStringGetTextDatum(check);
	values[2] = CStringGetTextDatum(object);
	values[3] = CStringGetTextDatum(detail);
	values[4] = CStringGetTextDatum(hint);
	tuplestore_putvalues(s->store, s->tupdesc, values, nulls);
}

/*
 * preflight(peer text DEFAULT NULL)
 *		returns setof (severity, check, object, detail, hint)
 *
 *		Every finding of the checks; NULL peer: this side only.  Writes
 *		nothing.  Errors: those of ua_preflight_run.
 */
Datum
preflight(PG_FUNCTION_ARGS)
{
	char	   *peer = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	UaPfStore	s;

	if (peer != NULL)
		ua_peer_check(peer);
	s.store = ua_materialize_srf(fcinfo, &s.tupdesc);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ua_preflight_run(peer, 0, ua_pf_store, &s);
	SPI_finish();
	PG_RETURN_NULL();
}
