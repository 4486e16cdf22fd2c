-- cutover(): SQL surface, bad input, privileges, and the abort when the peer
-- is unreachable.  (Real cutovers, rollbacks and faults: t/006_cutover.pl.)
CREATE TABLE cutover_t (id int PRIMARY KEY);
-- Nobody listens on port 1: the connection is refused at once.
CREATE SERVER cutover_down FOREIGN DATA WRAPPER upgrade_assist
    OPTIONS (host '127.0.0.1', port '1', dbname 'postgres');
CREATE USER MAPPING FOR CURRENT_USER SERVER cutover_down;

SELECT * FROM upgrade_assist.cutover_progress;
SELECT count(*) FROM upgrade_assist.cutover_history;
SELECT upgrade_assist.cutover_resume();

\set VERBOSITY sqlstate
-- Bad input: nothing starts.
SELECT * FROM upgrade_assist.cutover(NULL);
SELECT * FROM upgrade_assist.cutover('no_such_peer');
SELECT * FROM upgrade_assist.cutover('cutover_down', max_lag => '0s');
SELECT * FROM upgrade_assist.cutover('cutover_down', timeout => '-1s');
SELECT * FROM upgrade_assist.cutover('cutover_down', timeout => NULL);
SELECT * FROM upgrade_assist.cutover('cutover_down', sequence_margin => -1);
SELECT * FROM upgrade_assist.cutover('cutover_down', reverse => NULL);
SELECT * FROM upgrade_assist.cutover('cutover_down', on_abort => NULL);
SELECT * FROM upgrade_assist.cutover('cutover_down', on_abort => 'ignore');
SET upgrade_assist.cutover_pause_before = 'no such step';
-- Not in a transaction that has written: the drain would wait for it.
BEGIN;
INSERT INTO cutover_t VALUES (1);
SELECT * FROM upgrade_assist.cutover('cutover_down');
ROLLBACK;
\set VERBOSITY default
SELECT count(*) FROM upgrade_assist.cutover_history;

-- The peer is down: the checks fail, nothing is touched, and the call fails
-- with 40000 (transaction_rollback) once its steps are reported, so that a
-- script stops.  (The NOTICEs and the DETAIL quote libpq, whose wording
-- differs between versions.)
SET client_min_messages = warning;
\set VERBOSITY sqlstate
SELECT * FROM upgrade_assist.cutover('cutover_down');
-- With on_abort => 'warning' the call returns its rows (and a WARNING).
\set VERBOSITY terse
SELECT step, status, started_at IS NOT NULL AS ran,
       detail LIKE 'could not connect to peer "cutover_down"%' AS why
  FROM upgrade_assist.cutover('cutover_down', on_abort => 'warning');
\set VERBOSITY default
SELECT attempt, peer, outcome, failed_step, blackout, fenced_at,
       finished_at >= started_at AS finished,
       jsonb_array_length(steps) AS steps
  FROM upgrade_assist.cutover_history;
SELECT fenced FROM upgrade_assist.fence_status;
INSERT INTO cutover_t VALUES (1);

-- A dry run is not recorded.  One that fails fails the call too (40000).
\set VERBOSITY sqlstate
SELECT step, status FROM upgrade_assist.cutover('cutover_down', dry_run => true);
\set VERBOSITY terse
SELECT step, status FROM upgrade_assist.cutover('cutover_down', dry_run => true, on_abort => 'warning');
\set VERBOSITY default
SELECT count(*) FROM upgrade_assist.cutover_history;
RESET client_min_messages;

-- The history keeps its own rows: rows arriving through replication are
-- dropped by its replica trigger.
SET session_replication_role = replica;
INSERT INTO upgrade_assist.cutover_history (attempt, peer, started_at, outcome)
    VALUES (99, 'elsewhere', now(), 'succeeded');
RESET session_replication_role;
SELECT count(*) FROM upgrade_assist.cutover_history WHERE attempt = 99;

-- Privileges: revoked from PUBLIC; the view and the history for pg_monitor.
CREATE ROLE cutover_nobody;
CREATE ROLE cutover_monitor IN ROLE pg_monitor;
SET ROLE cutover_nobody;
\set VERBOSITY sqlstate
SELECT * FROM upgrade_assist.cutover('cutover_down');
SELECT upgrade_assist.cutover_resume();
SELECT * FROM upgrade_assist.cutover_progress;
SELECT count(*) FROM upgrade_assist.cutover_history;
SELECT upgrade_assist.cutover_takeover('x', 1, 1);
\set VERBOSITY default
SET ROLE cutover_monitor;
SELECT * FROM upgrade_assist.cutover_progress;
SELECT count(*) FROM upgrade_assist.cutover_history;
RESET ROLE;
DROP ROLE cutover_nobody;
DROP ROLE cutover_monitor;

DROP USER MAPPING FOR CURRENT_USER SERVER cutover_down;
DROP SERVER cutover_down;
DROP TABLE cutover_t;
