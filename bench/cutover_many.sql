-- bench/cutover_many.sql: with TABLES=... (bench/cutover), the second script of the
-- load (pgbench -f, with -D tables=N): one row into one of the tables many_1 ..
-- many_N of bench/lib.sh's create_many_tables, picked at random, so that
-- sequences of every size of schema move during the run.
\set t random(1, :tables)
INSERT INTO many_:t (v) VALUES (:t);
