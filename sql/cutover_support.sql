-- What cutover() calls: fence_exempt_session(), unfence_at_commit(), and the
-- marker bounce filter (trigger marker_skip_own on upgrade_assist.marker).
-- \c starts a new session: exemption lasts as long as the session.
CREATE TABLE cutover_t (id int PRIMARY KEY);

-- An exempt session writes under the fence, also in a transaction the
-- fence had already made read-only.
SELECT count(*) FROM upgrade_assist.fence('cutover support', '1s');
BEGIN;
SELECT count(*) FROM cutover_t;
SELECT upgrade_assist.fence_exempt_session();
INSERT INTO cutover_t VALUES (1);
COMMIT;
INSERT INTO cutover_t VALUES (2);
UPDATE cutover_t SET id = id + 10 WHERE id = 2;

-- Another session is still fenced.
\c
\set VERBOSITY sqlstate
INSERT INTO cutover_t VALUES (3);
\set VERBOSITY default
SELECT id FROM cutover_t ORDER BY id;

-- unfence_at_commit: nothing happens when the transaction, or the
-- subtransaction that asked, rolls back.
BEGIN;
SELECT upgrade_assist.unfence_at_commit();
SELECT fenced FROM upgrade_assist.fence_status;
ROLLBACK;
SELECT fenced FROM upgrade_assist.fence_status;
BEGIN;
SAVEPOINT s;
SELECT upgrade_assist.unfence_at_commit();
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT fenced FROM upgrade_assist.fence_status;
-- A transaction that asked cannot be prepared (it is rolled back).
BEGIN;
SELECT upgrade_assist.unfence_at_commit();
\set VERBOSITY sqlstate
PREPARE TRANSACTION 'cutover_unfence';
\set VERBOSITY default
SELECT fenced FROM upgrade_assist.fence_status;
-- Lifted at commit, not before; a released savepoint keeps the request.
BEGIN;
SAVEPOINT s;
SELECT upgrade_assist.unfence_at_commit();
RELEASE SAVEPOINT s;
SELECT fenced FROM upgrade_assist.fence_status;
COMMIT;
SELECT fenced, lifted_by = current_user AS lifted_by_me
  FROM upgrade_assist.fence_status;
INSERT INTO cutover_t VALUES (3);
-- Not fenced: 55000.
\set VERBOSITY sqlstate
SELECT upgrade_assist.unfence_at_commit();
\set VERBOSITY default
-- In autocommit mode the statement's own commit lifts it.
SELECT count(*) FROM upgrade_assist.fence('cutover support', '1s');
SELECT upgrade_assist.unfence_at_commit();
SELECT fenced FROM upgrade_assist.fence_status;

-- marker_skip_own: a replica trigger (tgenabled R).
SELECT tgname, tgenabled, tgfoid::regproc
  FROM pg_trigger WHERE tgrelid = 'upgrade_assist.marker'::regclass;
-- As in an apply worker: this cluster's own markers are skipped, the
-- peer's are kept.
SET session_replication_role = replica;
INSERT INTO upgrade_assist.marker
    SELECT system_identifier, 7000000001, 'bounced', now(), '0/0', NULL
      FROM pg_control_system();
INSERT INTO upgrade_assist.marker
    SELECT system_identifier + 1, 7000000001, 'foreign', now(), '0/0', NULL
      FROM pg_control_system();
-- So a marker cannot be written here in replica mode.
\set VERBOSITY sqlstate
SELECT upgrade_assist.emit_marker('replica');
\set VERBOSITY default
RESET session_replication_role;
-- In origin mode the trigger does not fire.
INSERT INTO upgrade_assist.marker
    SELECT system_identifier, 7000000002, 'local', now(), '0/0', NULL
      FROM pg_control_system();
SELECT origin = (SELECT system_identifier FROM pg_control_system()) AS own,
       seq, kind
  FROM upgrade_assist.marker WHERE seq > 7000000000 ORDER BY seq, kind;
DELETE FROM upgrade_assist.marker WHERE seq > 7000000000;

DROP TABLE cutover_t;
