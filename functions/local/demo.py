"""Demo data: the seed's tables (the customer table and its six related tables) and customers
with a realistic spread of ages and lines of business. Set-based, so 100,000 take seconds."""

from __future__ import annotations

from archiver.config import Policy
from archiver.db import Database
from archiver.identifiers import qualified, quote

RELATED_DDL = {
    "nic_cc_aod": "status text NOT NULL, amount numeric(12,2), created_at timestamptz NOT NULL DEFAULT now()",
    "nic_cc_payment_plan": "status text NOT NULL, total numeric(12,2), created_at timestamptz NOT NULL DEFAULT now()",
    "nic_cc_installment": "status text NOT NULL, due_date timestamptz, amount numeric(12,2)",
    "nic_cc_call_log": "called_at timestamptz NOT NULL, outcome text",
    "nic_cc_contact_update_history": "field_name text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now()",
    "nic_cc_follow_up": "due_date timestamptz NOT NULL, status text NOT NULL DEFAULT 'open'",
}

# One INSERT per related table: which customers get a row, and its values ("c" is the customer).
RELATED_ROWS = {
    "nic_cc_aod": ("0.04", "CASE WHEN random() < 0.5 THEN 'active' ELSE 'closed' END,"
                   " round((random()*5000)::numeric, 2), c.created_at"),
    "nic_cc_payment_plan": ("0.03", "CASE WHEN random() < 0.5 THEN 'active' ELSE 'completed' END,"
                            " round((random()*9000)::numeric, 2), c.created_at"),
    "nic_cc_installment": ("0.03", "CASE WHEN random() < 0.6 THEN 'paid' ELSE 'pending' END,"
                           " c.created_at + interval '30 days', round((random()*900)::numeric, 2)"),
    "nic_cc_call_log": ("0.05", "now() - random() * interval '120 days', 'answered'"),
    "nic_cc_contact_update_history": ("0.02", "'mobile', c.created_at + interval '1 day'"),
    "nic_cc_follow_up": ("0.03", "now() + (random() * 60 - 20) * interval '1 day', 'open'"),
}


def create_tables(db: Database, policy: Policy) -> list[str]:
    live = qualified(policy.schema_name, policy.live_table)
    db.run(f"""CREATE TABLE IF NOT EXISTS {live} (
        id bigserial PRIMARY KEY,
        name text NOT NULL,
        email text,
        mobile text,
        policy_number text,
        amount_due numeric(12,2),
        {quote(policy.lob_column)} text,
        agent_id integer,
        status text NOT NULL DEFAULT 'open',
        {quote(policy.age_column)} timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now())""")
    for table, ddl in RELATED_DDL.items():
        db.run(f"CREATE TABLE IF NOT EXISTS {qualified(policy.schema_name, table)} (id bigserial PRIMARY KEY,"
               f" customer_id bigint NOT NULL REFERENCES {live} (id), {ddl})")
    return [policy.live_table, *RELATED_DDL]


def seed(db: Database, policy: Policy, customers: int, days: int = 180, related: bool = True) -> int:
    """Add ``customers`` customers, created over the last ``days`` days in arrival order
    (ids rise with age, with some noise), and related rows for a few of them."""
    create_tables(db, policy)
    live = qualified(policy.schema_name, policy.live_table)
    with db.transaction():
        first = int(db.scalar(f"SELECT COALESCE(max(id), 0) FROM {live}"))
        db.run(f"""INSERT INTO {live} (name, email, mobile, policy_number, amount_due, {quote(policy.lob_column)},
                   agent_id, status, {quote(policy.age_column)}, updated_at)
            SELECT 'Customer ' || g, 'customer' || g || '@example.mu', '+230 5' || lpad((g % 10000000)::text, 7, '0'),
                   'POL-' || lpad(g::text, 8, '0'), round((random() * 20000)::numeric, 2),
                   (ARRAY['Life','Life','Life','Motor','Motor','Motor','Motor','Health','Health','Property'])
                       [1 + floor(random() * 10)::int],
                   1 + floor(random() * 50)::int, 'open', t, t
            FROM generate_series(1, CAST(:n AS integer)) g,
                 LATERAL (SELECT now() - (CAST(:n AS integer) - g) * (CAST(:days AS integer) * interval '1 day')
                     / CAST(:n AS integer) - random() * interval '6 hours' AS t) a""", n=customers, days=days)
        if related:
            for table, (share, values) in RELATED_ROWS.items():
                cols = [c.split()[0] for c in RELATED_DDL[table].split(", ")]
                db.run(f"INSERT INTO {qualified(policy.schema_name, table)} (customer_id, {', '.join(cols)})"
                       f" SELECT c.id, {values} FROM {live} c WHERE c.id > :first AND random() < {share}",
                       first=first)
    db.run(f"ANALYZE {live}")  # fresh statistics, or the first run plans against an empty table
    return customers
