"""Optional integrations of attestd with other tools, one module each.

* ``attestd.integrations.sigstore`` -- stage attestations as Sigstore bundles
  (offline export under the agent key; keyless signing needs the ``sigstore`` extra).

An integration may need an optional extra; importing the module never does, so
that the agent and ``attestctl`` load without it.
"""
