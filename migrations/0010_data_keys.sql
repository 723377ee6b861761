-- The data keys of suppliers' and customers' personal data (crypto-shredding). Each supplier
-- or customer (the "subject") has one random AES-256 key; its contact name, e-mail, phone and
-- address are stored in events encrypted with it. The key itself is stored here only wrapped
-- (encrypted) by the master key OMS_DATA_KEY, which the database never holds; `master_key_id`
-- names which master key wrapped it (a fingerprint, so `oms data-keys rotate` knows what it
-- re-wraps). Erasing the subject's personal data deletes its row in the transaction that
-- appends the erasure event: the ciphertexts in the events can then never be read again.
create table data_keys (
    tenant_id     uuid        not null,
    subject_id    uuid        not null,
    wrapped_key   bytea       not null,
    master_key_id text        not null,
    created_at    timestamptz not null default now(),
    constraint data_keys_pkey primary key (tenant_id, subject_id)
);

-- The append transaction creates and destroys keys; every reader of events reads them;
-- rotation re-wraps them.
grant select, insert, update, delete on data_keys to oms_service;
