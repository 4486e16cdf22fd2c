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
-- Markers: an ordinary table, so that whatever carries the user's tables to
-- the peer (native logical replication, any CDC pipeline) carries it too.
-- origin is the writing cluster's system identifier; seq grows per origin.
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

-- ---------------------------------------------------------------------------
-- Privileges: nothing that writes or talks to a peer is open to PUBLIC.
-- Monitoring roles (and the role a peer connects as) read the markers.
-- ---------------------------------------------------------------------------

REVOKE ALL ON FUNCTION upgrade_assist.emit_marker(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.wait_for_marker(text, bigint, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.round_trip(text, interval) FROM PUBLIC;

REVOKE ALL ON FUNCTION upgrade_assist.heartbeat_start(text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.heartbeat_stop() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.sync_status_rows() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upgrade_assist.sync_status_rows() TO pg_monitor;
REVOKE ALL ON upgrade_assist.sync_status FROM PUBLIC;
GRANT SELECT ON upgrade_assist.sync_status TO pg_monitor;

GRANT USAGE ON SCHEMA upgrade_assist TO pg_monitor;
GRANT SELECT ON upgrade_assist.marker TO pg_monitor;

-- ---------------------------------------------------------------------------
-- Write fence: while it is up, every write of every session that is not
-- exempt fails with SQLSTATE 25006; reads go on.  Cluster-wide, and kept
-- across restarts and crashes (file upgrade_assist.fence in the data
-- directory).  See README, "Write fence".
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

CREATE FUNCTION upgrade_assist.fence_status(
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
AS 'MODULE_PATHNAME', 'fence_status'
LANGUAGE C VOLATILE STRICT;

CREATE VIEW upgrade_assist.fence_status AS
    SELECT * FROM upgrade_assist.fence_status();

REVOKE ALL ON FUNCTION upgrade_assist.fence(text, interval, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.unfence() FROM PUBLIC;
REVOKE ALL ON FUNCTION upgrade_assist.fence_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION upgrade_assist.fence_status() TO pg_monitor;
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
