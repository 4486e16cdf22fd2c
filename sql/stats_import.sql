-- Statistics export and import: the SQL surface, bad input, privileges, a
-- round trip within one cluster, and the fenced case.  The two real paths
-- (pg_upgrade, a peer) are in t/009_stats_import.pl.
CREATE TABLE si_plain (id int, "Odd Name" text, tags int[], span int4range,
                       retyped int, gone int);
INSERT INTO si_plain
SELECT g, 'n' || (g % 11), ARRAY[g % 5, g % 7], int4range(g, g + g % 9),
       g % 3, g
  FROM generate_series(1, 2000) g;
CREATE TABLE si_parted (k int, v text) PARTITION BY RANGE (k);
CREATE TABLE si_parted_1 PARTITION OF si_parted FOR VALUES FROM (0) TO (50);
CREATE TABLE si_parted_2 PARTITION OF si_parted FOR VALUES FROM (50) TO (100);
INSERT INTO si_parted SELECT g % 100, 'v' || (g % 13) FROM generate_series(1, 1000) g;
CREATE TABLE si_dropped (a int);
INSERT INTO si_dropped SELECT g FROM generate_series(1, 100) g;
ANALYZE si_plain, si_parted, si_dropped;

-- Nothing exported yet: nothing imported.
SELECT count(*) FROM upgrade_assist.import_stats();
SELECT upgrade_assist.export_stats() > 0 AS exported;
-- (A partitioned table's reltuples: 0 before 14, its row count from 14.)
SELECT relname, relpages > 0 AS has_pages,
       CASE WHEN relname <> 'si_parted' THEN reltuples END AS reltuples
  FROM upgrade_assist.stats_export_rel WHERE relname LIKE 'si\_%' ORDER BY 2, 1;
SELECT relname, attname, inherited, atttype, attcollation, attstattarget,
       histogram_bounds IS NOT NULL AS hist, most_common_elems IS NOT NULL AS elems,
       range_bounds_histogram IS NOT NULL AS ranges
  FROM upgrade_assist.stats_export_att WHERE relname LIKE 'si\_%'
 ORDER BY relname COLLATE "C", attname COLLATE "C", inherited;

CREATE TABLE si_before AS
SELECT tablename, attname, inherited, s::text AS st
  FROM pg_stats s WHERE tablename LIKE 'si\_%';

-- The new side differs: a type changed, a column and a table gone; the
-- statistics themselves gone.
DELETE FROM pg_statistic
 WHERE starelid IN ('si_plain'::regclass, 'si_parted'::regclass,
                    'si_parted_1'::regclass, 'si_parted_2'::regclass);
UPDATE pg_class SET relpages = 0, reltuples = -1 WHERE oid = 'si_plain'::regclass;
ALTER TABLE si_plain ALTER retyped TYPE bigint, DROP COLUMN gone;
DROP TABLE si_dropped;

SELECT * FROM upgrade_assist.import_stats()
 WHERE relname LIKE 'si\_%' ORDER BY relname;
-- Every imported column as it was; the relation statistics back.
SELECT b.tablename, b.attname, b.inherited,
       CASE WHEN a.st IS NULL THEN 'missing' WHEN a.st = b.st THEN 'same' ELSE 'differs' END AS now
  FROM si_before b
  LEFT JOIN (SELECT tablename, attname, inherited, s::text AS st FROM pg_stats s) a
       USING (tablename, attname, inherited)
 ORDER BY 1, 2, 3;
SELECT relpages > 0 AS has_pages, reltuples FROM pg_class WHERE oid = 'si_plain'::regclass;
SELECT relid, has_statistics, columns, columns_with_stats
  FROM upgrade_assist.stats_coverage
 WHERE relname LIKE 'si\_%' AND relname <> 'si_before' ORDER BY 1;
SELECT relname, analyzed_by FROM upgrade_assist.stats_coverage
 WHERE relname LIKE 'si\_%' AND relname <> 'si_before' ORDER BY 1;
-- Again, one table per transaction: a new run (the last one ended), the
-- same result, every table recorded by a transaction of its own.
SELECT relname, status, columns_imported, columns_skipped
  FROM upgrade_assist.import_stats(batch_size => 1)
 WHERE relname LIKE 'si\_%' ORDER BY relname;
SELECT run_id, state, attempts, source IS NULL AS from_export_tables,
       error_code IS NULL AS no_error, ended_at IS NOT NULL AS ended
  FROM upgrade_assist.stats_import_run ORDER BY run_id;
SELECT count(*) = count(DISTINCT batch) AS one_batch_each,
       count(*) = count(DISTINCT xmin::text) AS one_transaction_each,
       min(attempt) = 1 AND max(attempt) = 1 AS first_attempt
  FROM upgrade_assist.stats_import_table
 WHERE run_id = (SELECT max(run_id) FROM upgrade_assist.stats_import_run);

-- Bad input.
\set VERBOSITY sqlstate
SELECT * FROM upgrade_assist.import_stats('');
SELECT * FROM upgrade_assist.import_stats('no_such_peer');
SELECT * FROM upgrade_assist.import_stats(batch_size => 0);
SELECT * FROM upgrade_assist.import_stats(batch_size => 10001);
SELECT * FROM upgrade_assist.import_stats(NULL, NULL);
SELECT * FROM upgrade_assist.import_stats(rebuild_jobs => -1);
SELECT * FROM upgrade_assist.import_stats(rebuild_jobs => 33);
SELECT * FROM upgrade_assist.import_stats(rebuild_jobs => NULL);
SELECT * FROM upgrade_assist.import_stats(jobs => 0);
SELECT * FROM upgrade_assist.import_stats(jobs => 9);
-- (nothing recorded for them)
SELECT count(*) FROM upgrade_assist.stats_import_run;
\set VERBOSITY default

-- Two workers share the tables: the same result, each table recorded once,
-- by one of them.
SELECT relname, status, columns_imported, columns_skipped
  FROM upgrade_assist.import_stats(jobs => 2)
 WHERE relname LIKE 'si\_%' ORDER BY relname;
SELECT count(*) = count(DISTINCT (schemaname, relname)) AS once_each,
       bool_and(status <> 'failed') AS none_failed
  FROM upgrade_assist.stats_import_table
 WHERE run_id = (SELECT max(run_id) FROM upgrade_assist.stats_import_run);
SELECT state, error_code IS NULL AS no_error FROM upgrade_assist.stats_import_run
 WHERE run_id = (SELECT max(run_id) FROM upgrade_assist.stats_import_run);

-- A bad value in the export fails that table alone, rolled back (18 and
-- later: pg_restore_attribute_stats warns and skips the column).
UPDATE upgrade_assist.stats_export_att SET histogram_bounds = '{1,oops}'
 WHERE relname = 'si_parted_1' AND attname = 'k';
SELECT relname, status, columns_imported, columns_skipped, detail
  FROM upgrade_assist.import_stats() WHERE relname LIKE 'si\_parted%' ORDER BY relname;
UPDATE upgrade_assist.stats_export_att SET histogram_bounds = '{{1,2},{3,4}}'
 WHERE relname = 'si_parted_1' AND attname = 'k';
SELECT relname, status, detail
  FROM upgrade_assist.import_stats() WHERE relname = 'si_parted_1';

-- A fenced cluster (the new side until its cutover) imports: the catalog
-- writes pass the fence, nothing else does.
SELECT count(*) AS drained FROM upgrade_assist.fence('regress stats import fenced');
SELECT relname, status FROM upgrade_assist.import_stats()
 WHERE relname = 'si_plain';
\set VERBOSITY sqlstate
INSERT INTO si_plain (id) VALUES (0);
SELECT upgrade_assist.export_stats() > 0 AS exported;
\set VERBOSITY default
SELECT upgrade_assist.unfence();

-- Privileges: neither function is PUBLIC; export needs a superuser
-- (pg_statistic); import needs ownership of each table.
CREATE ROLE regress_si_nobody;
CREATE ROLE regress_si_importer;
\set VERBOSITY sqlstate
SET ROLE regress_si_nobody;
SELECT upgrade_assist.export_stats();
SELECT * FROM upgrade_assist.import_stats();
SELECT count(*) FROM upgrade_assist.stats_export_att;
RESET ROLE;
GRANT USAGE ON SCHEMA upgrade_assist TO regress_si_importer;
GRANT EXECUTE ON FUNCTION upgrade_assist.export_stats() TO regress_si_importer;
GRANT EXECUTE ON FUNCTION upgrade_assist.import_stats(text, integer, integer, integer) TO regress_si_importer;
SET ROLE regress_si_importer;
SELECT * FROM upgrade_assist.import_stats();
RESET ROLE;
GRANT SELECT ON upgrade_assist.stats_export_rel, upgrade_assist.stats_export_att
   TO regress_si_importer;
SET ROLE regress_si_importer;
SELECT * FROM upgrade_assist.import_stats(rebuild_jobs => 1);
SELECT upgrade_assist.export_stats();
\set VERBOSITY default
SELECT relname, status, detail
  FROM upgrade_assist.import_stats() WHERE relname = 'si_plain';
RESET ROLE;
ALTER TABLE si_plain OWNER TO regress_si_importer;
SET ROLE regress_si_importer;
SELECT relname, status, columns_imported
  FROM upgrade_assist.import_stats() WHERE relname = 'si_plain';
RESET ROLE;

DROP TABLE si_plain, si_parted, si_before;
REVOKE ALL ON upgrade_assist.stats_export_rel, upgrade_assist.stats_export_att
  FROM regress_si_importer;
REVOKE ALL ON FUNCTION upgrade_assist.export_stats() FROM regress_si_importer;
REVOKE USAGE ON SCHEMA upgrade_assist FROM regress_si_importer;
REVOKE ALL ON FUNCTION upgrade_assist.import_stats(text, integer, integer, integer) FROM regress_si_importer;
DROP ROLE regress_si_nobody, regress_si_importer;
