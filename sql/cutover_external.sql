-- cutover(..., replication => ...): bad values are refused before anything
-- happens; 'external' without a switch command stops in the checks step,
-- before the fence.  (Real cutovers over a CDC relay: t/016_external.pl.)
CREATE TABLE cutover_ext_t (id int PRIMARY KEY);
-- Nobody listens on port 1.
CREATE SERVER cutover_ext_down FOREIGN DATA WRAPPER upgrade_assist
    OPTIONS (host '127.0.0.1', port '1', dbname 'postgres');
CREATE USER MAPPING FOR CURRENT_USER SERVER cutover_ext_down;
SELECT coalesce(max(attempt), 0) AS ext_before FROM upgrade_assist.cutover_history \gset

\set VERBOSITY sqlstate
SELECT * FROM upgrade_assist.cutover('cutover_ext_down', replication => 'pglogical');
SELECT * FROM upgrade_assist.cutover('cutover_ext_down', replication => '');
SELECT * FROM upgrade_assist.cutover('cutover_ext_down', replication => NULL);
\set VERBOSITY default
SELECT * FROM upgrade_assist.cutover('cutover_ext_down', replication => 'External');
-- Nothing started: no attempt recorded, nothing fenced.
SELECT count(*) FROM upgrade_assist.cutover_history WHERE attempt > :ext_before;
SELECT fenced FROM upgrade_assist.fence_status;

-- 'external' needs upgrade_assist.cutover_command: the checks say so before
-- the peer is even asked, and nothing is fenced.
SET client_min_messages = warning;
\set VERBOSITY terse
SELECT step, status, detail
  FROM upgrade_assist.cutover('cutover_ext_down', replication => 'external',
                              on_abort => 'warning');
SELECT step, status
  FROM upgrade_assist.cutover('cutover_ext_down', replication => 'external',
                              dry_run => true, on_abort => 'warning');
\set VERBOSITY default
RESET client_min_messages;
SELECT outcome, failed_step, reason FROM upgrade_assist.cutover_history
 WHERE attempt > :ext_before ORDER BY attempt;
SELECT fenced FROM upgrade_assist.fence_status;
INSERT INTO cutover_ext_t VALUES (1);

DROP TABLE cutover_ext_t;
DROP USER MAPPING FOR CURRENT_USER SERVER cutover_ext_down;
DROP SERVER cutover_ext_down;
