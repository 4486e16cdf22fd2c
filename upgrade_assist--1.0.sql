/* upgrade_assist--1.0.sql: install script of upgrade_assist 1.0 */

\echo Use "CREATE EXTENSION upgrade_assist" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Peers: the other cluster is a foreign server of this wrapper; credentials
-- live in user mappings, as with dblink and postgres_fdw.
-- ---------------------------------------------------------------------------

CREATE FUNCTION upgrade_assist.fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'upgrade_assist_fdw_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER upgrade_assist
    VALIDATOR upgrade_assist.fdw_validator;

-- ---------------------------------------------------------------------------
-- Schema: monitoring roles may look at what the views and tables below
-- grant them; everything that changes state is revoked from PUBLIC in the
-- section that creates it.
-- ---------------------------------------------------------------------------

GRANT USAGE ON SCHEMA upgrade_assist TO pg_monitor;

-- ---------------------------------------------------------------------------
-- Markers: an ordinary table, so that whatever carries the user's tables to
-- the peer (native logical replication, any CDC pipeline) carries it too.
-- origin is the writing cluster's system identifier; seq grows per origin.
-- marker_skip_own: while both directions replicate (during a cutover), a
-- marker that went to the peer and came back (same origin and seq) would
-- collide with itself; this replica trigger, which fires only in logical
-- replication apply workers (session_replication_role = replica), skips rows
-- whose origin is this cluster.
-- ---------------------------------------------------------------------------

CREATE TABLE upgrade_assist.marker (
    origin      bigint      NOT NULL,
    seq         bigint      NOT NULL,
    kind        text        NOT NULL,
    written_at  timestamptz NOT NULL,
    written_lsn pg_lsn      NOT NULL,
    note        text,
    PRIMARY KEY (origin, seq),
    CONSTRAINT marker_kind_check CHECK (length(kind) BETWEEN 1 AND 63)
);
COMMENT ON TABLE upgrade_assist.marker IS
    'one row per marker; replicate it with the user tables';

-- Writes in the caller's transaction; SECURITY DEFINER so that a role granted
-- EXECUTE needs no privilege on the table itself.
CREATE FUNCTION upgrade_assist.emit_marker(
    kind text DEFAULT 'probe',
    note text DEFAULT NULL)
RETURNS upgrade_assist.marker
AS 'MODULE_PATHNAME', 'emit_marker'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION upgrade_assist.wait_for_marker(
    peer text,
    seq bigint,
    timeout interval DEFAULT '30s')
RETURNS interval
AS 'MODULE_PATHNAME', 'wait_for_marker'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.round_trip(
    peer text,
    timeout interval DEFAULT '30s',
    OUT seq bigint,
    OUT written_lsn pg_lsn,
    OUT latency interval)
RETURNS record
AS 'MODULE_PATHNAME', 'round_trip'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.marker_skip_own()
RETURNS trigger
AS 'MODULE_PATHNAME', 'marker_skip_own'
LANGUAGE C;

CREATE TRIGGER marker_skip_own
    BEFORE INSERT ON upgrade_assist.marker
    FOR EACH ROW EXECUTE FUNCTION upgrade_assist.marker_skip_own();
ALTER TABLE upgrade_assist.marker ENABLE REPLICA TRIGGER marker_skip_own;

-- Privileges: nothing that writes or talks to a peer is open to PUBLIC.
-- Monitoring roles (and the role a peer connects as) read the markers.
REVOKE ALL ON FUNCTION upgrade_assist.emit_marker(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.wait_for_marker(text, bigint, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.round_trip(text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.marker_skip_own() FROM PUBLIC;
GRANT SELECT ON upgrade_assist.marker TO pg_monitor;

-- ---------------------------------------------------------------------------
-- Heartbeat: a worker commits a 'heartbeat' marker at a fixed pace and
-- confirms each on the peer; sync_status shows what it measured.  The
-- configuration lives in the data directory, not in a table (a table would
-- be replicated to the peer by FOR ALL TABLES).
-- ---------------------------------------------------------------------------

CREATE FUNCTION upgrade_assist.heartbeat_start(
    peer text,
    every interval DEFAULT '1s')
RETURNS void
AS 'MODULE_PATHNAME', 'heartbeat_start'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.heartbeat_stop()
RETURNS boolean
AS 'MODULE_PATHNAME', 'heartbeat_stop'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.sync_status_rows(
    OUT datname text,
    OUT peer text,
    OUT state text,
    OUT last_written_seq bigint,
    OUT last_written_at timestamptz,
    OUT last_confirmed_seq bigint,
    OUT last_confirmed_at timestamptz,
    OUT lag interval,
    OUT last_latency interval,
    OUT latency_p50 interval,
    OUT latency_p99 interval,
    OUT samples integer,
    OUT worker_pid integer,
    OUT last_error text,
    OUT last_error_at timestamptz,
    OUT every interval)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'sync_status_rows'
LANGUAGE C VOLATILE;

CREATE VIEW upgrade_assist.sync_status AS
    SELECT * FROM upgrade_assist.sync_status_rows();

REVOKE ALL ON FUNCTION upgrade_assist.heartbeat_start(text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.heartbeat_stop() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.sync_status_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upgrade_assist.sync_status_rows() TO pg_monitor;
REVOKE ALL ON upgrade_assist.sync_status FROM PUBLIC;
GRANT SELECT ON upgrade_assist.sync_status TO pg_monitor;

-- ---------------------------------------------------------------------------
-- Write fence: while it is up, every write of every session that is not
-- exempt fails with SQLSTATE 25006; reads go on.  Cluster-wide, and kept
-- across restarts and crashes (file upgrade_assist.fence in the data
-- directory).  See README, "Write fence".
--   fence_exempt_session(): the calling session writes through the fence
--     until it ends (the cutover's own session on the fenced peer).
--   unfence_at_commit(): the fence is lifted when the calling transaction
--     commits, and stays if it aborts (the cutover's point of no return is
--     one peer transaction).
-- ---------------------------------------------------------------------------

CREATE FUNCTION upgrade_assist.fence(
    reason text DEFAULT 'cutover',
    drain_timeout interval DEFAULT '5s',
    auto_unfence_after interval DEFAULT NULL)
RETURNS TABLE (
    pid integer,
    database text,
    role text,
    application_name text,
    outcome text,
    waited interval)
AS 'MODULE_PATHNAME', 'fence'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION upgrade_assist.fence(text, interval, interval) IS
    'fence the cluster against writes, drain the write transactions in flight';

CREATE FUNCTION upgrade_assist.unfence()
RETURNS boolean
AS 'MODULE_PATHNAME', 'unfence'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION upgrade_assist.fence_status_rows(
    OUT fenced boolean,
    OUT since timestamptz,
    OUT reason text,
    OUT fenced_by text,
    OUT fenced_by_pid integer,
    OUT auto_unfence_at timestamptz,
    OUT drain_state text,
    OUT drain_finished integer,
    OUT drain_terminated integer,
    OUT lifted_at timestamptz,
    OUT lifted_by text,
    OUT generation bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'fence_status_rows'
LANGUAGE C VOLATILE STRICT;

CREATE VIEW upgrade_assist.fence_status AS
    SELECT * FROM upgrade_assist.fence_status_rows();

CREATE FUNCTION upgrade_assist.fence_exempt_session()
RETURNS void
AS 'MODULE_PATHNAME', 'fence_exempt_session'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.unfence_at_commit()
RETURNS void
AS 'MODULE_PATHNAME', 'unfence_at_commit'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION upgrade_assist.fence(text, interval, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.unfence() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.fence_exempt_session() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.unfence_at_commit() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.fence_status_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upgrade_assist.fence_status_rows() TO pg_monitor;
REVOKE ALL ON upgrade_assist.fence_status FROM PUBLIC;
GRANT SELECT ON upgrade_assist.fence_status TO pg_monitor;

-- ---------------------------------------------------------------------------
-- Sequences (run on the new side): logical replication carries row values,
-- not sequence counters.  sequence_plan shows, for every sequence of the
-- database, where sync_sequences would move it; sync_sequences moves them
-- all in the caller's transaction (ALTER SEQUENCE ... RESTART, so all or
-- nothing).  new_value is what the next nextval() returns.
-- ---------------------------------------------------------------------------

-- One row of the plan: new_value is what the next nextval() returns.
CREATE TYPE upgrade_assist.sequence_step AS (
    sequence regclass,
    columns text[],
    current_value bigint,
    current_is_called boolean,
    source_value bigint,
    source_is_called boolean,
    column_extreme bigint,
    new_value bigint,
    action text,
    detail text);

CREATE FUNCTION upgrade_assist.sequence_plan(
    source text DEFAULT NULL,
    margin bigint DEFAULT 0)
RETURNS SETOF upgrade_assist.sequence_step
AS 'MODULE_PATHNAME', 'sequence_plan'
LANGUAGE C VOLATILE
SET row_security = off;

CREATE FUNCTION upgrade_assist.sync_sequences(
    source text DEFAULT NULL,
    margin bigint DEFAULT 0)
RETURNS SETOF upgrade_assist.sequence_step
AS 'MODULE_PATHNAME', 'sync_sequences'
LANGUAGE C VOLATILE
SET row_security = off;

-- row_security = off: a table whose rows row-level security would hide from
-- the caller makes the call fail instead of giving a wrong extreme.
-- sync_sequences changes state; sequence_plan reads every table and may
-- talk to a peer.  Neither is open to PUBLIC.
REVOKE ALL ON FUNCTION upgrade_assist.sequence_plan(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.sync_sequences(text, bigint) FROM PUBLIC;

-- For the cutover, which moves the peer's sequences with this cluster's
-- states without the peer connecting back: sequence_states reads the exact
-- state of every sequence that sync_sequences considers (no table is read),
-- sync_sequences_given is sync_sequences with those states given as arrays
-- (element i of each: one sequence).
CREATE FUNCTION upgrade_assist.sequence_states()
RETURNS TABLE(schema_name text, sequence_name text,
              last_value bigint, is_called boolean)
AS 'MODULE_PATHNAME', 'sequence_states'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.sync_sequences_given(
    schema_names text[],
    sequence_names text[],
    last_values bigint[],
    is_called boolean[],
    margin bigint DEFAULT 0)
RETURNS SETOF upgrade_assist.sequence_step
AS 'MODULE_PATHNAME', 'sync_sequences_given'
LANGUAGE C VOLATILE
SET row_security = off;

REVOKE ALL ON FUNCTION upgrade_assist.sequence_states() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.sync_sequences_given(text[], text[], bigint[], boolean[], bigint) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Statistics rebuild after pg_upgrade (run on the new side).
--
-- A run is stored in stats_run, its work in stats_task: one row per table,
-- with the number of stages already done for it.  Rows carry the system
-- identifier of the cluster that wrote them (origin): the views show only
-- this cluster's rows, so rows that reach another cluster (a FOR ALL TABLES
-- publication of the reverse direction, or a later pg_upgrade of this
-- cluster) are inert there.  Both tables have a primary key, so that they
-- never make such a publication refuse UPDATEs.  They are ordinary logged
-- tables: a crash or restart leaves the run as it was, and the view reports
-- it interrupted because no worker runs it any more.
-- ---------------------------------------------------------------------------

CREATE TABLE upgrade_assist.stats_run (
    run_id       bigint      PRIMARY KEY,   -- no sequence: max + 1 under a table lock
    origin       bigint      NOT NULL,
    stages       integer[]   NOT NULL,
    jobs         integer     NOT NULL,
    only_missing boolean     NOT NULL,
    started_by   name        NOT NULL,
    state        text        NOT NULL DEFAULT 'running',
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    resumed_from bigint,
    work_at_start numeric    NOT NULL DEFAULT 0,
    CONSTRAINT stats_run_state_check
        CHECK (state IN ('running', 'done', 'cancelled', 'interrupted'))
);
COMMENT ON TABLE upgrade_assist.stats_run IS
    'statistics rebuild runs of this cluster (origin); see stats_progress';

CREATE TABLE upgrade_assist.stats_task (
    run_id      bigint      NOT NULL
                REFERENCES upgrade_assist.stats_run ON DELETE CASCADE,
    relid       oid         NOT NULL,
    relname     text        NOT NULL,
    pages       bigint      NOT NULL,
    stage_done  integer     NOT NULL DEFAULT 0,
    retry_at    timestamptz NOT NULL DEFAULT '-infinity',
    retries     integer     NOT NULL DEFAULT 0,
    analyzed_at timestamptz,
    note        text,
    PRIMARY KEY (run_id, relid)
);
CREATE INDEX stats_task_queue ON upgrade_assist.stats_task
    (run_id, stage_done, pages DESC);
CREATE INDEX stats_task_relid ON upgrade_assist.stats_task (relid, analyzed_at);

-- One row per table, materialized view and partitioned table outside the
-- system schemas (and the two tables above).  A table has complete statistics when every column that
-- takes statistics (attstattarget not 0) has a pg_statistic row and every
-- extended statistics object on it has data (partitioned tables: their
-- inheritance statistics, the only ones they have).  A table without pages
-- has nothing to analyze and counts as complete, as does one that ANALYZE
-- found without live rows.
CREATE VIEW upgrade_assist.stats_coverage AS
SELECT c.oid::regclass                                    AS relid,
       n.nspname                                          AS schemaname,
       c.relname,
       CASE c.relkind WHEN 'r' THEN 'table'
                      WHEN 'p' THEN 'partitioned table'
                      ELSE 'materialized view' END        AS kind,
       sz.pages = 0
         OR (c.reltuples = 0
             AND greatest(s.last_analyze, s.last_autoanalyze) IS NOT NULL)
         OR (col.total = col.with_stats
             AND ext.total = ext.built
             AND (c.reltuples >= 0 OR c.relkind = 'p'))    AS has_statistics,
       col.total                                          AS columns,
       col.with_stats                                     AS columns_with_stats,
       ext.total                                          AS ext_stats,
       ext.built                                          AS ext_stats_built,
       greatest(s.last_analyze, s.last_autoanalyze, ours.analyzed_at)
                                                          AS last_analyzed,
       CASE
         WHEN ours.analyzed_at IS NOT NULL
              AND ours.analyzed_at >= coalesce(greatest(s.last_analyze, s.last_autoanalyze), '-infinity')
           THEN 'upgrade_assist'
         WHEN s.last_autoanalyze IS NOT NULL
              AND s.last_autoanalyze >= coalesce(s.last_analyze, '-infinity')
           THEN 'autovacuum'
         WHEN s.last_analyze IS NOT NULL THEN 'ANALYZE'
         WHEN col.with_stats > 0 THEN 'unknown (carried by pg_upgrade or before a stats reset)'
       END                                                AS analyzed_by,
       sz.pages,
       sz.pages::numeric * pg_catalog.current_setting('block_size')::integer AS size_bytes,
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples END AS rows_estimate
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL (
       SELECT pg_catalog.count(*)::integer AS total,
              pg_catalog.count(*) FILTER (WHERE EXISTS (
                  SELECT FROM pg_catalog.pg_statistic st
                   WHERE st.starelid = a.attrelid AND st.staattnum = a.attnum
                     AND st.stainherit = (c.relkind = 'p')))::integer AS with_stats
         FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          AND coalesce(a.attstattarget::integer, -1) <> 0) col
  CROSS JOIN LATERAL (
       SELECT pg_catalog.count(*)::integer AS total,
              pg_catalog.count(*) FILTER (WHERE EXISTS (
                  -- Before 14 the row exists, empty, from CREATE STATISTICS
                  -- on; the kinds' columns differ between releases.
                  SELECT FROM pg_catalog.pg_statistic_ext_data d,
                         pg_catalog.jsonb_each(pg_catalog.to_jsonb(d) - 'stxoid' - 'stxdinherit') j
                   WHERE d.stxoid = x.oid AND j.value <> 'null'))::integer AS built
         FROM pg_catalog.pg_statistic_ext x
        WHERE x.stxrelid = c.oid) ext
  CROSS JOIN LATERAL (
       SELECT (CASE WHEN c.relkind = 'p' THEN
                   (SELECT coalesce(pg_catalog.sum(pg_catalog.pg_relation_size(t.relid)), 0)
                      FROM pg_catalog.pg_partition_tree(c.oid) t WHERE t.isleaf)
              ELSE pg_catalog.pg_relation_size(c.oid) END
              / pg_catalog.current_setting('block_size')::integer)::bigint AS pages) sz
  LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
  LEFT JOIN LATERAL (
       SELECT pg_catalog.max(t.analyzed_at) AS analyzed_at
         FROM upgrade_assist.stats_task t
         JOIN upgrade_assist.stats_run r USING (run_id)
        WHERE t.relid = c.oid
          AND r.origin = (SELECT system_identifier FROM pg_catalog.pg_control_system())) ours
    ON true
 WHERE c.relkind IN ('r', 'm', 'p')
   AND c.relpersistence <> 't'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_toast'
   -- the rebuild's own bookkeeping, which it changes while it runs
   AND c.oid NOT IN ('upgrade_assist.stats_run'::regclass,
                     'upgrade_assist.stats_task'::regclass);

CREATE FUNCTION upgrade_assist.rebuild_stats(
    stages integer[] DEFAULT '{1,10,-1}',
    jobs integer DEFAULT 2,
    only_missing boolean DEFAULT true)
RETURNS bigint
AS 'MODULE_PATHNAME', 'rebuild_stats'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION upgrade_assist.cancel_stats_rebuild()
RETURNS boolean
AS 'MODULE_PATHNAME', 'cancel_stats_rebuild'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

-- The workers of the running rebuild, from shared memory: the live part of
-- the view stats_progress.
CREATE FUNCTION upgrade_assist.stats_progress_rows(
    OUT run_id bigint,
    OUT pid integer,
    OUT relid oid,
    OUT stage integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'stats_progress_rows'
LANGUAGE C VOLATILE;

-- One row per run of this cluster, newest first.  Work is counted in pages
-- plus one per table and stage, so that empty tables count too; a table's
-- stage count only grows, so percent never goes backwards.
CREATE VIEW upgrade_assist.stats_progress AS
SELECT r.run_id AS run,
       CASE WHEN r.state = 'running' AND w.workers = 0 THEN 'interrupted'
            ELSE r.state END                              AS state,
       CASE WHEN r.state <> 'running' THEN r.state
            WHEN w.workers = 0 THEN 'interrupted'
            WHEN t.min_stage >= pg_catalog.array_length(r.stages, 1) THEN 'finishing'
            ELSE 'analyzing' END                          AS phase,
       least(t.min_stage + 1, pg_catalog.array_length(r.stages, 1))  AS stage,
       pg_catalog.array_length(r.stages, 1)                          AS stages,
       r.stages[least(t.min_stage + 1, pg_catalog.array_length(r.stages, 1))] AS stage_target,
       t.tables_total,
       count_done.tables_done,
       t.pages_total * pg_catalog.array_length(r.stages, 1)          AS pages_total,
       t.pages_done,
       pg_catalog.round(100 * t.work_done / nullif(t.work_total, 0), 2) AS percent,
       coalesce(r.ended_at, pg_catalog.now()) - r.started_at          AS elapsed,
       CASE WHEN t.work_done >= t.work_total THEN interval '0'
            WHEN t.work_done > r.work_at_start
             AND extract(epoch FROM pg_catalog.now() - r.started_at) > 0
             AND r.state = 'running' AND w.workers > 0
            THEN pg_catalog.make_interval(secs => ((t.work_total - t.work_done)
                   / ((t.work_done - r.work_at_start)
                      / extract(epoch FROM pg_catalog.now() - r.started_at)))::double precision)
       END                                                AS estimated_left,
       w.workers,
       w.analyzing,
       t.deferred,
       r.jobs,
       r.only_missing,
       r.started_by,
       r.started_at,
       r.ended_at,
       r.resumed_from
  FROM upgrade_assist.stats_run r
  CROSS JOIN LATERAL (
       SELECT pg_catalog.count(*)::integer AS tables_total,
              coalesce(pg_catalog.min(k.stage_done), pg_catalog.array_length(r.stages, 1)) AS min_stage,
              coalesce(pg_catalog.sum(k.pages), 0) AS pages_total,
              coalesce(pg_catalog.sum(k.pages * k.stage_done), 0) AS pages_done,
              coalesce(pg_catalog.sum((k.pages + 1) * k.stage_done), 0)::numeric AS work_done,
              coalesce(pg_catalog.sum((k.pages + 1) * pg_catalog.array_length(r.stages, 1)), 0)::numeric AS work_total,
              pg_catalog.count(*) FILTER (WHERE k.retry_at > pg_catalog.now()
                               AND k.stage_done < pg_catalog.array_length(r.stages, 1))::integer AS deferred
         FROM upgrade_assist.stats_task k WHERE k.run_id = r.run_id) t
  CROSS JOIN LATERAL (
       SELECT pg_catalog.count(*) FILTER (WHERE k.stage_done >= least(t.min_stage + 1, pg_catalog.array_length(r.stages, 1)))::integer
              AS tables_done
         FROM upgrade_assist.stats_task k WHERE k.run_id = r.run_id) count_done
  CROSS JOIN LATERAL (
       SELECT pg_catalog.count(*)::integer AS workers,
              pg_catalog.array_agg(sw.relid::regclass ORDER BY sw.pid)
                  FILTER (WHERE sw.relid <> 0) AS analyzing
         FROM upgrade_assist.stats_progress_rows() sw WHERE sw.run_id = r.run_id) w
 WHERE r.origin = (SELECT system_identifier FROM pg_catalog.pg_control_system())
 ORDER BY r.run_id DESC;

REVOKE ALL ON upgrade_assist.stats_run FROM PUBLIC;
REVOKE ALL ON upgrade_assist.stats_task FROM PUBLIC;
GRANT SELECT ON upgrade_assist.stats_run, upgrade_assist.stats_task TO pg_monitor;
REVOKE ALL ON FUNCTION upgrade_assist.rebuild_stats(integer[], integer, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cancel_stats_rebuild() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.stats_progress_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upgrade_assist.stats_progress_rows() TO pg_monitor;
REVOKE ALL ON upgrade_assist.stats_progress FROM PUBLIC;
GRANT SELECT ON upgrade_assist.stats_progress TO pg_monitor;
REVOKE ALL ON upgrade_assist.stats_coverage FROM PUBLIC;
GRANT SELECT ON upgrade_assist.stats_coverage TO pg_monitor;

-- ---------------------------------------------------------------------------
-- Statistics export and import.  export_stats() (old side) fills the two
-- export tables with the planner statistics of every table of the database,
-- in text form; import_stats() (new side) writes them into the catalogs,
-- from these tables (carried by pg_upgrade or replication) or straight from
-- a peer.  The tables hold sample values of the data: superusers only.
-- ---------------------------------------------------------------------------

CREATE TABLE upgrade_assist.stats_export_rel (
    schemaname    text NOT NULL,
    relname       text NOT NULL,
    relpages      integer NOT NULL,
    reltuples     real NOT NULL,
    relallvisible integer NOT NULL,
    PRIMARY KEY (schemaname, relname)
);

-- One row per pg_statistic row, its slots by kind as in pg_stats.
CREATE TABLE upgrade_assist.stats_export_att (
    schemaname             text NOT NULL,
    relname                text NOT NULL,
    attname                text NOT NULL,
    inherited              boolean NOT NULL,
    atttype                text NOT NULL,
    attcollation           text,
    attstattarget          integer NOT NULL,
    null_frac              real NOT NULL,
    avg_width              integer NOT NULL,
    n_distinct             real NOT NULL,
    most_common_vals       text,
    most_common_freqs      real[],
    histogram_bounds       text,
    correlation            real,
    most_common_elems      text,
    most_common_elem_freqs real[],
    elem_count_histogram   real[],
    range_length_histogram text,
    range_empty_frac       real,
    range_bounds_histogram text,
    PRIMARY KEY (schemaname, relname, attname, inherited)
);

CREATE FUNCTION upgrade_assist.export_stats()
RETURNS integer
AS 'MODULE_PATHNAME', 'export_stats'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.import_stats(source text DEFAULT NULL)
RETURNS TABLE (schemaname text, relname text, status text,
               columns_imported integer, columns_skipped integer, detail text)
AS 'MODULE_PATHNAME', 'import_stats'
LANGUAGE C VOLATILE;

REVOKE ALL ON upgrade_assist.stats_export_rel FROM PUBLIC;
REVOKE ALL ON upgrade_assist.stats_export_att FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.export_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.import_stats(text) FROM PUBLIC;
-- Preflight (run on the primary): what would make a cutover lose or break
-- data.  With a peer (the subscriber), both sides are compared; it writes
-- nothing.  The cutover's checks step runs it too.

CREATE FUNCTION upgrade_assist.preflight(peer text DEFAULT NULL)
RETURNS TABLE (severity text, "check" text, object text, detail text, hint text)
AS 'MODULE_PATHNAME', 'preflight'
LANGUAGE C VOLATILE;

REVOKE ALL ON FUNCTION upgrade_assist.preflight(text) FROM PUBLIC;

-- ---------------------------------------------------------------------------
-- Cutover (run on the cluster that is primary now; rollback is the same call
-- on the other cluster).  The work is done by a background worker; the
-- function reports each step as a NOTICE and returns the step table.
-- cutover_history keeps one row per attempt (dry runs are not recorded).
-- Its replica trigger drops rows that arrive through replication (a FOR ALL
-- TABLES publication carries this table too): each cluster keeps its own.
-- ---------------------------------------------------------------------------

CREATE TABLE upgrade_assist.cutover_history (
    attempt bigint PRIMARY KEY,     -- max + 1: one cutover runs at a time
    peer text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    outcome text NOT NULL
        CHECK (outcome IN ('running', 'succeeded', 'aborted', 'interrupted', 'unknown')),
    failed_step text,
    reason text,
    blackout interval,
    fenced_at timestamptz,
    peer_writable_at timestamptz,
    steps jsonb NOT NULL DEFAULT '[]'
);
SELECT pg_catalog.pg_extension_config_dump('upgrade_assist.cutover_history', '');

CREATE FUNCTION upgrade_assist.cutover_history_keep_local()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NULL;
END
$$;

CREATE TRIGGER keep_local
    BEFORE INSERT OR UPDATE OR DELETE ON upgrade_assist.cutover_history
    FOR EACH ROW EXECUTE FUNCTION upgrade_assist.cutover_history_keep_local();
ALTER TABLE upgrade_assist.cutover_history ENABLE REPLICA TRIGGER keep_local;

CREATE FUNCTION upgrade_assist.cutover(
    peer text,
    max_lag interval DEFAULT '1s',
    timeout interval DEFAULT '60s',
    sequence_margin bigint DEFAULT 0,
    reverse boolean DEFAULT true,
    dry_run boolean DEFAULT false,
    disconnect boolean DEFAULT true)
RETURNS TABLE (step text, status text, started_at timestamptz,
               duration interval, detail text)
AS 'MODULE_PATHNAME', 'cutover'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.cutover_resume()
RETURNS boolean
AS 'MODULE_PATHNAME', 'cutover_resume'
LANGUAGE C VOLATILE;

-- The peer's half of the point of no return, called by the cutover worker
-- of the other cluster: drop the forward subscription (its slot is on the
-- caller's side, which drops it) and lift the fence when this commits.
CREATE FUNCTION upgrade_assist.cutover_takeover(forward_subscription name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('ALTER SUBSCRIPTION %I DISABLE', forward_subscription);
    EXECUTE format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', forward_subscription);
    EXECUTE format('DROP SUBSCRIPTION %I', forward_subscription);
    PERFORM upgrade_assist.unfence_at_commit();
END
$$;

CREATE FUNCTION upgrade_assist.cutover_progress_rows(
    OUT attempt bigint,
    OUT peer text,
    OUT phase text,
    OUT started_at timestamptz,
    OUT elapsed interval,
    OUT blackout interval,
    OUT past_point_of_no_return boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'cutover_progress_rows'
LANGUAGE C VOLATILE;

CREATE VIEW upgrade_assist.cutover_progress AS
    SELECT * FROM upgrade_assist.cutover_progress_rows();

REVOKE ALL ON upgrade_assist.cutover_history FROM PUBLIC;
GRANT SELECT ON upgrade_assist.cutover_history TO pg_monitor;
REVOKE ALL ON FUNCTION upgrade_assist.cutover(text, interval, interval, bigint, boolean, boolean, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_resume() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_takeover(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_history_keep_local() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_progress_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upgrade_assist.cutover_progress_rows() TO pg_monitor;
REVOKE ALL ON upgrade_assist.cutover_progress FROM PUBLIC;
GRANT SELECT ON upgrade_assist.cutover_progress TO pg_monitor;
