-- A wallet's holds are listed newest first, as payer and as payee (`GET /v1/wallets/{id}/holds`).
CREATE INDEX holds_by_payer ON holds (wallet_id, id);
CREATE INDEX holds_by_payee ON holds (to_wallet, id);
