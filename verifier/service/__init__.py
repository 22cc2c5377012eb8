"""attestd-verifier: continuous attestation of a fleet of agents, state in a database.

    attestd-verifier --config /etc/attestd/verifier.toml

``store`` keeps the registry, verified checkpoints, results, nonces, webhook
deliveries and leases (SQLite or PostgreSQL, SQLAlchemy Core); ``poller``
appraises each due agent with :func:`attestd.verifier.appraise`; ``api``
serves ``attestd.verifier.v1`` over mutual TLS. It needs the ``fleet`` extra
(``pip install 'attestd[fleet]'``); the agent does not.
"""
