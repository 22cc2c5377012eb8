"""The tests' stage-chain builder: the one in ``attestd.conformance._chains``, re-exported.

The conformance generator builds its chain cases with the same code, so a
rule of how stages are attested lives in one place.
"""

from attestd.conformance._chains import (
    BASE,
    DATASET,
    FLOW,
    INT8,
    LICENSES,
    LONG_AGO,
    PIPELINE,
    RAW,
    RELEASE,
    RUN_ID,
    STAGES,
    BuiltStage,
    Pipeline,
    StageAgent,
    attest,
    attestation_bytes,
    make_snp_agent,
    make_tdx_agent,
    retag,
    with_outputs,
)

__all__ = [
    "BASE",
    "DATASET",
    "FLOW",
    "INT8",
    "LICENSES",
    "LONG_AGO",
    "PIPELINE",
    "RAW",
    "RELEASE",
    "RUN_ID",
    "STAGES",
    "BuiltStage",
    "Pipeline",
    "StageAgent",
    "attest",
    "attestation_bytes",
    "make_snp_agent",
    "make_tdx_agent",
    "retag",
    "with_outputs",
]
