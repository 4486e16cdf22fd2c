-- bench/cutover_load.sql: the write transaction of scripts/demo and bench/cutover
-- (pgbench -f, with -D scale=N): pgbench's tpcb-like, plus a row in each table of
-- bench/cutover_schema.sql, so that every transaction draws from the identity
-- sequence and twice from the shared one.
\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
INSERT INTO orders (aid, amount) VALUES (:aid, :delta);
INSERT INTO order_events (aid, kind) VALUES (:aid, 'created');
INSERT INTO audit_log (note) VALUES ('order of account ' || :aid);
END;
