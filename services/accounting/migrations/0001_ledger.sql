CREATE TABLE ledger_accounts (
    account TEXT NOT NULL,
    currency TEXT NOT NULL,
    kind TEXT NOT NULL,
    merchant_id TEXT,
    debits_minor BIGINT NOT NULL,
    credits_minor BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (account, currency)
);
CREATE INDEX ledger_accounts_by_merchant ON ledger_accounts (merchant_id);
CREATE TABLE journal_entries (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    merchant_id TEXT,
    payment_id TEXT,
    reverses_entry_id TEXT,
    description TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX journal_entries_by_payment ON journal_entries (payment_id);
CREATE TABLE postings (
    entry_id TEXT NOT NULL REFERENCES journal_entries (id),
    line BIGINT NOT NULL,
    account TEXT NOT NULL,
    currency TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('debit', 'credit')),
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    PRIMARY KEY (entry_id, line)
);
CREATE TABLE ledger_payments (
    payment_id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    channel TEXT NOT NULL,
    authorized_minor BIGINT NOT NULL,
    captured_minor BIGINT NOT NULL,
    fee_minor BIGINT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    fee_returned_minor BIGINT NOT NULL
)
