-- Demo data for the saas security bundle (examples/bundles/saas): two tenants'
-- customers and invoices. Loaded by the data directory's owner; users then see
-- what the bundle allows (alice: tenant 1; bob: tenant 2; sam, support: every
-- tenant with e-mails masked; fran, finance: tenant 1 with revenue and drafts).

CREATE DOMAIN email AS VARCHAR(254) CHECK (VALUE LIKE '%_@_%');

CREATE TABLE customers (
    id        BIGINT PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    name      VARCHAR(120) NOT NULL,
    email     email,
    plan      VARCHAR(20) NOT NULL,
    mrr       DECIMAL(12,2)
);

CREATE TABLE invoices (
    id          BIGINT PRIMARY KEY,
    tenant_id   INTEGER NOT NULL,
    customer_id BIGINT NOT NULL,
    amount      DECIMAL(12,2) NOT NULL,
    status      VARCHAR(10) NOT NULL,
    issued      DATE
);

INSERT INTO customers VALUES
    (1, 1, 'Acme Rockets',   'ops@acme.test',   'team', 1200.00),
    (2, 1, 'Bolt Bikes',     'hi@bolt.test',    'pro',   300.00),
    (3, 1, 'Crux Climbing',  NULL,              'free',    0.00),
    (4, 2, 'Dyne Dynamics',  'cfo@dyne.test',   'team',  900.00),
    (5, 2, 'Eon Energy',     'a@eon.test',      'pro',   450.00),
    (6, 2, 'Flux Freight',   'ops@flux.test',   'free',   25.00);

INSERT INTO invoices VALUES
    (100, 1, 1, 1200.00, 'paid',  DATE '2026-10-01'),
    (101, 1, 2,  300.00, 'sent',  DATE '2026-10-03'),
    (102, 1, 1, 1200.00, 'draft', NULL),
    (200, 2, 4,  900.00, 'paid',  DATE '2026-10-02'),
    (201, 2, 5,  450.00, 'sent',  DATE '2026-10-05');
