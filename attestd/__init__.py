"""attestd: hardware-rooted evidence of what ran, where, on which model bytes.

The distribution is split by concern, one subpackage each:

* ``attestd.tee``      -- TEE backends: binary layouts, devices, signature chains.
* ``attestd.evidence`` -- the formats agent and verifier share (binding, log, statement, DSSE).
* ``attestd.agent``    -- the daemon pipelines talk to.
* ``attestd.verifier`` -- appraisal of evidence against a policy.
* ``attestd.v1``       -- the generated gRPC contract.
* ``attestd.cli``      -- ``attestctl``, one module per command group.
* ``attestd.integrations`` -- optional integrations (Sigstore bundles).
"""

from attestd.errors import AttestdError

__version__ = "0.1.0"

__all__ = ["AttestdError", "__version__"]
