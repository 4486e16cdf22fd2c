-- Statistics rebuild: the SQL surface, bad input and privileges.  The work
-- itself (real pg_upgrade, progress, cancel, restart) is in
-- t/005_stats_rebuild.pl.
CREATE TABLE stats_full (id int, v text);
INSERT INTO stats_full SELECT g, g::text FROM generate_series(1, 500) g;
CREATE TABLE stats_empty (id int);
CREATE TABLE stats_parted (id int, v int) PARTITION BY RANGE (id);
CREATE TABLE stats_parted_1 PARTITION OF stats_parted FOR VALUES FROM (0) TO (100);
INSERT INTO stats_parted SELECT g, g % 7 FROM generate_series(0, 99) g;
CREATE STATISTICS stats_full_ext (dependencies) ON id, v FROM stats_full;

-- Coverage needs no run.
SELECT relid, kind, has_statistics, columns, columns_with_stats,
       ext_stats, ext_stats_built, analyzed_by
  FROM upgrade_assist.stats_coverage
 WHERE schemaname = 'public' AND relname LIKE 'stats\_%' ORDER BY 1;
-- An empty table has nothing to analyze.
ANALYZE stats_empty;
SELECT relid, has_statistics, columns_with_stats, pages
  FROM upgrade_assist.stats_coverage WHERE relname = 'stats_empty';

\set VERBOSITY sqlstate
SELECT upgrade_assist.rebuild_stats(NULL);
SELECT upgrade_assist.rebuild_stats('{}');
SELECT upgrade_assist.rebuild_stats('{1,NULL}');
SELECT upgrade_assist.rebuild_stats('{0}');
SELECT upgrade_assist.rebuild_stats('{1,10001}');
SELECT upgrade_assist.rebuild_stats('{-2}');
SELECT upgrade_assist.rebuild_stats('{{1},{10}}');
SELECT upgrade_assist.rebuild_stats('{1,2,3,4,5,6,7,8,9,10,11}');
SELECT upgrade_assist.rebuild_stats(jobs => 0);
SELECT upgrade_assist.rebuild_stats(jobs => 33);
SELECT upgrade_assist.rebuild_stats(jobs => NULL);
SELECT upgrade_assist.rebuild_stats(only_missing => NULL);
\set VERBOSITY default
SELECT count(*) FROM upgrade_assist.stats_run;

-- Nothing running: nothing to cancel.
SELECT upgrade_assist.cancel_stats_rebuild();

-- The workers wait for the transaction that starts the run, which makes
-- what follows deterministic.
BEGIN;
SELECT upgrade_assist.rebuild_stats() AS run \gset
SELECT run = :run AS same_run, state, phase, stage, stages, stage_target,
       tables_total >= 4 AS has_tables, tables_done, percent, workers, jobs,
       only_missing, estimated_left
  FROM upgrade_assist.stats_progress;
SELECT relname, stage_done FROM upgrade_assist.stats_task
 WHERE run_id = :run AND relname LIKE 'public.stats\_%' ORDER BY 1;
\set VERBOSITY sqlstate
SAVEPOINT second;
SELECT upgrade_assist.rebuild_stats();
ROLLBACK TO second;
\set VERBOSITY default
SELECT upgrade_assist.cancel_stats_rebuild();
SELECT state, phase FROM upgrade_assist.stats_progress WHERE run = :run;
COMMIT;

-- Everything complete: only_missing finds nothing and the run is done at once.
ANALYZE;
SELECT upgrade_assist.rebuild_stats() AS run2 \gset
SELECT run = :run2 AS same_run, state, tables_total, percent, workers,
       resumed_from = :run AS resumed
  FROM upgrade_assist.stats_progress ORDER BY run DESC LIMIT 1;
SELECT count(*) FILTER (WHERE NOT has_statistics) AS missing
  FROM upgrade_assist.stats_coverage;

-- A fenced cluster (a new side until its cutover) can still rebuild its
-- statistics: the run's bookkeeping passes the fence, nothing else does.
SELECT count(*) AS drained FROM upgrade_assist.fence('regress stats fenced');
\set VERBOSITY sqlstate
INSERT INTO stats_empty VALUES (1);
\set VERBOSITY default
BEGIN;
SELECT upgrade_assist.rebuild_stats(only_missing => false) AS run3 \gset
SELECT run = :run3 AS same_run, state, phase FROM upgrade_assist.stats_progress
 ORDER BY run DESC LIMIT 1;
\set VERBOSITY sqlstate
SAVEPOINT write;
INSERT INTO stats_empty VALUES (1);
ROLLBACK TO write;
\set VERBOSITY default
SELECT upgrade_assist.cancel_stats_rebuild();
SELECT state FROM upgrade_assist.stats_progress WHERE run = :run3;
COMMIT;
\set VERBOSITY sqlstate
INSERT INTO stats_empty VALUES (1);
\set VERBOSITY default
SELECT upgrade_assist.unfence();

-- Privileges: state-changing functions are not PUBLIC; the views are for
-- pg_monitor.
CREATE ROLE regress_stats_nobody;
CREATE ROLE regress_stats_watcher IN ROLE pg_monitor;
GRANT USAGE ON SCHEMA upgrade_assist TO regress_stats_nobody;
\set VERBOSITY sqlstate
SET ROLE regress_stats_nobody;
SELECT upgrade_assist.rebuild_stats();
SELECT upgrade_assist.cancel_stats_rebuild();
SELECT count(*) FROM upgrade_assist.stats_progress;
SELECT count(*) FROM upgrade_assist.stats_coverage;
RESET ROLE;
\set VERBOSITY default
SET ROLE regress_stats_watcher;
SELECT count(*) > 0 AS sees_runs FROM upgrade_assist.stats_progress;
SELECT count(*) > 0 AS sees_tables FROM upgrade_assist.stats_coverage;
RESET ROLE;
REVOKE USAGE ON SCHEMA upgrade_assist FROM regress_stats_nobody;
DROP ROLE regress_stats_nobody, regress_stats_watcher;
DROP TABLE stats_full, stats_empty, stats_parted;
