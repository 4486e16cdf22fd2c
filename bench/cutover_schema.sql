-- bench/cutover_schema.sql: the tables scripts/demo and bench/cutover add to pgbench's,
-- created on both clusters (psql -f).  Sequences are what logical replication does
-- not carry, and what a cutover must move: an identity column, and one sequence
-- that two tables draw from.

CREATE TABLE public.orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aid integer NOT NULL,
    amount integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE public.one_shared_seq;

CREATE TABLE public.order_events (
    id bigint PRIMARY KEY DEFAULT nextval('public.one_shared_seq'),
    aid integer NOT NULL,
    kind text NOT NULL
);

CREATE TABLE public.audit_log (
    id bigint PRIMARY KEY DEFAULT nextval('public.one_shared_seq'),
    note text NOT NULL
);
