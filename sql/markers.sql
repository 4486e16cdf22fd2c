-- emit_marker writes in the caller's transaction.
SELECT origin = (SELECT system_identifier FROM pg_control_system()) AS own_origin,
       seq > 0 AS seq_positive, kind, note, written_lsn <= pg_current_wal_insert_lsn() AS lsn_ok,
       written_at <= clock_timestamp() AS time_ok
  FROM upgrade_assist.emit_marker();
SELECT kind, note FROM upgrade_assist.emit_marker('cutover', 'final marker');

-- Numbers grow, without a sequence object.
SELECT count(*) AS sequences FROM pg_class
 WHERE relkind = 'S' AND relnamespace = 'upgrade_assist'::regnamespace;
CREATE TEMP TABLE seqs AS
  SELECT (upgrade_assist.emit_marker('probe', 'n' || g)).seq FROM generate_series(1, 5) g;
SELECT bool_and(seq > (SELECT min(seq) FROM seqs) OR seq = (SELECT min(seq) FROM seqs)) AS ordered,
       count(DISTINCT seq) AS distinct_seqs FROM seqs;

-- A rolled-back marker leaves a gap, never a reuse.
BEGIN;
SELECT seq AS rolled_back FROM upgrade_assist.emit_marker() \gset
ROLLBACK;
SELECT seq > :rolled_back AS after_gap FROM upgrade_assist.emit_marker();
SELECT count(*) AS rolled_back_rows FROM upgrade_assist.marker WHERE seq = :rolled_back;

-- Bad input: clear errors, nothing written.
SELECT count(*) AS before FROM upgrade_assist.marker \gset
\set VERBOSITY sqlstate
SELECT upgrade_assist.emit_marker(NULL);
SELECT upgrade_assist.emit_marker('');
SELECT upgrade_assist.emit_marker(repeat('x', 64));
\set VERBOSITY default
SELECT upgrade_assist.emit_marker('');
SELECT count(*) = :before AS nothing_written FROM upgrade_assist.marker;

-- The table is an ordinary table with a primary key (replica identity).
SELECT relreplident, relpersistence FROM pg_class WHERE oid = 'upgrade_assist.marker'::regclass;
