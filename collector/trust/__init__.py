"""Who may stream: the CA and server certificates, identity from the client certificate, revocation,
handshake refusals, and the PKI tooling that issues certificates."""
