-- The write fence: SQL surface, bad input, privileges.  (Every write path,
-- exemptions, restarts and crashes: t/003_fence.pl.)
CREATE TABLE fence_t (id int PRIMARY KEY);
CREATE SEQUENCE fence_s;
INSERT INTO fence_t VALUES (1);

SELECT fenced, since IS NULL AS never_fenced, drain_state, generation
  FROM upgrade_assist.fence_status;

\set VERBOSITY sqlstate
-- Bad input.
SELECT * FROM upgrade_assist.fence(NULL);
SELECT * FROM upgrade_assist.fence('');
SELECT * FROM upgrade_assist.fence(repeat('x', 600));
SELECT * FROM upgrade_assist.fence('x', NULL);
SELECT * FROM upgrade_assist.fence('x', '-1s');
SELECT * FROM upgrade_assist.fence('x', '1s', '0s');
-- Not in a transaction that has written: its commit would come after.
BEGIN;
INSERT INTO fence_t VALUES (2);
SELECT * FROM upgrade_assist.fence('x');
ROLLBACK;
\set VERBOSITY default

-- Nobody else is writing: nothing to drain.
SELECT * FROM upgrade_assist.fence('regress', '1s');
SELECT fenced, reason, fenced_by = current_user AS by_me,
       fenced_by_pid = pg_backend_pid() AS my_pid, auto_unfence_at,
       drain_state, drain_finished, drain_terminated, generation
  FROM upgrade_assist.fence_status;

\set VERBOSITY sqlstate
SELECT * FROM upgrade_assist.fence('again');
-- Writes fail, reads work.
INSERT INTO fence_t VALUES (3);
UPDATE fence_t SET id = id;
DELETE FROM fence_t;
SELECT nextval('fence_s');
SELECT * FROM fence_t FOR SHARE;
CREATE TABLE fence_u (a int);
SET default_transaction_read_only = off;
SELECT count(*) FROM fence_t;
BEGIN READ ONLY;
SELECT count(*) FROM fence_t;
COMMIT;
-- Temporary tables: no new ones (DDL), but existing ones take writes, as in
-- any read-only transaction.
CREATE TEMP TABLE fence_tmp (a int);
\set VERBOSITY default
SELECT upgrade_assist.unfence();
CREATE TEMP TABLE fence_tmp (a int);
SELECT count(*) FROM upgrade_assist.fence('temp tables', '1s');
INSERT INTO fence_tmp VALUES (1);
SELECT count(*) FROM fence_tmp;
-- The extension's own markers pass.
SELECT kind FROM upgrade_assist.emit_marker('fenced');

-- Lifting it.
SELECT upgrade_assist.unfence();
SELECT upgrade_assist.unfence();
SELECT fenced, lifted_by = current_user AS lifted_by_me, drain_state
  FROM upgrade_assist.fence_status;
INSERT INTO fence_t VALUES (3);
SELECT nextval('fence_s');

-- auto_unfence_after: nobody can see the fence after its deadline.
SELECT count(*) FROM upgrade_assist.fence('short', '1s', '1 ms');
SELECT pg_sleep(0.01);
SELECT fenced, lifted_by FROM upgrade_assist.fence_status;
INSERT INTO fence_t VALUES (4);

-- Privileges: only superusers and granted roles fence and unfence;
-- pg_monitor reads the status.
CREATE ROLE regress_fence_nobody;
CREATE ROLE regress_fence_admin;
CREATE ROLE regress_fence_watcher IN ROLE pg_monitor;
GRANT USAGE ON SCHEMA upgrade_assist TO regress_fence_nobody, regress_fence_admin;
GRANT EXECUTE ON FUNCTION upgrade_assist.fence(text, interval, interval),
                          upgrade_assist.unfence() TO regress_fence_admin;
\set VERBOSITY sqlstate
SET ROLE regress_fence_nobody;
SELECT * FROM upgrade_assist.fence();
SELECT upgrade_assist.unfence();
SELECT fenced FROM upgrade_assist.fence_status;
RESET ROLE;
SET ROLE regress_fence_admin;
SELECT count(*) FROM upgrade_assist.fence('granted', '1s');
RESET ROLE;
SET ROLE regress_fence_watcher;
SELECT fenced, reason, fenced_by FROM upgrade_assist.fence_status;
RESET ROLE;
SET ROLE regress_fence_admin;
SELECT upgrade_assist.unfence();
RESET ROLE;
\set VERBOSITY default

REVOKE ALL ON SCHEMA upgrade_assist FROM regress_fence_nobody, regress_fence_admin;
REVOKE ALL ON FUNCTION upgrade_assist.fence(text, interval, interval),
                       upgrade_assist.unfence() FROM regress_fence_admin;
DROP ROLE regress_fence_nobody, regress_fence_admin, regress_fence_watcher;
DROP TABLE fence_t;
DROP SEQUENCE fence_s;
