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
    OUT every interval,
    OUT schema text,
    OUT schema_checked_at timestamptz)
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
    OUT generation bigint,
    OUT cutover_attempt bigint,
    OUT waiting_for text)
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

-- For the cutover's blackout (docs/blackout.md): sequences_prepare builds,
-- before the fence, this session's plan (sequences, the columns drawing from
-- them, the index that answers each column's extreme) and returns its
-- sequences in plan order under a token; sync_sequences_prepared applies
-- the source's states to a batch of that plan (element i: plan sequence
-- first + i, NULL last_value: not on the source) with index probes and
-- setval(), which is not transactional: a move stays even if the caller's
-- transaction rolls back.  sync_sequences stays all or nothing.
CREATE FUNCTION upgrade_assist.sequences_prepare()
RETURNS TABLE(token bigint, schema_name text, sequence_name text)
AS 'MODULE_PATHNAME', 'sequences_prepare'
LANGUAGE C VOLATILE
SET row_security = off;

CREATE FUNCTION upgrade_assist.sync_sequences_prepared(
    token bigint,
    first integer,
    last_values bigint[],
    is_called boolean[],
    margin bigint DEFAULT 0)
RETURNS TABLE(sequences integer, moved integer)
AS 'MODULE_PATHNAME', 'sync_sequences_prepared'
LANGUAGE C VOLATILE
SET row_security = off;

REVOKE ALL ON FUNCTION upgrade_assist.sequences_prepare() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.sync_sequences_prepared(bigint, integer, bigint[], boolean[], bigint) FROM PUBLIC;

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
    -- the columns (attnums) to analyze, NULL for all: in an only_missing
    -- run, a table whose columns all have statistics (imported) but whose
    -- extended statistics lack data gets the columns of those objects
    columns     smallint[],
    PRIMARY KEY (run_id, relid)
);
CREATE INDEX stats_task_queue ON upgrade_assist.stats_task
    (run_id, stage_done, pages DESC);
CREATE INDEX stats_task_relid ON upgrade_assist.stats_task (relid, analyzed_at);

-- The export tables of export_stats() (see the export and import section
-- below; here because stats_coverage names them).
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

-- Import runs of import_stats() (see the export and import section below;
-- here because stats_coverage reads them): import_stats() hands the work to a worker that
-- commits one batch of tables at a time and records each table here; a call
-- that finds a run of the same source still 'running' (cancelled, or the
-- server crashed) resumes it.  Rows carry the cluster that wrote them
-- (origin), as stats_run's do: a run carried by pg_upgrade is inert.
CREATE TABLE upgrade_assist.stats_import_run (
    run_id        bigint      PRIMARY KEY,   -- max + 1 under the import's lock
    origin        bigint      NOT NULL,
    source        text,                      -- NULL: the export tables
    state         text        NOT NULL DEFAULT 'running',
    started_by    name        NOT NULL,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    attempts      integer     NOT NULL DEFAULT 1,
    request       bigint      NOT NULL,      -- the last call's, to find it
    error_code    text,
    error_message text,
    CONSTRAINT stats_import_run_state_check CHECK (state IN ('running', 'done'))
);
CREATE TABLE upgrade_assist.stats_import_table (
    run_id           bigint      NOT NULL
                     REFERENCES upgrade_assist.stats_import_run ON DELETE CASCADE,
    schemaname       text        NOT NULL,
    relname          text        NOT NULL,
    relid            oid,                    -- the table on this side
    status           text        NOT NULL,
    columns_imported integer     NOT NULL,
    columns_skipped  integer     NOT NULL,
    detail           text,
    batch            integer     NOT NULL,   -- its transaction, 1-based in the run
    attempt          integer     NOT NULL,   -- the call of the run that did it
    imported_at      timestamptz NOT NULL,
    PRIMARY KEY (run_id, schemaname, relname),
    CONSTRAINT stats_import_table_status_check
        CHECK (status IN ('imported', 'skipped', 'failed'))
);
CREATE INDEX stats_import_table_relid ON upgrade_assist.stats_import_table (relid);

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
       greatest(s.last_analyze, s.last_autoanalyze, ours.analyzed_at, imp.imported_at)
                                                          AS last_analyzed,
       CASE
         WHEN imp.imported_at IS NOT NULL
              AND imp.imported_at >= coalesce(greatest(s.last_analyze, s.last_autoanalyze,
                                                       ours.analyzed_at), '-infinity')
           THEN 'import_stats'
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
  LEFT JOIN LATERAL (
       SELECT pg_catalog.max(t.imported_at) AS imported_at
         FROM upgrade_assist.stats_import_table t
         JOIN upgrade_assist.stats_import_run r USING (run_id)
        WHERE t.relid = c.oid AND t.status = 'imported'
          AND r.origin = (SELECT system_identifier FROM pg_catalog.pg_control_system())) imp
    ON true
 WHERE c.relkind IN ('r', 'm', 'p')
   AND c.relpersistence <> 't'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_toast'
   -- the rebuild's and the import's own bookkeeping, which they change
   -- while they run, and the export (read once, by the import)
   AND c.oid NOT IN ('upgrade_assist.stats_run'::regclass,
                     'upgrade_assist.stats_task'::regclass,
                     'upgrade_assist.stats_import_run'::regclass,
                     'upgrade_assist.stats_import_table'::regclass,
                     'upgrade_assist.stats_export_rel'::regclass,
                     'upgrade_assist.stats_export_att'::regclass);

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

CREATE FUNCTION upgrade_assist.export_stats()
RETURNS integer
AS 'MODULE_PATHNAME', 'export_stats'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.import_stats(source text DEFAULT NULL,
                                            batch_size integer DEFAULT 100,
                                            rebuild_jobs integer DEFAULT 0,
                                            jobs integer DEFAULT 1)
RETURNS TABLE (schemaname text, relname text, status text,
               columns_imported integer, columns_skipped integer, detail text)
AS 'MODULE_PATHNAME', 'import_stats'
LANGUAGE C VOLATILE;

REVOKE ALL ON upgrade_assist.stats_export_rel FROM PUBLIC;
REVOKE ALL ON upgrade_assist.stats_export_att FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.export_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.import_stats(text, integer, integer, integer) FROM PUBLIC;
REVOKE ALL ON upgrade_assist.stats_import_run FROM PUBLIC;
REVOKE ALL ON upgrade_assist.stats_import_table FROM PUBLIC;
GRANT SELECT ON upgrade_assist.stats_import_run, upgrade_assist.stats_import_table TO pg_monitor;
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
    steps jsonb NOT NULL DEFAULT '[]',
    resolution text,                -- how an unfinished attempt was settled
    resolved_at timestamptz
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
    accept text[] DEFAULT '{}',
    on_abort text DEFAULT 'error',
    disconnect boolean DEFAULT true,
    replication text DEFAULT 'native')
RETURNS TABLE (step text, status text, started_at timestamptz,
               duration interval, detail text)
AS 'MODULE_PATHNAME', 'cutover'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.cutover_resume()
RETURNS boolean
AS 'MODULE_PATHNAME', 'cutover_resume'
LANGUAGE C VOLATILE;

-- cutover_attempt, on the peer of a cutover (the cluster that takes over):
-- one row per attempt that reached the point of no return or was asked
-- about.  'committed' is written by cutover_takeover() inside the takeover
-- transaction; 'not committed' is the tombstone an answer "not committed"
-- of cutover_attempt_outcome() leaves, which makes a late takeover of that
-- attempt refuse.  Both take the same transaction-level advisory lock, so
-- the question waits for a takeover in flight.  Kept local by the same
-- replica trigger as cutover_history.  See docs/recovery.md.
CREATE TABLE upgrade_assist.cutover_attempt (
    origin bigint NOT NULL,         -- system identifier of the cutover's cluster
    attempt bigint NOT NULL,        -- its cutover_history.attempt
    state text NOT NULL CHECK (state IN ('committed', 'not committed')),
    forward_subscription name,      -- 'committed': the subscription it detached
    forward_slot name,              -- and that subscription's slot (on origin)
    recorded_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    asked_at timestamptz,
    PRIMARY KEY (origin, attempt)
);
SELECT pg_catalog.pg_extension_config_dump('upgrade_assist.cutover_attempt', '');

CREATE TRIGGER keep_local
    BEFORE INSERT OR UPDATE OR DELETE ON upgrade_assist.cutover_attempt
    FOR EACH ROW EXECUTE FUNCTION upgrade_assist.cutover_history_keep_local();
ALTER TABLE upgrade_assist.cutover_attempt ENABLE REPLICA TRIGGER keep_local;

-- The key of the advisory lock of one attempt.
CREATE FUNCTION upgrade_assist.cutover_attempt_lock_key(origin bigint, attempt bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.hashtextextended(
        'upgrade_assist.cutover_attempt ' || origin::text || ' ' || attempt::text, 0)
$$;

-- The peer's half of the point of no return, called by the cutover worker
-- of the other cluster (origin, attempt): record the attempt as committed,
-- disable the forward subscription and detach it from its slot (the slot is
-- on the caller's side, which drops it; the worker drops the subscription
-- after the point of no return), note the takeover in the fence file (a
-- crash before the fence lift lifts it at restart) and lift the fence when
-- this commits.  Refuses (55000) an attempt already answered "not
-- committed".  synchronous_commit on (in both): a record or tombstone must
-- survive a crash once the caller may have been told.
CREATE FUNCTION upgrade_assist.cutover_takeover(
    forward_subscription name, origin bigint, attempt bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    slot name;
BEGIN
    IF forward_subscription IS NULL OR origin IS NULL OR attempt IS NULL THEN
        RAISE EXCEPTION 'forward_subscription, origin and attempt must not be null'
            USING ERRCODE = '22004';
    END IF;
    -- To the end of the transaction (a SET clause would end with the call).
    PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
    PERFORM pg_catalog.pg_advisory_xact_lock(
        upgrade_assist.cutover_attempt_lock_key(cutover_takeover.origin, cutover_takeover.attempt));
    IF EXISTS (SELECT FROM upgrade_assist.cutover_attempt a
                WHERE a.origin = cutover_takeover.origin
                  AND a.attempt = cutover_takeover.attempt) THEN
        RAISE EXCEPTION 'cutover attempt % of cluster % was already answered here',
            attempt, origin
            USING ERRCODE = '55000',
                  DETAIL = 'Its record says: ' || (SELECT a.state FROM upgrade_assist.cutover_attempt a
                                                    WHERE a.origin = cutover_takeover.origin
                                                      AND a.attempt = cutover_takeover.attempt) || '.',
                  HINT = 'A takeover that arrives after the answer "not committed" must not happen.';
    END IF;
    SELECT s.subslotname INTO slot
      FROM pg_catalog.pg_subscription s
      JOIN pg_catalog.pg_database d ON d.oid = s.subdbid
     WHERE d.datname = pg_catalog.current_database() AND s.subname = forward_subscription;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', forward_subscription
            USING ERRCODE = '42704';
    END IF;
    INSERT INTO upgrade_assist.cutover_attempt
        (origin, attempt, state, forward_subscription, forward_slot)
        VALUES (cutover_takeover.origin, cutover_takeover.attempt, 'committed',
                cutover_takeover.forward_subscription, slot);
    EXECUTE format('ALTER SUBSCRIPTION %I DISABLE', forward_subscription);
    EXECUTE format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', forward_subscription);
    PERFORM upgrade_assist.fence_note_takeover(origin, attempt);
    PERFORM upgrade_assist.unfence_at_commit();
END
$$;

-- The question "did attempt N of cluster origin commit its takeover here?",
-- asked by that cluster.  Waits for a takeover of that attempt in flight
-- (the advisory lock), then answers from the record; when there is none,
-- it writes the tombstone 'not committed', so the answer stays true.
-- fenced: this cluster's fence is up now.
CREATE FUNCTION upgrade_assist.cutover_attempt_outcome(
    origin bigint, attempt bigint,
    OUT committed boolean, OUT fenced boolean, OUT recorded_at timestamptz,
    OUT forward_subscription name, OUT forward_slot name)
RETURNS record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st text;
BEGIN
    IF origin IS NULL OR attempt IS NULL THEN
        RAISE EXCEPTION 'origin and attempt must not be null' USING ERRCODE = '22004';
    END IF;
    -- To the end of the transaction (a SET clause would end with the call).
    PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
    PERFORM pg_catalog.pg_advisory_xact_lock(
        upgrade_assist.cutover_attempt_lock_key(cutover_attempt_outcome.origin, cutover_attempt_outcome.attempt));
    INSERT INTO upgrade_assist.cutover_attempt AS a (origin, attempt, state, asked_at)
        VALUES (cutover_attempt_outcome.origin, cutover_attempt_outcome.attempt,
                'not committed', pg_catalog.clock_timestamp())
        ON CONFLICT ON CONSTRAINT cutover_attempt_pkey
        DO UPDATE SET asked_at = pg_catalog.clock_timestamp()
        RETURNING a.state, a.recorded_at, a.forward_subscription, a.forward_slot
        INTO st, recorded_at, forward_subscription, forward_slot;
    committed := st = 'committed';
    SELECT f.fenced INTO fenced FROM upgrade_assist.fence_status f;
END
$$;

-- Fence-file note of a takeover in flight (called by cutover_takeover()).
CREATE FUNCTION upgrade_assist.fence_note_takeover(origin bigint, attempt bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'fence_note_takeover'
LANGUAGE C VOLATILE STRICT;

-- For the DBA: settle this cluster's unfinished cutover attempt now (see
-- docs/recovery.md).  peer_gone => true: the peer is gone for good; when it
-- cannot be reached, the attempt is settled as aborted and the fence here
-- lifted.  Never unfences this side while the peer says it is primary.
CREATE FUNCTION upgrade_assist.cutover_resolve(peer_gone boolean DEFAULT false)
RETURNS TABLE (attempt bigint, outcome text, detail text)
AS 'MODULE_PATHNAME', 'cutover_resolve'
LANGUAGE C VOLATILE;

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
REVOKE ALL ON FUNCTION upgrade_assist.cutover(text, interval, interval, bigint, boolean, boolean, text[], text, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_resume() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_takeover(name, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON upgrade_assist.cutover_attempt FROM PUBLIC;
GRANT SELECT ON upgrade_assist.cutover_attempt TO pg_monitor;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_attempt_lock_key(bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_attempt_outcome(bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.fence_note_takeover(bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_resolve(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_history_keep_local() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_progress_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upgrade_assist.cutover_progress_rows() TO pg_monitor;
REVOKE ALL ON upgrade_assist.cutover_progress FROM PUBLIC;
GRANT SELECT ON upgrade_assist.cutover_progress TO pg_monitor;

-- ---------------------------------------------------------------------------
-- Verification (run on the primary): verify(peer) compares every replicated
-- table with the peer range by range, each range on both sides at the same
-- position of the replication stream.  See docs/verify.md.
--   verify_range: one row per range.  The primary inserts it, alone in its
--     transaction, while it holds the table in SHARE mode (with its own
--     count and checksum when it computed them under the lock; NULL when
--     its snapshot helper computes them after the commit, from a snapshot
--     taken under the lock); replication carries it in commit order to the
--     peer, whose replica trigger verify_range_apply computes the peer's
--     count and checksum of the same range into the row as it is applied.
--     A row of this cluster's origin that comes back (reverse direction)
--     is skipped.
--   verify_run, verify_table, verify_diff: the run's bookkeeping, kept on
--     the cluster that ran it (the replica trigger drops them elsewhere).
-- ---------------------------------------------------------------------------
CREATE TABLE upgrade_assist.verify_range (
    origin       bigint      NOT NULL,
    run_id       bigint      NOT NULL,
    range_no     bigint      NOT NULL,
    schemaname   text        NOT NULL,
    relname      text        NOT NULL,
    mode         text        NOT NULL,
    key_columns  text[],
    columns      text[]      NOT NULL,
    key_from     text[],
    key_to       text[],
    row_limit    bigint,
    rows_here    bigint,
    sum_here     numeric,
    keys_here    text[],
    hashes_here  bigint[],
    lock_ms      float8      NOT NULL,
    written_at   timestamptz NOT NULL,
    rows_there   bigint,
    sum_there    numeric,
    keys_there   text[],
    hashes_there bigint[],
    error_there  text,
    computed_at  timestamptz,
    computed_ms  float8,
    PRIMARY KEY (origin, run_id, range_no),
    CONSTRAINT verify_range_mode_check CHECK (mode IN ('range', 'keys', 'whole'))
);
COMMENT ON TABLE upgrade_assist.verify_range IS
    'one row per range verified; replicate it with the user tables, by the same subscription';

CREATE FUNCTION upgrade_assist.verify_range_apply()
RETURNS trigger
AS 'MODULE_PATHNAME', 'verify_range_apply'
LANGUAGE C;

CREATE TRIGGER verify_range_apply
    BEFORE INSERT ON upgrade_assist.verify_range
    FOR EACH ROW EXECUTE FUNCTION upgrade_assist.verify_range_apply();
ALTER TABLE upgrade_assist.verify_range ENABLE REPLICA TRIGGER verify_range_apply;

CREATE TABLE upgrade_assist.verify_run (
    run_id      bigint      PRIMARY KEY,
    origin      bigint      NOT NULL,
    peer        text        NOT NULL,
    chunk_rows  integer     NOT NULL,
    find_keys   boolean     NOT NULL,
    timeout     interval    NOT NULL,
    started_by  name        NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    state       text        NOT NULL DEFAULT 'running',
    note        text,
    CONSTRAINT verify_run_state_check
        CHECK (state IN ('running', 'done', 'cancelled', 'failed', 'interrupted'))
);

CREATE TABLE upgrade_assist.verify_table (
    run_id        bigint  NOT NULL REFERENCES upgrade_assist.verify_run ON DELETE CASCADE,
    ord           integer NOT NULL,
    relid         oid     NOT NULL,
    schemaname    text    NOT NULL,
    relname       text    NOT NULL,
    rows_total    bigint  NOT NULL,
    rows_done     bigint  NOT NULL DEFAULT 0,
    ranges_done   bigint  NOT NULL DEFAULT 0,
    ranges_differ bigint  NOT NULL DEFAULT 0,
    max_lock_ms   float8,
    state         text    NOT NULL DEFAULT 'pending',
    note          text,
    started_at    timestamptz,
    ended_at      timestamptz,
    PRIMARY KEY (run_id, relid),
    CONSTRAINT verify_table_state_check
        CHECK (state IN ('pending', 'running', 'same', 'different',
                         'not comparable', 'cancelled'))
);

CREATE TABLE upgrade_assist.verify_diff (
    run_id      bigint NOT NULL REFERENCES upgrade_assist.verify_run ON DELETE CASCADE,
    schemaname  text   NOT NULL,
    relname     text   NOT NULL,
    range_no    bigint,
    kind        text   NOT NULL,
    key_from    text[],
    key_to      text[],
    rows_here   bigint,
    rows_there  bigint,
    key         text,
    detail      text,
    CONSTRAINT verify_diff_kind_check
        CHECK (kind IN ('range', 'changed', 'missing here', 'missing there',
                        'not comparable'))
);
CREATE INDEX ON upgrade_assist.verify_diff (run_id);
-- No natural key, and the extension owns no sequence (markers.sql checks
-- that): a FOR ALL TABLES publication carries this table, and the DELETE
-- that cascades from verify_run would fail on the publisher without a
-- replica identity.
ALTER TABLE upgrade_assist.verify_diff REPLICA IDENTITY FULL;

CREATE FUNCTION upgrade_assist.verify_keep_local()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NULL;
END
$$;

CREATE TRIGGER keep_local
    BEFORE INSERT OR UPDATE OR DELETE ON upgrade_assist.verify_run
    FOR EACH ROW EXECUTE FUNCTION upgrade_assist.verify_keep_local();
ALTER TABLE upgrade_assist.verify_run ENABLE REPLICA TRIGGER keep_local;
CREATE TRIGGER keep_local
    BEFORE INSERT OR UPDATE OR DELETE ON upgrade_assist.verify_table
    FOR EACH ROW EXECUTE FUNCTION upgrade_assist.verify_keep_local();
ALTER TABLE upgrade_assist.verify_table ENABLE REPLICA TRIGGER keep_local;
CREATE TRIGGER keep_local
    BEFORE INSERT OR UPDATE OR DELETE ON upgrade_assist.verify_diff
    FOR EACH ROW EXECUTE FUNCTION upgrade_assist.verify_keep_local();
ALTER TABLE upgrade_assist.verify_diff ENABLE REPLICA TRIGGER keep_local;

CREATE FUNCTION upgrade_assist.verify(
    peer text,
    tables regclass[] DEFAULT NULL,
    chunk_rows integer DEFAULT 10000,
    find_keys boolean DEFAULT true,
    timeout interval DEFAULT '60s')
RETURNS bigint
AS 'MODULE_PATHNAME', 'verify'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.cancel_verify(run bigint DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'cancel_verify'
LANGUAGE C VOLATILE;

CREATE FUNCTION upgrade_assist.verify_workers(
    OUT run_id bigint,
    OUT pid integer,
    OUT relid oid,
    OUT rows_done bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'verify_workers'
LANGUAGE C VOLATILE;

-- One row per run of this cluster, newest first.  rows_done counts the
-- finished tables' rows and, for the table being verified, the rows of
-- its ranges compared so far.
CREATE VIEW upgrade_assist.verify_progress AS
SELECT r.run_id, r.peer, r.state,
       (SELECT w.pid FROM upgrade_assist.verify_workers() w
         WHERE w.run_id = r.run_id) AS pid,
       (SELECT format('%I.%I', t.schemaname, t.relname)
          FROM upgrade_assist.verify_table t
         WHERE t.run_id = r.run_id AND t.state = 'running' LIMIT 1) AS current_table,
       t.tables_total, t.tables_done, t.tables_different,
       t.tables_not_comparable, t.ranges_done, t.ranges_different,
       t.rows_total, t.rows_done,
       round(t.rows_done / nullif(extract(epoch FROM e.elapsed), 0)) AS rows_per_second,
       e.elapsed,
       CASE WHEN r.state = 'running' AND t.rows_done > 0
            THEN e.elapsed * (greatest(t.rows_total - t.rows_done, 0)::float8 / t.rows_done)
       END AS estimated_left,
       t.max_lock_ms,
       r.started_at, r.ended_at, r.note
  FROM upgrade_assist.verify_run r
  CROSS JOIN LATERAL (
    SELECT count(*) AS tables_total,
           count(*) FILTER (WHERE state NOT IN ('pending', 'running')) AS tables_done,
           count(*) FILTER (WHERE state = 'different') AS tables_different,
           count(*) FILTER (WHERE state = 'not comparable') AS tables_not_comparable,
           coalesce(sum(ranges_done), 0) AS ranges_done,
           coalesce(sum(ranges_differ), 0) AS ranges_different,
           coalesce(sum(rows_total), 0) AS rows_total,
           coalesce(sum(rows_done), 0) AS rows_done,
           max(max_lock_ms) AS max_lock_ms
      FROM upgrade_assist.verify_table t WHERE t.run_id = r.run_id) t
  CROSS JOIN LATERAL (
    SELECT coalesce(r.ended_at, now()) - r.started_at AS elapsed) e
 ORDER BY r.run_id DESC;

-- The differences one run found (the latest of this cluster by default):
-- a differing range (kind 'range', its bounds and both counts), and with
-- find_keys each key found by comparing that range row by row ('changed',
-- 'missing here', 'missing there'); a table that could not be compared
-- ('not comparable', detail says why).
CREATE FUNCTION upgrade_assist.verify_result(run bigint DEFAULT NULL)
RETURNS TABLE (run_id bigint, table_name text, kind text, range_no bigint,
               key_from text[], key_to text[], rows_here bigint,
               rows_there bigint, key text, detail text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.run_id, format('%I.%I', d.schemaname, d.relname), d.kind,
           d.range_no, d.key_from, d.key_to, d.rows_here, d.rows_there,
           d.key, d.detail
      FROM upgrade_assist.verify_diff d
     WHERE d.run_id = coalesce(run, (SELECT max(r.run_id) FROM upgrade_assist.verify_run r))
     ORDER BY d.schemaname, d.relname, d.range_no NULLS FIRST, d.kind, d.key
$$;

REVOKE ALL ON FUNCTION upgrade_assist.verify(text, regclass[], integer, boolean, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.cancel_verify(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.verify_range_apply() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.verify_keep_local() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.verify_workers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upgrade_assist.verify_workers() TO pg_monitor;
REVOKE ALL ON FUNCTION upgrade_assist.verify_result(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upgrade_assist.verify_result(bigint) TO pg_monitor;
REVOKE ALL ON upgrade_assist.verify_range, upgrade_assist.verify_run,
    upgrade_assist.verify_table, upgrade_assist.verify_diff FROM PUBLIC;
GRANT SELECT ON upgrade_assist.verify_range, upgrade_assist.verify_run,
    upgrade_assist.verify_table, upgrade_assist.verify_diff TO pg_monitor;
REVOKE ALL ON upgrade_assist.verify_progress FROM PUBLIC;
GRANT SELECT ON upgrade_assist.verify_progress TO pg_monitor;

-- ---------------------------------------------------------------------------
-- Cutover over another pipeline (cutover(..., replication => 'external')):
-- the peer's half of the point of no return when no native subscription
-- carries the rows.  See docs/external-pipelines.md.
--   cutover_takeover_external(origin, attempt): as cutover_takeover() (the
--     same record, advisory lock, tombstone refusal, fence-file note and
--     fence lift at commit), with no subscription to disable or detach: the
--     team's switch command stopped the forward pipeline before this call.
--     The record's forward_subscription and forward_slot stay NULL, so the
--     crash resolution drops nothing native.
-- ---------------------------------------------------------------------------
CREATE FUNCTION upgrade_assist.cutover_takeover_external(origin bigint, attempt bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF origin IS NULL OR attempt IS NULL THEN
        RAISE EXCEPTION 'origin and attempt must not be null' USING ERRCODE = '22004';
    END IF;
    -- To the end of the transaction (a SET clause would end with the call).
    PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
    PERFORM pg_catalog.pg_advisory_xact_lock(
        upgrade_assist.cutover_attempt_lock_key(cutover_takeover_external.origin,
                                                cutover_takeover_external.attempt));
    IF EXISTS (SELECT FROM upgrade_assist.cutover_attempt a
                WHERE a.origin = cutover_takeover_external.origin
                  AND a.attempt = cutover_takeover_external.attempt) THEN
        RAISE EXCEPTION 'cutover attempt % of cluster % was already answered here',
            attempt, origin
            USING ERRCODE = '55000',
                  DETAIL = 'Its record says: ' || (SELECT a.state FROM upgrade_assist.cutover_attempt a
                                                    WHERE a.origin = cutover_takeover_external.origin
                                                      AND a.attempt = cutover_takeover_external.attempt) || '.',
                  HINT = 'A takeover that arrives after the answer "not committed" must not happen.';
    END IF;
    INSERT INTO upgrade_assist.cutover_attempt (origin, attempt, state)
        VALUES (cutover_takeover_external.origin, cutover_takeover_external.attempt, 'committed');
    PERFORM upgrade_assist.fence_note_takeover(origin, attempt);
    PERFORM upgrade_assist.unfence_at_commit();
END
$$;
REVOKE ALL ON FUNCTION upgrade_assist.cutover_takeover_external(bigint, bigint) FROM PUBLIC;
