-- The attempt record and cutover_resolve(): SQL surface, bad input,
-- privileges.  (Crashes mid-cutover on real pairs: t/011_cutover_crash.pl.)
\set VERBOSITY sqlstate
-- Nothing unfinished here: cutover_resolve() refuses, changes nothing.
SELECT * FROM upgrade_assist.cutover_resolve();
SELECT fenced, cutover_attempt, waiting_for FROM upgrade_assist.fence_status;
-- Bad input.
SELECT * FROM upgrade_assist.cutover_resolve(NULL);
SELECT * FROM upgrade_assist.cutover_attempt_outcome(NULL, 1);
SELECT upgrade_assist.cutover_takeover('s', 1, NULL);
SELECT upgrade_assist.fence_note_takeover(1, 0);
-- Not fenced: no takeover can be noted.
SELECT upgrade_assist.fence_note_takeover(1, 1);
\set VERBOSITY default
-- The question leaves a tombstone; asking again answers the same.
SELECT committed, fenced, forward_subscription, forward_slot
  FROM upgrade_assist.cutover_attempt_outcome(42, 1);
SELECT committed FROM upgrade_assist.cutover_attempt_outcome(42, 1);
SELECT origin, attempt, state, asked_at >= recorded_at AS asked
  FROM upgrade_assist.cutover_attempt;
\set VERBOSITY sqlstate
-- A late takeover of that attempt refuses, and changes nothing.
SELECT upgrade_assist.cutover_takeover('no_such_sub', 42, 1);
-- Another attempt: the subscription must exist (the whole takeover rolls back).
SELECT upgrade_assist.cutover_takeover('no_such_sub', 42, 2);
\set VERBOSITY default
SELECT origin, attempt, state FROM upgrade_assist.cutover_attempt ORDER BY attempt;
-- A fence of fence() names no attempt.
SELECT count(*) FROM upgrade_assist.fence('regress');
SELECT fenced, cutover_attempt, waiting_for FROM upgrade_assist.fence_status;
SELECT upgrade_assist.unfence();
-- Rows that arrive through replication are dropped: each cluster keeps its own.
SET session_replication_role = replica;
INSERT INTO upgrade_assist.cutover_attempt (origin, attempt, state) VALUES (42, 3, 'committed');
RESET session_replication_role;
SELECT count(*) FROM upgrade_assist.cutover_attempt WHERE attempt = 3;
-- Privileges: revoked from PUBLIC; the record readable by pg_monitor.
CREATE ROLE resolve_nobody;
CREATE ROLE resolve_monitor IN ROLE pg_monitor;
SET ROLE resolve_nobody;
\set VERBOSITY sqlstate
SELECT * FROM upgrade_assist.cutover_resolve();
SELECT * FROM upgrade_assist.cutover_attempt_outcome(42, 1);
SELECT upgrade_assist.fence_note_takeover(42, 1);
SELECT count(*) FROM upgrade_assist.cutover_attempt;
\set VERBOSITY default
SET ROLE resolve_monitor;
SELECT count(*) FROM upgrade_assist.cutover_attempt;
RESET ROLE;
DROP ROLE resolve_nobody;
DROP ROLE resolve_monitor;
DELETE FROM upgrade_assist.cutover_attempt;
