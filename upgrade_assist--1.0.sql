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
