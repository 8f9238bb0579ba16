-- Demo data for the saas security bundle (examples/bundles/saas) on a cluster
-- of three shards (sb demo): the tables of saas-demo.sql, placed by tenant
-- (tenant 1 on the first shard, 2 on the second, 3 on the third: RANGE with
-- split points 2 and 3), so a tenant's customers and invoices share a shard.
-- A statement writes on one shard, so each tenant's rows come in their own
-- INSERT. Tenant 3 has a customer with the same e-mail as one of tenant 1:
-- support sees both tokenised, with the same token, though two shards hold
-- them.

CREATE DOMAIN email AS VARCHAR(254) CHECK (VALUE LIKE '%_@_%');

CREATE TABLE customers (
    id        BIGINT PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    name      VARCHAR(120) NOT NULL,
    email     email,
    plan      VARCHAR(20) NOT NULL,
    mrr       DECIMAL(12,2)
) DISTRIBUTE BY RANGE (tenant_id) SPLIT AT (2, 3);

CREATE TABLE invoices (
    id          BIGINT PRIMARY KEY,
    tenant_id   INTEGER NOT NULL,
    customer_id BIGINT NOT NULL,
    amount      DECIMAL(12,2) NOT NULL,
    status      VARCHAR(10) NOT NULL,
    issued      DATE
) DISTRIBUTE BY RANGE (tenant_id) SPLIT AT (2, 3);

INSERT INTO customers VALUES
    (1, 1, 'Acme Rockets',   'ops@acme.test',   'team', 1200.00),
    (2, 1, 'Bolt Bikes',     'hi@bolt.test',    'pro',   300.00),
    (3, 1, 'Crux Climbing',  NULL,              'free',    0.00);

INSERT INTO customers VALUES
    (4, 2, 'Dyne Dynamics',  'cfo@dyne.test',   'team',  900.00),
    (5, 2, 'Eon Energy',     'a@eon.test',      'pro',   450.00),
    (6, 2, 'Flux Freight',   'ops@flux.test',   'free',   25.00);

INSERT INTO customers VALUES
    (7, 3, 'Acme Rockets EU', 'ops@acme.test',  'team',  800.00),
    (8, 3, 'Gale Gliders',    'fly@gale.test',  'pro',   150.00);

INSERT INTO invoices VALUES
    (100, 1, 1, 1200.00, 'paid',  DATE '2026-10-01'),
    (101, 1, 2,  300.00, 'sent',  DATE '2026-10-03'),
    (102, 1, 1, 1200.00, 'draft', NULL);

INSERT INTO invoices VALUES
    (200, 2, 4,  900.00, 'paid',  DATE '2026-10-02'),
    (201, 2, 5,  450.00, 'sent',  DATE '2026-10-05');

INSERT INTO invoices VALUES
    (300, 3, 7,  800.00, 'paid',  DATE '2026-10-04');
