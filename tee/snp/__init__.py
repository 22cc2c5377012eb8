"""AMD SEV-SNP: attestation report layout, device clients, signature chains, simulation."""
