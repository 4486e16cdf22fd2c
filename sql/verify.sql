-- verify(): the SQL surface, bad input and privileges.  The work itself
-- (two clusters, live writes, differences found, cancel) is in
-- t/014_verify.pl.
CREATE SERVER verify_peer FOREIGN DATA WRAPPER upgrade_assist
    OPTIONS (host '127.0.0.1', port '1', dbname 'postgres');
CREATE USER MAPPING FOR CURRENT_USER SERVER verify_peer
    OPTIONS (user 'nobody', password 'secret');
CREATE TABLE verify_t (id int PRIMARY KEY, v text);
CREATE TABLE verify_parted (id int) PARTITION BY RANGE (id);
CREATE UNLOGGED TABLE verify_unlogged (id int);
CREATE TEMP TABLE verify_temp (id int);
CREATE VIEW verify_v AS SELECT 1 AS one;

SHOW upgrade_assist.verify_throttle;
SHOW upgrade_assist.verify_lock_timeout;
SHOW upgrade_assist.verify_max_lock_time;

\set VERBOSITY sqlstate
SELECT upgrade_assist.verify(NULL);
SELECT upgrade_assist.verify('no_such_peer');
SELECT upgrade_assist.verify('verify_peer', chunk_rows => 0);
SELECT upgrade_assist.verify('verify_peer', chunk_rows => 1000001);
SELECT upgrade_assist.verify('verify_peer', chunk_rows => NULL);
SELECT upgrade_assist.verify('verify_peer', find_keys => NULL);
SELECT upgrade_assist.verify('verify_peer', timeout => NULL);
SELECT upgrade_assist.verify('verify_peer', timeout => '0.5s');
SELECT upgrade_assist.verify('verify_peer', timeout => '-1s');
SELECT upgrade_assist.verify('verify_peer', '{}');
SELECT upgrade_assist.verify('verify_peer', '{NULL}');
SELECT upgrade_assist.verify('verify_peer', '{{verify_t},{verify_t}}');
SELECT upgrade_assist.verify('verify_peer', '{verify_v}');
SELECT upgrade_assist.verify('verify_peer', '{verify_parted}');
SELECT upgrade_assist.verify('verify_peer', '{verify_unlogged}');
SELECT upgrade_assist.verify('verify_peer', '{verify_temp}');
SELECT upgrade_assist.verify('verify_peer', '{upgrade_assist.marker}');
SELECT upgrade_assist.verify('verify_peer', '{no_such_table}');
\set VERBOSITY default
-- Nothing was stored.
SELECT count(*) FROM upgrade_assist.verify_run;

-- Nothing running: nothing to cancel, no progress, no result.
SELECT upgrade_assist.cancel_verify();
SELECT upgrade_assist.cancel_verify(42);
SELECT count(*) FROM upgrade_assist.verify_workers();
SELECT count(*) FROM upgrade_assist.verify_progress;
SELECT count(*) FROM upgrade_assist.verify_result();

-- The worker waits for the transaction that starts the run, and exits when
-- it rolls back: what follows is deterministic.
BEGIN;
SELECT upgrade_assist.verify('verify_peer', '{verify_t, verify_t}', 100) > 0 AS started;
SELECT peer, state, tables_total, tables_done, rows_done, current_table
  FROM upgrade_assist.verify_progress;
SELECT ord, schemaname, relname, state FROM upgrade_assist.verify_table;
SELECT chunk_rows, find_keys, timeout, started_by = current_user AS by_me
  FROM upgrade_assist.verify_run;
ROLLBACK;
SELECT count(*) FROM upgrade_assist.verify_run;

-- The replica trigger refuses to run as anything else.
\set VERBOSITY sqlstate
SELECT upgrade_assist.verify_range_apply();
\set VERBOSITY default

-- Privileges: verify() and cancel_verify() are not open to PUBLIC; a
-- granted role needs SELECT on every table it compares.
CREATE ROLE regress_verify_nobody;
CREATE ROLE regress_verify_upgrader;
CREATE ROLE regress_verify_watcher IN ROLE pg_monitor;
GRANT USAGE ON SCHEMA upgrade_assist TO regress_verify_nobody, regress_verify_upgrader;
GRANT EXECUTE ON FUNCTION upgrade_assist.verify(text, regclass[], integer, boolean, interval)
    TO regress_verify_upgrader;
GRANT USAGE ON FOREIGN SERVER verify_peer TO regress_verify_upgrader;
CREATE USER MAPPING FOR regress_verify_upgrader SERVER verify_peer
    OPTIONS (user 'nobody', password 'secret');
\set VERBOSITY sqlstate
SET ROLE regress_verify_nobody;
SELECT upgrade_assist.verify('verify_peer', '{verify_t}');
SELECT upgrade_assist.cancel_verify();
SELECT count(*) FROM upgrade_assist.verify_progress;
SELECT count(*) FROM upgrade_assist.verify_range;
INSERT INTO upgrade_assist.verify_run VALUES (1, 1, 'x', 1, true, '1s', 'x', now());
RESET ROLE;
SET ROLE regress_verify_upgrader;
SELECT upgrade_assist.verify('verify_peer', '{verify_t}');
RESET ROLE;
\set VERBOSITY default
GRANT SELECT ON verify_t TO regress_verify_upgrader;
SET ROLE regress_verify_upgrader;
BEGIN;
SELECT upgrade_assist.verify('verify_peer', '{verify_t}') > 0 AS started;
ROLLBACK;
RESET ROLE;
-- Monitoring roles read the progress and results.
SET ROLE regress_verify_watcher;
SELECT count(*) FROM upgrade_assist.verify_progress;
SELECT count(*) FROM upgrade_assist.verify_result();
SELECT count(*) FROM upgrade_assist.verify_diff;
RESET ROLE;

DROP USER MAPPING FOR regress_verify_upgrader SERVER verify_peer;
REVOKE ALL ON FOREIGN SERVER verify_peer FROM regress_verify_upgrader;
REVOKE ALL ON verify_t FROM regress_verify_upgrader;
REVOKE ALL ON SCHEMA upgrade_assist FROM regress_verify_nobody, regress_verify_upgrader;
REVOKE ALL ON FUNCTION upgrade_assist.verify(text, regclass[], integer, boolean, interval)
    FROM regress_verify_upgrader;
DROP ROLE regress_verify_nobody, regress_verify_upgrader, regress_verify_watcher;
DROP USER MAPPING FOR CURRENT_USER SERVER verify_peer;
DROP SERVER verify_peer;
DROP TABLE verify_t, verify_parted, verify_unlogged, verify_temp;
DROP VIEW verify_v;
